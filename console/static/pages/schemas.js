// Schemas: the registry's subjects, a subject's versions, the diff of two
// versions, and checking a new schema's compatibility before registering it.
import { h, api, slot, guard, table, field, link, enc, lineDiff, pretty } from "../lib.js";

const R = "/registry";

function typeSelect(id, value) {
  return h("select", { id }, ["AVRO", "JSON", "PROTOBUF"].map((t) => h("option", { value: t, selected: t === value }, t)));
}

export async function schemas() {
  const subjects = await api("GET", `${R}/subjects`);
  const cfg = await api("GET", `${R}/config`).catch(() => null);
  const out = slot({});
  const subj = h("input", { id: "sc-subject", required: true, placeholder: "orders-value" });
  const type = typeSelect("sc-type", "JSON");
  const text = h("textarea", { id: "sc-schema", class: "code", rows: 8 }, '{"type": "object", "properties": {"total": {"type": "number"}}}');
  return h("div", {}, h("h1", {}, "Schemas"),
    cfg ? h("p", {}, `Global compatibility: ${cfg.compatibilityLevel}.`) : null,
    table(["Subject"], subjects.map((s) => [link(`#/schemas/${enc(s)}`, s)]), { caption: "Subjects", empty: "No subjects registered." }),
    h("form", { "aria-labelledby": "sc-h", onsubmit: (e) => {
      e.preventDefault();
      guard(out, async () => {
        const r = await api("POST", `${R}/subjects/${enc(subj.value.trim())}/versions`, { schema: text.value, schemaType: type.value });
        location.hash = `#/schemas/${enc(subj.value.trim())}`;
        return r;
      });
    } },
    h("h2", { id: "sc-h" }, "Register a schema"),
    h("div", { class: "row" }, field("Subject", subj), field("Type", type)), field("Schema", text),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Register")), out));
}

export async function subject(ctx) {
  const s = ctx.args[0];
  const versions = await api("GET", `${R}/subjects/${enc(s)}/versions`);
  const cfg = await api("GET", `${R}/config/${enc(s)}`, undefined, { query: { defaultToGlobal: "true" } }).catch(() => null);
  const cache = new Map();
  const get = async (v) => {
    if (!cache.has(v)) cache.set(v, await api("GET", `${R}/subjects/${enc(s)}/versions/${v}`));
    return cache.get(v);
  };
  const latest = versions[versions.length - 1];
  const view = slot({});
  const pick = h("select", { id: "sc-version" }, versions.map((v) => h("option", { value: v, selected: v === latest }, `version ${v}`)));
  const showVersion = () => guard(view, async () => {
    const v = await get(pick.value);
    view.set(h("p", {}, `Version ${v.version}, id ${v.id}, ${v.schemaType || "AVRO"}.`), h("pre", { id: "sc-text" }, pretty(v.schema)));
  });
  pick.addEventListener("change", showVersion);
  await showVersion();

  const diffOut = slot({});
  const a = h("select", { id: "sc-diff-a" }, versions.map((v) => h("option", { value: v, selected: v === versions[Math.max(0, versions.length - 2)] }, String(v))));
  const b = h("select", { id: "sc-diff-b" }, versions.map((v) => h("option", { value: v, selected: v === latest }, String(v))));
  const diff = () => guard(diffOut, async () => {
    const [x, y] = await Promise.all([get(a.value), get(b.value)]);
    const d = lineDiff(pretty(x.schema), pretty(y.schema));
    diffOut.set(h("div", { class: "diff", id: "sc-diff", "aria-label": `Changes from version ${a.value} to ${b.value}` },
      d.map((l) => h("span", { class: l.op }, (l.op === "add" ? "+ " : l.op === "del" ? "- " : "  ") + l.text))));
  });

  const compatOut = slot({ role: "status" });
  const cur = await get(latest);
  const ctype = typeSelect("sc-compat-type", cur.schemaType || "AVRO");
  const ctext = h("textarea", { id: "sc-compat-schema", class: "code", rows: 8 }, pretty(cur.schema));
  return h("div", {},
    h("p", { class: "crumbs" }, link("#/schemas", "Schemas"), " / "),
    h("h1", {}, s),
    cfg ? h("p", {}, `Compatibility: ${cfg.compatibilityLevel}.`) : null,
    h("div", { class: "row" }, field("Version", pick)), view,
    h("form", { "aria-labelledby": "diff-h", onsubmit: (e) => { e.preventDefault(); diff(); } },
      h("h2", { id: "diff-h" }, "Diff"),
      h("div", { class: "row" }, field("From version", a), field("To version", b), h("button", { type: "submit" }, "Diff")), diffOut),
    h("form", { "aria-labelledby": "compat-h", onsubmit: (e) => {
      e.preventDefault();
      guard(compatOut, async () => {
        const r = await api("POST", `${R}/compatibility/subjects/${enc(s)}/versions`, { schema: ctext.value, schemaType: ctype.value }, { query: { verbose: "true" } });
        compatOut.set(h("p", { class: r.is_compatible ? "ok" : "error", id: "compat-result" }, r.is_compatible ? "Compatible: it can be registered." : "Not compatible."),
          (r.messages || []).length ? h("ul", {}, r.messages.map((m) => h("li", {}, m))) : null);
      });
    } },
    h("h2", { id: "compat-h" }, "Check a new schema's compatibility"),
    field("Type", ctype), field("Schema", ctext),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Check")), compatOut));
}
