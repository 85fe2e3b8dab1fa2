// Downloads need the Authorization header, which a plain <a href> cannot send. So the file is
// fetched with the header, its body read as a stream (reporting progress), kept as a Blob, and
// handed to the browser's download manager through a temporary object URL with the file's name.
// Browsers keep large Blobs on disk rather than in memory (Chromium spills past a few hundred MB),
// and the token never appears in a URL, a log or the history.

import { EXPORTS, request } from "./api.js";

/**
 * Download one completed export; `onProgress(fraction)` is called as bytes arrive.
 * Resolves when the browser has been handed the file; rejects with ApiError on a refusal.
 */
export async function downloadExport(exp, onProgress = () => {}) {
  const response = await request(`${EXPORTS}/${exp.id}/download`, { headers: { Accept: "*/*" } });
  const total = Number(response.headers.get("Content-Length")) || exp.fileSizeBytes || 0;
  const type = response.headers.get("Content-Type") || "application/octet-stream";
  const chunks = [];
  let received = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.byteLength;
    if (total) onProgress(Math.min(1, received / total));
  }
  const url = URL.createObjectURL(new Blob(chunks, { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = exp.fileName;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download manager holds its own reference once started; free ours a little later.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
