// The event store: streams and their events, and the $all log.
import { h, api, slot, guard, table, field, json, link, enc, num } from "../lib.js";

function eventsTable(evs, withStream) {
  return table([...(withStream ? ["Stream"] : []), "Version", "Position", "Type", "Time", "Event"],
    evs.map((e) => [...(withStream ? [link(`#/store/${enc(e.stream)}`, e.stream)] : []), num(e.version), num(e.position), e.type, e.time || "",
      h("details", {}, h("summary", {}, "Data"), json({ id: e.id, data: e.data, metadata: e.metadata }))]),
    { numeric: withStream ? [1, 2] : [0, 1], caption: "Events", empty: "No events." });
}

export async function streams() {
  const r = await api("GET", "/v1/streams");
  const list = r.streams || [];
  const filter = h("input", { type: "search", id: "st-filter" });
  const shown = slot({});
  const draw = () => {
    const f = filter.value.toLowerCase();
    const hits = list.filter((s) => s.toLowerCase().includes(f));
    shown.set(table(["Stream"], hits.slice(0, 500).map((s) => [link(`#/store/${enc(s)}`, s)]), { caption: "Streams", empty: "No streams." }));
  };
  filter.addEventListener("input", draw);
  draw();
  const all = slot({});
  let next = 0;
  const readAll = () => guard(all, async () => {
    const a = await api("GET", "/v1/all", undefined, { query: { from: next, max: 100 } });
    next = a.next;
    all.set(eventsTable(a.events || [], true),
      a.isEnd ? h("p", { class: "note" }, "The end of $all.") : h("button", { type: "button", class: "secondary", onclick: readAll }, "Next page"));
  });
  await readAll();
  return h("div", {}, h("h1", {}, "Event store"),
    h("h2", {}, "Streams"), field("Filter streams", filter), shown,
    h("h2", {}, "All events ($all)"), all);
}

export async function stream(ctx) {
  const name = ctx.args[0];
  const out = slot({});
  const from = h("input", { id: "st-from", type: "number", min: 0, value: "0" });
  const back = h("input", { type: "checkbox", id: "st-back" });
  const read = () => guard(out, async () => {
    const q = { from: from.value, max: 200 };
    if (back.checked) q.backwards = "true";
    const r = await api("GET", `/v1/streams/${enc(name)}`, undefined, { query: q });
    out.set(eventsTable(r.events || [], false));
  });
  const info = await api("GET", `/v1/streams/${enc(name)}/info`).catch(() => null);
  await read();
  return h("div", {},
    h("p", { class: "crumbs" }, link("#/store", "Event store"), " / "),
    h("h1", {}, name),
    info ? h("details", {}, h("summary", {}, "Stream info"), json(info)) : null,
    h("form", { "aria-label": "Read the stream", onsubmit: (e) => { e.preventDefault(); read(); } },
      h("div", { class: "row" }, field("From version", from), h("label", { class: "inline" }, back, "Backwards"), h("button", { type: "submit" }, "Read"))),
    out);
}
