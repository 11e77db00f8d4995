// Drives Herald's web console behind `herald serve --users --tls-cert` in
// headless Chromium (playwright-core): without credentials the server
// answers 401 and no page loads; with them (the browser's Basic login)
// the pages load, the overview's live updates arrive over Server-Sent
// Events, and a topic made through the console is listed. Run by
// cmd/herald/security_process_test.go:
//
//   node auth.mjs https://127.0.0.1:8443 USER PASSWORD ARTIFACTS_DIR
//
// Exits non-zero, naming the step, when a check fails.
import { join } from "node:path";
import { start } from "./browser.mjs";

const { args: [base, user, password, artifacts], browser } = await start("auth.mjs", ["BASE_URL", "USER", "PASSWORD", "ARTIFACTS_DIR"]);

async function step(page, name, fn) {
  try {
    await fn();
  } catch (e) {
    await page.screenshot({ path: join(artifacts, `FAILED-auth-${name}.png`), fullPage: true }).catch(() => {});
    throw new Error(`step ${name}: ${e.message}`);
  }
  await page.screenshot({ path: join(artifacts, `auth-${name}.png`), fullPage: true });
  console.log(`ok ${name}`);
}

try {
  // The test's CA is not the system's: the certificate is checked by the
  // Go side of the test; here only the login is.
  const anon = await browser.newContext({ ignoreHTTPSErrors: true });
  const anonPage = await anon.newPage();
  // A headless browser cannot show the login prompt: the page load fails
  // with ERR_INVALID_AUTH_CREDENTIALS; the request itself shows the 401.
  const refused = async (page) => {
    const resp = await page.goto(`${base}/`).catch((e) => e);
    if (resp instanceof Error) {
      if (!resp.message.includes("ERR_INVALID_AUTH_CREDENTIALS")) throw resp;
    } else if (resp.status() !== 401) {
      throw new Error(`status ${resp.status()}, want 401`);
    }
  };
  await step(anonPage, "no-credentials", async () => {
    await refused(anonPage);
    const resp = await anon.request.get(`${base}/`);
    if (resp.status() !== 401) throw new Error(`status ${resp.status()}, want 401`);
    const challenge = resp.headers()["www-authenticate"] || "";
    if (!challenge.startsWith("Basic ")) throw new Error(`WWW-Authenticate ${JSON.stringify(challenge)}`);
  });
  const wrong = await browser.newContext({ ignoreHTTPSErrors: true, httpCredentials: { username: user, password: password + "x" } });
  const wrongPage = await wrong.newPage();
  await step(wrongPage, "wrong-password", () => refused(wrongPage));

  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, httpCredentials: { username: user, password } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(e.message));
  await step(page, "overview-live", async () => {
    await page.goto(`${base}/#/overview`);
    await page.locator("main h1", { hasText: "Overview" }).waitFor();
    // "live" only once a Server-Sent Event came through the login.
    await page.locator("main", { hasText: "; live." }).waitFor();
  });
  await step(page, "create-topic", async () => {
    await page.goto(`${base}/#/topics`);
    await page.locator("main h1", { hasText: "Topics" }).waitFor();
    await page.getByLabel("Name", { exact: true }).fill("behind-login");
    await page.getByLabel("Partitions", { exact: true }).fill("1");
    await page.getByRole("button", { name: "Create" }).click();
    await page.locator("main .ok", { hasText: "Created" }).waitFor();
    await page.getByLabel("Filter topics").fill("behind-login");
    await page.getByRole("table").getByRole("link", { name: "behind-login", exact: true }).waitFor();
  });
  if (problems.length) throw new Error(`console errors: ${problems.join("; ")}`);
  console.log("\nPASS");
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
