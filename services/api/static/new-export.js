// The New Export dialog: type, format, libraries and grouped field checkboxes.

import { api, ApiError, EXPORTS, PAGE_API, SCHEDULES } from "./api.js";
import { byId, h, nextId, srOnly } from "./dom.js";
import { formatBytes, formatCount } from "./format.js";
import { trapFocus } from "./modal.js";
import { browserTimeZone, describeCron, knownTimeZones, presetCron } from "./schedules.js";

// The estimate follows the choices without a request per click: it waits for this long after
// the last change, and a newer request aborts the one still in flight.
const ESTIMATE_DELAY_MS = 300;

// SPEC §6 messages, so the page says exactly what the API would.
export const MESSAGES = {
  libraries: "At least one library must be selected",
  series: "At least one series field must be selected",
  books: "At least one book field must be selected",
  keep: "Keep must be between 1 and 30",
  cron: "Enter a cron expression of five fields, such as 0 3 * * 1-5",
};

// Which Repeat field a server refusal is about (SPEC §12 messages), to put the keyboard there.
const REPEAT_ERRORS = [
  ["Invalid cron expression", "repeat-cron"],
  ["Unknown time zone", "repeat-timezone"],
  ["Keep must be", "repeat-keep"],
];

const SECTIONS = {
  series: { title: "Series fields", noun: "series", catalog: "fields", llm: "llmSelect", all: "allSelect" },
  books: { title: "Book fields", noun: "book", catalog: "bookFields", llm: "llmSelectBooks", all: "allSelectBooks" },
};

/** Which field sections an export type needs. */
function sectionsFor(exportType) {
  return exportType === "both" ? ["series", "books"] : [exportType === "books" ? "books" : "series"];
}

export class NewExportDialog {
  /** `onCreated(export)` is called with the 202 body after a successful submit; with Repeat
   * chosen, `onScheduled(schedule)` with the 201 body of the new schedule instead. */
  constructor({ onCreated, onScheduled }) {
    this.onCreated = onCreated;
    this.onScheduled = onScheduled;
    this.repeat = byId("repeat");
    this.repeatError = byId("repeat-error");
    this.repeatSummary = byId("repeat-summary");
    this.dialog = byId("new-export-dialog");
    this.form = byId("export-form");
    this.submitButton = byId("export-submit");
    this.formError = byId("form-error");
    this.summary = byId("form-summary");
    this.libraryList = byId("library-list");
    this.libraryError = byId("libraries-error");
    this.catalog = null;
    this.libraries = [];
    this.sections = {}; // kind -> {root, boxes: Map(key -> input), groups: [...], error, count}
    this.opener = null;
    this.busy = false;
    this.estimateEl = byId("export-estimate");
    this.estimateTimer = null;
    this.estimateAbort = null;
    this.estimatedFor = null; // the body the shown estimate answers (JSON)

    trapFocus(this.dialog);
    for (const button of this.dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => this.dialog.close());
    }
    this.dialog.addEventListener("close", () => {
      this.stopEstimate();
      this.opener?.focus();
    });
    this.form.addEventListener("change", (event) => this.onChange(event));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    byId("libraries-all").addEventListener("click", () => this.setLibraries(true));
    byId("libraries-none").addEventListener("click", () => this.setLibraries(false));
    byId("repeat-keep").addEventListener("input", () => this.updateSummary());
    byId("repeat-cron").addEventListener("input", () => this.updateSummary());
    byId("timezone-list").replaceChildren(...knownTimeZones().map((name) => h("option", { value: name })));
  }

  // --- Repeat (SPEC §12) -------------------------------------------------------------------

  /** "" for a one-off export, else "daily", "weekly", "monthly" or "custom". */
  get repeatChoice() {
    return this.repeat.value;
  }

  /** The cron the Repeat choices make (a custom one as typed), or null for a one-off export. */
  cron() {
    const choice = this.repeatChoice;
    if (!choice) return null;
    if (choice === "custom") return byId("repeat-cron").value.trim();
    return presetCron(choice, byId("repeat-time").value, Number(byId("repeat-weekday").value));
  }

  /** Show the fields the Repeat choice needs; the submit button says what it will make. */
  applyRepeat() {
    const choice = this.repeatChoice;
    byId("repeat-weekday-field").hidden = choice !== "weekly";
    byId("repeat-time-field").hidden = !["daily", "weekly", "monthly"].includes(choice);
    byId("repeat-cron-field").hidden = choice !== "custom";
    for (const id of ["repeat-timezone-field", "repeat-keep-field", "repeat-summary"]) byId(id).hidden = !choice;
    this.setBusy(this.busy);
  }

  /** The schedule body (SPEC §12) around a create body. */
  scheduleBody(request) {
    return {
      request,
      cron: this.cron(),
      timezone: byId("repeat-timezone").value.trim() || browserTimeZone(),
      keep: Number(byId("repeat-keep").value),
    };
  }

  /** The Repeat checks the page can make itself; returns the element to focus, or null. */
  validateRepeat() {
    if (!this.repeatChoice) return null;
    const showRepeatError = (message, input) => {
      this.showError(this.repeatError, byId("repeat-fieldset"), message);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-errormessage", "repeat-error");
      return input;
    };
    if (this.repeatChoice === "custom" && !this.cron()) return showRepeatError(MESSAGES.cron, byId("repeat-cron"));
    const keepInput = byId("repeat-keep");
    const keep = Number(keepInput.value);
    if (!keepInput.value.trim() || !Number.isInteger(keep) || keep < 1 || keep > 30) {
      return showRepeatError(MESSAGES.keep, keepInput);
    }
    return null;
  }

  get exportType() {
    return this.form.elements.exportType.value;
  }

  get format() {
    return this.form.elements.format?.value ?? "";
  }

  /** "gzip" when "Compress (gzip)" is ticked, else "none" (SPEC §10). */
  get compression() {
    return byId("compress").checked ? "gzip" : "none";
  }

  /** The format radios, from the catalog's list of formats (the API's, never a copy). */
  buildFormats() {
    const choices = byId("format-choices");
    choices.replaceChildren(
      ...this.catalog.formats.map((format, index) => {
        const id = `format-${format.key}`;
        const input = h("input", { type: "radio", name: "format", id, value: format.key });
        if (!format.supportsBoth) input.setAttribute("aria-describedby", "format-hint");
        input.defaultChecked = index === 0;
        input.checked = index === 0;
        return h("span", { class: "seg" }, input, h("label", { for: id }, format.label));
      }),
    );
    const single = this.catalog.formats.filter((f) => !f.supportsBoth).map((f) => f.label);
    const named = single.length > 1 ? `${single.slice(0, -1).join(", ")} and ${single.at(-1)}` : single[0];
    byId("format-hint").textContent = single.length
      ? `${named} hold${single.length === 1 ? "s" : ""} one kind of row: ` +
        `choose Series or Books to use ${single.length === 1 ? "it" : "them"}.`
      : "";
  }

  /** Open with fresh defaults: Series, JSON, every library, the LLM preset. */
  async open(opener) {
    this.opener = opener ?? document.activeElement;
    this.form.reset();
    byId("repeat-timezone").value = browserTimeZone();
    this.applyRepeat();
    this.clearErrors();
    this.setBusy(false);
    this.libraryList.replaceChildren(h("p", { class: "muted" }, "Loading libraries…"));
    this.dialog.showModal();
    byId("type-series").focus();
    this.applyType();
    try {
      const [catalog, libraries] = await Promise.all([
        this.catalog ? Promise.resolve(this.catalog) : api(`${EXPORTS}/fields`),
        api(`${PAGE_API}/libraries`),
      ]);
      if (!this.catalog) {
        this.catalog = catalog;
        this.buildFormats();
        this.buildSections();
      }
      this.libraries = libraries.libraries;
      this.renderLibraries();
      for (const kind of Object.keys(SECTIONS)) this.applyPreset(kind, "llm");
      this.applyType();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.dialog.close();
        return;
      }
      this.showFormError(err.message);
    }
  }

  /** Field labels by key, for the table's "fields on hover" text. */
  fieldLabels() {
    if (!this.catalog) return null;
    return {
      series: new Map(this.catalog.fields.map((f) => [f.key, f.label])),
      books: new Map(this.catalog.bookFields.map((f) => [f.key, f.label])),
    };
  }

  async loadCatalog() {
    if (!this.catalog) {
      this.catalog = await api(`${EXPORTS}/fields`);
      this.buildFormats();
      this.buildSections();
    }
    return this.catalog;
  }

  // --- building ---------------------------------------------------------------------------

  renderLibraries() {
    if (!this.libraries.length) {
      this.libraryList.replaceChildren(h("p", { class: "muted" }, "There are no libraries you can export from."));
      return;
    }
    this.libraryList.replaceChildren(
      ...this.libraries.map((lib) => {
        const id = nextId("library");
        return h(
          "div",
          { class: "check" },
          h("input", { type: "checkbox", id, name: "libraryIds", value: lib.id, checked: true }),
          h("label", { for: id }, lib.name),
        );
      }),
    );
  }

  buildSections() {
    const container = byId("field-sections");
    container.replaceChildren();
    for (const [kind, spec] of Object.entries(SECTIONS)) {
      const fields = this.catalog[spec.catalog];
      const titleId = nextId(`${kind}-fields-title`);
      const errorId = nextId(`${kind}-fields-error`);
      const count = h("span", { class: "count" });
      const error = h("p", { class: "field-error", id: errorId, hidden: true });
      const groupHintId = nextId(`${kind}-group-hint`);
      const boxes = new Map();
      const groups = [];
      const groupNames =
        this.catalog.groups?.[kind] ?? [...new Set(fields.map((f) => f.group))];

      const groupEls = groupNames.map((group) => {
        const members = fields.filter((f) => f.group === group);
        const toggleId = nextId("group");
        const nameId = nextId("group-name");
        const toggle = h("input", {
          type: "checkbox",
          id: toggleId,
          class: "group-toggle",
          "aria-describedby": groupHintId,
        });
        const selectable = members.filter((f) => !f.isAnchor).map((f) => f.key);
        toggle.addEventListener("change", () => {
          for (const key of selectable) boxes.get(key).checked = toggle.checked;
          this.refreshSection(kind);
        });
        groups.push({ toggle, keys: selectable });
        const items = members.map((field) => {
          const id = nextId(`${kind}-field`);
          if (field.isAnchor) {
            const noteId = nextId("anchor-note");
            return h(
              "div",
              { class: "check anchor" },
              h("input", { type: "checkbox", id, checked: "", disabled: true, "aria-describedby": noteId }),
              h("label", { for: id, title: field.key }, field.label),
              h("span", { class: "tag", id: noteId }, "Always included"),
            );
          }
          const input = h("input", { type: "checkbox", id, value: field.key, dataset: { kind } });
          boxes.set(field.key, input);
          return h("div", { class: "check" }, input, h("label", { for: id, title: field.key }, field.label));
        });
        return h(
          "fieldset",
          { class: "group", "aria-labelledby": nameId },
          h("legend", {}, toggle, h("label", { for: toggleId, id: nameId }, group)),
          h("div", { class: "check-grid" }, items),
        );
      });

      const tool = (label, action) =>
        h(
          "button",
          { type: "button", class: "btn btn-quiet btn-sm", onclick: action },
          label,
          srOnly(` for ${spec.noun} fields`),
        );
      const root = h(
        "section",
        { class: "block field-section", "aria-labelledby": titleId, "aria-describedby": errorId, dataset: { kind } },
        h(
          "div",
          { class: "section-head" },
          h("h3", { id: titleId }, spec.title),
          count,
          h(
            "div",
            { class: "block-tools" },
            tool("LLM preset", () => this.applyPreset(kind, "llm", true)),
            tool("Select all", () => this.applyPreset(kind, "all", true)),
            tool("Clear", () => this.applyPreset(kind, "none", true)),
          ),
        ),
        h("div", { class: "groups" }, groupEls),
        srOnly(`Ticks or clears every ${spec.noun} field in this group`, groupHintId),
        error,
      );
      this.sections[kind] = { root, boxes, groups, error, count };
      container.append(root);
    }
  }

  // --- state ------------------------------------------------------------------------------

  applyPreset(kind, preset, userAction = false) {
    const section = this.sections[kind];
    if (!section) return;
    const spec = SECTIONS[kind];
    const wanted = new Set(
      preset === "llm" ? this.catalog.presets[spec.llm] : preset === "all" ? [...section.boxes.keys()] : [],
    );
    for (const [key, box] of section.boxes) box.checked = wanted.has(key);
    this.refreshSection(kind);
    if (userAction) this.clearErrors();
  }

  setLibraries(checked) {
    for (const box of this.libraryBoxes()) box.checked = checked;
    this.clearErrors();
    this.updateSummary();
  }

  libraryBoxes() {
    return [...this.libraryList.querySelectorAll("input[type=checkbox]")];
  }

  selected(kind) {
    const section = this.sections[kind];
    return section ? [...section.boxes].filter(([, box]) => box.checked).map(([key]) => key) : [];
  }

  refreshSection(kind) {
    const section = this.sections[kind];
    for (const group of section.groups) {
      const on = group.keys.filter((key) => section.boxes.get(key).checked).length;
      group.toggle.checked = on > 0 && on === group.keys.length;
      group.toggle.indeterminate = on > 0 && on < group.keys.length;
    }
    const n = this.selected(kind).length;
    section.count.textContent = `${n} of ${section.boxes.size} selected`;
    this.updateSummary();
  }

  onChange(event) {
    const target = event.target;
    if (target.name === "exportType" || target.name === "format") this.applyType();
    if (target === this.repeat) this.applyRepeat();
    if (target.closest?.("#repeat-fieldset")) this.clearErrors();
    if (target.dataset?.kind) this.refreshSection(target.dataset.kind);
    if (target.name === "libraryIds" || target.dataset?.kind || target.classList.contains("group-toggle")) {
      this.clearErrors();
    }
    this.updateSummary();
  }

  /** Show the sections the type needs; a format that holds one table is disabled for Both
   * (switching to the first format that holds both). */
  applyType() {
    const both = this.exportType === "both";
    const formats = this.catalog?.formats ?? [];
    for (const format of formats) {
      const input = byId(`format-${format.key}`);
      input.disabled = both && !format.supportsBoth;
      if (input.disabled && input.checked) {
        byId(`format-${formats.find((f) => f.supportsBoth).key}`).checked = true;
      }
    }
    byId("format-hint").hidden = !both || !formats.some((f) => !f.supportsBoth);
    const shown = sectionsFor(this.exportType);
    for (const [kind, section] of Object.entries(this.sections)) section.root.hidden = !shown.includes(kind);
    this.clearErrors();
    this.updateSummary();
  }

  updateSummary() {
    const libs = this.libraryBoxes().filter((b) => b.checked).length;
    const fields = sectionsFor(this.exportType).reduce((n, kind) => n + this.selected(kind).length, 0);
    const format = this.catalog?.formats.find((f) => f.key === this.format)?.label ?? "";
    const type = { series: "Series", books: "Books", both: "Series + Books" }[this.exportType];
    const packed = this.compression === "gzip" ? " (gzip)" : "";
    this.summary.textContent =
      `${type} · ${format}${packed} · ${libs} librar${libs === 1 ? "y" : "ies"} · ${fields} field${fields === 1 ? "" : "s"}`;
    const cron = this.cron();
    this.repeatSummary.textContent = cron
      ? `${describeCron(cron)} (${byId("repeat-timezone").value.trim() || browserTimeZone()} time), ` +
        `keeping the newest ${byId("repeat-keep").value || "7"} runs.`
      : "";
    this.scheduleEstimate();
  }

  // --- the estimate (POST /estimate, SPEC §11) --------------------------------------------

  /** Ask for an estimate of the current choices once they have settled for a moment. */
  scheduleEstimate() {
    clearTimeout(this.estimateTimer);
    if (!this.catalog || !this.dialog.open) return;
    const body = this.requestBody();
    const key = body && JSON.stringify(body);
    if (key === this.estimatedFor) return; // what is shown answers these very choices
    this.estimateAbort?.abort();
    this.estimateAbort = null;
    this.estimatedFor = null;
    if (!body) {
      // Nothing to estimate until a library and a field are chosen (submit says which).
      this.showEstimate("");
      return;
    }
    this.showEstimate("Estimating size…", "pending");
    this.estimateTimer = setTimeout(() => this.fetchEstimate(body, key), ESTIMATE_DELAY_MS);
  }

  async fetchEstimate(body, key) {
    const abort = new AbortController();
    this.estimateAbort = abort;
    try {
      const estimate = await api(`${EXPORTS}/estimate`, { method: "POST", body, signal: abort.signal });
      if (abort.signal.aborted) return;
      this.estimatedFor = key;
      this.showEstimate(estimateText(estimate, body.exportType));
    } catch (err) {
      if (err.name === "AbortError" || abort.signal.aborted) return; // superseded
      if (err instanceof ApiError && err.status === 401) return; // the page asks for a sign-in
      this.showEstimate(err instanceof ApiError && err.status === 400 ? "" : "Size estimate unavailable", "pending");
    } finally {
      if (this.estimateAbort === abort) this.estimateAbort = null;
    }
  }

  showEstimate(text, state = "done") {
    this.estimateEl.textContent = text;
    this.estimateEl.dataset.state = state;
  }

  stopEstimate() {
    clearTimeout(this.estimateTimer);
    this.estimateAbort?.abort();
    this.estimateAbort = null;
    this.estimatedFor = null;
    this.showEstimate("");
  }

  // --- validation and submit --------------------------------------------------------------

  clearErrors() {
    this.formError.hidden = true;
    this.libraryError.hidden = true;
    this.repeatError.hidden = true;
    byId("repeat-fieldset").removeAttribute("aria-invalid");
    for (const input of byId("repeat-fieldset").querySelectorAll("[aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-errormessage");
    }
    byId("libraries-fieldset").removeAttribute("aria-invalid");
    for (const section of Object.values(this.sections)) {
      section.error.hidden = true;
      section.root.removeAttribute("aria-invalid");
    }
  }

  showError(el, container, message) {
    el.textContent = message;
    el.hidden = false;
    el.setAttribute("role", "alert");
    container.setAttribute("aria-invalid", "true");
  }

  showFormError(message) {
    this.formError.textContent = message;
    this.formError.hidden = false;
  }

  /** The client-side checks, in the API's order; returns the element to focus, or null. */
  validate() {
    this.clearErrors();
    let first = null;
    const libraries = this.libraryBoxes();
    if (!libraries.some((b) => b.checked)) {
      this.showError(this.libraryError, byId("libraries-fieldset"), MESSAGES.libraries);
      first ??= libraries[0] ?? byId("libraries-all");
    }
    for (const kind of sectionsFor(this.exportType)) {
      const section = this.sections[kind];
      if (section && !this.selected(kind).length) {
        this.showError(section.error, section.root, MESSAGES[kind]);
        first ??= section.root.querySelector("button");
      }
    }
    const repeat = this.validateRepeat();
    return first ?? repeat;
  }

  /** The create body of the current choices (the estimate asks with the same), or null while
   * no library or no field of a needed section is chosen. */
  requestBody() {
    const kinds = sectionsFor(this.exportType);
    const body = {
      format: this.format,
      exportType: this.exportType,
      libraryIds: this.libraryBoxes().filter((b) => b.checked).map((b) => b.value),
    };
    if (this.compression !== "none") body.compression = this.compression;
    if (kinds.includes("series")) body.fields = this.selected("series");
    if (kinds.includes("books")) body.bookFields = this.selected("books");
    const empty = !body.libraryIds.length || kinds.some((kind) => !this.selected(kind).length);
    return empty ? null : body;
  }

  setBusy(busy) {
    this.busy = busy;
    this.submitButton.disabled = busy;
    const schedule = Boolean(this.repeatChoice);
    this.submitButton.textContent = busy ? "Creating…" : schedule ? "Create Schedule" : "Create Export";
  }

  async submit() {
    if (this.busy || !this.catalog) return;
    const invalid = this.validate();
    if (invalid) {
      invalid.focus();
      return;
    }
    const body = this.requestBody();
    const repeating = Boolean(this.repeatChoice);
    this.setBusy(true);
    try {
      if (repeating) {
        const schedule = await api(SCHEDULES, { method: "POST", body: this.scheduleBody(body) });
        this.dialog.close();
        this.onScheduled(schedule);
      } else {
        const created = await api(EXPORTS, { method: "POST", body });
        this.dialog.close();
        this.onCreated(created);
      }
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.dialog.close();
        return;
      }
      // The server's own words; a refused cron, time zone or keep puts the keyboard on its field.
      this.showFormError(err.message);
      const field = repeating && REPEAT_ERRORS.find(([start]) => err.message.startsWith(start))?.[1];
      const input = field ? byId(field) : null;
      if (input && input.getClientRects().length) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-errormessage", "form-error");
        input.focus();
      } else {
        this.submitButton.focus();
      }
    } finally {
      this.setBusy(false);
    }
  }
}

/** "about 1,240 series · 18 MB"; both sections: "about 310 series · 3,020 books · 4.1 MB". */
export function estimateText(estimate, exportType) {
  const parts = [];
  if (exportType !== "books") parts.push(`${formatCount(estimate.series)} series`);
  if (exportType !== "series") parts.push(`${formatCount(estimate.books)} book${estimate.books === 1 ? "" : "s"}`);
  if (estimate.bytes !== null && estimate.bytes !== undefined) parts.push(formatBytes(estimate.bytes));
  return `about ${parts.join(" · ")}`;
}
