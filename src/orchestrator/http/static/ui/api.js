// Calls to the JSON API of the server that served this page, with the tab's token if any.
//
// With API_TOKEN set on the server, the page says so (body data-auth="bearer") and every call
// waits until a token was entered; the token lives in this tab's sessionStorage only and goes
// out as an Authorization header, never in a URL. A 401 forgets it and asks again.

const TOKEN_KEY = "orchestrator.token";

export const authRequired = document.body.dataset.auth === "bearer";

/** An answer other than 2xx: the API's {"error", "detail"} body. */
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

let askForToken = async () => {
  throw new Error("no way to ask for a token");
};
let pendingToken = null;

/** `ask(problem)` shows the prompt and resolves with a token; one prompt serves every call. */
export function onTokenNeeded(ask) {
  askForToken = ask;
}

/** Resolves once there is a token (asking for one if there is none, or `problem` is given). */
export async function ensureToken(problem = null) {
  if (!authRequired || (token() && !problem)) return;
  if (pendingToken === null) {
    pendingToken = askForToken(problem).then((value) => {
      setToken(value);
      pendingToken = null;
    });
  }
  await pendingToken;
}

/** Headers every call carries: the bearer token when there is one. */
export function authHeaders() {
  const value = token();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

/** A random Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Call the API; the decoded JSON answer (null for 204), or an ApiError. */
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  await ensureToken();
  const sent = { Accept: "application/json", ...authHeaders(), ...headers };
  const init = { method, headers: sent, signal, cache: "no-store" };
  if (body !== undefined) {
    sent["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && authRequired) {
    forgetToken();
    await ensureToken("The server did not accept that token.");
    return api(path, { method, body, headers, signal });
  }
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      // not JSON: the status says enough
    }
    throw new ApiError(response.status, problem.error, problem.detail || response.statusText);
  }
  if (response.status === 204) return null;
  return response.json();
}
