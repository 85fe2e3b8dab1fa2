// Schedules (SPEC §12): the Repeat presets of the New Export dialog, how a cron reads in words,
// and the Schedules table of the page.

import { h, nextId, srOnly } from "./dom.js";
import { formatDateTime, formatFullDateTime, formatRelative, TYPE_LABELS, formatChip } from "./format.js";

export const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/** The browser's own IANA time zone ("Europe/Paris"), the dialog's default; "UTC" when unknown. */
export function browserTimeZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** Every IANA name the browser knows, for the time zone field's suggestions. */
export function knownTimeZones() {
  try {
    const names = Intl.supportedValuesOf("timeZone");
    return names.includes("UTC") ? names : ["UTC", ...names];
  } catch {
    return ["UTC"];
  }
}

/**
 * The 5-field cron of a Repeat preset. `time` is "HH:MM" (the time input's value), `weekday`
 * 0–6 (Sunday = 0, as cron counts). Custom crons are sent as typed; the server judges them.
 */
export function presetCron(repeat, time, weekday) {
  const [hour, minute] = (time || "03:00").split(":").map((part) => Number.parseInt(part, 10));
  const at = `${Number.isFinite(minute) ? minute : 0} ${Number.isFinite(hour) ? hour : 3}`;
  if (repeat === "daily") return `${at} * * *`;
  if (repeat === "weekly") return `${at} * * ${weekday ?? 1}`;
  if (repeat === "monthly") return `${at} 1 * *`;
  return null;
}

const pad = (n) => String(n).padStart(2, "0");
const PLAIN = /^\d{1,2}$/;

/** A cron in words when it is one of the presets' shapes, else the cron itself:
 * "Every day at 03:00", "Every Monday at 07:30", "Every month on the 1st at 03:00", "Cron: 0 *\/6 * * *". */
export function describeCron(cron) {
  const parts = String(cron).trim().split(/\s+/);
  if (parts.length === 5 && PLAIN.test(parts[0]) && PLAIN.test(parts[1]) && parts[3] === "*") {
    const at = `${pad(parts[1])}:${pad(parts[0])}`;
    const [, , dom, , dow] = parts;
    if (dom === "*" && dow === "*") return `Every day at ${at}`;
    if (dom === "*" && /^[0-7]$/.test(dow)) return `Every ${WEEKDAYS[Number(dow) % 7]} at ${at}`;
    if (dow === "*" && dom === "1") return `Every month on the 1st at ${at}`;
  }
  return `Cron: ${String(cron).trim()}`;
}

/** What a schedule exports, in the table's words: "Series · JSON · Comics, Manga". */
export function describeRequest(request, libraryNames) {
  const req = request ?? {};
  const type = TYPE_LABELS[req.exportType ?? "series"] ?? req.exportType;
  const format = formatChip(req.format ?? "json", req.compression);
  const ids = req.libraryIds ?? [];
  const names = ids.map((id) => libraryNames?.get(id)).filter(Boolean);
  const libs =
    names.length === ids.length && names.length
      ? names.join(", ")
      : `${ids.length} librar${ids.length === 1 ? "y" : "ies"}`;
  return `${type} · ${format} · ${libs}`;
}

function when(iso, empty) {
  if (!iso) return h("span", { class: "muted" }, empty);
  return h(
    "span",
    { class: "when" },
    h("time", { datetime: iso, title: formatFullDateTime(iso) }, formatDateTime(iso)),
    h("span", { class: "when-relative" }, formatRelative(iso)),
  );
}

function scheduleRow(schedule, ctx) {
  const what = describeRequest(schedule.request, ctx.libraryNames);
  const label = `${what}, ${describeCron(schedule.cron)}`;
  const running = ctx.running.has(schedule.id);
  const tzId = nextId("schedule-tz");
  return h(
    "tr",
    { dataset: { id: schedule.id } },
    h("td", { "data-label": "Export", class: "what" }, what),
    h(
      "td",
      { "data-label": "Repeats", class: "repeats" },
      h("span", { "aria-describedby": tzId }, describeCron(schedule.cron)),
      h("span", { class: "muted tz", id: tzId }, `${schedule.timezone} time`),
    ),
    h("td", { "data-label": "Keeps", class: "num" }, `${schedule.keep} run${schedule.keep === 1 ? "" : "s"}`),
    h("td", { "data-label": "Next run", class: "next-run" }, when(schedule.nextRunAt, "Not planned")),
    h("td", { "data-label": "Last run", class: "last-run" }, when(schedule.lastRunAt, "Never")),
    h(
      "td",
      { "data-label": "Actions", class: "actions" },
      h(
        "div",
        { class: "action-buttons" },
        h(
          "button",
          {
            type: "button",
            class: "btn btn-sm btn-secondary",
            dataset: { action: "run-now" },
            "aria-label": `Run now: ${label}`,
            // aria-disabled, not disabled: the button keeps keyboard focus while its run starts.
            "aria-disabled": running ? "true" : null,
            onclick: () => ctx.onRunNow(schedule),
          },
          running ? "Starting…" : "Run now",
        ),
        h(
          "button",
          {
            type: "button",
            class: "btn btn-sm btn-quiet btn-danger-text",
            dataset: { action: "delete-schedule" },
            "aria-label": `Delete schedule: ${label}`,
            onclick: () => ctx.onDelete(schedule),
          },
          "Delete",
        ),
      ),
    ),
  );
}

/** Rebuild the Schedules table, keeping keyboard focus on the same button of the same row. */
export function renderSchedules(tbody, schedules, ctx) {
  const active = document.activeElement;
  const focused =
    active && tbody.contains(active)
      ? { id: active.closest("tr")?.dataset.id, action: active.dataset?.action }
      : null;
  tbody.replaceChildren(...schedules.map((schedule) => scheduleRow(schedule, ctx)));
  if (focused?.id) {
    const row = [...tbody.rows].find((tr) => tr.dataset.id === focused.id);
    (row?.querySelector(`[data-action="${focused.action}"]`) ?? row?.querySelector("button"))?.focus();
  }
}

// --- change counts of scheduled runs (GET /series/{id}/changes?since=…) -----------------------

const COMPARABLE_FORMATS = new Set(["json", "jsonl"]);

/** Whether the changes endpoint can compare two exports: both JSON or JSON Lines, the same type,
 * and the IDs of every kind of row they hold among their fields (SPEC §12). */
export function comparable(a, b) {
  if (!COMPARABLE_FORMATS.has(a.format) || !COMPARABLE_FORMATS.has(b.format)) return false;
  if (a.exportType !== b.exportType) return false;
  const ids = (exp) =>
    (exp.exportType === "books" || (exp.fields ?? []).includes("series_id")) &&
    (exp.exportType === "series" || (exp.bookFields ?? []).includes("book_id"));
  return ids(a) && ids(b);
}

/** For each completed scheduled run, the completed run of the same schedule just before it
 * (`exports` newest first), when the two can be compared: Map(run id -> previous run id). */
export function previousRuns(exports) {
  const pairs = new Map();
  const newer = new Map(); // schedule id -> the newest completed run seen so far (walking older)
  for (const exp of exports) {
    if (!exp.scheduleId || exp.status !== "completed") continue;
    const later = newer.get(exp.scheduleId);
    if (later && comparable(later, exp)) pairs.set(later.id, exp.id);
    newer.set(exp.scheduleId, exp);
  }
  return pairs;
}

/** {added, removed, changed} over every kind of row in a changes answer. */
export function totals(changes) {
  const sum = { added: 0, removed: 0, changed: 0 };
  for (const kind of ["series", "books"]) {
    for (const key of Object.keys(sum)) sum[key] += changes?.[kind]?.[key] ?? 0;
  }
  return sum;
}

const count = new Intl.NumberFormat();

/** "+3 · −1 · 12 changed" (or "No changes"), with the whole sentence for screen readers. */
export function changesNode(changes) {
  const t = totals(changes);
  const none = !t.added && !t.removed && !t.changed;
  // Each part kept whole, so a narrow column breaks the line only between parts.
  const parts = none
    ? ["No changes"]
    : [`+${count.format(t.added)}`, `−${count.format(t.removed)}`, `${count.format(t.changed)} changed`];
  const visible = parts.flatMap((part, i) => [i ? " · " : null, h("span", { class: "nowrap" }, part)]);
  const said = none
    ? "No changes since the previous run"
    : `${count.format(t.added)} added, ${count.format(t.removed)} removed, ${count.format(t.changed)} changed since the previous run`;
  const detail = ["series", "books"]
    .filter((kind) => changes?.[kind])
    .map((kind) => `${kind === "series" ? "Series" : "Books"}: +${changes[kind].added} −${changes[kind].removed} ~${changes[kind].changed}`)
    .join("\n");
  return h(
    "span",
    { class: "changes" },
    h("span", { class: "changes-counts", "aria-hidden": "true", title: `Since the previous run\n${detail}` }, visible),
    srOnly(said),
  );
}
