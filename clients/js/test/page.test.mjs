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
 * Opens a page in a fresh headless Chromium. page.errors collects errors in
 * the page, except failed WebSocket connections where expectReconnects.
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
  page.errors = errors;
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
      resolve(now - Date.parse(tr.children[2].textContent.replace(" ", "T")));
    }).observe(document.getElementById("rows"), { childList: true });
  });
}

/** The [partition, offset] of every row of the table, newest first. */
function rows(page) {
  return page.$$eval("#rows > .row", (trs) => trs.map((tr) => [Number(tr.dataset.partition), Number(tr.dataset.offset)]));
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
  await page.waitForSelector("#rows > .row[data-offset='1']", { timeout: 10_000 });
  assert.equal(await page.inputValue("#topic"), "demo");
  assert.equal(await page.getAttribute("#state", "data-state"), "connected");
  assert.match(await page.textContent("#rows > .row[data-offset='0']"), /demo record 0/);

  // The demo producer writes a record every second: each new row must appear
  // within a second of its record's timestamp (the producer's clock, this machine).
  for (const _ of [1, 2]) {
    await page.evaluate(watchNextRow);
    const lag = await page.evaluate(() => window.nextRowLag);
    t.diagnostic(`demo record shown ${lag} ms after it was produced`);
    assert.ok(lag >= 0 && lag < 1000, `record shown ${lag} ms after it was produced`);
  }
  assert.deepEqual(page.errors, []);
});

test("the page keeps every record exactly once across a server restart, pauses and resumes", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 100);
  await kafka.produce("orders", 1, 100);
  const page = await openPage(t, `${server.pageURL}?topic=orders&from=earliest`, { expectReconnects: true });
  await page.waitForFunction(() => document.querySelectorAll("#rows > .row").length === 200, null, { timeout: 10_000 });
  await page.evaluate(() => {
    window.states = [];
    const state = document.getElementById("state");
    new MutationObserver(() => window.states.push(state.dataset.state)).observe(state, { attributes: true });
  });

  await server.stop();
  await kafka.produce("orders", 0, 100, 100); // written while the server is down
  await server.restart();
  await kafka.produce("orders", 1, 100, 100);
  await page.waitForFunction(() => document.querySelectorAll("#rows > .row").length >= 400, null, { timeout: 20_000 });
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
  await page.waitForSelector("#rows > .row[data-partition='1'][data-offset='204']", { timeout: 5_000 });

  await mkdir(resultsDir, { recursive: true });
  await page.screenshot({ path: join(resultsDir, "page.png") });
  assert.deepEqual(page.errors, []);
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
  assert.deepEqual(page.errors, []);
});

test("URL parameters preset the cluster, topic, partitions, start offset and value format; a start time works", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 3);
  await kafka.produce("orders", 1, 5);
  const page = await openPage(t, `${server.pageURL}?cluster=kafka&topic=orders&partitions=1&from=2&format=hex`);
  await page.waitForSelector("#rows > .row[data-offset='4']", { timeout: 10_000 });
  await kafka.produce("orders", 0, 1, 3);
  await kafka.produce("orders", 1, 1, 5);
  await page.waitForSelector("#rows > .row[data-offset='5']", { timeout: 10_000 });
  assert.deepEqual(await rows(page), [[1, 5], [1, 4], [1, 3], [1, 2]]);
  assert.equal(await page.inputValue("#partitions"), "1");
  assert.equal(await page.inputValue("#start"), "offset");
  const value = await page.textContent("#rows > .row[data-offset='5'] > :nth-child(5)");
  assert.equal(value, "0x" + Buffer.from(JSON.stringify({ n: 5, note: "record 5", topic: "orders" })).toString("hex"));

  // Starting at a time before every record starts at the first one.
  await page.selectOption("#start", "time");
  await page.fill("#time", "2000-01-01T00:00:00");
  await page.click("#subscribe");
  await page.waitForSelector("#rows > .row[data-offset='0']", { timeout: 10_000 });
  await page.waitForFunction(() => document.querySelectorAll("#rows > .row").length === 6, null, { timeout: 10_000 });
  assert.deepEqual(await rows(page), [5, 4, 3, 2, 1, 0].map((o) => [1, o]));
  assert.deepEqual(page.errors, []);
});

// A load run, not a pass/fail timing: PAGE_LOAD=1 npm test (or node --test
// test/page.test.mjs) produces about 10,000 records/s for 5 s and reports
// how the page keeps up: records received, the rate it shows, and the gaps
// between animation frames (the page's responsiveness). PAGE_LOAD_PAUSED=1
// as well pauses the table first, which measures receiving alone.
test("under 10,000 records/s the page keeps rendering (PAGE_LOAD=1)", { skip: skip || (!process.env.PAGE_LOAD && "set PAGE_LOAD=1 to run"), timeout: 120_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  const page = await openPage(t, `${server.pageURL}?topic=orders&partitions=0&from=latest`);
  await page.waitForFunction(() => document.body.dataset.subscribed === "true", null, { timeout: 10_000 });
  if (process.env.PAGE_LOAD_PAUSED) await page.click("#pause");
  await page.evaluate(() => {
    window.frameGaps = [];
    let last = performance.now();
    const tick = (now) => {
      window.frameGaps.push(now - last);
      last = now;
      if (!window.stopFrames) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const seconds = 5, perBatch = 1000, batchesPerSecond = 10;
  const started = Date.now();
  let shownRates = [];
  for (let i = 0; i < seconds * batchesPerSecond; i++) {
    const due = started + (i * 1000) / batchesPerSecond;
    if (Date.now() < due) await new Promise((r) => setTimeout(r, due - Date.now()));
    await kafka.produce("orders", 0, perBatch, i * perBatch);
    if (i % batchesPerSecond === batchesPerSecond - 1) shownRates.push(Number(await page.textContent("#rate")));
  }
  const producedPerSecond = Math.round((seconds * batchesPerSecond * perBatch * 1000) / (Date.now() - started));
  const total = seconds * batchesPerSecond * perBatch;
  await page.waitForFunction((n) => Number(document.getElementById("received").textContent) >= n, total, { timeout: 30_000 });
  const gaps = await page.evaluate(() => { window.stopFrames = true; return window.frameGaps; });
  gaps.sort((a, b) => a - b);
  const p = (q) => gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))].toFixed(1);
  t.diagnostic(`produced ${total} records at ${producedPerSecond}/s; the page showed rates ${shownRates.join(", ")}`);
  t.diagnostic(`frames: ${gaps.length}, gap median ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${p(1)} ms; rows kept ${(await rows(page)).length}`);
  assert.equal((await rows(page)).length, process.env.PAGE_LOAD_PAUSED ? 0 : 500);
  assert.deepEqual(page.errors, []);
});
