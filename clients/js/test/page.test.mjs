// The live page in real headless Chromium (Debian's `chromium`, driven by
// playwright-core; CHROMIUM_PATH overrides where it is). Outside CI the tests
// skip when no Chromium is installed; ../../test.sh installs it. A
// screenshot of the page is saved to test-results/page.png.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { clusterConfig, startKafka, startServer } from "./harness.mjs";

const resultsDir = fileURLToPath(new URL("../test-results/", import.meta.url));

function findChromium() {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  for (const name of ["chromium", "chromium-browser"]) {
    try {
      return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim();
    } catch {
      // try the next name
    }
  }
  return "";
}

const chromiumPath = findChromium();
const skip = !chromiumPath && !process.env.CI && "Chromium not installed (apt-get install chromium, or run ../../test.sh)";

/**
 * Opens a page in a fresh headless Chromium; errors in the page fail the
 * test, except failed WebSocket connections where expectReconnects.
 */
async function openPage(t, url, { expectReconnects = false } = {}) {
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
  t.after(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (expectReconnects && m.text().startsWith("WebSocket connection to")) return;
    errors.push(m.text());
  });
  t.after(() => assert.deepEqual(errors, [], "errors in the page"));
  await page.goto(url);
  return page;
}

/**
 * Runs in the page: window.nextRowLag becomes a promise of the milliseconds
 * between the timestamp of the next record added to the table (the
 * producer's clock, on this machine) and the moment its row appeared.
 */
function watchNextRow() {
  window.nextRowLag = new Promise((resolve) => {
    new MutationObserver((changes, observer) => {
      const now = Date.now();
      const tr = changes.flatMap((c) => [...c.addedNodes]).at(-1);
      if (!tr) return;
      observer.disconnect();
      resolve(now - Date.parse(tr.cells[2].textContent.replace(" ", "T")));
    }).observe(document.querySelector("#records tbody"), { childList: true });
  });
}

/** The [partition, offset] of every row of the table, newest first. */
function rows(page) {
  return page.$$eval("#records tbody tr", (trs) => trs.map((tr) => [Number(tr.dataset.partition), Number(tr.dataset.offset)]));
}

async function configServer(t) {
  const kafka = await startKafka(t, "orders:2,secret:1");
  const dir = await mkdtemp(join(tmpdir(), "pubsub-page-config-"));
  const config = join(dir, "config.json");
  await writeFile(config, clusterConfig(kafka.brokers, ["orders"]));
  return { kafka, server: await startServer(t, ["-config", config]) };
}

test("in development mode the page opens on the demo topic and shows new records within a second", { skip, timeout: 60_000 }, async (t) => {
  const server = await startServer(t);
  const page = await openPage(t, server.pageURL);
  await page.waitForSelector("#records tbody tr[data-offset='1']", { timeout: 10_000 });
  assert.equal(await page.inputValue("#topic"), "demo");
  assert.equal(await page.getAttribute("#state", "data-state"), "connected");
  assert.match(await page.textContent("#records tbody tr[data-offset='0']"), /demo record 0/);

  // The demo producer writes a record every second: each new row must appear
  // within a second of its record's timestamp (the producer's clock, this machine).
  for (const _ of [1, 2]) {
    await page.evaluate(watchNextRow);
    const lag = await page.evaluate(() => window.nextRowLag);
    t.diagnostic(`demo record shown ${lag} ms after it was produced`);
    assert.ok(lag >= 0 && lag < 1000, `record shown ${lag} ms after it was produced`);
  }
});

test("the page keeps every record exactly once across a server restart, pauses and resumes", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 100);
  await kafka.produce("orders", 1, 100);
  const page = await openPage(t, `${server.pageURL}?topic=orders&from=earliest`, { expectReconnects: true });
  await page.waitForFunction(() => document.querySelectorAll("#records tbody tr").length === 200, null, { timeout: 10_000 });
  await page.evaluate(() => {
    window.states = [];
    const state = document.getElementById("state");
    new MutationObserver(() => window.states.push(state.dataset.state)).observe(state, { attributes: true });
  });

  await server.stop();
  await kafka.produce("orders", 0, 100, 100); // written while the server is down
  await server.restart();
  await kafka.produce("orders", 1, 100, 100);
  await page.waitForFunction(() => document.querySelectorAll("#records tbody tr").length >= 400, null, { timeout: 20_000 });
  const seen = await rows(page);
  const expected = [0, 1].flatMap((p) => Array.from({ length: 200 }, (_, o) => [p, o]));
  const byPartitionThenOffset = (a, b) => a[0] - b[0] || a[1] - b[1];
  assert.deepEqual([...seen].sort(byPartitionThenOffset), expected);
  const states = await page.evaluate(() => window.states);
  assert.ok(states.includes("reconnecting"), `states: ${states}`);
  assert.equal(states.at(-1), "connected");
  assert.equal(await page.textContent("#received"), "400");

  // A record produced now is on the page within a second of its timestamp.
  await page.evaluate(watchNextRow);
  await kafka.produce("orders", 0, 1, 200);
  const lag = await page.evaluate(() => window.nextRowLag);
  t.diagnostic(`record shown ${lag} ms after it was produced`);
  assert.ok(lag >= 0 && lag < 1000, `shown ${lag} ms after production`);

  // Paused, the table stands still while records are counted; resumed, they appear.
  await page.click("#pause");
  assert.equal(await page.getAttribute("#pause", "aria-pressed"), "true");
  await kafka.produce("orders", 1, 5, 200);
  await page.waitForFunction(() => document.getElementById("received").textContent === "406", null, { timeout: 5_000 });
  assert.deepEqual((await rows(page))[0], [0, 200]);
  await page.click("#pause");
  await page.waitForSelector("#records tbody tr[data-partition='1'][data-offset='204']", { timeout: 5_000 });

  await mkdir(resultsDir, { recursive: true });
  await page.screenshot({ path: join(resultsDir, "page.png") });
});

test("the page says clearly when a topic is not allowed", { skip, timeout: 60_000 }, async (t) => {
  const { server } = await configServer(t);
  const page = await openPage(t, `${server.pageURL}?topic=secret`);
  await page.waitForSelector("#message:not([hidden])", { timeout: 10_000 });
  const text = await page.textContent("#message");
  assert.match(text, /^Topic "secret" is not allowed on cluster "kafka"\. The server said: failed to subscribe, topic: secret, .*topic not allowed$/);
  assert.equal(await page.getAttribute("#message", "role"), "alert");
  assert.equal((await rows(page)).length, 0);
  await mkdir(resultsDir, { recursive: true });
  await page.screenshot({ path: join(resultsDir, "page-not-allowed.png") });
});
