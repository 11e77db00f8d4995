// Rules: the list, a rule's definition (edited as JSON and saved with PUT),
// enable and disable, and testing a pattern against an event.
import { h, api, slot, guard, table, field, json, link, enc, parseJSON } from "../lib.js";

const example = {
  name: "big-orders", bus: "default",
  event_pattern: { source: ["/shop"], data: { total: [{ numeric: [">", 100] }] } },
  targets: [{ id: "audit", topic: "big-orders" }],
};

export async function rules() {
  const r = await api("GET", "/v1/rules");
  const list = r.rules || [];
  const out = slot({});
  const def = h("textarea", { id: "rule-new", class: "code", rows: 10 }, JSON.stringify(example, null, 2));
  return h("div", {}, h("h1", {}, "Rules"),
    table(["Rule", "Bus", "State", "Targets"], list.map((x) => [
      link(`#/rules/${enc(x.name)}?bus=${enc(x.bus || "default")}`, x.name), x.bus || "default", x.state || "", (x.targets || []).map((t) => t.id).join(", ")]),
    { caption: "Rules", empty: "No rules." }),
    h("form", { "aria-labelledby": "rule-new-h", onsubmit: (e) => {
      e.preventDefault();
      guard(out, async () => {
        const body = parseJSON(def.value, "rule");
        await api("POST", "/v1/rules", body);
        location.hash = `#/rules/${enc(body.name)}?bus=${enc(body.bus || "default")}`;
      });
    } },
    h("h2", { id: "rule-new-h" }, "Create a rule"), field("Definition (JSON)", def),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Create")), out),
    tester());
}

function tester(pattern) {
  const out = slot({ role: "status" });
  const p = h("textarea", { id: "test-pattern", class: "code", rows: 6 }, JSON.stringify(pattern || example.event_pattern, null, 2));
  const ev = h("textarea", { id: "test-event", class: "code", rows: 6 },
    JSON.stringify({ specversion: "1.0", id: "1", source: "/shop", type: "order.placed", data: { total: 120 } }, null, 2));
  return h("form", { "aria-labelledby": "test-h", onsubmit: (e) => {
    e.preventDefault();
    guard(out, async () => {
      const r = await api("POST", "/v1/rules:test", { pattern: parseJSON(p.value, "pattern"), event: parseJSON(ev.value, "event") });
      out.set(h("p", { class: r.match ? "ok" : "note", id: "test-result" }, r.match ? "The pattern matches the event." : "The pattern does not match the event."),
        r.reasons && r.reasons.length ? h("ul", {}, r.reasons.map((x) => h("li", {}, typeof x === "string" ? x : JSON.stringify(x)))) : null);
    });
  } },
  h("h2", { id: "test-h" }, "Test a pattern against an event"),
  h("div", { class: "cards" }, field("Pattern", p), field("Event (CloudEvent JSON)", ev)),
  h("div", { class: "row" }, h("button", { type: "submit" }, "Test")), out);
}

export async function rule(ctx) {
  const name = ctx.args[0], bus = ctx.query.get("bus") || "default";
  const path = `/v1/rules/${enc(name)}`;
  const r = await api("GET", path, undefined, { query: { bus } });
  const out = slot({});
  const def = { ...r };
  for (const k of ["metrics", "created", "updated", "arn"]) delete def[k];
  const text = h("textarea", { id: "rule-def", class: "code", rows: 16 }, JSON.stringify(def, null, 2));
  const act = (what) => guard(out, async () => {
    await api("POST", `${path}/${what}`, undefined, { query: { bus } });
    location.reload();
  });
  return h("div", {},
    h("p", { class: "crumbs" }, link("#/rules", "Rules"), " / "),
    h("h1", {}, name),
    h("p", {}, `Bus ${bus}, ${r.state || ""}.`),
    r.metrics ? h("details", { open: true }, h("summary", {}, "Metrics"), json(r.metrics)) : null,
    h("form", { "aria-label": "Edit the rule", onsubmit: (e) => {
      e.preventDefault();
      guard(out, async () => {
        await api("PUT", path, parseJSON(text.value, "rule"), { query: { bus } });
        out.set(h("p", { class: "ok", role: "status" }, "Saved."));
      });
    } },
    field("Definition (JSON)", text),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "secondary", onclick: () => act(r.state === "DISABLED" ? "enable" : "disable") }, r.state === "DISABLED" ? "Enable" : "Disable"),
      h("button", { type: "button", class: "danger", onclick: () => guard(out, async () => {
        if (!confirm(`Delete rule ${name}?`)) return;
        await api("DELETE", path, undefined, { query: { bus } });
        location.hash = "#/rules";
      }) }, "Delete")),
    out),
    tester(r.event_pattern));
}
