// The Data Exports page: sign-in, the exports table, usage, and the New Export dialog.

import { api, ApiError, EXPORTS, onUnauthorized, PAGE_API, request, session, signIn } from "./api.js";
import { byId } from "./dom.js";
import { downloadExport } from "./download.js";
import { formatBytes, formatDuration, isInFlight } from "./format.js";
import { confirmAction, initConfirm } from "./modal.js";
import { NewExportDialog } from "./new-export.js";
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
};

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
  await Promise.all([refresh(), loadUsage()]);
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

// --- actions --------------------------------------------------------------------------------

function onCreated(created) {
  if (!state.exports.some((e) => e.id === created.id)) state.exports = [created, ...state.exports];
  state.loaded = true;
  render();
  announce(`Export queued: ${created.fileName}`);
  loadUsage();
  schedulePoll();
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
  });
  dialog = new NewExportDialog({ onCreated });
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
