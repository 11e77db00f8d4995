// Topics: the list (filtered in the page, fine with 10,000 topics), creating
// one, and a topic's partitions, configs, events (by offset or time, with a
// filter) and a form to produce a test event.
import { h, api, slot, guard, errorBox, table, field, json, link, enc, num, bytes, duration, parseJSON } from "../lib.js";

const SHOW = 500; // rows drawn at once; the filter narrows the rest

async function allTopics(internal) {
  const out = [];
  let token = "";
  for (let i = 0; i < 100; i++) {
    const r = await api("GET", "/v1/topics", undefined, { query: { pageSize: 1000, pageToken: token, internal: internal ? "true" : "" } });
    out.push(...(r.topics || []));
    token = r.nextPageToken;
    if (!token) break;
  }
  return out;
}

export async function topics() {
  const list = slot({});
  const msg = slot({});
  const filter = h("input", { type: "search", id: "topic-filter", placeholder: "part of a name" });
  const internal = h("input", { type: "checkbox", id: "topic-internal" });
  let all = [];
  const draw = () => {
    const f = filter.value.trim().toLowerCase();
    const hits = all.filter((t) => t.name.toLowerCase().includes(f));
    list.set(
      h("p", { class: "note" }, hits.length > SHOW ? `Showing ${SHOW} of ${num(hits.length)} topics; narrow the filter.` : `${num(hits.length)} of ${num(all.length)} topics.`),
      table(["Topic", "Partitions", ""], hits.slice(0, SHOW).map((t) => [
        link(`#/topics/${enc(t.name)}`, t.name), num(t.partitions), t.internal ? h("span", { class: "badge" }, "internal") : ""]),
      { numeric: [1], caption: "Topics", empty: "No topics match." }));
  };
  const load = () => guard(list, async () => { all = await allTopics(internal.checked); draw(); });
  filter.addEventListener("input", draw);
  internal.addEventListener("change", load);

  const name = h("input", { name: "name", id: "new-topic-name", required: true, pattern: "[a-zA-Z0-9._\\-]+", maxlength: 249 });
  const parts = h("input", { name: "partitions", id: "new-topic-partitions", type: "number", min: 1, value: "1" });
  const retention = h("input", { name: "retention", id: "new-topic-retention", placeholder: "default", inputmode: "numeric" });
  const create = h("form", { "aria-labelledby": "create-h", onsubmit: async (e) => {
    e.preventDefault();
    msg.set();
    const body = { name: name.value.trim(), partitions: Number(parts.value) };
    if (retention.value.trim()) body.configs = { "retention.ms": retention.value.trim() };
    await guard(msg, async () => {
      await api("POST", "/v1/topics", body);
      msg.set(h("p", { class: "ok", role: "status" }, "Created ", link(`#/topics/${enc(body.name)}`, body.name), "."));
      name.value = "";
      await load();
    });
  } },
  h("h2", { id: "create-h" }, "Create a topic"),
  h("div", { class: "row" }, field("Name", name), field("Partitions", parts), field("Retention (ms)", retention), h("button", { type: "submit" }, "Create")),
  msg);

  await load();
  return h("div", {}, h("h1", {}, "Topics"), create,
    h("div", { class: "row" }, field("Filter topics", filter), h("label", { class: "inline" }, internal, "Show internal topics")),
    list);
}

export async function topic(ctx) {
  const name = ctx.args[0];
  const t = await api("GET", `/v1/topics/${enc(name)}`);
  const cfg = Object.fromEntries((t.configs || []).map((c) => [c.name, c.value]));
  const parts = t.partitions || [];
  const total = parts.reduce((a, p) => a + (p.endOffset - p.startOffset), 0);
  const size = parts.reduce((a, p) => a + p.sizeBytes, 0);
  return h("div", {},
    h("p", { class: "crumbs" }, link("#/topics", "Topics"), " / "),
    h("h1", {}, name),
    h("p", {}, `${num(parts.length)} partitions, ${num(total)} records, ${bytes(size)}; retention ${duration(cfg["retention.ms"])}`,
      cfg["retention.bytes"] && cfg["retention.bytes"] !== "-1" ? ` or ${bytes(Number(cfg["retention.bytes"]))} a partition` : "",
      `; cleanup ${cfg["cleanup.policy"] || "delete"}.`),
    h("h2", {}, "Partitions"),
    table(["Partition", "Start offset", "End offset", "Records", "Size"],
      parts.map((p) => [p.partition, num(p.startOffset), num(p.endOffset), num(p.endOffset - p.startOffset), bytes(p.sizeBytes)]),
      { numeric: [0, 1, 2, 3, 4], caption: "Partitions" }),
    settingsForm(name, cfg["retention.ms"], parts.length),
    produceForm(name),
    browser(name, parts.length),
    h("details", {}, h("summary", {}, "Configs"),
      table(["Name", "Value", "Source"], (t.configs || []).map((c) => [c.name, c.value, c.source + (c.readOnly ? " (read-only)" : "")]), { caption: "Configs" })));
}

// settingsForm changes retention and the partition count (PATCH, checked
// first with validateOnly) and deletes the topic.
function settingsForm(topicName, retentionMs, nparts) {
  const out = slot({});
  const retention = h("input", { id: "set-retention", inputmode: "numeric", value: retentionMs || "" });
  const partitions = h("input", { id: "set-partitions", type: "number", min: nparts, value: String(nparts) });
  return h("form", { "aria-labelledby": "set-h", onsubmit: (e) => {
    e.preventDefault();
    guard(out, async () => {
      const body = { configs: {} };
      if (retention.value.trim() !== (retentionMs || "")) body.configs["retention.ms"] = retention.value.trim() || null;
      if (Number(partitions.value) !== nparts) body.partitions = Number(partitions.value);
      await api("PATCH", `/v1/topics/${enc(topicName)}`, { ...body, validateOnly: true });
      await api("PATCH", `/v1/topics/${enc(topicName)}`, body);
      location.reload();
    });
  } },
  h("h2", { id: "set-h" }, "Settings"),
  h("div", { class: "row" }, field("Retention (ms; empty: the default)", retention), field("Partitions (can only grow)", partitions),
    h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", class: "danger", onclick: () => guard(out, async () => {
      if (!confirm(`Delete topic ${topicName} and all its events?`)) return;
      await api("DELETE", `/v1/topics/${enc(topicName)}`);
      location.hash = "#/topics";
    }) }, "Delete topic")),
  out);
}

function produceForm(topicName) {
  const out = slot({});
  const source = h("input", { id: "ev-source", value: "/console", required: true });
  const type = h("input", { id: "ev-type", value: "console.test", required: true });
  const subject = h("input", { id: "ev-subject" });
  const key = h("input", { id: "ev-key", placeholder: "none: round-robin" });
  const data = h("textarea", { id: "ev-data", class: "code", rows: 4 }, '{"hello": "world"}');
  return h("form", { "aria-labelledby": "produce-h", onsubmit: async (e) => {
    e.preventDefault();
    out.set();
    await guard(out, async () => {
      const ev = { specversion: "1.0", source: source.value, type: type.value };
      if (subject.value) ev.subject = subject.value;
      if (key.value) ev.partitionkey = key.value;
      const text = data.value.trim();
      if (text) {
        try {
          ev.data = JSON.parse(text);
        } catch {
          ev.data = data.value;
          ev.datacontenttype = "text/plain";
        }
      }
      const r = await api("POST", `/v1/topics/${enc(topicName)}/events`, ev, { headers: { "Content-Type": "application/cloudevents+json" } });
      const res = r.results[0];
      out.set(h("p", { class: "ok", role: "status", id: "produced" },
        `Published event ${res.id} at partition ${res.partition}, offset ${res.offset}${res.duplicate ? " (a duplicate)" : ""}.`));
    });
  } },
  h("h2", { id: "produce-h" }, "Produce a test event"),
  h("div", { class: "row" }, field("Source", source), field("Type", type), field("Subject", subject), field("Partition key", key)),
  field("Data (JSON, or text)", data),
  h("div", { class: "row" }, h("button", { type: "submit" }, "Publish")),
  out);
}

function eventsTable(evs) {
  const rows = evs.map((e) => {
    const ce = e.event;
    const what = ce ? [link(`#/lineage/event/${enc(ce.id)}`, ce.id), ce.type, ce.source, ce.subject || ""] : [e.record?.key ?? "", "(raw record)", "", ""];
    return [e.partition, num(e.offset), e.timestamp, ...what, h("details", {}, h("summary", {}, "JSON"), json(ce || e.record))];
  });
  return table(["Partition", "Offset", "Time", "ID / key", "Type", "Source", "Subject", "Event"], rows,
    { numeric: [0, 1], caption: "Events", empty: "No events here." });
}

function browser(topicName, nparts) {
  const out = slot({});
  const part = h("select", { id: "br-partition" }, h("option", { value: "" }, "all"),
    Array.from({ length: nparts }, (_, i) => h("option", { value: String(i) }, String(i))));
  const from = h("select", { id: "br-from" }, ["earliest", "latest", "offset", "time"].map((v) => h("option", { value: v }, v)));
  const at = h("input", { id: "br-at", placeholder: "offset, or 2026-11-26T08:00:00Z" });
  const limit = h("input", { id: "br-limit", type: "number", min: 1, max: 1000, value: "50" });
  const filter = h("input", { id: "br-filter", type: "search", placeholder: "text in the event" });
  let next = null;
  const matching = (events) => {
    const f = filter.value.trim().toLowerCase();
    return (events || []).filter((e) => !f || JSON.stringify(e).toLowerCase().includes(f));
  };

  // Follow: long-polls from where the last read ended (or the end of the
  // topic) and shows events as they are written, newest first.
  let following = false, generation = 0;
  const followBtn = h("button", { type: "button", class: "secondary", id: "br-follow", "aria-pressed": "false" }, "Follow live");
  const follow = async () => {
    const mine = ++generation;
    const live = [];
    if (!next) {
      const q = { limit: 1, offset: "latest" };
      if (part.value !== "") q.partition = part.value;
      const r = await api("GET", `/v1/topics/${enc(topicName)}/events`, undefined, { query: q });
      next = r.nextPageToken ? { pageToken: r.nextPageToken } : { offset: r.nextOffset };
    }
    out.set(h("p", { class: "note", role: "status" }, "Following: waiting for new events..."));
    while (following && mine === generation && document.contains(out)) {
      const q = { limit: 100, wait: "10s", ...(next.pageToken ? { pageToken: next.pageToken } : { offset: next.offset }) };
      if (part.value !== "") q.partition = part.value;
      const r = await api("GET", `/v1/topics/${enc(topicName)}/events`, undefined, { query: q });
      if (!following || mine !== generation) break;
      next = r.nextPageToken ? { pageToken: r.nextPageToken } : r.nextOffset !== undefined ? { offset: r.nextOffset } : next;
      const evs = matching(r.events);
      if (evs.length === 0) continue;
      live.unshift(...evs.reverse());
      live.length = Math.min(live.length, 500);
      out.set(h("p", { class: "note", role: "status" }, `Following: ${live.length} new events, newest first.`), eventsTable(live));
    }
  };
  followBtn.addEventListener("click", () => {
    following = !following;
    followBtn.textContent = following ? "Stop following" : "Follow live";
    followBtn.setAttribute("aria-pressed", String(following));
    if (following) {
      const mine = generation + 1;
      guard(out, follow).finally(() => {
        if (mine !== generation) return; // a newer follow runs
        following = false;
        followBtn.textContent = "Follow live";
        followBtn.setAttribute("aria-pressed", "false");
      });
    }
  });

  const read = async (cont) => {
    const q = { limit: limit.value };
    if (part.value !== "") q.partition = part.value;
    if (cont) {
      if (next.pageToken) q.pageToken = next.pageToken;
      else q.offset = next.offset;
    } else if (from.value === "time") {
      q.time = at.value.trim();
    } else if (from.value === "offset") {
      if (part.value === "") throw new Error("reading from an offset needs a partition: choose one");
      q.offset = at.value.trim();
    } else q.offset = from.value;
    const r = await api("GET", `/v1/topics/${enc(topicName)}/events`, undefined, { query: q });
    next = r.nextPageToken ? { pageToken: r.nextPageToken } : r.nextOffset !== undefined ? { offset: r.nextOffset } : null;
    const evs = matching(r.events);
    out.set(
      h("p", { class: "note", role: "status" }, `${evs.length} shown of ${(r.events || []).length} read`,
        r.highWatermark !== undefined ? `; high watermark ${num(r.highWatermark)}` : "", "."),
      eventsTable(evs),
      next ? h("button", { type: "button", class: "secondary", onclick: () => guard(out, () => read(true)) }, "Next page") : null);
  };
  return h("form", { "aria-labelledby": "browse-h", onsubmit: (e) => { e.preventDefault(); guard(out, () => read(false)); } },
    h("h2", { id: "browse-h" }, "Events"),
    h("div", { class: "row" }, field("Partition", part), field("From", from), field("Offset or time", at), field("Limit", limit),
      field("Filter", filter), h("button", { type: "submit", id: "br-read" }, "Read"), followBtn),
    out);
}
