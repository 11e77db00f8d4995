// Dead letters: a dead-letter topic's summary, its dead letters (with the
// failure metadata and the original event) and redrive, with a dry run.
import { h, api, slot, guard, table, field, json, link, enc, num } from "../lib.js";

export async function deadletters(ctx) {
  const r = await api("GET", "/v1/topics", undefined, { query: { pageSize: 1000 } });
  const names = (r.topics || []).map((t) => t.name);
  const guess = names.filter((n) => /dlq|dead/i.test(n));
  const topic = h("input", { id: "dl-topic", list: "dl-topics", required: true, value: ctx.query.get("topic") || guess[0] || "" });
  const reason = h("select", { id: "dl-reason" }, h("option", { value: "" }, "any"), h("option", { value: "failed" }, "failed"), h("option", { value: "malformed" }, "malformed"));
  const source = h("input", { id: "dl-source", placeholder: "any" });
  const errText = h("input", { id: "dl-error", placeholder: "text in the error" });
  const out = slot({});
  const filters = () => ({ reason: reason.value, sourceTopic: source.value.trim(), error: errText.value.trim() });

  const show = () => guard(out, async () => {
    const t = topic.value.trim();
    const [sum, list] = await Promise.all([
      api("GET", `/v1/topics/${enc(t)}/deadletters:summary`, undefined, { query: filters() }),
      api("GET", `/v1/topics/${enc(t)}/deadletters`, undefined, { query: { ...filters(), partition: 0, limit: 100 } }),
    ]);
    const breakdown = (title, b) => h("div", {}, h("h3", {}, title),
      table(["Name", "Records", "Last failure"], (b?.entries || []).map((e) => [e.name, num(e.records), e.lastFailure || ""]), { numeric: [1], caption: title }));
    out.set(
      h("h2", {}, "Summary"),
      h("p", {}, `${num(sum.matched ?? 0)} dead letters match`,
        sum.firstFailure ? `; failures from ${sum.firstFailure} to ${sum.lastFailure}` : "",
        sum.complete === false ? " (the scan stopped before the end: there may be more)" : "", "."),
      h("div", { class: "cards" }, breakdown("By source topic", sum.bySourceTopic), breakdown("By group", sum.byGroup), breakdown("By error", sum.byError)),
      h("h2", {}, "Dead letters (partition 0)"),
      table(["Offset", "Source", "Group", "Reason", "Attempts", "Error", "Original"],
        (list.deadLetters || []).map((d) => [num(d.offset),
          d.deadLetter ? `${d.deadLetter.sourceTopic}/${d.deadLetter.sourcePartition}@${d.deadLetter.sourceOffset}` : "",
          d.deadLetter?.group || "", d.deadLetter?.reason || "", num(d.deadLetter?.attempts), d.deadLetter?.error || "",
          h("details", {}, h("summary", {}, "JSON"), json(d.event || d.record))]),
        { numeric: [0, 4], caption: "Dead letters", empty: "No dead letters match." }),
      redriveForm(t, filters));
  });

  return h("div", {}, h("h1", {}, "Dead letters"),
    h("datalist", { id: "dl-topics" }, names.map((n) => h("option", { value: n }))),
    h("form", { "aria-label": "Choose dead letters", onsubmit: (e) => { e.preventDefault(); show(); } },
      h("div", { class: "row" }, field("Dead-letter topic", topic), field("Reason", reason), field("Source topic", source), field("Error contains", errText),
        h("button", { type: "submit" }, "Show"))),
    guess.length ? null : h("p", { class: "note" }, "No topic here is named like a dead-letter topic (dlq); type one."),
    out);
}

function redriveForm(topicName, filters) {
  const out = slot({});
  const to = h("input", { id: "rd-to", placeholder: "each record's original topic" });
  const max = h("input", { id: "rd-max", type: "number", min: 1, value: "10000" });
  const run = (dryRun) => guard(out, async () => {
    if (!dryRun && !confirm(`Redrive the matching dead letters of ${topicName}?`)) return;
    const body = { ...filters(), dryRun, maxRecords: Number(max.value) };
    for (const k of Object.keys(body)) if (body[k] === "") delete body[k];
    if (to.value.trim()) body.to = to.value.trim();
    const r = await api("POST", `/v1/topics/${enc(topicName)}/deadletters:redrive`, body);
    out.set(h("p", { role: "status", class: r.executed ? "ok" : "note" },
      r.executed ? `Redrove ${num(r.published)} of ${num(r.matched)} matching dead letters.` : `Dry run: ${num(r.matched)} dead letters would be redriven.`,
      r.more ? " There are more: run again." : ""),
    table(["Target", "Records", "Published"], (r.targets || []).map((t) => [link(`#/topics/${enc(t.topic)}`, t.topic), num(t.records), num(t.published)]), { numeric: [1, 2], caption: "Targets" }));
  });
  return h("form", { "aria-labelledby": "rd-h", onsubmit: (e) => { e.preventDefault(); run(true); } },
    h("h2", { id: "rd-h" }, "Redrive"),
    h("div", { class: "row" }, field("To topic", to), field("At most", max), h("button", { type: "submit" }, "Dry run"),
      h("button", { type: "button", class: "danger", onclick: () => run(false) }, "Redrive")),
    out);
}
