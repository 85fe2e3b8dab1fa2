// The API client: the session token (sessionStorage) and JSON calls with its Authorization header.

const TOKEN_KEY = "codex-exports.token";
const EXPIRES_KEY = "codex-exports.expiresAt";
// Every call of the page stays under the exports prefix, the one path a proxy in front of Codex
// sends to this product (deploy/codex/): sign-in and libraries too, which Codex owns elsewhere.
export const PAGE_API = "/api/v1/user/exports";
export const EXPORTS = `${PAGE_API}/series`;
export const SCHEDULES = `${PAGE_API}/schedules`;

/** An API refusal: HTTP status plus the server's {error, message}. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  get token() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const expires = Date.parse(sessionStorage.getItem(EXPIRES_KEY) ?? "");
    if (!token || (Number.isFinite(expires) && expires <= Date.now())) return null;
    return token;
  },
  get expiresAt() {
    const expires = Date.parse(sessionStorage.getItem(EXPIRES_KEY) ?? "");
    return Number.isFinite(expires) ? expires : null;
  },
  save(token, expiresAt) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(EXPIRES_KEY, expiresAt ?? "");
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(EXPIRES_KEY);
  },
};

/** Listeners told when the server stops accepting the token (401 on an authenticated call). */
const unauthorizedListeners = new Set();
export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

async function errorFrom(response) {
  let code = "Error";
  let message = `The server answered ${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && typeof body.message === "string") message = body.message;
    if (body && typeof body.error === "string") code = body.error;
  } catch {
    // not JSON: keep the generic message
  }
  return new ApiError(response.status, code, message);
}

/** Fetch with the token; resolve to the Response when it is 2xx, else throw ApiError. */
export async function request(path, { method = "GET", body, headers = {}, auth = true, signal } = {}) {
  const all = { Accept: "application/json", ...headers };
  if (body !== undefined) all["Content-Type"] = "application/json";
  if (auth) {
    const token = session.token;
    if (!token) {
      unauthorizedListeners.forEach((listener) => listener());
      throw new ApiError(401, "Unauthorized", "Your session has ended. Please sign in again.");
    }
    all.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "NetworkError", "Could not reach the server. Check your connection and try again.");
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (auth && response.status === 401) unauthorizedListeners.forEach((listener) => listener());
    throw error;
  }
  return response;
}

/** A JSON call; resolves to the parsed body (null for 204). */
export async function api(path, options) {
  const response = await request(path, options);
  if (response.status === 204) return null;
  return response.json();
}

export async function signIn(username, password) {
  const body = await api(`${PAGE_API}/auth/login`, { method: "POST", body: { username, password }, auth: false });
  session.save(body.token, body.expiresAt);
  return body;
}
