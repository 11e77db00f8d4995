// Overview: throughput and consumer lag over time, from /metrics polled every
// two seconds (one request whatever the number of topics), drawn as SVG.
import { h, api, slot, errorBox, parseMetrics, sparkline, table, link, enc, num, fmtRate } from "../lib.js";

const POLL_MS = 2000, SLOW_POLL_MS = 10000, KEEP = 90; // three minutes of history at the normal pace
const history = { at: [], produced: [], bytesIn: [], fetched: [], requests: [], lag: [], topicRate: new Map(), groupLag: new Map() };
let last = null;

function push(arr, v) {
  arr.push(v);
  if (arr.length > KEEP) arr.shift();
}

function sum(ms, name, by) {
  const out = by ? new Map() : 0;
  let total = 0;
  for (const m of ms) {
    if (m.name !== name) continue;
    if (by) out.set(m.labels[by], (out.get(m.labels[by]) || 0) + m.value);
    else total += m.value;
  }
  return by ? out : total;
}

// summarize reduces parsed /metrics to what the live stream sends.
function summarize(ms, now) {
  return {
    time: now,
    produced: sum(ms, "herald_broker_produce_records_total"),
    bytesIn: sum(ms, "herald_broker_produce_bytes_total"),
    fetched: sum(ms, "herald_broker_fetch_bytes_total"),
    requests: sum(ms, "herald_http_requests_total"),
    topics: Object.fromEntries(sum(ms, "herald_broker_partition_high_watermark", "topic")),
    groups: Object.fromEntries(sum(ms, "herald_group_lag", "group")),
  };
}

function sample(s) {
  const cur = {
    at: s.time,
    produced: s.produced, bytesIn: s.bytesIn, fetched: s.fetched, requests: s.requests,
    topicEnd: new Map(Object.entries(s.topics || {})),
    groupLag: new Map(Object.entries(s.groups || {})),
  };
  if (last) {
    const dt = Math.max(0.001, (cur.at - last.at) / 1000);
    const rate = (a, b) => Math.max(0, (a - b) / dt);
    push(history.produced, rate(cur.produced, last.produced));
    push(history.bytesIn, rate(cur.bytesIn, last.bytesIn));
    push(history.fetched, rate(cur.fetched, last.fetched));
    push(history.requests, rate(cur.requests, last.requests));
    for (const [t, end] of cur.topicEnd) {
      if (!history.topicRate.has(t)) history.topicRate.set(t, []);
      push(history.topicRate.get(t), rate(end, last.topicEnd.get(t) ?? end));
    }
    for (const t of history.topicRate.keys()) if (!cur.topicEnd.has(t)) history.topicRate.delete(t);
  }
  push(history.lag, [...cur.groupLag.values()].reduce((a, b) => a + b, 0));
  for (const [g, lag] of cur.groupLag) {
    if (!history.groupLag.has(g)) history.groupLag.set(g, []);
    push(history.groupLag.get(g), lag);
  }
  for (const g of history.groupLag.keys()) if (!cur.groupLag.has(g)) history.groupLag.delete(g);
  last = cur;
}

function card(title, values, unit, id) {
  const now = values.length ? values[values.length - 1] : 0;
  return h("section", { class: "card", "aria-labelledby": id },
    h("h2", { id }, title),
    h("div", { class: "big" }, `${fmtRate(now)}${unit}`),
    sparkline(values, title, unit),
    h("div", { class: "note" }, `peak ${fmtRate(Math.max(0, ...values))}${unit} in the chart (the last ${values.length} samples)`));
}

function top(map, n) {
  return [...map.entries()]
    .map(([k, v]) => [k, v, v.length ? v[v.length - 1] : 0, v.reduce((a, b) => Math.max(a, b), 0)])
    .sort((a, b) => b[3] - a[3] || a[0].localeCompare(b[0]))
    .slice(0, n);
}

export async function overview(ctx) {
  const body = slot({});
  const status = slot({ class: "note", role: "status" });
  const draw = () => {
    body.set(
      h("div", { class: "cards" },
        card("Events produced per second", history.produced, "/s", "c-prod"),
        card("Bytes in per second", history.bytesIn, " B/s", "c-bin"),
        card("Bytes fetched per second", history.fetched, " B/s", "c-fetch"),
        card("HTTP requests per second", history.requests, "/s", "c-http"),
        card("Consumer lag (records, all groups)", history.lag, "", "c-lag")),
      h("h2", {}, "Busiest topics"),
      table(["Topic", "Events/s now", "Peak", "Last three minutes"],
        top(history.topicRate, 10).map(([t, v, now, peak]) => [link(`#/topics/${enc(t)}`, t), fmtRate(now), fmtRate(peak), sparkline(v, `${t} events per second`, "/s", true)]),
        { numeric: [1, 2], empty: "No topics yet.", caption: "Busiest topics" }),
      h("h2", {}, "Consumer lag by group"),
      table(["Group", "Lag now (records)", "Peak", "Last three minutes"],
        top(history.groupLag, 10).map(([g, v, now, peak]) => [link(`#/groups/${enc(g)}`, g), num(now), num(peak), sparkline(v, `${g} lag`, "", true)]),
        { numeric: [1, 2], empty: "No group has committed offsets.", caption: "Consumer lag by group" }));
  };
  // Live: Server-Sent Events from /console/live (a summary every 2 s).
  // Without it (an older server, a proxy that buffers), poll /metrics:
  // every 2 s, every 10 s when it is over 1 MB (thousands of topics).
  let timer, left = false, every = POLL_MS, live = null;
  const got = (how) => {
    draw();
    status.set(`Updated ${new Date().toLocaleTimeString()}; ${how}.`);
  };
  const poll = async () => {
    try {
      const text = await api("GET", "/metrics", undefined, { raw: true, headers: { Accept: "text/plain" } });
      every = text.length > 1e6 ? SLOW_POLL_MS : POLL_MS;
      sample(summarize(parseMetrics(text), Date.now()));
      got(`polling /metrics every ${every / 1000} s`);
    } catch (e) {
      status.set(errorBox(e));
    }
    if (!left) timer = setTimeout(poll, every);
  };
  const opened = await new Promise((resolve) => {
    if (typeof EventSource !== "function") return resolve(false);
    live = new EventSource("/console/live");
    let first = true;
    live.addEventListener("sample", (m) => {
      try {
        sample(JSON.parse(m.data));
        got("live");
      } catch (e) {
        status.set(errorBox(e));
      }
      if (first) { first = false; resolve(true); }
    });
    live.addEventListener("error", () => {
      if (first) { live.close(); live = null; resolve(false); }
      else status.set(h("span", {}, "Live updates interrupted; reconnecting..."));
    });
  });
  if (!opened) await poll();
  ctx.onLeave(() => { left = true; clearTimeout(timer); if (live) live.close(); });
  return h("div", {}, h("h1", {}, "Overview"), status, body);
}
