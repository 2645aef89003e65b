// The public HTTP API (docs/api.md), with the token of sessionStorage when there is one.
const TOKEN_KEY = "fireworq.token";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Called with the ApiError of every 401, so the page can ask for a token.
let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

// A request; `body` is a string (sent as is) or a value (sent as JSON). Answers the parsed
// JSON, or the text for text answers; throws ApiError with the API's message otherwise.
export async function api(method, path, body) {
  const headers = {};
  const bearer = token();
  if (bearer) headers.Authorization = "Bearer " + bearer;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `${method} ${path}: the daemon did not answer (${e.message})`);
  }
  const text = await response.text();
  const json = (response.headers.get("content-type") || "").startsWith("application/json");
  let value = text;
  if (json) {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new ApiError(response.status, `${method} ${path}: unreadable answer`);
    }
  }
  if (!response.ok) {
    const message = value && value.message ? value.message : `${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, message, value);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return value;
}

export const q = encodeURIComponent;

// A category keeps its slashes in the path (docs/api.md, Requests).
export function categoryPath(category) {
  return category.split("/").map(encodeURIComponent).join("/");
}

// Prometheus text (docs/api.md, GET /metrics) into {name: [{labels, value}]}.
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[2]))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    (out[m[1]] ||= []).push({ labels, value: Number(m[3]) });
  }
  return out;
}
