// Building the page without innerHTML: every text goes in as text.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value" || (key in el && typeof value !== "string")) el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

// A labelled input with its error line; `input` gets aria-describedby to the error.
export function field(label, input, { hint, wide } = {}) {
  input.id ||= uid("f");
  const error = h("p", { class: "field-error", id: input.id + "-error", role: "alert" });
  input.setAttribute("aria-describedby", error.id);
  return h("div", { class: "field" + (wide ? " wide" : "") },
    h("label", { for: input.id }, label), input,
    hint ? h("span", { class: "hint" }, hint) : null, error);
}

export function setFieldError(input, message) {
  const error = document.getElementById(input.id + "-error");
  if (error) error.textContent = message || "";
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function number(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "–";
  if (Number.isInteger(n)) return n.toLocaleString("en");
  return n.toLocaleString("en", { maximumFractionDigits: 2 });
}

export function duration(seconds) {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), ss = s % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${ss}s`;
  return `${ss}s`;
}
