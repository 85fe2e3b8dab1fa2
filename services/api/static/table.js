// The exports table. Rows are keyed by export id and rebuilt only when what they show changes,
// so the once-a-second refresh never steals keyboard focus or flickers.

import { h, nextId, srOnly } from "./dom.js";
import {
  formatChip,
  STATUS_LABELS,
  TYPE_LABELS,
  formatBytes,
  formatCount,
  formatDateTime,
  formatFullDateTime,
  formatRelative,
  isInFlight,
} from "./format.js";
import { changesNode } from "./schedules.js";

function fieldList(exp, labels) {
  const name = (kind, key) => labels?.[kind].get(key) ?? key;
  const parts = [];
  if (exp.exportType !== "books") {
    parts.push(`Series fields: ${[name("series", "series_name"), ...exp.fields.map((k) => name("series", k))].join(", ")}`);
  }
  if (exp.exportType !== "series") {
    parts.push(`Book fields: ${[name("books", "book_name"), ...exp.bookFields.map((k) => name("books", k))].join(", ")}`);
  }
  return parts.join("\n");
}

function percent(exp) {
  if (!exp.rowsTotal) return null;
  return Math.min(100, Math.floor((exp.rowsWritten / exp.rowsTotal) * 100));
}

function statusCell(exp) {
  const label = STATUS_LABELS[exp.status] ?? exp.status;
  const cell = h("td", { "data-label": "Status", class: "status-cell" });
  if (exp.status === "failed") {
    const message = exp.error || "The export failed.";
    const descId = nextId("error");
    cell.append(
      h(
        "span",
        { class: "badge badge-failed", title: message, tabindex: "0", "aria-describedby": descId },
        h("span", { class: "badge-dot", "aria-hidden": "true" }),
        label,
      ),
      h("span", { class: "status-error", id: descId }, message),
    );
    return cell;
  }
  cell.append(
    h("span", { class: `badge badge-${exp.status}` }, h("span", { class: "badge-dot", "aria-hidden": "true" }), label),
  );
  if (exp.status === "running") {
    const pct = percent(exp);
    const text = exp.rowsTotal
      ? `${formatCount(exp.rowsWritten)} of ${formatCount(exp.rowsTotal)} rows`
      : "Counting rows…";
    const progress = h("progress", { class: "progress", max: exp.rowsTotal || 1, "aria-label": `Progress of ${exp.fileName}` });
    if (exp.rowsTotal) progress.value = exp.rowsWritten;
    cell.append(
      h(
        "div",
        { class: "progress-wrap" },
        progress,
        h("span", { class: "progress-text" }, pct === null ? text : `${pct}% · ${text}`),
      ),
    );
  }
  return cell;
}

function librariesCell(exp, labels) {
  const fields = fieldList(exp, labels);
  const descId = nextId("fields");
  const names = exp.libraryNames.length ? exp.libraryNames.join(", ") : "—";
  return h(
    "td",
    { "data-label": "Libraries", class: "libraries-cell" },
    h("span", { class: "libraries", title: fields, "aria-describedby": descId }, names),
    srOnly(fields, descId),
  );
}

function actionsCell(exp, ctx) {
  const buttons = [];
  const progress = ctx.downloading.get(exp.id);
  if (exp.status === "completed") {
    const busy = progress !== undefined;
    buttons.push(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-sm btn-secondary",
          dataset: { action: "download" },
          "aria-label": `Download ${exp.fileName}`,
          disabled: busy,
          onclick: () => ctx.onDownload(exp),
        },
        busy ? "Starting…" : "Download",
      ),
    );
  }
  if (isInFlight(exp)) {
    buttons.push(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-sm",
          dataset: { action: "cancel" },
          "aria-label": `Cancel ${exp.fileName}`,
          disabled: ctx.cancelling.has(exp.id),
          onclick: () => ctx.onCancel(exp),
        },
        ctx.cancelling.has(exp.id) ? "Cancelling…" : "Cancel",
      ),
    );
  }
  if (!isInFlight(exp)) {
    // An ended export (completed, failed or cancelled): the same request as a new export.
    buttons.push(
      h(
        "button",
        {
          type: "button",
          class: "btn btn-sm",
          dataset: { action: "run-again" },
          "aria-label": `Run again: ${exp.fileName}`,
          disabled: ctx.rerunning.has(exp.id),
          onclick: () => ctx.onRunAgain(exp),
        },
        ctx.rerunning.has(exp.id) ? "Starting…" : "Run again",
      ),
    );
  }
  buttons.push(
    h(
      "button",
      {
        type: "button",
        class: "btn btn-sm btn-quiet btn-danger-text",
        dataset: { action: "delete" },
        "aria-label": `Delete ${exp.fileName}`,
        onclick: () => ctx.onDelete(exp),
      },
      "Delete",
    ),
  );
  return h("td", { "data-label": "Actions", class: "actions" }, h("div", { class: "action-buttons" }, buttons));
}

function rowsText(exp) {
  if (exp.status === "completed") return formatCount(exp.rowCount);
  if (exp.status === "running") return formatCount(exp.rowsWritten);
  return "—";
}

/** Everything a row shows; the row is rebuilt when this changes. */
function signature(exp, ctx) {
  return JSON.stringify([
    exp.status,
    exp.rowsWritten,
    exp.rowsTotal,
    exp.rowCount,
    exp.fileSizeBytes,
    exp.error,
    formatRelative(exp.expiresAt),
    ctx.downloading.get(exp.id),
    ctx.cancelling.has(exp.id),
    ctx.rerunning.has(exp.id),
    Boolean(ctx.labels),
    exp.scheduleId ?? null,
    ctx.changes?.get(exp.id) ?? null,
  ]);
}

function buildRow(exp, ctx) {
  return h(
    "tr",
    { dataset: { id: exp.id, status: exp.status } },
    h(
      "td",
      { "data-label": "Created", class: "created" },
      h("time", { datetime: exp.createdAt, title: formatFullDateTime(exp.createdAt) }, formatDateTime(exp.createdAt)),
    ),
    h(
      "td",
      { "data-label": "Type", class: "nowrap type-cell" },
      TYPE_LABELS[exp.exportType] ?? exp.exportType,
      exp.scheduleId ? h("span", { class: "tag scheduled-tag" }, "Scheduled") : null,
    ),
    h("td", { "data-label": "Format" }, h("span", { class: "chip" }, formatChip(exp.format, exp.compression))),
    statusCell(exp),
    librariesCell(exp, ctx.labels),
    h(
      "td",
      { "data-label": "Rows", class: "num rows-cell" },
      rowsText(exp),
      // A scheduled run's changes against the run of the same schedule before it (SPEC §12).
      ctx.changes?.get(exp.id) ? changesNode(ctx.changes.get(exp.id)) : null,
    ),
    h("td", { "data-label": "Size", class: "num" }, exp.status === "completed" ? formatBytes(exp.fileSizeBytes) : "—"),
    h(
      "td",
      { "data-label": "Expires", class: "nowrap" },
      h("time", { datetime: exp.expiresAt, title: formatFullDateTime(exp.expiresAt) }, formatRelative(exp.expiresAt)),
    ),
    actionsCell(exp, ctx),
  );
}

/**
 * Bring `tbody` in line with `exports` (newest first). `ctx` holds the field labels, the
 * downloads and cancels in progress, and the action callbacks.
 */
export function renderRows(tbody, exports, ctx) {
  const existing = new Map([...tbody.rows].map((tr) => [tr.dataset.id, tr]));
  const active = document.activeElement;
  let focusedAction = null;
  let focusedId = null;
  if (active && tbody.contains(active)) {
    focusedId = active.closest("tr")?.dataset.id ?? null;
    focusedAction = active.dataset?.action ?? null;
  }
  let previous = null;
  for (const exp of exports) {
    let tr = existing.get(exp.id);
    existing.delete(exp.id);
    const sig = signature(exp, ctx);
    if (!tr || tr.dataset.sig !== sig) {
      const fresh = buildRow(exp, ctx);
      fresh.dataset.sig = sig;
      if (tr) tr.replaceWith(fresh);
      tr = fresh;
    }
    const wantedPlace = previous ? previous.nextSibling : tbody.firstChild;
    if (tr !== wantedPlace) tbody.insertBefore(tr, wantedPlace);
    previous = tr;
  }
  for (const tr of existing.values()) tr.remove();
  // A rebuilt row loses focus: put it back on the same action (or the row's first button).
  if (focusedId && !tbody.contains(document.activeElement)) {
    const row = [...tbody.rows].find((tr) => tr.dataset.id === focusedId);
    const target =
      row?.querySelector(`[data-action="${focusedAction}"]:not([disabled])`) ??
      row?.querySelector("button:not([disabled]), [tabindex='0']");
    target?.focus();
  }
}
