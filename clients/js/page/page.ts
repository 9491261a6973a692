// The live page: subscribes to a topic through this client and shows its
// records as they arrive. Served by the pub-sub server at "/" (web/), built
// by `npm run build`. Rendering is batched per animation frame and the table
// is bounded, so the page keeps up with thousands of records per second.
import {
  Client,
  ConnectionClosedError,
  ServerError,
  type ConnectionState,
  type KafkaMessage,
  type PubSubError,
  type RecordFilter,
  type StartPosition,
  type Subscription,
  type SubscriptionEnd,
  type SubscriptionEvent,
} from "../src/index.js";

/** What the server tells the page (web.Site): endpoint names, the topic to open on, the topics each allows. */
interface Site {
  clusters: string[];
  topic?: string;
  topics?: Record<string, string[]>;
}

/** Rows kept in the table; older ones are removed. */
const maxRows = 500;
/**
 * Rows added per animation frame. Records that arrive faster wait for the
 * next frame, and when more than maxRows wait, the oldest are never drawn
 * (counted as "not shown"): at thousands of records per second the page
 * shows the newest ones.
 */
const rowsPerFrame = 50;
/** Characters of a key or value shown in the table; the record's panel shows all. */
const maxChars = 400;
/** The default start: this many of the newest records of each partition. */
const newestPerPartition = 100n;
/** Seconds the chart covers. */
const chartSeconds = 60;
/** Partitions the chart draws (the busiest); the rest are left out. */
const chartPartitions = 6;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>("controls");
const clusterSelect = $<HTMLSelectElement>("cluster");
const topicInput = $<HTMLInputElement>("topic");
const topicList = $<HTMLDataListElement>("topics");
const partitionsInput = $<HTMLInputElement>("partitions");
const startSelect = $<HTMLSelectElement>("start");
const offsetInput = $<HTMLInputElement>("offset");
const timeInput = $<HTMLInputElement>("time");
const formatSelect = $<HTMLSelectElement>("format");
const filterKeyInput = $<HTMLInputElement>("filter-key");
const filterHeadersInput = $<HTMLInputElement>("filter-headers");
const tokenInput = $<HTMLInputElement>("token");
const stopButton = $<HTMLButtonElement>("stop");
const pauseButton = $<HTMLButtonElement>("pause");
const clearButton = $<HTMLButtonElement>("clear");
const stateText = $("state");
const messageText = $("message");
const rateText = $("rate");
const receivedText = $("received");
const shownText = $("shown");
const skippedStat = $("skipped-stat");
const skippedText = $("skipped");
const heldText = $("held");
const chart = $("chart") as unknown as SVGSVGElement;
const legend = $("legend");
const tableWrap = $("table-wrap");
const rowsBox = $("rows");
const detail = $("detail");
const detailTitle = $("detail-title");
const detailMeta = $("detail-meta");
const detailValue = $("detail-value");
const copyButton = $<HTMLButtonElement>("copy");
const copiedText = $("copied");

let site: Site = { clusters: [] };
let client: Client | null = null;
let clientURL = "";
let clientToken = "";
let subscription: Subscription | null = null;
/** Bumped by every start() and stop(), so that a superseded start does nothing. */
let generation = 0;
/** Why the table stands still: the Pause button, a scrolled table, a selection in it. */
const held = { button: false, scroll: false, selection: false };
let received = 0;
/** Records never drawn: more than maxRows waited for a frame (fast topics, or held). */
let skipped = 0;
/** Records waiting for the next frame, oldest first, at most maxRows. */
let pending: { partition: number; record: KafkaMessage }[] = [];
let frameRequested = false;
const rateSamples: { t: number; n: number }[] = [];
/** Records per second of each partition over the last chartSeconds, oldest first. */
const perSecond = new Map<number, number[]>();
/** The record each row shows, for its panel. */
const rowRecords = new WeakMap<Element, { partition: number; record: KafkaMessage }>();

const utf8 = new TextDecoder("utf-8", { fatal: true });

function endpointURL(cluster: string): string {
  const url = new URL(encodeURIComponent(cluster), location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = url.hash = "";
  return url.href;
}

function showState(s: ConnectionState): void {
  stateText.dataset.state = s.state;
  switch (s.state) {
    case "connecting":
      stateText.textContent = `connecting to ${clientURL}`;
      break;
    case "connected":
      stateText.textContent = `connected to ${clientURL}`;
      break;
    case "reconnecting":
      stateText.textContent = `reconnecting (attempt ${s.attempt}, in ${(s.delayMs / 1000).toFixed(1)} s) after close ${s.closeCode}${s.reason ? `: ${s.reason}` : ""}`;
      break;
    case "closed":
      stateText.textContent = `closed with code ${s.closeCode}${s.reason ? `: ${s.reason}` : ""}`;
      break;
  }
}

function showMessage(text: string): void {
  messageText.textContent = text;
  messageText.hidden = text === "";
}

function describe(err: unknown, topic: string, cluster: string): string {
  if (err instanceof ServerError) {
    if (err.cause === "topic not allowed") {
      return `Topic "${topic}" is not allowed on cluster "${cluster}". The server said: ${err.message}`;
    }
    return `The server refused: ${err.message}`;
  }
  if (err instanceof ConnectionClosedError) return `Cannot reach ${clientURL}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

function startPosition(): StartPosition {
  switch (startSelect.value) {
    case "earliest":
      return "earliest";
    case "offset":
      return { offset: BigInt(offsetInput.value || "0") };
    case "time":
      return { timestamp: timeInput.value ? new Date(timeInput.value).getTime() : Date.now() };
    default:
      return "latest";
  }
}

function partitions(): number[] {
  return partitionsInput.value.split(",").map((p) => p.trim()).filter((p) => p !== "").map(Number);
}

/** Only records with the key and headers the filter fields name; undefined when they are empty. */
function recordFilter(): RecordFilter | undefined {
  const headers = filterHeadersInput.value.split(",").map((h) => h.trim()).filter((h) => h !== "").map((h) => {
    const eq = h.indexOf("=");
    return eq < 0 ? { key: h, value: "" } : { key: h.slice(0, eq).trim(), value: h.slice(eq + 1).trim() };
  });
  const key = filterKeyInput.value;
  return key === "" && headers.length === 0 ? undefined : { ...(key === "" ? {} : { key }), headers };
}

/** The client of url and token, made once: a second start while it connects shares it. */
function clientFor(url: string, token: string): Client {
  if (client && clientURL === url && clientToken === token && client.state.state !== "closed") return client;
  client?.close();
  clientURL = url;
  clientToken = token;
  showState({ state: "connecting" });
  const c = new Client(url, {
    onStateChange: (s) => { if (client === c) showState(s); },
    ...(token === "" ? {} : { token }),
  });
  client = c;
  return c;
}

/**
 * The start offset of each partition for the newest records: up to
 * newestPerPartition before the end of the log. Without partitions, a
 * subscription at the latest offsets names them (and is ended at once).
 */
async function newestOffsets(c: Client, topic: string, wanted: number[]): Promise<Record<number, bigint>> {
  let ends: [number, bigint][];
  if (wanted.length > 0) {
    ends = await Promise.all(wanted.map(async (p) => [p, await c.listOffset(topic, p, "latest")] as [number, bigint]));
  } else {
    const probe = await c.subscribe({ topic, start: "latest" }, () => undefined);
    ends = [...probe.starts];
    void probe.unsubscribe().catch(() => undefined);
  }
  const offsets: Record<number, bigint> = {};
  await Promise.all(ends.map(async ([p, end]) => {
    const first = end >= newestPerPartition ? await c.listOffset(topic, p, "earliest") : 0n;
    offsets[p] = end - newestPerPartition > first ? end - newestPerPartition : first;
  }));
  return offsets;
}

async function start(): Promise<void> {
  const gen = ++generation;
  const cluster = clusterSelect.value;
  const topic = topicInput.value.trim();
  showMessage("");
  clearRecords();
  received = skipped = 0;
  perSecond.clear();
  await stopSubscription();
  try {
    const c = clientFor(endpointURL(cluster), tokenInput.value.trim());
    await c.opened;
    if (gen !== generation) return;
    const wanted = partitions();
    const offsets = startSelect.value === "newest" ? await newestOffsets(c, topic, wanted) : undefined;
    if (gen !== generation) return;
    const own: { sub?: Subscription } = {};
    const sub = await c.subscribe({
      topic,
      partitions: offsets && wanted.length === 0 ? Object.keys(offsets).map(Number) : wanted,
      start: offsets ? "latest" : startPosition(),
      offsets,
      filter: recordFilter(),
    }, (ev) => onEvent(own, ev));
    own.sub = sub;
    if (gen !== generation) {
      await sub.unsubscribe().catch(() => undefined);
      return;
    }
    subscription = sub;
    document.body.dataset.subscribed = "true";
    pauseButton.disabled = stopButton.disabled = false;
  } catch (err) {
    if (gen === generation) showMessage(describe(err, topic, cluster));
  }
}

/** Ends the subscription; the rows stay. */
async function stopSubscription(): Promise<void> {
  const old = subscription;
  subscription = null;
  document.body.dataset.subscribed = "false";
  pauseButton.disabled = stopButton.disabled = true;
  await old?.unsubscribe().catch(() => undefined);
}

function onEvent(own: { sub?: Subscription }, ev: SubscriptionEvent | SubscriptionEnd): void {
  if (ev.kind === "end") {
    if (ev.error && own.sub) subscriptionFailed(own.sub, ev.error);
    return;
  }
  if (ev.kind === "error") {
    showMessage(`Partition ${ev.partition ?? "?"} of "${ev.topic}" stopped: ${ev.error.message}`);
    return;
  }
  if (ev.kind !== "records") return; // the page subscribes without a group: no assignments
  received += ev.records.length;
  const counts = perSecond.get(ev.partition) ?? new Array<number>(chartSeconds).fill(0);
  counts[chartSeconds - 1] += ev.records.length;
  perSecond.set(ev.partition, counts);
  for (const record of ev.records) pending.push({ partition: ev.partition, record });
  if (pending.length > maxRows) {
    skipped += pending.length - maxRows;
    pending = pending.slice(pending.length - maxRows);
  }
  requestRender();
}

/** The subscription ended with an error: the badge and the message say so. */
function subscriptionFailed(sub: Subscription, err: PubSubError): void {
  if (subscription !== sub) return;
  subscription = null;
  document.body.dataset.subscribed = "false";
  pauseButton.disabled = stopButton.disabled = true;
  stateText.dataset.state = "error";
  stateText.textContent = `subscription to "${sub.topic}" ended: ${err.message}`;
  showMessage(`The subscription to "${sub.topic}" ended: ${err.message}`);
}

function isHeld(): boolean {
  return held.button || held.scroll || held.selection;
}

function requestRender(): void {
  if (!frameRequested && !isHeld() && pending.length > 0) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
}

function render(): void {
  frameRequested = false;
  if (isHeld() || pending.length === 0) return;
  const batch = pending.length > rowsPerFrame ? pending.slice(0, rowsPerFrame) : pending;
  pending = pending.length > rowsPerFrame ? pending.slice(rowsPerFrame) : [];
  requestRender();
  const rows = document.createDocumentFragment();
  const hex = formatSelect.value === "hex";
  for (let i = batch.length - 1; i >= 0; i--) rows.appendChild(row(batch[i].partition, batch[i].record, hex));
  rowsBox.insertBefore(rows, rowsBox.firstChild);
  if (rowsBox.childElementCount > maxRows) {
    const range = document.createRange();
    range.setStartBefore(rowsBox.children[maxRows]);
    range.setEndAfter(rowsBox.lastChild!);
    range.deleteContents();
  }
  showCounts();
}

function showCounts(): void {
  shownText.textContent = String(rowsBox.childElementCount);
  receivedText.textContent = String(received);
  skippedText.textContent = String(skipped);
  skippedStat.hidden = skipped === 0;
  const reasons = [held.button && "paused", held.scroll && "scrolled down", held.selection && "text selected"].filter(Boolean);
  heldText.hidden = reasons.length === 0;
  heldText.textContent = reasons.length === 0 ? "" : `Table held (${reasons.join(", ")}): ${pending.length} new records wait`;
}

/** A time in UTC and in the browser's time zone, both with milliseconds. */
function times(ms: number): [utc: string, local: string] {
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const local = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return [d.toISOString().replace("T", " "), local];
}

function row(partition: number, r: KafkaMessage, hex: boolean): HTMLElement {
  const div = document.createElement("div");
  div.className = "row";
  div.setAttribute("role", "row");
  div.dataset.partition = String(partition);
  div.dataset.offset = String(r.offset);
  rowRecords.set(div, { partition, record: r });
  const [utc, local] = times(Number(r.timestamp));
  const cells = [
    String(partition),
    "",
    utc,
    local,
    bytesText(r.key, hex, maxChars),
    bytesText(r.value, hex, maxChars),
    r.headers.map((h) => `${h.key}=${bytesText(h.value, hex, maxChars)}`).join("; "),
  ];
  cells.forEach((text, i) => {
    const cell = document.createElement("span");
    cell.setAttribute("role", "cell");
    if (i === 1) {
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.textContent = String(r.offset);
      open.setAttribute("aria-label", `Show record ${partition}/${r.offset}`);
      cell.appendChild(open);
    } else {
      cell.textContent = text;
    }
    div.appendChild(cell);
  });
  return div;
}

/** Shows bytes as text (JSON as sent) when they are UTF-8, else as hex; at most limit characters. */
function bytesText(b: Uint8Array, hex: boolean, limit: number): string {
  let s: string | undefined;
  if (!hex) {
    try {
      s = utf8.decode(b);
    } catch {
      s = undefined;
    }
  }
  if (s === undefined) {
    s = "";
    for (let i = 0; i < b.length && s.length < limit; i++) s += b[i].toString(16).padStart(2, "0");
    s = `0x${s}`;
  }
  return s.length > limit ? `${s.slice(0, limit)}…` : s;
}

/** A value for reading: indented JSON when it is JSON, else as the table shows it (whole). */
function fullValue(b: Uint8Array, hex: boolean): string {
  const s = bytesText(b, hex, Infinity);
  if (hex) return s;
  try {
    return JSON.stringify(JSON.parse(s), null, 2);
  } catch {
    return s;
  }
}

/** Opens the panel of a row's record. */
function showRecord(div: Element): void {
  const entry = rowRecords.get(div);
  if (!entry) return;
  const { partition, record: r } = entry;
  const hex = formatSelect.value === "hex";
  for (const selected of rowsBox.querySelectorAll("[aria-selected='true']")) selected.removeAttribute("aria-selected");
  div.setAttribute("aria-selected", "true");
  const [utc, local] = times(Number(r.timestamp));
  detailTitle.textContent = `Record ${partition}/${r.offset}`;
  const meta: [string, string][] = [
    ["time (UTC)", utc],
    ["local time", local],
    ["key", bytesText(r.key, hex, Infinity)],
    ["headers", r.headers.map((h) => `${h.key}=${bytesText(h.value, hex, Infinity)}`).join("; ") || "(none)"],
  ];
  detailMeta.replaceChildren(...meta.flatMap(([k, v]) => {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    return [dt, dd];
  }));
  detailValue.textContent = fullValue(r.value, hex);
  copiedText.textContent = "";
  detail.hidden = false;
}

async function copyValue(): Promise<void> {
  try {
    await navigator.clipboard.writeText(detailValue.textContent ?? "");
    copiedText.textContent = "Copied";
  } catch (err) {
    copiedText.textContent = `Cannot copy: ${err instanceof Error ? err.message : String(err)}`;
  }
}

function clearRecords(): void {
  pending = [];
  rowsBox.replaceChildren();
  detail.hidden = true;
  showCounts();
}

function updateRate(): void {
  const now = performance.now();
  rateSamples.push({ t: now, n: received });
  while (rateSamples.length > 2 && now - rateSamples[1].t >= 1000) rateSamples.shift();
  const first = rateSamples[0];
  const rate = now > first.t && received >= first.n ? ((received - first.n) * 1000) / (now - first.t) : 0;
  rateText.textContent = String(Math.round(rate));
  showCounts();
}

const svgNS = "http://www.w3.org/2000/svg";

/** Moves the chart one second on and draws the busiest partitions' lines. */
function tickChart(): void {
  for (const counts of perSecond.values()) {
    counts.shift();
    counts.push(0);
  }
  const busiest = [...perSecond].map(([p, counts]) => ({ p, counts, total: counts.reduce((a, b) => a + b, 0) }))
    .sort((a, b) => b.total - a.total || a.p - b.p).slice(0, chartPartitions).sort((a, b) => a.p - b.p);
  // The current second is still filling: the lines end at the last full one.
  const full = (counts: number[]) => counts.slice(0, chartSeconds - 1);
  const top = Math.max(1, ...busiest.flatMap((s) => full(s.counts)));
  const lines: SVGPolylineElement[] = [];
  const keys: HTMLElement[] = [];
  busiest.forEach((s, i) => {
    const line = document.createElementNS(svgNS, "polyline");
    line.setAttribute("points", full(s.counts).map((n, x) => `${(x * 300) / (chartSeconds - 2)},${58 - (n * 56) / top}`).join(" "));
    line.setAttribute("class", `series s${i}`);
    line.dataset.partition = String(s.p);
    lines.push(line);
    const key = document.createElement("span");
    key.className = `key s${i}`;
    key.textContent = `partition ${s.p}: ${full(s.counts).at(-1)}/s`;
    keys.push(key);
  });
  chart.replaceChildren(...lines);
  legend.replaceChildren(...keys);
  chart.setAttribute("aria-label", busiest.length === 0
    ? "Records per second per partition over the last minute: no records yet"
    : `Records per second over the last minute, peak ${top}/s; last second: ${keys.map((k) => k.textContent).join(", ")}`);
}

function setHeld(reason: keyof typeof held, on: boolean): void {
  if (held[reason] === on) return;
  held[reason] = on;
  if (reason === "button") {
    pauseButton.setAttribute("aria-pressed", String(on));
    pauseButton.textContent = on ? "Resume" : "Pause";
  }
  showCounts();
  requestRender();
}

function showStartFields(): void {
  $("offset-field").hidden = startSelect.value !== "offset";
  $("time-field").hidden = startSelect.value !== "time";
}

/** Offers the topics the chosen cluster allows. */
function offerTopics(): void {
  const names = site.topics?.[clusterSelect.value] ?? [];
  topicList.replaceChildren(...names.map((t) => new Option(t, t)));
}

async function loadSite(): Promise<Site> {
  try {
    const resp = await fetch("_page/site.json", { headers: { Accept: "application/json" } });
    if (resp.ok) return (await resp.json()) as Site;
  } catch {
    // Served without the server's description (e.g. a static copy): defaults below.
  }
  return { clusters: ["kafka"] };
}

async function main(): Promise<void> {
  site = await loadSite();
  const params = new URLSearchParams(location.search);
  const clusters = site.clusters.length > 0 ? site.clusters : ["kafka"];
  const wanted = params.get("cluster");
  if (wanted && !clusters.includes(wanted)) clusters.push(wanted);
  for (const name of clusters) clusterSelect.add(new Option(name, name));
  clusterSelect.value = wanted ?? clusters[0];
  offerTopics();
  topicInput.value = params.get("topic") ?? site.topic ?? site.topics?.[clusterSelect.value]?.[0] ?? "";
  partitionsInput.value = params.get("partitions") ?? "";
  const from = params.get("from") ?? "newest";
  if (from !== "" && Number.isSafeInteger(Number(from)) && Number(from) >= 0) {
    startSelect.value = "offset";
    offsetInput.value = from;
  } else if (from === "earliest" || from === "latest" || from === "newest") {
    startSelect.value = from;
  }
  formatSelect.value = params.get("format") === "hex" ? "hex" : "text";
  filterKeyInput.value = params.get("filter_key") ?? "";
  filterHeadersInput.value = params.getAll("filter_header").join(", ");
  showStartFields();

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void start();
  });
  clusterSelect.addEventListener("change", offerTopics);
  startSelect.addEventListener("change", showStartFields);
  stopButton.addEventListener("click", () => {
    generation++;
    void stopSubscription();
  });
  pauseButton.addEventListener("click", () => setHeld("button", !held.button));
  clearButton.addEventListener("click", clearRecords);
  tableWrap.addEventListener("scroll", () => setHeld("scroll", tableWrap.scrollTop > 2), { passive: true });
  document.addEventListener("selectionchange", () => {
    const sel = document.getSelection();
    setHeld("selection", !!sel && !sel.isCollapsed && sel.rangeCount > 0 && rowsBox.contains(sel.getRangeAt(0).commonAncestorContainer));
  });
  rowsBox.addEventListener("click", (e) => {
    const sel = document.getSelection();
    if (sel && !sel.isCollapsed) return; // selecting text, not opening
    const div = (e.target as Element).closest(".row");
    if (div) showRecord(div);
  });
  copyButton.addEventListener("click", () => void copyValue());
  $("close-detail").addEventListener("click", () => {
    detail.hidden = true;
    for (const selected of rowsBox.querySelectorAll("[aria-selected='true']")) selected.removeAttribute("aria-selected");
  });
  setInterval(updateRate, 250);
  setInterval(tickChart, 1000);
  if (topicInput.value !== "") void start();
}

void main();
