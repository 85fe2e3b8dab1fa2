// The Data Exports page: sign-in, the exports table, usage, schedules, and the New Export dialog.

import { api, ApiError, EXPORTS, onUnauthorized, PAGE_API, request, SCHEDULES, session, signIn } from "./api.js";
import { byId } from "./dom.js";
import { downloadExport } from "./download.js";
import { formatBytes, formatDateTime, formatDuration, isInFlight } from "./format.js";
import { confirmAction, initConfirm } from "./modal.js";
import { NewExportDialog } from "./new-export.js";
import { describeCron, describeRequest, previousRuns, renderSchedules } from "./schedules.js";
import { renderRows } from "./table.js";

const POLL_MS = 1000;
const POLL_HIDDEN_MS = 5000;
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

const state = {
  user: null,
  exports: [],
  loaded: false,
  labels: null,
  downloading: new Map(), // export id -> 0 while its download link is being fetched
  cancelling: new Set(),
  rerunning: new Set(),
  pollTimer: null,
  listSeq: 0,
  expiryTimer: null,
  schedules: [],
  schedulesSeq: 0,
  schedulesAvailable: true, // false when this server has no schedules endpoint
  runningSchedules: new Set(), // schedule ids whose "Run now" is on its way
  scheduleTimer: null,
  libraryNames: null, // Map(library id -> name), for what a schedule exports
  changes: new Map(), // "run id:previous run id" -> the changes answer, or null (nothing to show)
};
// A schedule's run appears in the list after its due time, spread over up to a minute (SPEC §12):
// the page looks again this long after the earliest next run.
const SCHEDULE_SPREAD_MS = 65_000;

const els = {};
let dialog;

// --- messages -------------------------------------------------------------------------------

let toastTimer = null;
/** A visible message above the table; errors stay until dismissed, notes fade after a while. */
function notify(message, kind = "info") {
  clearTimeout(toastTimer);
  els.toastText.textContent = message;
  els.toast.dataset.kind = kind;
  els.toast.setAttribute("role", kind === "error" ? "alert" : "status");
  els.toast.hidden = false;
  if (kind !== "error") toastTimer = setTimeout(() => (els.toast.hidden = true), 8000);
}

/** Said to screen readers only (status changes seen by polling). */
function announce(message) {
  els.announcer.textContent = "";
  // A new text node in a fresh task is announced even when the text repeats.
  setTimeout(() => (els.announcer.textContent = message), 50);
}

// --- views ----------------------------------------------------------------------------------

function show(view) {
  els.loading.hidden = true;
  els.signinView.hidden = view !== "signin";
  els.exportsView.hidden = view !== "exports";
  els.account.hidden = view !== "exports";
}

function showSignIn(message) {
  stopPolling();
  clearTimeout(state.expiryTimer);
  if (dialog?.dialog.open) dialog.dialog.close();
  state.user = null;
  state.exports = [];
  state.loaded = false;
  els.rows.replaceChildren();
  clearTimeout(state.scheduleTimer);
  state.schedulesSeq += 1;
  state.schedules = [];
  state.changes.clear();
  state.libraryNames = null;
  els.scheduleRows.replaceChildren();
  els.schedules.hidden = true;
  show("signin");
  els.signinError.hidden = !message;
  els.signinError.textContent = message ?? "";
  els.signinForm.reset();
  els.username.focus();
}

async function showExports(user) {
  state.user = user;
  els.accountName.textContent = user.username;
  els.accountName.title = `Signed in as ${user.username} (${user.role})`;
  show("exports");
  scheduleExpiry();
  await Promise.all([refresh(), loadUsage(), loadSchedules()]);
  // Field labels for the "fields on hover" text; the table works without them meanwhile.
  dialog
    .loadCatalog()
    .then(() => {
      state.labels = dialog.fieldLabels();
      render();
    })
    .catch(() => {});
}

function scheduleExpiry() {
  clearTimeout(state.expiryTimer);
  const expires = session.expiresAt;
  if (expires === null) return;
  const wait = Math.min(MAX_TIMEOUT_MS, Math.max(0, expires - Date.now()));
  state.expiryTimer = setTimeout(() => signOut("Your session has expired. Please sign in again."), wait);
}

function signOut(message) {
  session.clear();
  showSignIn(message);
}

// --- the list -------------------------------------------------------------------------------

function render() {
  const empty = state.loaded && state.exports.length === 0;
  els.empty.hidden = !empty;
  els.tableWrap.hidden = !state.loaded || empty;
  renderRows(els.rows, state.exports, {
    labels: state.labels,
    downloading: state.downloading,
    cancelling: state.cancelling,
    rerunning: state.rerunning,
    changes: shownChanges(),
    onDownload: download,
    onCancel: cancel,
    onRunAgain: runAgain,
    onDelete: remove,
  });
}

function announceChanges(before, after) {
  const old = new Map(before.map((e) => [e.id, e.status]));
  for (const exp of after) {
    const was = old.get(exp.id);
    if (!was || was === exp.status) continue;
    if (exp.status === "completed") announce(`Export ready to download: ${exp.fileName}`);
    if (exp.status === "failed") announce(`Export failed: ${exp.error ?? exp.fileName}`);
    if (exp.status === "cancelled") announce(`Export cancelled: ${exp.fileName}`);
  }
}

function statusKey(exports) {
  return exports.map((e) => `${e.id}:${e.status}`).join(",");
}

/** Load the list; keep polling while anything is pending or running. */
async function refresh() {
  const seq = ++state.listSeq;
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
  try {
    const body = await api(EXPORTS);
    if (seq !== state.listSeq || !state.user) return; // a newer load or a sign-out won
    const changed = statusKey(state.exports) !== statusKey(body.exports);
    announceChanges(state.exports, body.exports);
    state.exports = body.exports;
    state.loaded = true;
    render();
    if (changed) loadUsage();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    if (seq === state.listSeq) notify(`Could not load your exports: ${err.message}`, "error");
  }
  if (seq === state.listSeq) schedulePoll();
}

function schedulePoll() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
  if (state.user && state.exports.some(isInFlight)) {
    state.pollTimer = setTimeout(refresh, document.hidden ? POLL_HIDDEN_MS : POLL_MS);
  }
}

function stopPolling() {
  clearTimeout(state.pollTimer);
  state.pollTimer = null;
  state.listSeq += 1;
}

async function loadUsage() {
  try {
    const usage = await api(`${PAGE_API}/usage`);
    if (!state.user) return;
    byId("usage-used").textContent = formatBytes(usage.usedBytes);
    byId("usage-used-note").textContent = `Server-wide limit ${formatBytes(usage.storageCapBytes)}`;
    byId("usage-active").textContent = `${usage.activeExports} of ${usage.maxConcurrent}`;
    byId("usage-active-note").textContent = "exports at a time";
    byId("usage-kept").textContent = `${usage.completedExports} of ${usage.maxCompleted}`;
    byId("usage-kept-note").textContent = "oldest removed beyond the limit";
    byId("usage-retention").textContent = formatDuration(usage.retentionSeconds);
    byId("usage-retention-note").textContent = "then exports are deleted";
    els.usage.hidden = false;
  } catch {
    // The figures are a convenience: the page stays usable without them.
  }
}

// --- schedules (SPEC §12) ---------------------------------------------------------------------

function renderScheduleList() {
  els.schedules.hidden = !state.schedules.length;
  renderSchedules(els.scheduleRows, state.schedules, {
    libraryNames: state.libraryNames,
    running: state.runningSchedules,
    onRunNow: runNow,
    onDelete: removeSchedule,
  });
}

/** Load the user's schedules; the section shows once there is one. */
async function loadSchedules() {
  if (!state.schedulesAvailable) return;
  const seq = ++state.schedulesSeq;
  try {
    const body = await api(SCHEDULES);
    if (seq !== state.schedulesSeq || !state.user) return;
    state.schedules = Array.isArray(body) ? body : (body?.schedules ?? []);
    if (state.schedules.length && !state.libraryNames) await loadLibraryNames();
    renderScheduleList();
    planScheduleRefresh();
  } catch (err) {
    if (!(err instanceof ApiError) || err.status === 401) return;
    // A server without schedules (an older api) answers 404 or 405: the page simply has none.
    if (err.status === 404 || err.status === 405) {
      state.schedulesAvailable = false;
      return;
    }
    if (seq === state.schedulesSeq) notify(`Could not load your schedules: ${err.message}`, "error");
  }
}

async function loadLibraryNames() {
  try {
    const body = await api(`${PAGE_API}/libraries`);
    state.libraryNames = new Map(body.libraries.map((lib) => [lib.id, lib.name]));
  } catch {
    // Names are a convenience: a schedule then says "2 libraries".
  }
}

/** Look again (schedules and exports) shortly after the earliest next run, so a scheduled run
 * shows up without a reload even while nothing else is in flight. */
function planScheduleRefresh() {
  clearTimeout(state.scheduleTimer);
  const next = state.schedules
    .map((s) => Date.parse(s.nextRunAt ?? ""))
    .filter(Number.isFinite)
    .sort((a, b) => a - b)[0];
  if (next === undefined) return;
  const wait = Math.min(MAX_TIMEOUT_MS, Math.max(0, next - Date.now()) + SCHEDULE_SPREAD_MS);
  state.scheduleTimer = setTimeout(() => {
    if (!state.user) return;
    refresh();
    loadSchedules();
  }, wait);
}

function scheduleLabel(schedule) {
  return `${describeRequest(schedule.request, state.libraryNames)}, ${describeCron(schedule.cron).toLowerCase()}`;
}

async function onScheduled(schedule) {
  state.schedules = [schedule, ...state.schedules.filter((s) => s.id !== schedule.id)];
  if (!state.libraryNames) await loadLibraryNames();
  renderScheduleList();
  planScheduleRefresh();
  const next = schedule.nextRunAt ? ` Next run: ${formatDateTime(schedule.nextRunAt)}.` : "";
  notify(`Schedule created.${next}`);
  announce(`Schedule created: ${scheduleLabel(schedule)}`);
  const row = [...els.scheduleRows.rows].find((tr) => tr.dataset.id === schedule.id);
  row?.querySelector('[data-action="run-now"]')?.focus();
}

/** "Run now": one run of the schedule at once, as its due time would make it. */
async function runNow(schedule) {
  if (state.runningSchedules.has(schedule.id)) return;
  state.runningSchedules.add(schedule.id);
  renderScheduleList();
  try {
    const run = await api(`${SCHEDULES}/${schedule.id}/run`, { method: "POST" });
    if (run && run.id && run.status) {
      onCreated(run, { focus: false });
      notify(`Run started: ${run.fileName}`);
    } else {
      notify("Run started.");
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    notify(`Could not run the schedule: ${err.message}`, "error");
  } finally {
    state.runningSchedules.delete(schedule.id);
    await loadSchedules();
    renderScheduleList();
    refresh();
  }
}

async function removeSchedule(schedule) {
  const confirmed = await confirmAction({
    title: "Delete schedule?",
    text:
      `“${scheduleLabel(schedule)}” will no longer run. ` +
      "The exports it made stay until they expire. This cannot be undone.",
    confirmLabel: "Delete schedule",
  });
  if (!confirmed) return;
  const index = state.schedules.findIndex((s) => s.id === schedule.id);
  try {
    await request(`${SCHEDULES}/${schedule.id}`, { method: "DELETE" });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    if (!(err instanceof ApiError && err.status === 404)) {
      notify(`Could not delete the schedule: ${err.message}`, "error");
      return;
    }
  }
  state.schedules = state.schedules.filter((s) => s.id !== schedule.id);
  renderScheduleList();
  planScheduleRefresh();
  notify("Schedule deleted. Its exports stay until they expire.");
  announce("Schedule deleted");
  const rows = [...els.scheduleRows.rows];
  const next = rows[Math.min(index, rows.length - 1)];
  (next?.querySelector('[data-action="delete-schedule"]') ?? els.newExport).focus();
}

/** The change counts to show: Map(run id -> changes answer) for every completed scheduled run
 * whose previous run can be compared with it; the ones not asked yet are fetched, and the
 * table is drawn again when they arrive. */
function shownChanges() {
  const shown = new Map();
  for (const [run, previous] of previousRuns(state.exports)) {
    const key = `${run}:${previous}`;
    if (!state.changes.has(key)) {
      state.changes.set(key, null);
      fetchChanges(key, run, previous);
    } else if (state.changes.get(key)) {
      shown.set(run, state.changes.get(key));
    }
  }
  return shown;
}

async function fetchChanges(key, run, previous) {
  try {
    const answer = await api(`${EXPORTS}/${run}/changes?since=${encodeURIComponent(previous)}`);
    if (!state.user || !state.changes.has(key)) return;
    state.changes.set(key, answer);
    render();
  } catch (err) {
    // 400 (not comparable) or 404 (a run gone): nothing to show. Anything else may pass: ask
    // again on a later refresh.
    if (err instanceof ApiError && (err.status === 400 || err.status === 404 || err.status === 401)) return;
    state.changes.delete(key);
  }
}

// --- actions --------------------------------------------------------------------------------

function onCreated(created, { focus = true } = {}) {
  if (!state.exports.some((e) => e.id === created.id)) state.exports = [created, ...state.exports];
  state.loaded = true;
  render();
  announce(`Export queued: ${created.fileName}`);
  loadUsage();
  schedulePoll();
  if (!focus) return;
  const row = [...els.rows.rows].find((tr) => tr.dataset.id === created.id);
  row?.querySelector("button")?.focus();
}

async function download(exp) {
  if (state.downloading.has(exp.id)) return;
  state.downloading.set(exp.id, 0);
  render();
  try {
    await downloadExport(exp);
    announce(`Download started: ${exp.fileName}. Your browser shows its progress.`);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) notify(`Download failed: ${err.message}`, "error");
    if (err instanceof ApiError && (err.status === 404 || err.status === 409 || err.status === 410)) refresh();
  } finally {
    // The browser has the link: its download manager takes over (progress, pause, resume).
    state.downloading.delete(exp.id);
    render();
  }
}

/** The create body an export was made from (every request field its DTO carries). */
function requestOf(exp) {
  const body = { format: exp.format, exportType: exp.exportType, libraryIds: exp.libraryIds };
  if (exp.exportType !== "books") body.fields = exp.fields;
  if (exp.exportType !== "series") body.bookFields = exp.bookFields;
  if (exp.compression && exp.compression !== "none") body.compression = exp.compression;
  return body;
}

/** "Run again": the ended export's request, queued as a new export (the old one stays). */
async function runAgain(exp) {
  if (state.rerunning.has(exp.id)) return;
  state.rerunning.add(exp.id);
  render();
  try {
    const created = await api(EXPORTS, { method: "POST", body: requestOf(exp) });
    state.rerunning.delete(exp.id);
    onCreated(created);
  } catch (err) {
    state.rerunning.delete(exp.id);
    render();
    // The server's words: a limit reached, a library no longer readable, a field gone…
    if (!(err instanceof ApiError && err.status === 401)) notify(`Could not run it again: ${err.message}`, "error");
  }
}

async function cancel(exp) {
  state.cancelling.add(exp.id);
  render();
  try {
    await request(`${EXPORTS}/${exp.id}/cancel`, { method: "POST" });
    announce(`Export cancelled: ${exp.fileName}`);
  } catch (err) {
    if (err instanceof ApiError) {
      // The route's own "Export not found" means the export is gone; any other 404 or a 405
      // means this server has no cancel endpoint yet.
      const noEndpoint =
        err.status === 405 || err.status === 501 || (err.status === 404 && err.message !== "Export not found");
      if (noEndpoint) {
        notify("This server cannot cancel exports yet. You can delete the export instead.", "error");
      } else if (err.status !== 401) {
        notify(err.message, err.status === 409 ? "info" : "error");
      }
    } else {
      notify(`Could not cancel: ${err.message}`, "error");
    }
  } finally {
    state.cancelling.delete(exp.id);
  }
  await refresh();
  loadUsage();
}

async function remove(exp) {
  const inFlight = isInFlight(exp);
  const confirmed = await confirmAction({
    title: "Delete export?",
    text:
      `“${exp.fileName}” will be deleted${exp.status === "completed" ? ", including its file" : ""}. ` +
      (inFlight ? "It will be cancelled first. " : "") +
      "This cannot be undone.",
    confirmLabel: "Delete",
  });
  if (!confirmed) return;
  const index = state.exports.findIndex((e) => e.id === exp.id);
  try {
    await request(`${EXPORTS}/${exp.id}`, { method: "DELETE" });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    if (!(err instanceof ApiError && err.status === 404)) {
      notify(`Could not delete: ${err.message}`, "error");
      return;
    }
  }
  state.exports = state.exports.filter((e) => e.id !== exp.id);
  render();
  notify("Export deleted.");
  announce(`Deleted ${exp.fileName}`);
  loadUsage();
  schedulePoll();
  // Keep the keyboard where it was: the next row's Delete, or the New Export button.
  const rows = [...els.rows.rows];
  const next = rows[Math.min(index, rows.length - 1)];
  (next?.querySelector('[data-action="delete"]') ?? els.newExport).focus();
}

// --- start ----------------------------------------------------------------------------------

async function onSignIn(event) {
  event.preventDefault();
  const username = els.username.value.trim();
  const password = els.password.value;
  if (!username || !password) {
    els.signinError.textContent = "Enter your username and password.";
    els.signinError.hidden = false;
    (username ? els.password : els.username).focus();
    return;
  }
  els.signinSubmit.disabled = true;
  els.signinSubmit.textContent = "Signing in…";
  try {
    await signIn(username, password);
    const user = await api(`${PAGE_API}/auth/me`);
    await showExports(user);
    els.newExport.focus();
  } catch (err) {
    session.clear();
    els.signinError.textContent = err.message;
    els.signinError.hidden = false;
    els.password.select();
    els.password.focus();
  } finally {
    els.signinSubmit.disabled = false;
    els.signinSubmit.textContent = "Sign in";
  }
}

async function start() {
  Object.assign(els, {
    loading: byId("loading"),
    signinView: byId("signin-view"),
    signinForm: byId("signin-form"),
    signinError: byId("signin-error"),
    signinSubmit: byId("signin-submit"),
    username: byId("signin-username"),
    password: byId("signin-password"),
    exportsView: byId("exports-view"),
    account: byId("account"),
    accountName: byId("account-name"),
    usage: byId("usage"),
    toast: byId("toast"),
    toastText: byId("toast-text"),
    announcer: byId("announcer"),
    empty: byId("empty"),
    tableWrap: byId("table-wrap"),
    rows: byId("export-rows"),
    newExport: byId("new-export"),
    schedules: byId("schedules"),
    scheduleRows: byId("schedule-rows"),
  });
  dialog = new NewExportDialog({ onCreated, onScheduled });
  initConfirm();

  els.signinForm.addEventListener("submit", onSignIn);
  byId("sign-out").addEventListener("click", () => signOut());
  byId("toast-close").addEventListener("click", () => (els.toast.hidden = true));
  els.newExport.addEventListener("click", (event) => dialog.open(event.currentTarget));
  byId("empty-new-export").addEventListener("click", () => dialog.open(els.newExport));
  // Any authenticated call answered 401: the token is gone or refused, so ask for a sign-in.
  onUnauthorized(() => {
    if (els.signinView.hidden) signOut("Your session has expired. Please sign in again.");
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.user && state.exports.some(isInFlight)) refresh();
  });

  if (!session.token) {
    session.clear();
    showSignIn();
    return;
  }
  try {
    await showExports(await api(`${PAGE_API}/auth/me`));
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) showSignIn(err.message);
  }
}

start();
