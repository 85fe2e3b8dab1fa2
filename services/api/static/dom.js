// Tiny DOM helpers. Text always goes in through textContent, never as HTML.

/**
 * Create an element: h("button", {class: "btn", type: "button", onclick: fn}, "Label", child).
 * Attributes set to false, null or undefined are left out; `true` sets an empty attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name in el && typeof value !== "string") {
      el[name] = value; // properties such as checked, disabled, value on progress
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Elements by id, failing loudly when the page and the script disagree. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}

let uid = 0;
/** A page-unique id for aria-describedby and label[for]. */
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A visually hidden span that screen readers still read. */
export function srOnly(text, id) {
  return h("span", { class: "sr-only", id }, text);
}
