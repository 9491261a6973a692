// The live page in real headless Chromium (Debian's `chromium`, driven by
// playwright-core; CHROMIUM_PATH overrides where it is). Outside CI the tests
// skip when no Chromium is installed; ../../test.sh installs it. A
// screenshot of the page is saved to test-results/page.png.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { clusterConfig, startIssuer, startKafka, startServer } from "./harness.mjs";

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
 * Opens a page in a fresh headless Chromium (context: Playwright's context
 * options; beforeLoad: a script run before the page's own; onPage: called
 * with the page before it loads). page.errors
 * collects errors in the page, except failed WebSocket connections where
 * expectReconnects.
 */
async function openPage(t, url, { expectReconnects = false, context = {}, beforeLoad, onPage } = {}) {
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
  t.after(() => browser.close());
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 }, ...context })).newPage();
  if (beforeLoad) await page.addInitScript(beforeLoad);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (expectReconnects && m.text().startsWith("WebSocket connection to")) return;
    errors.push(m.text());
  });
  page.errors = errors;
  onPage?.(page);
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

async function configServer(t, topics = "orders:2,secret:1") {
  const kafka = await startKafka(t, topics);
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
  const value = await page.textContent("#rows > .row[data-offset='5'] > :nth-child(6)");
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

/** The text of the page's counters. */
function counts(page) {
  return page.evaluate(() => Object.fromEntries(["received", "shown", "skipped"].map((id) => [id, Number(document.getElementById(id).textContent)])));
}

test("with -config the page offers the allowed topics and opens on the newest 100 records per partition, local time beside UTC; Stop stops", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 150);
  await kafka.produce("orders", 1, 30);
  const page = await openPage(t, server.pageURL, { context: { timezoneId: "Asia/Kolkata" } });
  await page.waitForFunction(() => document.querySelectorAll("#rows > .row").length === 130, null, { timeout: 10_000 });
  assert.equal(await page.inputValue("#topic"), "orders");
  assert.deepEqual(await page.$$eval("#topics > option", (os) => os.map((o) => o.value)), ["orders"]);
  assert.equal(await page.inputValue("#start"), "newest");
  const seen = await rows(page);
  const byPartitionThenOffset = (a, b) => a[0] - b[0] || a[1] - b[1];
  assert.deepEqual([...seen].sort(byPartitionThenOffset), [
    ...Array.from({ length: 100 }, (_, i) => [0, 50 + i]),
    ...Array.from({ length: 30 }, (_, i) => [1, i]),
  ]);
  // The local time is the UTC time in the browser's zone (+05:30 here).
  const [utc, local] = await page.$$eval("#rows > .row[data-partition='0'][data-offset='60'] > span", (cells) => [cells[2].textContent, cells[3].textContent]);
  const ms = Date.parse(utc.replace(" ", "T"));
  assert.ok(utc.endsWith("Z") && ms > 0, utc);
  assert.equal(local, new Date(ms + 5.5 * 3600_000).toISOString().replace("T", " ").replace("Z", ""));

  await page.click("#stop");
  await page.waitForFunction(() => document.body.dataset.subscribed === "false", null, { timeout: 5_000 });
  assert.equal(await page.isDisabled("#stop"), true);
  await kafka.produce("orders", 0, 5, 150);
  // Nothing comes any more (a negative check: half a second of waiting).
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await counts(page)).received, 130);
  assert.equal(await page.getAttribute("#state", "data-state"), "connected");
  assert.deepEqual(page.errors, []);
});

test("subscribing again while the page connects opens one connection, not one per click", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 3);
  // Counts the page's WebSockets that opened.
  const countSockets = () => {
    window.openSockets = 0;
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener("open", () => window.openSockets++);
      }
    };
  };
  // On a cluster the server does not offer, the page opens on nothing.
  const page = await openPage(t, `${server.pageURL}?cluster=none`, { expectReconnects: true, beforeLoad: countSockets });
  await page.waitForFunction(() => document.getElementById("cluster").options.length === 2, null, { timeout: 10_000 });
  assert.equal(await page.getAttribute("#state", "data-state"), "idle");
  // The server goes away; Subscribe is clicked three times while the page cannot connect.
  await server.stop();
  await page.selectOption("#cluster", "kafka");
  await page.fill("#topic", "orders");
  await page.selectOption("#start", "earliest");
  for (let i = 0; i < 3; i++) await page.click("#subscribe");
  await page.waitForFunction(() => document.getElementById("state").dataset.state === "reconnecting", null, { timeout: 10_000 });
  await server.restart();
  await page.waitForFunction(() => document.querySelectorAll("#rows > .row").length === 3, null, { timeout: 20_000 });
  await kafka.produce("orders", 0, 1, 3);
  await page.waitForSelector("#rows > .row[data-offset='3']", { timeout: 10_000 });
  assert.deepEqual(await rows(page), [[0, 3], [0, 2], [0, 1], [0, 0]]);
  assert.equal(await page.evaluate(() => window.openSockets), 1);
  assert.equal(await page.getAttribute("#state", "data-state"), "connected");
});

test("held tables count what they skip: Pause, scrolling down and selecting text hold the table; 'not shown' counts the overflow", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  const page = await openPage(t, `${server.pageURL}?topic=orders&partitions=0&from=earliest`);
  await page.waitForFunction(() => document.body.dataset.subscribed === "true", null, { timeout: 10_000 });
  assert.equal(await page.isHidden("#skipped-stat"), true);
  await page.click("#pause");
  await kafka.produce("orders", 0, 700);
  await page.waitForFunction(() => document.getElementById("received").textContent === "700", null, { timeout: 10_000 });
  assert.deepEqual(await counts(page), { received: 700, shown: 0, skipped: 200 });
  assert.match(await page.textContent("#held"), /^Table held \(paused\): 500 new records wait$/);
  assert.equal(await page.isVisible("#skipped-stat"), true);
  await page.click("#pause");
  await page.waitForFunction(() => document.getElementById("shown").textContent === "500", null, { timeout: 10_000 });
  assert.deepEqual((await rows(page))[0], [0, 699]);

  // Scrolled down, the table stands still; back at the top it catches up.
  await page.$eval("#table-wrap", (el) => { el.scrollTop = 400; });
  await page.waitForFunction(() => !document.getElementById("held").hidden, null, { timeout: 5_000 });
  assert.match(await page.textContent("#held"), /scrolled down/);
  await kafka.produce("orders", 0, 5, 700);
  await page.waitForFunction(() => document.getElementById("received").textContent === "705", null, { timeout: 10_000 });
  assert.deepEqual((await rows(page))[0], [0, 699]);
  await page.$eval("#table-wrap", (el) => { el.scrollTop = 0; });
  await page.waitForSelector("#rows > .row[data-offset='704']", { timeout: 5_000 });

  // Text selected in the table holds it too.
  await page.evaluate(() => {
    const range = document.createRange();
    range.selectNodeContents(document.querySelector("#rows > .row > span:nth-child(6)"));
    document.getSelection().removeAllRanges();
    document.getSelection().addRange(range);
  });
  await page.waitForFunction(() => /text selected/.test(document.getElementById("held").textContent), null, { timeout: 5_000 });
  await kafka.produce("orders", 0, 1, 705);
  await page.waitForFunction(() => document.getElementById("received").textContent === "706", null, { timeout: 10_000 });
  assert.deepEqual((await rows(page))[0], [0, 704]);
  await page.evaluate(() => document.getSelection().removeAllRanges());
  await page.waitForSelector("#rows > .row[data-offset='705']", { timeout: 5_000 });
  assert.equal(await page.isHidden("#held"), true);
  assert.deepEqual(page.errors, []);
});

test("a record opens in a panel with its whole value, which Copy puts on the clipboard", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 6);
  const page = await openPage(t, `${server.pageURL}?topic=orders&partitions=0&from=earliest`,
    { context: { permissions: ["clipboard-read", "clipboard-write"] } });
  await page.waitForSelector("#rows > .row[data-offset='5']", { timeout: 10_000 });
  await page.click("#rows > .row[data-offset='4'] button.open");
  assert.equal(await page.textContent("#detail-title"), "Record 0/4");
  assert.equal(await page.getAttribute("#rows > .row[data-offset='4']", "aria-selected"), "true");
  const pretty = JSON.stringify({ n: 4, note: "record 4", topic: "orders" }, null, 2);
  assert.equal(await page.textContent("#detail-value"), pretty);
  await page.click("#copy");
  await page.waitForFunction(() => document.getElementById("copied").textContent === "Copied", null, { timeout: 5_000 });
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), pretty);
  await page.click("#close-detail");
  assert.equal(await page.isHidden("#detail"), true);
  assert.deepEqual(page.errors, []);
});

test("the badge turns into the error when the subscription ends (its topic deleted)", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 2);
  const page = await openPage(t, `${server.pageURL}?topic=orders&partitions=0&from=earliest`);
  await page.waitForSelector("#rows > .row[data-offset='1']", { timeout: 10_000 });
  await kafka.deleteTopic("orders");
  await page.waitForFunction(() => document.getElementById("state").dataset.state === "error", null, { timeout: 20_000 });
  const badge = await page.textContent("#state");
  t.diagnostic(badge);
  assert.match(badge, /^subscription to "orders" ended: failed to subscribe, topic: orders, partition: 0, err: /);
  assert.equal(await page.getAttribute("body", "data-subscribed"), "false");
  await mkdir(resultsDir, { recursive: true });
  await page.screenshot({ path: join(resultsDir, "page-ended.png") });
  assert.deepEqual(page.errors, []);
});

test("a chart shows records/s per partition over the last minute", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  const page = await openPage(t, `${server.pageURL}?topic=orders&from=latest`);
  await page.waitForFunction(() => document.body.dataset.subscribed === "true", null, { timeout: 10_000 });
  await kafka.produce("orders", 0, 40);
  await kafka.produce("orders", 1, 10);
  // The second they came in ends at the next tick, and is drawn after it.
  await page.waitForFunction(() => /partition 0: 40\/s/.test(document.getElementById("legend").textContent), null, { timeout: 5_000 });
  assert.equal(await page.$$eval("#chart polyline", (ls) => ls.map((l) => l.dataset.partition).join()), "0,1");
  assert.match(await page.textContent("#legend"), /partition 0: 40\/s.*partition 1: 10\/s/);
  assert.match(await page.getAttribute("#chart", "aria-label"), /peak 40\/s/);
  const points = await page.$eval("#chart polyline[data-partition='0']", (l) => l.getAttribute("points").split(" "));
  assert.equal(points.length, 59);
  assert.equal(points.at(-1), "300,2"); // the peak, at the right edge
  assert.deepEqual(page.errors, []);
});

test("the page meets WCAG AA (axe-core) in the light and the dark theme", { skip, timeout: 90_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 20);
  const axeSource = await readFile(fileURLToPath(new URL("../node_modules/axe-core/axe.min.js", import.meta.url)), "utf8");
  await mkdir(resultsDir, { recursive: true });
  for (const colorScheme of ["light", "dark"]) {
    // axe is injected past the page's Content-Security-Policy, which allows no inline script.
    const page = await openPage(t, `${server.pageURL}?topic=orders&partitions=0&from=earliest`, { context: { colorScheme, bypassCSP: true } });
    await page.waitForSelector("#rows > .row[data-offset='19']", { timeout: 10_000 });
    await page.click("#rows > .row[data-offset='3'] button.open");
    await page.click("#pause");
    await page.evaluate(() => { document.getElementById("message").hidden = false; document.getElementById("message").textContent = "A message as errors show it"; });
    await page.evaluate(axeSource);
    const result = await page.evaluate(() => window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } }));
    const violations = result.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
    t.diagnostic(`${colorScheme}: ${result.passes.length} rules pass, ${violations.length} violated`);
    assert.deepEqual(violations, [], colorScheme);
    assert.ok(result.passes.some((p) => p.id === "color-contrast"), "contrast was checked");
    await page.screenshot({ path: join(resultsDir, `page-${colorScheme}.png`) });
  }
});

test("the token field's token goes with the connection, and a new token makes a new one", { skip, timeout: 60_000 }, async (t) => {
  const { kafka, server } = await configServer(t);
  await kafka.produce("orders", 0, 2);
  const sockets = [];
  const page = await openPage(t, `${server.pageURL}?topic=orders&partitions=0&from=earliest`,
    { onPage: (p) => p.on("websocket", (ws) => sockets.push(new URL(ws.url()))) });
  await page.waitForSelector("#rows > .row[data-offset='1']", { timeout: 10_000 });
  await page.fill("#token", "token-1");
  await page.click("#subscribe");
  await page.waitForFunction(() => document.querySelectorAll("#rows > .row").length === 2 && document.body.dataset.subscribed === "true", null, { timeout: 10_000 });
  await page.click("#subscribe"); // the same token: the same connection
  await page.waitForFunction(() => document.querySelectorAll("#rows > .row").length === 2 && document.body.dataset.subscribed === "true", null, { timeout: 10_000 });
  assert.deepEqual(sockets.map((u) => [u.pathname, u.searchParams.get("access_token")]), [["/kafka", null], ["/kafka", "token-1"]]);
  assert.equal(await page.getAttribute("#token", "type"), "password");
  assert.deepEqual(page.errors, []);
});

test("behind a gateway that requires a token, the page connects with the token field's and shows only records its filters pass", { skip, timeout: 60_000 }, async (t) => {
  const kafka = await startKafka(t, "orders:1");
  const issuer = await startIssuer();
  const dir = await mkdtemp(join(tmpdir(), "pubsub-page-config-"));
  const config = join(dir, "config.json");
  await writeFile(config, clusterConfig(kafka.brokers, ["orders"], { access: [{ read: ["orders"] }] },
    { identity: { required: true, jwt: { jwks_file: issuer.jwksFile } } }));
  const server = await startServer(t, ["-config", config]);
  await kafka.produce("orders", 0, 5);
  const page = await openPage(t, `${server.pageURL}?topic=orders&from=earliest&filter_key=k2&filter_header=source%3Dtestkafka`, { expectReconnects: true });
  assert.equal(await page.inputValue("#filter-key"), "k2");
  assert.equal(await page.inputValue("#filter-headers"), "source=testkafka");
  // Without a token the upgrade is refused (a browser sees no status): the page keeps trying.
  await page.waitForFunction(() => document.getElementById("state").dataset.state === "reconnecting", null, { timeout: 10_000 });
  await page.fill("#token", issuer.token({ sub: "u1" }));
  await page.click("#subscribe");
  await page.waitForSelector("#rows > .row[data-offset='2']", { timeout: 10_000 });
  // Of the five records, the one with key k2 passes (and, newest first, nothing after it came).
  await kafka.produce("orders", 0, 1, 2); // k2 again, at offset 5
  await page.waitForSelector("#rows > .row[data-offset='5']", { timeout: 10_000 });
  assert.deepEqual(await rows(page), [[0, 5], [0, 2]]);
  assert.equal(await page.getAttribute("#state", "data-state"), "connected");
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
