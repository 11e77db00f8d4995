// Lineage: a flow (every event of a correlation id) or one event's ancestors
// and descendants, drawn as a graph in SVG and listed with the time between
// steps. #/lineage/flow/ID and #/lineage/event/ID.
import { h, api, slot, guard, table, field, link, enc, num } from "../lib.js";

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// graph lays nodes out in columns by causation depth (roots on the left)
// and draws the edges "cause -> effect".
export function graph(nodes, edges, focus) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const parents = new Map();
  for (const e of edges) if (byId.has(e.from) && byId.has(e.to)) parents.set(e.to, e.from);
  const depth = new Map();
  const depthOf = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    const p = parents.get(id);
    const d = p && !seen.has(p) ? depthOf(p, seen.add(id)) + 1 : 0;
    depth.set(id, d);
    return d;
  };
  const cols = [];
  for (const n of nodes) {
    const d = depthOf(n.id);
    (cols[d] ||= []).push(n);
  }
  const W = 190, H = 46, GX = 50, GY = 14;
  const pos = new Map();
  cols.forEach((col, x) => col.forEach((n, y) => pos.set(n.id, [x * (W + GX) + 4, y * (H + GY) + 4])));
  const width = cols.length * (W + GX), height = Math.max(...cols.map((c) => c.length)) * (H + GY) + 8;
  const root = s("svg", { class: "graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `Graph of ${nodes.length} events and ${edges.length} causation links` });
  const defs = s("defs", {});
  const marker = s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(s("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }));
  defs.append(marker);
  root.append(defs);
  for (const e of edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a[0] + W, y1 = a[1] + H / 2, x2 = b[0], y2 = b[1] + H / 2, mx = (x1 + x2) / 2;
    root.append(s("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
  }
  for (const n of nodes) {
    const [x, y] = pos.get(n.id);
    const a = s("a", { href: `#/lineage/event/${enc(n.id)}`, class: `node${n.id === focus ? " focus" : ""}${n.missing ? " missing" : ""}` });
    a.append(s("title", {}, `${n.type || "(not indexed)"} ${n.id}${n.topic ? ` in ${n.topic}/${n.partition}@${n.offset}` : ""}`));
    a.append(s("rect", { x, y, width: W, height: H, rx: 5 }));
    a.append(s("text", { x: x + 8, y: y + 18, class: "type" }, clip(n.type || "(not indexed)", 26)));
    a.append(s("text", { x: x + 8, y: y + 35, class: "id" }, clip(n.id, 30)));
    root.append(a);
  }
  return h("div", { class: "graph-wrap" }, root);
}

function clip(t, n) {
  t = String(t ?? "");
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

function where(e) {
  return e.topic ? link(`#/topics/${enc(e.topic)}`, `${e.topic}/${e.partition}@${num(e.offset)}`) : "";
}

export async function lineage(ctx) {
  const [kind, id] = ctx.args;
  const out = slot({});
  const corr = h("input", { id: "lin-flow", value: kind === "flow" ? id : "", placeholder: "a correlation id" });
  const ev = h("input", { id: "lin-event", value: kind === "event" ? id : "", placeholder: "an event id" });
  if (kind === "flow" && id) {
    await guard(out, async () => {
      const f = await api("GET", `/v1/flows/${enc(id)}`);
      out.set(h("h2", {}, `Flow ${id}`),
        h("p", {}, `${f.events.length} events over ${num(f.durationMs)} ms${f.truncated ? " (cut at the limit)" : ""}.`),
        graph(f.events, f.edges),
        table(["#", "Event", "Type", "Source", "Where", "Time", "Since start", "Since previous"],
          f.events.map((e, i) => [i + 1, link(`#/lineage/event/${enc(e.id)}`, e.id), e.type, e.source, where(e), e.time,
            `${num(e.sinceStartMs)} ms`, `${num(e.sincePreviousMs)} ms`]),
          { numeric: [0, 6, 7], caption: "Steps of the flow" }));
    });
  } else if (kind === "event" && id) {
    await guard(out, async () => {
      const l = await api("GET", `/v1/lineage/${enc(id)}`);
      const nodes = [...l.ancestors, l.event, ...l.descendants];
      const corrId = l.event.correlationId || (l.descendants.length ? l.event.id : "");
      out.set(h("h2", {}, `Event ${id}`),
        h("p", {}, `${l.ancestors.length} ancestors, ${l.descendants.length} descendants${l.truncated ? " (cut at the limit)" : ""}.`,
          corrId ? [" ", link(`#/lineage/flow/${enc(corrId)}`, `See its whole flow (${corrId})`), "."] : ""),
        graph(nodes, l.edges, id),
        table(["Depth", "Event", "Type", "Source", "Where", "Time"],
          nodes.map((n) => [n.depth, link(`#/lineage/event/${enc(n.id)}`, n.id), n.missing ? "(not indexed)" : n.type, n.source || "", where(n), n.time || ""]),
          { numeric: [0], caption: "Ancestors and descendants" }));
    });
  }
  return h("div", {}, h("h1", {}, "Lineage"),
    h("div", { class: "cards" },
      h("form", { "aria-label": "Show a flow", onsubmit: (e) => { e.preventDefault(); location.hash = `#/lineage/flow/${enc(corr.value.trim())}`; } },
        h("div", { class: "row" }, field("Correlation id", corr), h("button", { type: "submit" }, "Show flow"))),
      h("form", { "aria-label": "Show an event's lineage", onsubmit: (e) => { e.preventDefault(); location.hash = `#/lineage/event/${enc(ev.value.trim())}`; } },
        h("div", { class: "row" }, field("Event id", ev), h("button", { type: "submit" }, "Show lineage")))),
    out);
}
