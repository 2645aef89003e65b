// Forms whose values go to the API as typed, so that the API's own validation answers, and
// whose answers' messages land at the field they name (docs/api.md, Errors).
import { h, field, setFieldError } from "./dom.js";

const NUMBER = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;

// `specs`: [{name, label, kind: "text"|"number"|"json", hint, wide, value, required, list}]
export function makeForm(specs, { submitLabel, onsubmit, grid = true }) {
  const inputs = {};
  const general = h("p", { class: "field-error", role: "alert" });
  const fields = specs.map((spec) => {
    const input = spec.kind === "json"
      ? h("textarea", { name: spec.name, spellcheck: "false", rows: 6 })
      : h("input", {
        name: spec.name, type: "text", autocomplete: "off", spellcheck: "false",
        inputmode: spec.kind === "number" ? "decimal" : null, list: spec.list || null,
        required: spec.required || null, placeholder: spec.placeholder || null,
      });
    if (spec.value !== undefined && spec.value !== null) input.value = String(spec.value);
    inputs[spec.name] = input;
    input.addEventListener("input", () => setFieldError(input, ""));
    return field(spec.label, input, { hint: spec.hint, wide: spec.wide || spec.kind === "json" });
  });
  const button = h("button", { type: "submit", class: "primary" }, submitLabel);
  const form = h("form", { class: grid ? "grid" : "", novalidate: true },
    fields, h("div", { class: "actions field wide" }, button, general));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    button.disabled = true;
    try {
      await onsubmit(formApi);
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
    }
  });
  function clear() {
    general.textContent = "";
    for (const input of Object.values(inputs)) setFieldError(input, "");
  }
  // The error's message at the field it names (the first one it mentions), else under the form.
  function showError(e) {
    const message = e.message || String(e);
    const name = fieldOf(message, specs);
    if (name) {
      setFieldError(inputs[name], message);
      inputs[name].focus();
    } else {
      general.textContent = message;
    }
  }
  // The body as JSON text: numbers as typed (the API checks them), strings quoted, JSON as is.
  function body(names) {
    const members = [];
    for (const spec of specs) {
      if (names && !names.includes(spec.name)) continue;
      const text = inputs[spec.name].value.trim();
      if (text === "") continue;
      let json;
      if (spec.kind === "number") json = NUMBER.test(text) ? text : JSON.stringify(text);
      else if (spec.kind === "json") json = text;
      else json = JSON.stringify(inputs[spec.name].value);
      members.push(`${JSON.stringify(spec.name)}:${json}`);
    }
    return `{${members.join(",")}}`;
  }
  const formApi = { form, inputs, body, showError, clear, general,
    value: (name) => inputs[name].value.trim(),
    fieldError: (name, text) => setFieldError(inputs[name], text) };
  return formApi;
}

const ALIASES = { "queue name": "name", "job category": "category", "url": "url" };

export function fieldOf(message, specs) {
  let best = null, at = Infinity;
  const quoted = /Field '([^']+)'/.exec(message);
  if (quoted && specs.some((s) => s.name === quoted[1])) return quoted[1];
  for (const spec of specs) {
    const i = message.indexOf(spec.name);
    if (i >= 0 && i < at) { best = spec.name; at = i; }
  }
  if (best) return best;
  const lower = message.toLowerCase();
  for (const [words, name] of Object.entries(ALIASES)) {
    if (lower.includes(words) && specs.some((s) => s.name === name)) return name;
  }
  return null;
}
