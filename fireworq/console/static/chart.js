// The live chart: pushes, completions and failures per second over the last 10 minutes,
// drawn on a canvas (no library). Colours come from the stylesheet, so dark mode follows.
import { h } from "./dom.js";

export const WINDOW_MS = 10 * 60 * 1000;
export const SERIES = [
  { key: "pushes", label: "pushes/s", color: "--push" },
  { key: "completions", label: "completions/s", color: "--done" },
  { key: "failures", label: "failures/s", color: "--fail" },
];

// Rates per second from two successive readings of {total_pushes, total_completes,
// total_failures}; a counter that went down (a queue deleted and defined again) counts as 0.
export function rates(before, after, seconds) {
  const rate = (key) => (seconds > 0 ? Math.max(0, (after[key] || 0) - (before[key] || 0)) / seconds : 0);
  return { pushes: rate("total_pushes"), completions: rate("total_completes"), failures: rate("total_failures") };
}

export class Chart {
  constructor(title) {
    this.canvas = h("canvas", { role: "img", "aria-label": title });
    this.summary = h("div", { class: "legend" }, SERIES.map((s) =>
      h("span", { class: s.key }, h("span", { class: "swatch" }), s.label, " ",
        h("strong", { dataset: { series: s.key } }, "0"))));
    this.el = h("figure", { class: "chart" }, this.canvas, h("figcaption", {}, this.summary));
    this.title = title;
  }

  draw(points) {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, canvas.clientWidth || 600);
    const height = canvas.clientHeight || 180;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const style = getComputedStyle(document.documentElement);
    const color = (name) => style.getPropertyValue(name).trim() || "#888";
    ctx.clearRect(0, 0, width, height);
    const left = 44, right = 8, top = 8, bottom = 20;
    const now = Date.now();
    let max = 1;
    for (const p of points) for (const s of SERIES) max = Math.max(max, p[s.key]);
    max = niceCeiling(max);
    const x = (t) => left + ((t - (now - WINDOW_MS)) / WINDOW_MS) * (width - left - right);
    const y = (v) => top + (1 - v / max) * (height - top - bottom);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = color("--muted");
    ctx.strokeStyle = color("--line");
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i += 1) {
      const v = (max * i) / 4;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y(v)) + 0.5);
      ctx.lineTo(width - right, Math.round(y(v)) + 0.5);
      ctx.stroke();
      ctx.textAlign = "right";
      ctx.fillText(formatTick(v), left - 4, y(v) + 4);
    }
    for (let m = 10; m >= 0; m -= 2) {
      ctx.textAlign = m === 10 ? "left" : m === 0 ? "right" : "center";
      ctx.fillText(m ? `-${m}m` : "now", x(now - m * 60000), height - 5);
    }
    for (const s of SERIES) {
      ctx.strokeStyle = color(s.color);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let started = false;
      for (const p of points) {
        if (p.t < now - WINDOW_MS) continue;
        if (started) ctx.lineTo(x(p.t), y(p[s.key]));
        else ctx.moveTo(x(p.t), y(p[s.key]));
        started = true;
      }
      ctx.stroke();
    }
    const last = points[points.length - 1];
    for (const s of SERIES) {
      const text = last ? formatTick(last[s.key]) : "0";
      this.summary.querySelector(`[data-series="${s.key}"]`).textContent = text;
    }
    canvas.setAttribute("aria-label", `${this.title}: ` + SERIES.map((s) =>
      `${s.label} ${last ? formatTick(last[s.key]) : 0}`).join(", "));
  }
}

function niceCeiling(v) {
  const power = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) if (v <= step * power) return step * power;
  return 10 * power;
}

function formatTick(v) {
  if (v >= 100) return String(Math.round(v));
  return String(Math.round(v * 100) / 100);
}
