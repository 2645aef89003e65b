// The pages (docs/console.md): each renders into ctx.view and may answer {refresh, dispose}.
import { api, q, categoryPath, parseMetrics } from "./api.js";
import { h, replace, pretty, number } from "./dom.js";
import { Chart } from "./chart.js";
import { makeForm } from "./forms.js";

const STATES = ["waiting", "grabbed", "deferred"];
const COUNT_CAP = 10000; // the store counts of /metrics stop there (docs/api.md, GET /metrics)
const PAGE = 100;

export const pages = {
  match(s) {
    if (s.length === 0) return [overview, "overview"];
    if (s.length === 1 && s[0] === "routings") return [routings, "routings"];
    if (s.length === 1 && s[0] === "push") return [push, "push"];
    if (s[0] === "queue" && s.length === 2) return [queue, "overview"];
    if (s[0] === "queue" && s.length === 3 && STATES.includes(s[2])) return [jobList, "overview"];
    if (s[0] === "queue" && s.length === 3 && s[2] === "failed") return [failureLog, "overview"];
    if (s[0] === "queue" && s.length === 4 && s[2] === "job") return [job, "overview"];
    if (s[0] === "queue" && s.length === 4 && s[2] === "failed") return [failedJob, "overview"];
    return [notFound, null];
  },
};

const queueHash = (name, ...rest) => "#/" + ["queue", name, ...rest].map(q).join("/");

function withParams(hash, params) {
  const text = new URLSearchParams([...Object.entries(params)].filter(([, v]) => v)).toString();
  return text ? `${hash}?${text}` : hash;
}

function count(n) {
  if (n === undefined) return "–";
  return n >= COUNT_CAP ? `${number(COUNT_CAP)}+` : number(n);
}

// Store counts per queue from /metrics: {queue: {waiting, grabbed, deferred, failed, active}}.
// The daemon reads them from the store at most every 5 s, and /metrics is the largest answer
// of the API (about 3 kB per queue): the polls read it every 10 s, a page shown afresh at once.
const COUNTS_EVERY_MS = 10000;
const countsCache = { at: 0, value: null };

async function storeCounts(fresh = false) {
  if (!fresh && countsCache.value && Date.now() - countsCache.at < COUNTS_EVERY_MS) return countsCache.value;
  countsCache.value = await readCounts();
  countsCache.at = Date.now();
  return countsCache.value;
}

async function readCounts() {
  const metrics = parseMetrics(await api("GET", "/metrics"));
  const out = {};
  const of = (name) => (out[name] ||= {});
  for (const m of metrics.fireworq_queue_jobs || []) of(m.labels.queue)[m.labels.state] = m.value;
  for (const m of metrics.fireworq_failed_jobs || []) of(m.labels.queue).failed = m.value;
  for (const m of metrics.fireworq_queue_active || []) of(m.labels.queue).active = m.value;
  const up = (metrics.fireworq_store_up || [])[0];
  out.__store_up = up ? up.value === 1 : true;
  return out;
}

async function nodeText(name) {
  try {
    const node = await api("GET", `/queue/${q(name)}/node`);
    return `${node.id}@${node.host}` + (node.state ? ` (${node.state}: ${node.error})` : "");
  } catch (e) {
    if (e.status === 404) return "none";
    return `? (${e.message})`;
  }
}

async function eachLimited(items, limit, f) {
  const queue = [...items];
  const run = async () => {
    while (queue.length) await f(queue.shift());
  };
  await Promise.all(Array.from({ length: Math.min(limit, queue.length) }, run));
}

function lastRate(points, key) {
  return points && points.length ? points[points.length - 1][key] : 0;
}

function card(label, value) {
  return h("div", { class: "card" }, h("div", { class: "k" }, label), h("div", { class: "v" }, value));
}

function stateBadge(paused) {
  return paused ? h("span", { class: "badge paused" }, "paused") : h("span", { class: "badge running" }, "running");
}

function table(headers, rows, caption) {
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", { class: "muted" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map(([text, cls]) => h("th", { scope: "col", class: cls || null }, text)))),
    h("tbody", {}, rows)));
}

function confirmButton(label, question, action, cls = "danger", id = null) {
  const holder = h("span", {});
  const button = h("button", { type: "button", class: cls, id, onclick: () => {
    const yes = h("button", { type: "button", class: "danger", onclick: async () => {
      replace(holder, button);
      await action();
    } }, "Yes");
    const no = h("button", { type: "button", onclick: () => { replace(holder, button); button.focus(); } }, "No");
    replace(holder, h("span", { class: "confirm", role: "group", "aria-label": question }, question, " ", yes, " ", no));
    yes.focus();
  } }, label);
  holder.append(button);
  return holder;
}

// Runs an action, showing its error (or its success text) as a message.
async function act(ctx, f, done) {
  try {
    const result = await f();
    if (done) ctx.message(typeof done === "function" ? done(result) : done, "ok");
    return result;
  } catch (e) {
    ctx.message(e.message);
    return undefined;
  }
}

// --- Overview -------------------------------------------------------------------------

async function overview(ctx) {
  const { view, history } = ctx;
  const chart = new Chart("Pushes, completions and failures per second, all queues, last 10 minutes");
  const cards = h("div", { class: "cards" });
  const body = h("tbody", {});
  const nodes = new Map();
  let nodesAt = 0;
  const rowsByName = new Map();
  let shownNames = null;
  function queueRow(name) {
    const cell = (cls, key) => h("td", { class: cls, dataset: key ? { count: key } : null });
    const cells = {
      node: cell("hide-narrow"), state: cell(""), outstanding: cell("num hide-narrow"),
      waiting: cell("num", "waiting"), grabbed: cell("num", "grabbed"),
      deferred: cell("num hide-narrow", "deferred"), failed: cell("num", "failed"),
      pushes: cell("num"), completions: cell("num"),
    };
    const tr = h("tr", { dataset: { queue: name } },
      h("th", { scope: "row", class: "wrap" }, h("a", { href: queueHash(name) }, name)),
      Object.values(cells));
    return { tr, cells };
  }
  const createForm = makeForm([
    { name: "name", label: "Queue name", required: true },
    { name: "max_workers", label: "max_workers", kind: "number", hint: "0 or empty: the default" },
  ], { submitLabel: "Create queue", onsubmit: async (f) => {
    const name = f.value("name");
    if (!name) throw new Error("Invalid queue name: must be 1 to 46 characters");
    await api("PUT", `/queue/${q(name)}`, f.body(["max_workers"]));
    ctx.go(queueHash(name));
  } });
  view.append(
    h("h1", {}, "Overview"), cards, h("h2", {}, "Activity"), chart.el,
    h("h2", {}, "Queues"),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, [
        ["Queue"], ["Active node", "hide-narrow"], ["State"], ["Outstanding", "num hide-narrow"],
        ["Waiting", "num"], ["Grabbed", "num"], ["Deferred", "num hide-narrow"], ["Failed", "num"],
        ["Pushes/s", "num"], ["Completions/s", "num"],
      ].map(([t, c]) => h("th", { scope: "col", class: c || null }, t)))), body)),
    h("h2", {}, "New queue"), createForm.form);

  async function refresh(first = false) {
    const [definitions, counts, stats] = await Promise.all([
      api("GET", "/queues"), storeCounts(first),
      history.last ? Promise.resolve(history.stats) : api("GET", "/queues/stats"),
    ]);
    const total = history.total;
    let waiting = 0, failed = 0;
    // Rows are kept and their cells updated, so that a focused link keeps the focus.
    const names = definitions.map((d) => d.name);
    if (shownNames !== names.join("\n")) {
      shownNames = names.join("\n");
      const kept = new Map();
      for (const name of names) kept.set(name, rowsByName.get(name) || queueRow(name));
      rowsByName.clear();
      for (const [name, row] of kept) rowsByName.set(name, row);
      replace(body, names.length ? [...kept.values()].map((r) => r.tr)
        : h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No queues yet: create one below.")));
    }
    for (const d of definitions) {
      const s = stats[d.name] || {};
      const c = counts[d.name] || {};
      const points = history.byQueue.get(d.name);
      waiting += c.waiting || 0;
      failed += c.failed || 0;
      const cells = rowsByName.get(d.name).cells;
      cells.node.textContent = nodes.get(d.name) || "…";
      replace(cells.state, stateBadge(d.paused));
      cells.outstanding.textContent = number(s.outstanding_jobs);
      cells.waiting.textContent = count(c.waiting);
      cells.grabbed.textContent = count(c.grabbed);
      cells.deferred.textContent = count(c.deferred);
      cells.failed.textContent = count(c.failed);
      cells.pushes.textContent = number(lastRate(points, "pushes"));
      cells.completions.textContent = number(lastRate(points, "completions"));
    }
    const completes = Object.values(stats).reduce((n, s) => n + (s.total_completes || 0), 0);
    replace(cards,
      card("Queues", number(definitions.length)),
      card("Waiting", count(waiting)),
      card("Failed (log)", count(failed)),
      card("Pushes/s", number(lastRate(total, "pushes"))),
      card("Completions/s", number(lastRate(total, "completions"))),
      h("div", { class: "card" }, h("div", { class: "k" }, "Completed (this node)"),
        h("div", { class: "v", id: "total-completes" }, number(completes))),
      counts.__store_up ? null : card("Store", "unreachable"));
    chart.draw(total);
    if (Date.now() - nodesAt > 30000) {
      nodesAt = Date.now();
      eachLimited(definitions.map((d) => d.name), 4, async (name) => {
        nodes.set(name, await nodeText(name));
        const row = rowsByName.get(name);
        if (row) row.cells.node.textContent = nodes.get(name);
      });
    }
  }
  await refresh(true);
  const resize = () => chart.draw(history.total);
  window.addEventListener("resize", resize);
  return { refresh, dispose: () => window.removeEventListener("resize", resize) };
}

// --- Queue ----------------------------------------------------------------------------

function queueHeader(ctx, name, tab, definition) {
  const tabs = [["Queue", queueHash(name), "queue"],
    ...STATES.map((s) => [s[0].toUpperCase() + s.slice(1), queueHash(name, s), s]),
    ["Failure log", queueHash(name, "failed"), "failed"]];
  return [
    h("p", { class: "muted" }, h("a", { href: "#/" }, "Overview"), " / queue"),
    h("h1", {}, name, " ", definition ? stateBadge(definition.paused) : null),
    h("nav", { class: "tabs", "aria-label": "Queue sections" }, tabs.map(([label, href, key]) =>
      h("a", { href, "aria-current": key === tab ? "page" : null }, label))),
  ];
}

const DEFINITION_FIELDS = [
  { name: "polling_interval", label: "polling_interval (ms)", kind: "number", hint: "0–3600000; 0: the default" },
  { name: "max_workers", label: "max_workers", kind: "number", hint: "0–10000; 0: the default" },
  { name: "max_dispatches_per_second", label: "max_dispatches_per_second", kind: "number", hint: "throttle rate; with a burst size" },
  { name: "max_burst_size", label: "max_burst_size", kind: "number", hint: "throttle bucket; with a rate" },
  { name: "failed_job_ttl", label: "failed_job_ttl (s)", kind: "number", hint: "keep failure-log entries this long" },
  { name: "failed_job_limit", label: "failed_job_limit", kind: "number", hint: "keep the newest this many entries" },
];

async function queue(ctx) {
  const { view, history } = ctx;
  const name = ctx.segments[1];
  const definition = await api("GET", `/queue/${q(name)}`);
  const chart = new Chart(`Pushes, completions and failures per second of ${name}, last 10 minutes`);
  const cards = h("div", { class: "cards" });
  const node = h("span", {}, "…");
  const pauseButton = h("button", { type: "button", id: "pause", onclick: async () => {
    const paused = pauseButton.dataset.paused === "true";
    const answer = await act(ctx, () => api("POST", `/queue/${q(name)}/${paused ? "resume" : "pause"}`),
      paused ? `Resumed ${name}` : `Paused ${name}`);
    if (answer) ctx.go(location.hash);
  } }, definition.paused ? "Resume" : "Pause");
  pauseButton.dataset.paused = String(Boolean(definition.paused));
  const form = makeForm(DEFINITION_FIELDS.map((f) => ({ ...f, value: definition[f.name] })), {
    submitLabel: "Save definition",
    onsubmit: async (f) => {
      const stored = await api("PUT", `/queue/${q(name)}`, f.body());
      for (const spec of DEFINITION_FIELDS) f.inputs[spec.name].value = stored[spec.name] ?? "";
      ctx.message(`Saved the definition of ${name}`, "ok");
    },
  });
  view.append(...queueHeader(ctx, name, "queue", definition),
    h("div", { class: "actions" }, pauseButton,
      h("span", { class: "muted" }, "Active node: ", node),
      confirmButton("Delete queue", `Delete the definition of ${name}? Its jobs are kept.`, async () => {
        if (await act(ctx, () => api("DELETE", `/queue/${q(name)}`), `Deleted the queue ${name}`)) ctx.go("#/");
      })),
    h("h2", {}, "Stats (this node)"), cards, chart.el,
    h("h2", {}, "Definition"), form.form);
  async function refresh(first = false) {
    const [stats, counts] = await Promise.all([api("GET", `/queue/${q(name)}/stats`), storeCounts(first)]);
    const c = counts[name] || {};
    const points = history.byQueue.get(name);
    replace(cards,
      card("Waiting", count(c.waiting)), card("Grabbed", count(c.grabbed)),
      card("Deferred", count(c.deferred)), card("Failed (log)", count(c.failed)),
      card("Outstanding", number(stats.outstanding_jobs)),
      card("Workers idle/total", `${number(stats.idle_workers)}/${number(stats.total_workers)}`),
      card("Pushes", number(stats.total_pushes)), card("Completed", number(stats.total_completes)),
      card("Successes", number(stats.total_successes)), card("Failed attempts", number(stats.total_failures)),
      card("Pushes/s", number(stats.pushes_per_second)),
      card("Completions/s", number(lastRate(points, "completions"))));
    chart.draw(points || []);
  }
  await refresh(true);
  nodeText(name).then((text) => { node.textContent = text; });
  return { refresh };
}

// --- Job lists ------------------------------------------------------------------------

function jobRow(name, j) {
  return h("tr", {},
    h("td", {}, h("a", { href: queueHash(name, "job", String(j.id)) }, String(j.id))),
    h("td", { class: "wrap" }, j.category),
    h("td", { class: "wrap hide-narrow" }, j.url),
    h("td", {}, j.next_try),
    h("td", { class: "num" }, `${j.fail_count}/${j.max_retries}`));
}

async function jobList(ctx) {
  const { view, params } = ctx;
  const [, name, state] = ctx.segments;
  const order = params.get("order") === "asc" ? "asc" : "desc";
  const cursor = params.get("cursor") || "";
  const query = new URLSearchParams({ order, limit: String(PAGE) });
  if (cursor) query.set("cursor", cursor);
  const page = await api("GET", `/queue/${q(name)}/${state}?${query}`);
  const here = queueHash(name, state);
  const orderSelect = h("select", { id: "order", onchange: () => ctx.go(withParams(here, { order: orderSelect.value })) },
    h("option", { value: "desc", selected: order === "desc" }, "latest next_try first"),
    h("option", { value: "asc", selected: order === "asc" }, "earliest next_try first"));
  view.append(...queueHeader(ctx, name, state),
    h("div", { class: "actions" }, h("label", { for: "order" }, "Order"), orderSelect),
    page.jobs.length
      ? table([["Id"], ["Category"], ["URL", "hide-narrow"], ["Next try"], ["Fails/max", "num"]],
        page.jobs.map((j) => jobRow(name, j)), `${page.jobs.length} ${state} jobs on this page`)
      : h("p", { class: "muted" }, `No ${state} jobs${cursor ? " on this page" : ""}.`),
    h("nav", { class: "actions", "aria-label": "Pages" },
      cursor ? h("a", { href: withParams(here, { order }) }, "First page") : null,
      page.next_cursor ? h("a", { href: withParams(here, { order, cursor: page.next_cursor }), rel: "next", id: "next-page" }, "Next page") : h("span", { class: "muted" }, "Last page")));
}

// --- Failure log ----------------------------------------------------------------------

const entries = (n) => `${number(n)} ${n === 1 ? "entry" : "entries"}`;

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

async function failureLog(ctx) {
  const { view, params } = ctx;
  const name = ctx.segments[1];
  const base = `/queue/${q(name)}/failed`;
  const filter = { category: params.get("category") || "", after: params.get("after") || "", before: params.get("before") || "" };
  const filtered = Boolean(filter.category || filter.after || filter.before);
  const matches = (f) => (!filter.category || f.category === filter.category)
    && (!filter.after || Date.parse(f.failed_at) >= Date.parse(filter.after))
    && (!filter.before || Date.parse(f.failed_at) < Date.parse(filter.before));
  // The list route has no filter: pages are read (up to 5 of 200) until 100 entries match.
  let cursor = params.get("cursor") || "";
  const shown = [];
  for (let read = 0; read < (filtered ? 5 : 1); read += 1) {
    const query = new URLSearchParams({ limit: String(filtered ? 200 : PAGE) });
    if (cursor) query.set("cursor", cursor);
    const page = await api("GET", `${base}?${query}`);
    shown.push(...page.failed_jobs.filter(matches));
    cursor = page.next_cursor;
    if (!cursor || shown.length >= PAGE) break;
  }
  const here = queueHash(name, "failed");
  const toIso = (v) => (v ? new Date(v).toISOString() : "");
  const filterForm = makeForm([
    { name: "category", label: "Category", value: filter.category },
    { name: "failed_after", label: "Failed at or after (local time)", value: localInput(filter.after), placeholder: "2026-12-03T14:00" },
    { name: "failed_before", label: "Failed before (local time)", value: localInput(filter.before), placeholder: "2026-12-03T15:00" },
  ], { submitLabel: "Filter", onsubmit: async (f) => {
    for (const key of ["failed_after", "failed_before"]) {
      if (f.value(key) && Number.isNaN(new Date(f.value(key)).getTime())) throw new Error(`Field '${key}' must be a date and time`);
    }
    ctx.go(withParams(here, { category: f.value("category"), after: toIso(f.value("failed_after")), before: toIso(f.value("failed_before")) }));
  } });
  for (const key of ["failed_after", "failed_before"]) filterForm.inputs[key].type = "datetime-local";
  const bulkFilter = {};
  if (filter.category) bulkFilter.category = filter.category;
  if (filter.after) bulkFilter.failed_after = filter.after;
  if (filter.before) bulkFilter.failed_before = filter.before;
  const checks = new Map();
  const selected = () => [...checks].filter(([, box]) => box.checked).map(([id]) => id);
  const reload = () => ctx.go(location.hash);
  async function eachSelected(verb, f) {
    const ids = selected();
    if (!ids.length) { ctx.message("Select entries first"); return; }
    let done = 0;
    for (const id of ids) if (await act(ctx, () => f(id))) done += 1;
    ctx.message(`${verb} ${done} of ${entries(ids.length)} selected`, "ok");
    reload();
  }
  // "All matching": the bulk routes take at most 10000 entries a request; repeat until done.
  async function allMatching(path, method, key) {
    let total = 0;
    for (;;) {
      const answer = await act(ctx, () => api(method, path, { ...bulkFilter, limit: 10000 }));
      if (!answer) break;
      total += answer[key];
      if (answer[key] < 10000) break;
    }
    ctx.message(`${key === "retried" ? "Retried" : "Deleted"} ${entries(total)}${filtered ? " matching the filter" : ""}`, "ok");
    reload();
  }
  const allBox = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all entries on this page",
    onchange: () => { for (const box of checks.values()) box.checked = allBox.checked; } });
  const rows = shown.map((f) => {
    const box = h("input", { type: "checkbox", "aria-label": `Select entry ${f.id}` });
    checks.set(f.id, box);
    return h("tr", { dataset: { failure: String(f.id) } },
      h("td", {}, box),
      h("td", {}, h("a", { href: queueHash(name, "failed", String(f.id)) }, String(f.id))),
      h("td", { class: "hide-narrow" }, String(f.job_id)),
      h("td", { class: "wrap" }, f.category),
      h("td", { class: "wrap" }, `${f.result.status} ${f.result.code || ""} ${f.result.message}`),
      h("td", { class: "num hide-narrow" }, String(f.fail_count)),
      h("td", {}, f.failed_at),
      h("td", {}, h("div", { class: "actions" },
        h("button", { type: "button", "aria-label": `Retry entry ${f.id}`, onclick: async () => {
          if (await act(ctx, () => api("POST", `${base}/${f.id}/retry`), (r) => `Retried entry ${f.id} as job ${r.id}`)) reload();
        } }, "Retry"),
        h("button", { type: "button", class: "danger", "aria-label": `Delete entry ${f.id}`, onclick: async () => {
          if (await act(ctx, () => api("DELETE", `${base}/${f.id}`), `Deleted entry ${f.id}`)) reload();
        } }, "Delete"))));
  });
  view.append(...queueHeader(ctx, name, "failed"),
    h("h2", {}, "Filter"), filterForm.form,
    filtered ? h("p", {}, h("a", { href: here }, "Clear the filter")) : "",
    h("div", { class: "actions" },
      h("button", { type: "button", id: "retry-selected", onclick: () => eachSelected("Retried", (id) => api("POST", `${base}/${id}/retry`)) }, "Retry selected"),
      h("button", { type: "button", class: "danger", id: "delete-selected", onclick: () => eachSelected("Deleted", (id) => api("DELETE", `${base}/${id}`)) }, "Delete selected"),
      confirmButton(filtered ? "Retry all matching" : "Retry all", `Retry every entry${filtered ? " matching the filter" : ""}?`,
        () => allMatching(`${base}/retry`, "POST", "retried"), "", "retry-all"),
      confirmButton(filtered ? "Delete all matching" : "Delete all", `Delete every entry${filtered ? " matching the filter" : ""}?`,
        () => allMatching(base, "DELETE", "deleted"), "danger", "delete-all")),
    rows.length
      ? table([[allBox], ["Id"], ["Job", "hide-narrow"], ["Category"], ["Result"], ["Fails", "num hide-narrow"], ["Failed at"], ["Actions"]],
        rows, `${entries(rows.length)}${filtered ? " matching the filter" : ""} on this page`)
      : h("p", { class: "muted" }, "No entries here."),
    h("nav", { class: "actions", "aria-label": "Pages" },
      params.get("cursor") ? h("a", { href: withParams(here, { ...filter }) }, "First page") : null,
      cursor ? h("a", { href: withParams(here, { ...filter, cursor }), rel: "next", id: "next-page" }, "Next page") : h("span", { class: "muted" }, "Last page")));
}

// --- Job and failed job ---------------------------------------------------------------

function fields(entries) {
  return h("dl", { class: "fields" }, entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function payloadBlock(ctx, payload) {
  const text = pretty(payload);
  const pre = h("pre", { class: "json", tabindex: "0", "aria-label": "Payload" }, text);
  const copy = h("button", { type: "button", onclick: async () => {
    try {
      await navigator.clipboard.writeText(text);
      ctx.message("Copied the payload", "ok");
    } catch (e) {
      getSelection().selectAllChildren(pre);
      ctx.message("The browser refused the clipboard: the payload is selected, copy it with Ctrl-C", "ok");
    }
  } }, "Copy payload");
  return [h("h2", {}, "Payload"), h("div", { class: "actions" }, copy), pre];
}

async function job(ctx) {
  const { view } = ctx;
  const [, name, , id] = ctx.segments;
  const j = await api("GET", `/queue/${q(name)}/job/${q(id)}`);
  view.append(
    h("p", { class: "muted" }, h("a", { href: "#/" }, "Overview"), " / ", h("a", { href: queueHash(name) }, name), " / job"),
    h("h1", {}, `Job ${j.id}`),
    fields([["queue", name], ["id", j.id], ["category", j.category], ["url", j.url], ["status", j.status],
      ["created_at", j.created_at], ["next_try", j.next_try], ["timeout", `${j.timeout} s`],
      ["fail_count", j.fail_count], ["max_retries", j.max_retries], ["retry_delay", `${j.retry_delay} s`]]),
    ...payloadBlock(ctx, j.payload),
    h("div", { class: "actions" }, confirmButton("Delete job", `Delete job ${j.id}?`, async () => {
      if (await act(ctx, () => api("DELETE", `/queue/${q(name)}/job/${q(id)}`), `Deleted job ${j.id}`)) ctx.go(queueHash(name, "waiting"));
    })));
}

async function failedJob(ctx) {
  const { view } = ctx;
  const [, name, , id] = ctx.segments;
  const base = `/queue/${q(name)}/failed/${q(id)}`;
  const f = await api("GET", base);
  const retryForm = makeForm([{ name: "run_after", label: "run_after (s)", kind: "number", hint: "0 or empty: at once" }], {
    submitLabel: "Retry", grid: false, onsubmit: async (form) => {
      const pushed = await api("POST", `${base}/retry`, form.body());
      ctx.message(`Retried entry ${f.id} as job ${pushed.id}`, "ok");
      ctx.go(queueHash(name, "job", String(pushed.id)));
    } });
  view.append(
    h("p", { class: "muted" }, h("a", { href: "#/" }, "Overview"), " / ", h("a", { href: queueHash(name) }, name), " / ", h("a", { href: queueHash(name, "failed") }, "failure log")),
    h("h1", {}, `Failed job ${f.id}`),
    fields([["queue", name], ["id", f.id], ["job_id", f.job_id], ["category", f.category], ["url", f.url],
      ["result.status", f.result.status], ["result.code", f.result.code], ["result.message", f.result.message],
      ["fail_count", f.fail_count], ["failed_at", f.failed_at], ["created_at", f.created_at]]),
    ...payloadBlock(ctx, f.payload),
    h("h2", {}, "Retry or delete"), retryForm.form,
    h("div", { class: "actions" }, confirmButton("Delete entry", `Delete entry ${f.id}?`, async () => {
      if (await act(ctx, () => api("DELETE", base), `Deleted entry ${f.id}`)) ctx.go(queueHash(name, "failed"));
    })));
}

// --- Routings -------------------------------------------------------------------------

async function routings(ctx) {
  const { view } = ctx;
  const [list, queues] = await Promise.all([api("GET", "/routings"), api("GET", "/queues")]);
  const names = h("datalist", { id: "queue-names" }, queues.map((d) => h("option", { value: d.name })));
  const form = makeForm([
    { name: "job_category", label: "Job category", required: true },
    { name: "queue_name", label: "Queue", required: true, list: "queue-names" },
  ], { submitLabel: "Save routing", onsubmit: async (f) => {
    const category = f.inputs.job_category.value;
    if (!category) throw new Error("Invalid job category: must be 1 to 255 bytes");
    const saved = await api("PUT", `/routing/${categoryPath(category)}`, f.body(["queue_name"]));
    ctx.message(`Routed ${saved.job_category} to ${saved.queue_name}`, "ok");
    ctx.go("#/routings");
  } });
  const rows = list.map((r) => h("tr", { dataset: { category: r.job_category } },
    h("td", { class: "wrap" }, r.job_category),
    h("td", { class: "wrap" }, h("a", { href: queueHash(r.queue_name) }, r.queue_name)),
    h("td", {}, h("div", { class: "actions" },
      h("button", { type: "button", "aria-label": `Change the routing of ${r.job_category}`, onclick: () => {
        form.inputs.job_category.value = r.job_category;
        form.inputs.queue_name.value = r.queue_name;
        form.inputs.queue_name.focus();
      } }, "Change"),
      confirmButton("Delete", `Delete the routing of ${r.job_category}?`, async () => {
        if (await act(ctx, () => api("DELETE", `/routing/${categoryPath(r.job_category)}`), `Deleted the routing of ${r.job_category}`)) ctx.go("#/routings");
      })))));
  view.append(h("h1", {}, "Routings"),
    rows.length ? table([["Job category"], ["Queue"], ["Actions"]], rows) : h("p", { class: "muted" }, "No routings yet."),
    h("h2", {}, "Create or change a routing"), names, form.form);
}

// --- Push -----------------------------------------------------------------------------

async function push(ctx) {
  const { view } = ctx;
  const list = await api("GET", "/routings");
  const answer = h("div", { id: "push-answer", "aria-live": "polite" });
  const form = makeForm([
    { name: "category", label: "Job category", required: true, list: "categories" },
    { name: "url", label: "Worker URL", required: true, placeholder: "http://127.0.0.1:8000/work" },
    { name: "payload", label: "Payload (JSON)", kind: "json", value: "{}" },
    { name: "run_after", label: "run_after (s)", kind: "number" },
    { name: "max_retries", label: "max_retries", kind: "number" },
    { name: "retry_delay", label: "retry_delay (s)", kind: "number" },
    { name: "timeout", label: "timeout (s)", kind: "number" },
  ], { submitLabel: "Push", onsubmit: async (f) => {
    const category = f.inputs.category.value;
    if (!category) throw new Error("Invalid job category: must be 1 to 255 bytes");
    const payload = f.value("payload");
    if (payload) {
      try {
        JSON.parse(payload);
      } catch (e) {
        f.fieldError("payload", `Not JSON: ${e.message}`);
        f.inputs.payload.focus();
        return;
      }
    }
    const pushed = await api("POST", `/job/${categoryPath(category)}`,
      f.body(["url", "payload", "run_after", "max_retries", "retry_delay", "timeout"]));
    replace(answer, h("h2", {}, "Pushed"),
      h("p", {}, "Job ", h("a", { href: queueHash(pushed.queue_name, "job", String(pushed.id)) }, String(pushed.id)),
        " in queue ", h("a", { href: queueHash(pushed.queue_name) }, pushed.queue_name)),
      h("pre", { class: "json" }, pretty(pushed)));
  } });
  view.append(h("h1", {}, "Push a job"),
    h("datalist", { id: "categories" }, list.map((r) => h("option", { value: r.job_category }))),
    form.form, answer);
}

async function notFound(ctx) {
  ctx.view.append(h("h1", {}, "No such page"), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
}
