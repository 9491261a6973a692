// The live page: subscribes to a topic through this client and shows its
// records as they arrive. Served by the pub-sub server at "/" (web/), built
// by `npm run build`. Rendering is batched per animation frame and the table
// is bounded, so the page keeps up with thousands of records per second.
import {
  ConnectionClosedError,
  ServerError,
  connect,
  type Client,
  type ConnectionState,
  type KafkaMessage,
  type StartPosition,
  type Subscription,
  type SubscriptionEnd,
  type SubscriptionEvent,
} from "../src/index.js";

/** What the server tells the page (web.Site): endpoint names and the topic to open on. */
interface Site {
  clusters: string[];
  topic?: string;
}

/** Rows kept in the table; older ones are removed. */
const maxRows = 500;
/**
 * Rows added per animation frame. Records that arrive faster wait for the
 * next frame, and when more than maxRows wait, the oldest are never drawn:
 * at thousands of records per second the page shows the newest ones.
 */
const rowsPerFrame = 50;
/** Characters of a key or value shown; the rest is cut. */
const maxChars = 400;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>("controls");
const clusterSelect = $<HTMLSelectElement>("cluster");
const topicInput = $<HTMLInputElement>("topic");
const partitionsInput = $<HTMLInputElement>("partitions");
const startSelect = $<HTMLSelectElement>("start");
const offsetInput = $<HTMLInputElement>("offset");
const timeInput = $<HTMLInputElement>("time");
const formatSelect = $<HTMLSelectElement>("format");
const pauseButton = $<HTMLButtonElement>("pause");
const clearButton = $<HTMLButtonElement>("clear");
const stateText = $("state");
const messageText = $("message");
const rateText = $("rate");
const receivedText = $("received");
const shownText = $("shown");
const rowsBox = $("rows");

let client: Client | null = null;
let clientURL = "";
let subscription: Subscription | null = null;
/** Bumped by every start(), so that a superseded start does nothing. */
let generation = 0;
let paused = false;
let received = 0;
/** Records waiting for the next frame, oldest first, at most maxRows. */
let pending: { partition: number; record: KafkaMessage }[] = [];
let frameRequested = false;
const rateSamples: { t: number; n: number }[] = [];

const utf8 = new TextDecoder("utf-8", { fatal: true });

function endpointURL(cluster: string): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const base = location.pathname.replace(/[^/]*$/, "");
  return `${scheme}//${location.host}${base}${encodeURIComponent(cluster)}`;
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
    if (err.message.includes("topic not allowed")) {
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

async function start(): Promise<void> {
  const gen = ++generation;
  const cluster = clusterSelect.value;
  const topic = topicInput.value.trim();
  showMessage("");
  clearRecords();
  received = 0;
  const old = subscription;
  subscription = null;
  document.body.dataset.subscribed = "false";
  pauseButton.disabled = true;
  await old?.unsubscribe().catch(() => undefined);
  try {
    const url = endpointURL(cluster);
    if (!client || clientURL !== url || client.state.state === "closed") {
      client?.close();
      clientURL = url;
      client = null;
      showState({ state: "connecting" });
      client = await connect(url, { onStateChange: (s) => { if (clientURL === url) showState(s); } });
    }
    const sub = await client.subscribe({ topic, partitions: partitions(), start: startPosition() }, onEvent);
    if (gen !== generation) {
      await sub.unsubscribe().catch(() => undefined);
      return;
    }
    subscription = sub;
    document.body.dataset.subscribed = "true";
    pauseButton.disabled = false;
  } catch (err) {
    if (gen === generation) showMessage(describe(err, topic, cluster));
  }
}

function onEvent(ev: SubscriptionEvent | SubscriptionEnd): void {
  if (ev.kind === "error") {
    showMessage(`Partition ${ev.partition ?? "?"} of "${ev.topic}" stopped: ${ev.error.message}`);
    return;
  }
  if (ev.kind !== "records") return; // the page subscribes without a group: no assignments
  received += ev.records.length;
  for (const record of ev.records) pending.push({ partition: ev.partition, record });
  if (pending.length > maxRows) pending = pending.slice(pending.length - maxRows);
  if (!frameRequested && !paused) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
}

function render(): void {
  frameRequested = false;
  if (paused || pending.length === 0) return;
  const batch = pending.length > rowsPerFrame ? pending.slice(0, rowsPerFrame) : pending;
  pending = pending.length > rowsPerFrame ? pending.slice(rowsPerFrame) : [];
  if (pending.length > 0 && !frameRequested) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
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
  shownText.textContent = String(rowsBox.childElementCount);
  receivedText.textContent = String(received);
}

function row(partition: number, r: KafkaMessage, hex: boolean): HTMLElement {
  const div = document.createElement("div");
  div.className = "row";
  div.setAttribute("role", "row");
  div.dataset.partition = String(partition);
  div.dataset.offset = String(r.offset);
  const cells = [
    String(partition),
    String(r.offset),
    new Date(Number(r.timestamp)).toISOString().replace("T", " "),
    bytesText(r.key, hex),
    bytesText(r.value, hex),
    r.headers.map((h) => `${h.key}=${bytesText(h.value, hex)}`).join("; "),
  ];
  for (const text of cells) {
    const cell = document.createElement("span");
    cell.setAttribute("role", "cell");
    cell.textContent = text;
    div.appendChild(cell);
  }
  return div;
}

/** Shows bytes as text (JSON as sent) when they are UTF-8, else as hex. */
function bytesText(b: Uint8Array, hex: boolean): string {
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
    for (let i = 0; i < b.length && s.length < maxChars; i++) s += b[i].toString(16).padStart(2, "0");
    s = `0x${s}`;
  }
  return s.length > maxChars ? `${s.slice(0, maxChars)}…` : s;
}

function clearRecords(): void {
  pending = [];
  rowsBox.replaceChildren();
  shownText.textContent = "0";
}

function updateRate(): void {
  const now = performance.now();
  rateSamples.push({ t: now, n: received });
  while (rateSamples.length > 2 && now - rateSamples[1].t >= 1000) rateSamples.shift();
  const first = rateSamples[0];
  const rate = now > first.t && received >= first.n ? ((received - first.n) * 1000) / (now - first.t) : 0;
  rateText.textContent = String(Math.round(rate));
  receivedText.textContent = String(received);
}

function setPaused(p: boolean): void {
  paused = p;
  pauseButton.setAttribute("aria-pressed", String(p));
  pauseButton.textContent = p ? "Resume" : "Pause";
  if (!p && pending.length > 0 && !frameRequested) {
    frameRequested = true;
    requestAnimationFrame(render);
  }
}

function showStartFields(): void {
  $("offset-field").hidden = startSelect.value !== "offset";
  $("time-field").hidden = startSelect.value !== "time";
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
  const site = await loadSite();
  const params = new URLSearchParams(location.search);
  const clusters = site.clusters.length > 0 ? site.clusters : ["kafka"];
  const wanted = params.get("cluster");
  if (wanted && !clusters.includes(wanted)) clusters.push(wanted);
  for (const name of clusters) clusterSelect.add(new Option(name, name));
  clusterSelect.value = wanted ?? clusters[0];
  topicInput.value = params.get("topic") ?? site.topic ?? "";
  partitionsInput.value = params.get("partitions") ?? "";
  const from = params.get("from") ?? "earliest";
  if (/^\d+$/.test(from)) {
    startSelect.value = "offset";
    offsetInput.value = from;
  } else if (from === "earliest" || from === "latest") {
    startSelect.value = from;
  }
  formatSelect.value = params.get("format") === "hex" ? "hex" : "text";
  showStartFields();

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void start();
  });
  startSelect.addEventListener("change", showStartFields);
  pauseButton.addEventListener("click", () => setPaused(!paused));
  clearButton.addEventListener("click", clearRecords);
  setInterval(updateRate, 250);
  if (topicInput.value !== "") void start();
}

void main();
