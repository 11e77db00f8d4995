// Helpers shared by the console's pages. Everything shown is built as DOM
// nodes with text content: nothing from the server is ever parsed as HTML.

const SVG = "http://www.w3.org/2000/svg";

// h builds an element: h("a", {href: "#/x", onclick: fn}, "text", child, ...).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value" && "value" in el) el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

// ApiError is an answer in the shared error shape {"error":{"code","message","field"}}.
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

// api calls the server and returns the decoded JSON (null for 204).
// opts: {query: {k: v}, headers: {}, raw: true (return text)}.
export async function api(method, path, body, opts = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(opts.query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const init = { method, headers: { Accept: "application/json", ...(opts.headers || {}) } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    if (!init.headers["Content-Type"]) init.headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, "UNREACHABLE", `cannot reach the server: ${e.message}`);
  }
  const text = await resp.text();
  if (!resp.ok) {
    let code = `HTTP ${resp.status}`, message = text.trim() || resp.statusText, field;
    try {
      const j = JSON.parse(text);
      if (j && j.error && typeof j.error === "object") {
        ({ code = code, message = message, field } = j.error);
      } else if (j && j.message) { // the schema registry's shape
        code = String(j.error_code || code);
        message = j.message;
      }
    } catch { /* not JSON: keep the text */ }
    throw new ApiError(resp.status, code, message, field);
  }
  if (opts.raw) return text;
  if (resp.status === 204 || text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(resp.status, "BAD_RESPONSE", `the server answered ${path} with something that is not JSON`);
  }
}

// errorBox shows an error as a readable message.
export function errorBox(err) {
  const parts = [];
  if (err instanceof ApiError) {
    parts.push(h("strong", {}, err.code), ": ", err.message);
    if (err.field) parts.push(" ", h("span", { class: "note" }, `(field: ${err.field})`));
  } else {
    parts.push(h("strong", {}, "Error"), ": ", String(err && err.message || err));
  }
  return h("div", { class: "error", role: "alert" }, parts);
}

// slot is a container whose content a page replaces as answers arrive.
export function slot(attrs) {
  const el = h("div", attrs);
  el.set = (...children) => { el.replaceChildren(); append(el, children); return el; };
  return el;
}

// guard runs an async action, showing its error (or nothing) in out.
export async function guard(out, fn) {
  try {
    return await fn();
  } catch (e) {
    out.set(errorBox(e));
    return undefined;
  }
}

export function table(headers, rows, opts = {}) {
  const numeric = new Set(opts.numeric || []);
  return h("table", {},
    opts.caption ? h("caption", { class: "sr-only" }, opts.caption) : null,
    h("thead", {}, h("tr", {}, headers.map((t, i) => h("th", { scope: "col", class: numeric.has(i) ? "num" : null }, t)))),
    h("tbody", {}, rows.length === 0
      ? h("tr", {}, h("td", { colspan: headers.length, class: "note" }, opts.empty || "None."))
      : rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: numeric.has(i) ? "num" : null }, c))))));
}

export function field(label, input) {
  return h("label", {}, label, input);
}

export function json(v) {
  return h("pre", {}, JSON.stringify(v, null, 2));
}

export function link(href, text) {
  return h("a", { href }, text);
}

// enc encodes a path segment.
export const enc = encodeURIComponent;

export function num(n) {
  return typeof n === "number" ? n.toLocaleString("en-US") : String(n ?? "");
}

export function bytes(n) {
  if (typeof n !== "number") return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function duration(ms) {
  ms = Number(ms);
  if (!Number.isFinite(ms) || ms < 0) return "forever";
  const units = [["d", 86400000], ["h", 3600000], ["min", 60000], ["s", 1000]];
  for (const [u, f] of units) if (ms >= f && ms % f === 0) return `${ms / f} ${u}`;
  return `${ms} ms`;
}

// parseJSON parses a textarea's JSON, naming the field when it is not.
export function parseJSON(text, name) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(0, "INVALID_ARGUMENT", `${name} is not valid JSON: ${e.message}`, name);
  }
}

// parseMetrics reads the Prometheus text format into
// [{name, labels: {}, value}], skipping comments.
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[3]))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

// sparkline draws values (numbers over time) as an inline SVG chart.
export function sparkline(values, label, unit = "", mini = false) {
  const w = 300, hgt = mini ? 30 : 80, pad = 2;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? (w - 2 * pad) / (values.length - 1) : 0;
  const pts = values.map((v, i) => [pad + i * step, hgt - pad - (v / max) * (hgt - 4)]);
  const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  const last = values.length ? values[values.length - 1] : 0;
  return svg("svg", { class: mini ? "chart mini" : "chart", preserveAspectRatio: "none", viewBox: `0 0 ${w} ${hgt}`, role: "img", "aria-label": `${label}: now ${fmtRate(last)}${unit}, peak ${fmtRate(max)}${unit}` },
    svg("title", {}, label),
    values.length > 1 ? svg("path", { class: "area", d: `${d} L${pts[pts.length - 1][0]},${hgt} L${pad},${hgt} Z` }) : null,
    values.length > 1 ? svg("path", { class: "line", d }) : null);
}

export function fmtRate(v) {
  if (!Number.isFinite(v)) return "0";
  if (v >= 100 || Number.isInteger(v)) return Math.round(v).toLocaleString("en-US");
  return v.toFixed(1);
}

// lineDiff is a line diff by longest common subsequence:
// [{op: "same"|"add"|"del", text}].
export function lineDiff(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  if (x.length * y.length > 4e6) return [...x.map((t) => ({ op: "del", text: t })), ...y.map((t) => ({ op: "add", text: t }))];
  const n = x.length, m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push({ op: "same", text: x[i] }); i++; j++; }
    else if (L[i + 1][j] >= L[i][j + 1]) out.push({ op: "del", text: x[i++] });
    else out.push({ op: "add", text: y[j++] });
  }
  while (i < n) out.push({ op: "del", text: x[i++] });
  while (j < m) out.push({ op: "add", text: y[j++] });
  return out;
}

// pretty formats a schema's text: JSON indented, anything else as it is.
export function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; }
}
