// Consumer groups: the list, a group's members and lag per partition, and
// offset resets, previewed with a dry run before they are executed.
import { h, api, slot, guard, table, field, link, enc, num } from "../lib.js";

export async function groups() {
  const out = [];
  let token = "";
  for (let i = 0; i < 100; i++) {
    const r = await api("GET", "/v1/groups", undefined, { query: { pageSize: 1000, pageToken: token } });
    out.push(...(r.groups || []));
    token = r.nextPageToken;
    if (!token) break;
  }
  return h("div", {}, h("h1", {}, "Consumer groups"),
    table(["Group", "State", "Protocol type"], out.map((g) => [link(`#/groups/${enc(g.group)}`, g.group), g.state, g.protocolType || ""]),
      { caption: "Consumer groups", empty: "No consumer groups." }));
}

export async function group(ctx) {
  const name = ctx.args[0];
  const g = await api("GET", `/v1/groups/${enc(name)}`);
  const offsets = g.offsets || [];
  return h("div", {},
    h("p", { class: "crumbs" }, link("#/groups", "Consumer groups"), " / "),
    h("h1", {}, name),
    h("p", {}, `State ${g.state}, generation ${g.generation ?? "-"}, protocol ${g.protocol || "-"}; total lag ${num(g.totalLag ?? 0)} records.`),
    h("h2", {}, "Members"),
    table(["Member", "Instance", "Client", "Host"], (g.members || []).map((m) => [m.memberId, m.instanceId || "", m.clientId, m.clientHost]),
      { caption: "Members", empty: "No members: the group is empty, so its offsets can be reset." }),
    h("h2", {}, "Lag per partition"),
    table(["Topic", "Partition", "Committed", "End", "Lag"],
      offsets.map((o) => [link(`#/topics/${enc(o.topic)}`, o.topic), o.partition, num(o.committedOffset), num(o.endOffset), num(o.lag)]),
      { numeric: [1, 2, 3, 4], caption: "Lag per partition", empty: "No committed offsets." }),
    resetForm(name, [...new Set(offsets.map((o) => o.topic))]));
}

function resetForm(groupName, topics) {
  const out = slot({});
  const topic = h("select", { id: "rs-topic" }, h("option", { value: "" }, "every committed partition"), topics.map((t) => h("option", { value: t }, t)));
  const parts = h("input", { id: "rs-partitions", placeholder: "all, or 0,1,2" });
  const to = h("select", { id: "rs-to" }, ["earliest", "latest", "offset", "time", "shift"].map((v) => h("option", { value: v }, v)));
  const value = h("input", { id: "rs-value", placeholder: "offset, RFC 3339 time, or shift" });
  const body = () => {
    const b = { to: to.value };
    if (topic.value) {
      const t = { topic: topic.value };
      if (parts.value.trim()) t.partitions = parts.value.split(",").map((s) => Number(s.trim()));
      b.topics = [t];
    } else b.allTopics = true;
    if (to.value === "offset") b.offset = Number(value.value);
    if (to.value === "time") b.time = value.value.trim();
    if (to.value === "shift") b.shiftBy = Number(value.value);
    return b;
  };
  const run = (dryRun) => guard(out, async () => {
    if (!dryRun && !confirm(`Reset the offsets of ${groupName}? This commits new offsets.`)) return;
    const r = await api("POST", `/v1/groups/${enc(groupName)}/offsets:reset`, { ...body(), dryRun });
    out.set(h("p", { role: "status", class: r.executed ? "ok" : "note" }, r.executed ? "Offsets reset:" : "Dry run: nothing was committed. The reset would give:"),
      table(["Topic", "Partition", "Current", "New", "Lag after"], (r.partitions || []).map((p) => [p.topic, p.partition, num(p.current), num(p.new), num(p.lagAfter)]),
        { numeric: [1, 2, 3, 4], caption: "Reset" }));
  });
  return h("form", { "aria-labelledby": "rs-h", onsubmit: (e) => { e.preventDefault(); run(true); } },
    h("h2", { id: "rs-h" }, "Reset offsets"),
    h("div", { class: "row" }, field("Topic", topic), field("Partitions", parts), field("To", to), field("Value", value),
      h("button", { type: "submit" }, "Dry run"),
      h("button", { type: "button", class: "danger", onclick: () => run(false) }, "Reset")),
    out);
}
