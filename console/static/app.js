// The console's router: #/section/name... picks a page; each page renders
// into <main> and may register cleanups (timers) run when the user leaves.
import { h, errorBox } from "./lib.js";
import { overview } from "./pages/overview.js";
import { topics, topic } from "./pages/topics.js";
import { groups, group } from "./pages/groups.js";
import { deadletters } from "./pages/deadletters.js";
import { rules, rule } from "./pages/rules.js";
import { schemas, subject } from "./pages/schemas.js";
import { streams, stream } from "./pages/store.js";
import { optional } from "./pages/optional.js";
import { lineage } from "./pages/lineage.js";
import { sagas, saga } from "./pages/sagas.js";

const routes = {
  overview: [overview],
  topics: [topics, topic],
  groups: [groups, group],
  deadletters: [deadletters],
  rules: [rules, rule],
  schemas: [schemas, subject],
  store: [streams, stream],
  lineage: [lineage],
  subscriptions: [(ctx) => optional(ctx, "Subscriptions", "/v1/subscriptions", "subscriptions")],
  sagas: [sagas, saga],
};

let cleanups = [];

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map((s) => {
    try { return decodeURIComponent(s); } catch { return s; }
  });
  return { section: parts[0] || "overview", args: parts.slice(1), query: new URLSearchParams(qs) };
}

async function render() {
  for (const c of cleanups) c();
  cleanups = [];
  const main = document.getElementById("main");
  const { section, args, query } = parseHash();
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === `#/${section}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const ctx = { args, query, onLeave: (fn) => cleanups.push(fn) };
  const page = routes[section];
  main.replaceChildren();
  if (!page) {
    main.append(h("h1", {}, "Not found"), errorBox(new Error(`no console page "${section}"`)));
    return;
  }
  const fn = args.length && page[1] ? page[1] : page[0];
  try {
    const node = await fn(ctx);
    main.replaceChildren(node);
  } catch (e) {
    main.replaceChildren(h("h1", {}, section), errorBox(e));
  }
  document.title = `${main.querySelector("h1")?.textContent || "Herald"} · Herald console`;
}

window.addEventListener("hashchange", () => {
  render().then(() => document.getElementById("main").focus({ preventScroll: true }));
});
render();
