// Sagas: the instances (state, current step, age), one instance's steps and
// timeline (commands, replies, compensations, with their times), and a form
// to start one. #/sagas?status=S&definition=D and #/sagas/ID. Both refresh
// while something may change; everything shown is text (lib.js h).
import { h, api, slot, guard, table, field, link, enc, num, parseJSON, ApiError } from "../lib.js";

const STATUSES = ["running", "compensating", "completed", "compensated", "parked"];
const ACTIVE = new Set(["running", "compensating"]);
const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// ago says how long ago t was, coarsely ("4 s", "3 min", "2 h", "5 d").
export function ago(t, now = Date.now()) {
  const ms = now - Date.parse(t);
  if (!Number.isFinite(ms)) return "";
  return span(Math.max(0, ms));
}

// span formats a duration in ms for people.
export function span(ms) {
  if (!Number.isFinite(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.floor(ms % 60000 / 1000)} s`;
  if (ms < 86400000) return `${Math.floor(ms / 3600000)} h ${Math.floor(ms % 3600000 / 60000)} min`;
  return `${Math.floor(ms / 86400000)} d ${Math.floor(ms % 86400000 / 3600000)} h`;
}

function badge(status) {
  return h("span", { class: `badge st-${STATUSES.includes(status) || /^[a-z]+$/.test(status) ? status : "other"}` }, status);
}

// notRunning is the page of a server without the saga engine.
function notRunning() {
  return h("div", {}, h("h1", {}, "Sagas"),
    h("p", { class: "note", role: "status" }, "This server does not run the sagas service (/v1/sagas is not found)."));
}

export async function sagas(ctx) {
  const status = ctx.query.get("status") || "";
  const definition = ctx.query.get("definition") || "";
  let defs;
  try {
    defs = (await api("GET", "/v1/sagas/definitions")).definitions || [];
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return notRunning();
    throw e;
  }
  const list = slot({ id: "saga-list" });
  const stamp = slot({ class: "note", role: "status" });
  const load = async () => {
    const r = await api("GET", "/v1/sagas", undefined, { query: { status, definition, limit: 1000 } });
    const rows = (r.sagas || []).slice().sort((a, b) => Date.parse(b.created) - Date.parse(a.created));
    const now = Date.now();
    list.set(table(["Saga", "Definition", "State", "Current step", "Age", "Last change", "Reason"],
      rows.map((x) => [link(`#/sagas/${enc(x.id)}`, x.id), `${x.definition} v${x.version}`, badge(x.status),
        x.currentStep || "", ago(x.created, now), `${ago(x.updated, now)} ago`, x.reason || ""]),
      { caption: "Saga instances", empty: status || definition ? "No saga matches the filter." : "No sagas yet." }));
    stamp.set(`${num(rows.length)} shown${rows.length === 1000 ? " (the first 1,000)" : ""}; refreshed ${new Date(now).toLocaleTimeString()}, every 3 s.`);
  };
  await load();
  const timer = setInterval(() => guard(list, load), 3000);
  ctx.onLeave(() => clearInterval(timer));

  const st = h("select", { id: "sg-status" }, h("option", { value: "" }, "any"),
    STATUSES.map((v) => h("option", { value: v, selected: v === status }, v)));
  const df = h("select", { id: "sg-def" }, h("option", { value: "" }, "any"),
    [...new Set(defs.map((d) => d.name))].map((n) => h("option", { value: n, selected: n === definition }, n)));
  const filter = h("form", { "aria-label": "Filter sagas", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (st.value) q.set("status", st.value);
    if (df.value) q.set("definition", df.value);
    location.hash = `#/sagas${q.size ? "?" + q : ""}`;
  } }, h("div", { class: "row" }, field("State", st), field("Definition", df), h("button", { type: "submit" }, "Filter")));

  return h("div", {}, h("h1", {}, "Sagas"), filter, stamp, list, startForm(defs), definitionsList(defs));
}

function startForm(defs) {
  const out = slot({});
  const names = [...new Set(defs.map((d) => d.name))];
  const def = h("select", { id: "sg-start-def" }, names.map((n) => h("option", { value: n }, n)));
  const id = h("input", { id: "sg-start-id", placeholder: "order-42" });
  const input = h("textarea", { id: "sg-start-input", class: "code", placeholder: '{"orderId": "42"}' });
  const submit = (e) => {
    e.preventDefault();
    guard(out, async () => {
      const body = { definition: def.value, id: id.value.trim() };
      if (input.value.trim()) body.input = parseJSON(input.value, "input");
      const r = await api("POST", "/v1/sagas", body);
      out.set(h("p", { role: "status", class: "ok" }, "Started ", link(`#/sagas/${enc(r.id)}`, r.id), "."));
    });
  };
  return h("form", { "aria-labelledby": "sg-start-h", onsubmit: submit },
    h("h2", { id: "sg-start-h" }, "Start a saga"),
    names.length === 0 ? h("p", { class: "note" }, "No definitions are registered (POST /v1/sagas/definitions).") : null,
    h("div", { class: "row" }, field("Saga definition", def), field("Saga id", id)),
    field("Input (JSON, optional)", input),
    h("div", { class: "row" }, h("button", { type: "submit", disabled: names.length === 0 }, "Start")),
    out);
}

function definitionsList(defs) {
  return h("div", {}, h("h2", {}, "Definitions"),
    table(["Name", "Version", "Steps"], defs.map((d) => [d.name, String(d.version ?? ""),
      (d.steps || []).map((st) => `${st.name} (${st.command?.type} → ${st.command?.topic})`).join(", ")]),
    { caption: "Saga definitions", empty: "None." }));
}

// kind sorts a history entry for the timeline's marks.
export function kind(event) {
  if (/^compensation|^compensat/.test(event)) return "undo";
  if (event === "command sent") return "command";
  if (event === "succeeded") return "reply";
  if (/failed|timed out|parked/.test(event)) return "bad";
  return "state";
}

export async function saga(ctx) {
  const id = ctx.args[0];
  const body = slot({});
  let last = null;
  const load = async () => {
    let x;
    try {
      x = await api("GET", `/v1/sagas/${enc(id)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404 && last === null) {
        // Just started: the engine has not read the request yet.
        body.set(h("p", { class: "note", role: "status" }, "Not found yet; a saga appears once the engine has read its start request."), errorLine(e));
        return true;
      }
      throw e;
    }
    last = x;
    body.set(instanceView(x));
    return ACTIVE.has(x.status);
  };
  const more = await load();
  let timer = null;
  if (more) {
    timer = setInterval(() => guard(body, async () => {
      if (!(await load())) clearInterval(timer);
    }), 1000);
    ctx.onLeave(() => clearInterval(timer));
  }
  return h("div", {}, h("p", { class: "crumbs" }, link("#/sagas", "Sagas"), " / "), h("h1", {}, id), body);
}

function errorLine(e) {
  return h("p", { class: "note" }, `${e.code}: ${e.message}`);
}

function instanceView(x) {
  const created = Date.parse(x.created);
  const ended = ACTIVE.has(x.status) ? Date.now() : Date.parse(x.updated);
  const steps = x.steps || [];
  const history = x.history || [];
  return h("div", {},
    h("p", { id: "saga-state" }, badge(x.status), ` ${x.definition} v${x.version}`,
      x.currentStep ? `; waiting on step ${x.currentStep}` : "",
      `; started ${new Date(created).toLocaleString()}, ${ACTIVE.has(x.status) ? "running for" : "took"} ${span(ended - created)}`,
      x.reason ? `; reason: ${x.reason}` : "", "."),
    h("h2", {}, "Steps"),
    table(["Step", "State", "Attempts", "Compensation attempts", "Started", "Ended", "Took", "Error"],
      steps.map((st) => [st.name, badge(st.status), String(st.attempts ?? 0), String(st.compAttempts ?? 0),
        st.started ? `+${span(Date.parse(st.started) - created)}` : "", st.ended ? `+${span(Date.parse(st.ended) - created)}` : "",
        st.started && st.ended ? span(Date.parse(st.ended) - Date.parse(st.started)) : "", st.error || ""]),
      { caption: "Steps", numeric: [2, 3] }),
    gantt(steps, created, ended),
    h("h2", {}, "Timeline"),
    x.historyDropped ? h("p", { class: "note" }, `${num(x.historyDropped)} older entries were dropped.`) : null,
    h("ol", { class: "timeline", "aria-label": "Timeline" }, history.map((e, i) => {
      const at = Date.parse(e.at);
      const gap = i ? at - Date.parse(history[i - 1].at) : 0;
      return h("li", { class: `tl-${kind(e.event)}` },
        h("time", { datetime: e.at, title: e.at }, `+${span(at - created)}`),
        h("span", { class: "tl-event" }, e.event),
        e.step ? h("span", { class: "tl-step" }, e.step) : null,
        e.detail ? h("span", { class: "tl-detail" }, e.detail) : null,
        i ? h("span", { class: "note" }, ` (${span(gap)} after the previous)`) : null);
    })),
    x.input !== undefined ? h("details", {}, h("summary", {}, "Input"), h("pre", {}, JSON.stringify(x.input, null, 2))) : null);
}

// gantt draws each step's time from start to end (or now) on one axis.
function gantt(steps, created, ended) {
  const rows = steps.filter((st) => st.started);
  if (rows.length === 0) return null;
  const total = Math.max(1, ended - created);
  const w = 640, rowH = 22, left = 130;
  const root = s("svg", { class: "gantt", width: w, height: rows.length * rowH + 20, viewBox: `0 0 ${w} ${rows.length * rowH + 20}`,
    role: "img", "aria-label": `Steps over time: ${rows.map((st) => `${st.name} ${st.status}`).join(", ")}` });
  rows.forEach((st, i) => {
    const a = Date.parse(st.started) - created, b = (st.ended ? Date.parse(st.ended) : ended) - created;
    const x = left + (a / total) * (w - left - 10), bw = Math.max(2, ((b - a) / total) * (w - left - 10));
    const g = s("g", { class: `bar st-${/^[a-z]+$/.test(st.status) ? st.status : "other"}` });
    g.append(s("text", { x: 0, y: i * rowH + 15 }, st.name), s("rect", { x, y: i * rowH + 4, width: bw, height: rowH - 8, rx: 3 }),
      s("title", {}, `${st.name}: ${st.status}, ${span(b - a)}`));
    root.append(g);
  });
  root.append(s("text", { x: left, y: rows.length * rowH + 15, class: "axis" }, "0"),
    s("text", { x: w - 10, y: rows.length * rowH + 15, class: "axis", "text-anchor": "end" }, span(total)));
  return h("div", { class: "graph-wrap" }, root);
}
