// The console's shell: hash routes, the 2-second poll, messages and the token box.
import { api, setToken, whenUnauthorized } from "./api.js";
import { h, replace, duration } from "./dom.js";
import { rates, WINDOW_MS } from "./chart.js";
import { pages } from "./pages.js";

export const POLL_MS = 2000;

// Rates of the last 10 minutes, summed over the queues and per queue, from /queues/stats.
export const history = { total: [], byQueue: new Map(), last: null, lastAt: 0, stats: {} };

function record(stats, at) {
  if (history.last) {
    const seconds = (at - history.lastAt) / 1000;
    const sum = { t: at, pushes: 0, completions: 0, failures: 0 };
    for (const [name, now] of Object.entries(stats)) {
      const before = history.last[name] || now;
      const point = { t: at, ...rates(before, now, seconds) };
      sum.pushes += point.pushes;
      sum.completions += point.completions;
      sum.failures += point.failures;
      if (!history.byQueue.has(name)) history.byQueue.set(name, []);
      history.byQueue.get(name).push(point);
    }
    history.total.push(sum);
  }
  history.last = stats;
  history.lastAt = at;
  history.stats = stats;
  const oldest = at - WINDOW_MS - POLL_MS;
  while (history.total.length && history.total[0].t < oldest) history.total.shift();
  for (const [name, points] of history.byQueue) {
    while (points.length && points[0].t < oldest) points.shift();
    if (!(name in stats) && !points.length) history.byQueue.delete(name);
  }
}

// Messages: errors stay until dismissed or the next page; others go after a while.
export function message(text, kind = "error") {
  const box = document.getElementById("messages");
  const el = h("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : null },
    h("span", {}, text),
    h("button", { type: "button", "aria-label": "Dismiss message", onclick: () => el.remove() }, "×"));
  box.append(el);
  if (kind !== "error") setTimeout(() => el.remove(), 6000);
  return el;
}

// A new page drops the errors of the last one; confirmations stay for their few seconds
// (an action's confirmation usually comes with the page shown again).
function clearMessages() {
  for (const el of document.querySelectorAll("#messages .message.error")) el.remove();
}

let current = null; // {refresh, dispose} of the page shown
let renderCount = 0;

export function parseHash() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const segments = path.split("/").filter(Boolean).map((s) => {
    try {
      return decodeURIComponent(s);
    } catch (e) {
      return s;
    }
  });
  return { segments, params: new URLSearchParams(query) };
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  renderCount += 1;
  const mine = renderCount;
  const hash = location.hash || "#/";
  if (current && current.dispose) current.dispose();
  current = null;
  clearMessages();
  const { segments, params } = parseHash();
  const main = document.getElementById("main");
  const [page, nav] = pages.match(segments);
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view = h("div", {});
  try {
    const shown = await page({ segments, params, view, history, message, go });
    if (mine !== renderCount) {
      if (shown && shown.dispose) shown.dispose();
      return;
    }
    current = shown || null;
  } catch (e) {
    if (mine !== renderCount) return;
    view.append(h("p", { class: "message error", role: "alert" }, `Could not show this page: ${e.message}`));
  }
  replace(main, view);
  // What is shown, and how many pages were: the browser tests wait on them.
  main.dataset.route = hash;
  main.dataset.renders = String(mine);
  document.title = (main.querySelector("h1")?.textContent || "console") + " · fireworq";
  // The new page's content gets the focus, unless the token box asks for a token.
  if (document.getElementById("token").hidden) main.focus({ preventScroll: true });
}

let polling = false;
async function poll() {
  if (polling || document.visibilityState === "hidden") return;
  polling = true;
  try {
    const stats = await api("GET", "/queues/stats");
    record(stats, Date.now());
    if (current && current.refresh) await current.refresh();
  } catch (e) {
    if (e.status !== 401) showPollError(e);
  } finally {
    polling = false;
  }
}

let pollError = null;
function showPollError(e) {
  if (pollError && pollError.isConnected) return;
  pollError = message(`Refreshing failed: ${e.message}`);
}

async function showNode() {
  try {
    const stats = await api("GET", "/stats");
    replace(document.getElementById("node"),
      `fireworq-py ${stats.version} · up ${duration(stats.uptime_seconds)}`);
  } catch (e) {
    // The page says it when the API fails; the header stays quiet.
  }
}

function setUpToken() {
  const form = document.getElementById("token");
  const input = document.getElementById("token-value");
  whenUnauthorized((error) => {
    document.getElementById("token-error").textContent = error.message;
    if (form.hidden) {
      form.hidden = false;
      input.focus();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    input.value = "";
    form.hidden = true;
    document.getElementById("token-error").textContent = "";
    showNode();
    route();
  });
}

window.addEventListener("unhandledrejection", (event) => {
  message(`Unexpected error: ${event.reason && event.reason.message ? event.reason.message : event.reason}`);
});

setUpToken();
window.addEventListener("hashchange", route);
route();
showNode();
poll();
setInterval(poll, POLL_MS);
setInterval(showNode, 30000);
