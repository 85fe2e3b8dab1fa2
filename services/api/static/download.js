// Downloads go through the browser's own download manager, never through the page's memory.
//
// A plain <a href> cannot send the Authorization header, so the page first asks the API for a
// download link (POST /{id}/download-link, SPEC §11): a URL whose short-lived token (60 s by
// default) opens this one export's file and nothing else. An <a href download> click then hands
// that URL to the browser, which streams the file to disk with its own progress and, when the
// connection breaks, resumes it with Range on the same URL while the link lives. The page never
// holds a byte of the file. The link expires within a minute, so one left in the download
// history or pasted somewhere opens nothing later; the page's Referrer-Policy is no-referrer.

import { EXPORTS, api } from "./api.js";

/**
 * Start the browser's download of one completed export. Resolves once the browser has been
 * handed the link; rejects with ApiError when the API refuses one (409 not ready, 404 gone…).
 */
export async function downloadExport(exp) {
  const link = await api(`${EXPORTS}/${exp.id}/download-link`, { method: "POST" });
  const anchor = document.createElement("a");
  anchor.href = link.url;
  anchor.download = exp.fileName; // the server's Content-Disposition names it the same
  anchor.rel = "noopener";
  anchor.hidden = true;
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  return link;
}
