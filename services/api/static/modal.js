// Modal helpers: a focus trap for <dialog> and a promise-based confirmation.

import { byId } from "./dom.js";

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function visibleFocusable(root) {
  return [...root.querySelectorAll(FOCUSABLE)].filter((el) => el.getClientRects().length > 0);
}

/**
 * Keep Tab and Shift+Tab inside an open dialog. showModal() already makes the page behind it
 * inert; this also stops focus from leaving for the browser's own toolbar between cycles.
 */
export function trapFocus(dialog) {
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const items = visibleFocusable(dialog);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    const active = document.activeElement;
    // Radio groups are one tab stop: treat any radio of the first/last group as that stop.
    const same = (a, b) => a === b || (a?.type === "radio" && b?.type === "radio" && a.name === b.name);
    if (event.shiftKey && same(active, first)) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && same(active, last)) {
      event.preventDefault();
      first.focus();
    }
  });
}

/** Ask before a destructive action; resolves true when confirmed. Escape or Cancel is false. */
export function confirmAction({ title, text, confirmLabel = "Delete" }) {
  const dialog = byId("confirm-dialog");
  const form = byId("confirm-form");
  const ok = byId("confirm-ok");
  const cancel = byId("confirm-cancel");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  ok.textContent = confirmLabel;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    let answer = false;
    const onSubmit = (event) => {
      event.preventDefault();
      answer = true;
      dialog.close();
    };
    const onCancel = () => dialog.close();
    const onClose = () => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("close", onClose);
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(answer);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    cancel.focus(); // the safe choice has focus, so Enter never deletes by accident
  });
}

let confirmTrapped = false;
export function initConfirm() {
  if (!confirmTrapped) {
    trapFocus(byId("confirm-dialog"));
    confirmTrapped = true;
  }
}
