// What console.mjs and auth.mjs share: the arguments' check, the artifacts
// directory, and Debian's headless Chromium (at $CHROMIUM or
// /usr/bin/chromium) started with playwright-core.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

// start checks that argv has every name in names (printing usage and
// exiting 2 when not), makes the artifacts directory (the last argument)
// and launches Chromium; it returns the arguments and the browser.
export async function start(script, names) {
  const args = process.argv.slice(2);
  if (args.length < names.length || args.slice(0, names.length).some((a) => !a)) {
    console.error(`usage: node ${script} ${names.join(" ")}`);
    process.exit(2);
  }
  mkdirSync(args[names.length - 1], { recursive: true });
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  return { args, browser };
}
