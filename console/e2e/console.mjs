// Drives Herald's web console in headless Chromium (Debian's, at
// $CHROMIUM or /usr/bin/chromium) with playwright-core. Run by
// cmd/herald/observability_process_test.go against a real `herald serve`:
//
//   node console.mjs http://127.0.0.1:8080 ARTIFACTS_DIR
//
// Exits non-zero, naming the step, when any check fails; screenshots of
// every page go to ARTIFACTS_DIR.
import { join } from "node:path";
import { start } from "./browser.mjs";

const { args: [base, artifacts], browser } = await start("console.mjs", ["BASE_URL", "ARTIFACTS_DIR"]);
const page = await browser.newPage({ viewport: { width: 1366, height: 800 } });
page.setDefaultTimeout(15000);

let problems = [];   // console errors and page errors of the current step
let allowed = [];    // messages the current step expects (an API answering 404)
const alerts = [];
page.on("console", (m) => {
  if (m.type() !== "error") return;
  const t = m.text();
  if (!allowed.some((a) => t.includes(a))) problems.push(`console error: ${t}`);
});
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("dialog", async (d) => {
  if (d.type() === "confirm") return d.accept(); // the console's own "are you sure?"
  alerts.push(d.message());                       // an alert means injected script ran
  await d.dismiss();
});

let n = 0;
async function step(name, fn, allow = []) {
  problems = [];
  allowed = allow;
  try {
    await fn();
    await page.waitForTimeout(100);
  } catch (e) {
    await page.screenshot({ path: join(artifacts, `FAILED-${name}.png`), fullPage: true }).catch(() => {});
    throw new Error(`step ${name}: ${e.message}`);
  }
  await page.screenshot({ path: join(artifacts, `${String(++n).padStart(2, "0")}-${name}.png`), fullPage: true });
  if (problems.length) throw new Error(`step ${name}: ${problems.join("; ")}`);
  if (alerts.length) throw new Error(`step ${name}: a script from an event ran: alert(${alerts.join(", ")})`);
  console.log(`ok ${name}`);
}

async function visit(hash, heading) {
  await page.goto(`${base}/${hash}`);
  await page.locator("main h1").first().waitFor();
  if (heading) {
    const h1 = await page.locator("main h1").first().textContent();
    if (h1.trim() !== heading) throw new Error(`heading ${JSON.stringify(h1)}, want ${JSON.stringify(heading)}`);
  }
  const errs = await page.locator("main .error").allTextContents();
  if (errs.length) throw new Error(`the page shows an error: ${errs.join(" | ")}`);
  // Every form control has an accessible name (a label around it, or aria-label).
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll("main input, main select, main textarea, main button")]
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !(el.tagName === "BUTTON" && el.textContent.trim()))
    .map((el) => el.outerHTML.slice(0, 80)));
  if (unlabelled.length) throw new Error(`form controls without a label: ${unlabelled.join(" | ")}`);
}

const NOT_FOUND = "status of 404";
const hostile = `<img src=x onerror="alert('img')"><script>alert('script')</script>`;

try {
  // Every page loads without console errors.
  for (const [hash, heading] of [["#/overview", "Overview"], ["#/topics", "Topics"], ["#/groups", "Consumer groups"],
    ["#/deadletters", "Dead letters"], ["#/rules", "Rules"], ["#/schemas", "Schemas"], ["#/store", "Event store"], ["#/lineage", "Lineage"],
    ["#/sagas", "Sagas"]]) {
    await step(`page-${hash.slice(2)}`, () => visit(hash, heading));
  }
  // Services this server may not run: a note, not a blank page or an error.
  for (const [hash, heading] of [["#/subscriptions", "Subscriptions"]]) {
    await step(`page-${hash.slice(2)}`, async () => {
      await visit(hash, heading);
      await page.locator("main p").first().waitFor();
    }, [NOT_FOUND]);
  }

  // Create a topic, produce an event carrying markup, find it in the browser.
  await step("create-topic", async () => {
    await visit("#/topics", "Topics");
    await page.getByLabel("Name", { exact: true }).fill("console-e2e");
    await page.getByLabel("Partitions", { exact: true }).fill("2");
    await page.getByRole("button", { name: "Create" }).click();
    await page.locator("main .ok", { hasText: "Created" }).waitFor();
    await page.getByLabel("Filter topics").fill("console-e2e");
    await page.getByRole("table").getByRole("link", { name: "console-e2e", exact: true }).click();
    await page.locator("main h1", { hasText: "console-e2e" }).waitFor();
  });
  let produced;
  await step("produce-event", async () => {
    await page.getByLabel("Type", { exact: true }).fill("console.e2e");
    await page.getByLabel("Subject", { exact: true }).fill(hostile);
    await page.getByLabel("Data (JSON, or text)").fill(JSON.stringify({ note: hostile, n: 7 }));
    await page.getByRole("button", { name: "Publish" }).click();
    produced = await page.locator("#produced").textContent();
    if (!/partition \d+, offset 0/.test(produced)) throw new Error(`unexpected answer: ${produced}`);
  });
  await step("find-event", async () => {
    const id = /event (\S+) at/.exec(produced)[1];
    await page.getByLabel("Filter", { exact: true }).fill("console.e2e");
    await page.getByRole("button", { name: "Read", exact: true }).click();
    await page.getByRole("cell", { name: id, exact: true }).waitFor();
    // The markup is shown as text, and made no element.
    await page.getByRole("cell", { name: hostile, exact: true }).waitFor(); // the subject column
    if (await page.locator("main img, main script:not([src])").count()) throw new Error("the event's markup became elements");
    // The filter hides what does not match.
    await page.getByLabel("Filter", { exact: true }).fill("no-such-text");
    await page.getByRole("button", { name: "Read", exact: true }).click();
    await page.locator("main p.note", { hasText: "0 shown of 1 read" }).waitFor();
  });
  await step("follow-live", async () => {
    await page.getByLabel("Filter", { exact: true }).fill("");
    await page.getByRole("button", { name: "Follow live" }).click();
    await page.locator("main [role=status]", { hasText: "waiting for new events" }).waitFor();
    await page.evaluate(async () => {
      const r = await fetch("/v1/topics/console-e2e/events", { method: "POST", headers: { "Content-Type": "application/cloudevents+json" },
        body: JSON.stringify({ specversion: "1.0", id: "live-1", source: "/e2e", type: "console.live" }) });
      if (!r.ok) throw new Error(`publish: ${r.status}`);
    });
    await page.getByRole("cell", { name: "live-1", exact: true }).waitFor();
    await page.getByRole("button", { name: "Stop following" }).click();
  });
  await step("topic-settings", async () => {
    await page.getByLabel("Retention (ms; empty: the default)").fill("86400000");
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("main p", { hasText: "retention 1 d" }).waitFor();
    await page.getByLabel("Retention (ms; empty: the default)").fill("-5");
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("main .error", { hasText: "retention.ms" }).waitFor();
  }, ["status of 400"]);
  await step("api-error-readable", async () => {
    await page.goto(`${base}/#/topics/no-such-topic`);
    await page.locator("main .error", { hasText: "NOT_FOUND" }).waitFor();
  }, [NOT_FOUND]);
  await step("bad-input-readable", async () => {
    await visit("#/topics", "Topics");
    await page.getByLabel("Name", { exact: true }).fill("console-e2e"); // exists
    await page.getByRole("button", { name: "Create" }).click();
    await page.locator("main .error", { hasText: "ALREADY_EXISTS" }).waitFor();
  }, ["status of 409"]);

  // Groups: lag per partition and a dry-run reset.
  await step("group-reset-dry-run", async () => {
    await visit("#/groups", "Consumer groups");
    await page.getByRole("link", { name: "console-e2e-group" }).click();
    await page.locator("main h1", { hasText: "console-e2e-group" }).waitFor();
    await page.getByRole("button", { name: "Dry run" }).click();
    await page.locator("main [role=status]", { hasText: "Dry run" }).waitFor();
  });

  // Dead letters: inspect one (its error shown as text), dry run, redrive.
  await step("dead-letters-redrive", async () => {
    await page.goto(`${base}/#/deadletters?topic=console-orders-dlq`);
    await page.locator("main h1", { hasText: "Dead letters" }).waitFor();
    await page.getByRole("button", { name: "Show" }).click();
    const dl = page.getByRole("table", { name: "Dead letters", exact: true });
    await dl.getByRole("cell", { name: "card declined <b>x</b>", exact: true }).waitFor();
    await dl.getByRole("cell", { name: "console-orders/0@0", exact: true }).waitFor();
    await page.getByRole("button", { name: "Dry run" }).click();
    await page.locator("main [role=status]", { hasText: "Dry run: 1 dead letters would be redriven" }).waitFor();
    await page.getByRole("button", { name: "Redrive", exact: true }).click();
    await page.locator("main [role=status]", { hasText: "Redrove 1 of 1" }).waitFor();
  });

  // Rules: test a pattern against an event.
  await step("rule-test", async () => {
    await visit("#/rules", "Rules");
    await page.getByRole("button", { name: "Test" }).click();
    await page.locator("#test-result", { hasText: "matches" }).waitFor();
  });

  // Schemas: versions, a diff, a compatibility check.
  await step("schema-diff-compat", async () => {
    await visit("#/schemas", "Schemas");
    await page.getByRole("link", { name: "console-e2e-value" }).click();
    await page.locator("main h1", { hasText: "console-e2e-value" }).waitFor();
    await page.getByRole("button", { name: "Diff" }).click();
    await page.locator("#sc-diff .add", { hasText: "currency" }).waitFor();
    await page.getByRole("button", { name: "Check" }).click();
    await page.locator("#compat-result", { hasText: "Compatible" }).waitFor();
  });

  // Event store: a stream's events.
  await step("event-store", async () => {
    await visit("#/store", "Event store");
    await page.getByRole("link", { name: "console-e2e-1" }).first().click();
    await page.locator("main td", { hasText: "ConsoleTested" }).first().waitFor();
  });

  // Lineage: a flow drawn as a graph, then one event's ancestors and descendants.
  await step("lineage-flow-graph", async () => {
    await visit("#/lineage", "Lineage");
    await page.getByLabel("Correlation id").fill("console-flow-1");
    await page.getByRole("button", { name: "Show flow" }).click();
    await page.locator("main h2", { hasText: "Flow console-flow-1" }).waitFor();
    const nodes = await page.locator("svg.graph .node").count(), edges = await page.locator("svg.graph path.edge").count();
    if (nodes !== 4 || edges !== 3) throw new Error(`the flow graph has ${nodes} nodes and ${edges} edges, want 4 and 3`);
    await page.locator("svg.graph .node", { hasText: "payment.ok" }).click();
    await page.locator("main h2", { hasText: "Event console-flow-3" }).waitFor();
    await page.locator("svg.graph .node.focus", { hasText: "payment.ok" }).waitFor();
    const rows = await page.getByRole("table", { name: "Ancestors and descendants" }).locator("tbody tr").count();
    if (rows !== 3) throw new Error(`lineage of console-flow-3 lists ${rows} events, want 2 ancestors, itself`);
  });

  // Sagas: two started from the console (one declined, so it compensates,
  // its id and input carrying markup), the list, and each one's steps and
  // timeline of commands, replies and compensations.
  const sagaId = `e2e-<img src=x onerror="alert('saga')">`;
  await step("saga-start", async () => {
    await visit("#/sagas", "Sagas");
    await page.getByLabel("Saga definition").selectOption("console-order");
    await page.getByLabel("Saga id").fill("console-saga-ok");
    await page.getByLabel("Input (JSON, optional)").fill(JSON.stringify({ order: 1 }));
    await page.getByRole("button", { name: "Start" }).click();
    await page.locator("main .ok", { hasText: "Started console-saga-ok" }).waitFor();
    await page.getByLabel("Saga id").fill(sagaId);
    await page.getByLabel("Input (JSON, optional)").fill(JSON.stringify({ decline: true, note: hostile }));
    await page.getByRole("button", { name: "Start" }).click();
    await page.locator("main .ok", { hasText: `Started ${sagaId}` }).waitFor();
    await page.getByLabel("Input (JSON, optional)").fill("{not json");
    await page.getByRole("button", { name: "Start" }).click();
    await page.locator("main .error", { hasText: "input is not valid JSON" }).waitFor();
  });
  await step("saga-list", async () => {
    const list = page.getByRole("table", { name: "Saga instances" });
    await list.getByRole("link", { name: "console-saga-ok", exact: true }).waitFor({ timeout: 60000 });
    await list.getByRole("link", { name: sagaId, exact: true }).waitFor({ timeout: 60000 });
    const row = list.getByRole("row").filter({ has: page.getByRole("link", { name: "console-saga-ok", exact: true }) });
    await row.getByRole("cell", { name: "console-order v1", exact: true }).waitFor();
    if (await page.locator("main img").count()) throw new Error("a saga id's markup became an element");
  });
  await step("saga-timeline-completed", async () => {
    await page.getByRole("table", { name: "Saga instances" }).getByRole("link", { name: "console-saga-ok", exact: true }).click();
    await page.locator("main h1", { hasText: "console-saga-ok" }).waitFor();
    await page.locator("#saga-state .badge", { hasText: /^completed$/ }).waitFor({ timeout: 60000 });
    const tl = page.getByRole("list", { name: "Timeline" });
    const commands = await tl.locator("li.tl-command").count(), replies = await tl.locator("li.tl-reply").count();
    if (commands !== 2 || replies !== 2) throw new Error(`timeline: ${commands} commands and ${replies} replies, want 2 and 2`);
    await tl.locator("li", { hasText: "ConsoleCharge to console-saga-pay, attempt 1" }).waitFor();
    const steps = page.getByRole("table", { name: "Steps" });
    await steps.getByRole("row").filter({ hasText: "reserve" }).getByText("succeeded").waitFor();
    if ((await page.locator("svg.gantt rect").count()) !== 2) throw new Error("the steps chart does not draw both steps");
  });
  await step("saga-timeline-compensated", async () => {
    await page.goto(`${base}/#/sagas/${encodeURIComponent(sagaId)}`);
    await page.locator("#saga-state .badge", { hasText: /^compensated$/ }).waitFor({ timeout: 60000 });
    const h1 = await page.locator("main h1").first().textContent();
    if (h1 !== sagaId) throw new Error(`heading ${JSON.stringify(h1)}, want the id as text`);
    const tl = page.getByRole("list", { name: "Timeline" });
    await tl.locator("li.tl-bad", { hasText: "Declined" }).waitFor();
    await tl.locator("li.tl-undo", { hasText: "ConsoleRelease to console-saga-stock" }).waitFor();
    await tl.locator("li.tl-undo", { hasText: "Released" }).waitFor();
    await page.getByRole("table", { name: "Steps" }).getByRole("row").filter({ hasText: "reserve" }).getByText("compensated").waitFor();
    await page.getByText("Input").click();
    await page.locator("main pre", { hasText: "onerror" }).waitFor();
    if (await page.locator("main img, main script:not([src])").count()) throw new Error("the saga's markup became elements");
  });
  await step("saga-filter", async () => {
    await visit("#/sagas", "Sagas");
    await page.getByRole("combobox", { name: /^State/ }).selectOption("compensated");
    await page.getByRole("button", { name: "Filter" }).click();
    const list = page.getByRole("table", { name: "Saga instances" });
    await list.getByRole("link", { name: sagaId, exact: true }).waitFor();
    if (await list.getByRole("link", { name: "console-saga-ok", exact: true }).count()) throw new Error("the state filter kept a completed saga");
  });
  await step("saga-not-found-readable", async () => {
    await page.goto(`${base}/#/sagas/no-such-saga`);
    await page.locator("main [role=status]", { hasText: "Not found yet" }).waitFor();
    await page.locator("main", { hasText: "NOT_FOUND" }).waitFor();
    // Leave before the page asks again, so that no 404 lands in the next step.
    await page.screenshot({ path: join(artifacts, "saga-not-found.png"), fullPage: true });
    await page.goto("about:blank");
  }, [NOT_FOUND]);

  // Overview: charts drawn after a few polls.
  await step("overview-charts", async () => {
    await visit("#/overview", "Overview");
    await page.locator("main [role=status]", { hasText: "; live." }).waitFor(); // Server-Sent Events, not polling
    await page.waitForTimeout(4500);
    if ((await page.locator("main svg.chart path.line").count()) === 0) throw new Error("no chart lines drawn");
    const errs = await page.locator("main .error").allTextContents();
    if (errs.length) throw new Error(`the overview shows an error: ${errs.join(" | ")}`);
  });

  // Without the live stream (an older server, a buffering proxy) the
  // overview polls /metrics instead.
  await step("overview-polling-fallback", async () => {
    await page.route("**/console/live", (r) => r.fulfill({ status: 404, contentType: "text/plain", body: "404 page not found" }));
    await page.goto("about:blank");
    await page.goto(`${base}/#/overview`);
    // With the 10,000 extra topics /metrics is over 1 MB: polled every 10 s.
    await page.locator("main [role=status]", { hasText: "polling /metrics every 10 s" }).waitFor();
    await page.unroute("**/console/live");
  }, ["status of 404", "EventSource", "/console/live"]);

  // The Go test created 10,000 topics zz-bulk-00000..09999 besides the
  // others: the list loads in well under a second on a laptop, draws a
  // bounded number of rows, and the filter finds one at once.
  await step("many-topics", async () => {
    const t0 = Date.now();
    await visit("#/topics", "Topics");
    await page.locator("main p", { hasText: /^Showing 500 of 10,0\d\d topics/ }).waitFor();
    const ms = Date.now() - t0;
    console.log(`topics page with 10,000 topics ready in ${ms} ms`);
    if (ms > 5000) throw new Error(`the topics page took ${ms} ms with 10,000 topics (limit 5000 ms)`);
    const rows = await page.getByRole("table").locator("tbody tr").count();
    if (rows !== 500) throw new Error(`${rows} rows drawn, want 500`);
    await page.getByLabel("Filter topics").fill("zz-bulk-09999");
    await page.locator("main p", { hasText: /^1 of 10,0\d\d topics/ }).waitFor();
    await page.getByRole("table").getByRole("link", { name: "zz-bulk-09999", exact: true }).waitFor();
  });

  // Keyboard: the navigation is reachable with Tab.
  await step("keyboard", async () => {
    await page.goto("about:blank");
    await page.goto(`${base}/#/overview`);
    await page.locator("main h1").waitFor();
    await page.keyboard.press("Tab"); // skip link
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => document.activeElement?.textContent);
    if (focused !== "Overview") throw new Error(`Tab focused ${JSON.stringify(focused)}, want the first navigation link`);
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await page.locator("main h1", { hasText: "Topics" }).waitFor();
  });
} catch (e) {
  console.error(`FAIL ${e.message}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log("PASS");
