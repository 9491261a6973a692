// Unit tests of the client against a scripted in-memory WebSocket: sequence
// matching, timeouts, cancellation, keepalive, reconnect backoff and the
// resume offsets (next_offset honoured, no record delivered twice).
import assert from "node:assert/strict";
import { test } from "node:test";
import vm from "node:vm";
// The test plays the server: it decodes requests and encodes replies.
import { PubSubReq } from "../dist/gen/decode/pubsub.js";
import { PubSubResp } from "../dist/gen/encode/pubsub.js";
import { AbortedError, ConnectionClosedError, PubSubError, RequestTimeoutError, RequestTooLargeError, ServerError, connect } from "../dist/index.js";
import { eventually } from "./harness.mjs";

/**
 * A WebSocket whose peer is a test script: each instance asks
 * FakeSocket.accept(socket) whether to open, and hands every request to
 * socket.onRequest.
 */
class FakeSocket {
  static accept = () => true;
  /** The reason of a refused connection (Node's ws names the HTTP status there). */
  static refusal = "";
  static sockets = [];
  binaryType = "blob";
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  requests = [];
  onRequest = () => {};

  constructor(url, protocols, options) {
    this.url = url;
    this.protocols = protocols;
    this.options = options;
    FakeSocket.sockets.push(this);
    setTimeout(() => {
      if (FakeSocket.accept(this)) this.onopen?.({});
      else this.serverClose(1006, FakeSocket.refusal);
    }, 0);
  }

  send(data) {
    const req = PubSubReq.decode(data);
    this.requests.push(req);
    this.onRequest(req);
  }

  close() {
    this.closed = true;
  }

  /** The server sends resp ({sequence, resp: {case, value}}, value's fields defaulted). */
  reply({ sequence, resp }) {
    const value = { ...respDefaults[resp.case], ...resp.value };
    const bytes = PubSubResp.encode({ sequence: BigInt(sequence), resp: { $case: resp.case, value } }).finish();
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }

  /** The server closes the connection. */
  serverClose(code, reason) {
    this.onclose?.({ code, reason });
  }
}

/** The default of every field of the replies the tests send. */
const respDefaults = {
  errorResp: { code: 0, message: "" },
  pongResp: { state: new Uint8Array() },
  kafkaFetchResp: { messages: [], topic: "", partition: 0, nextOffset: 0n },
  kafkaListOffsetResp: { offset: 0n },
  kafkaSubscribeResp: { partitions: [] },
  kafkaUnsubscribeResp: { subscription: 0n },
  kafkaAssignment: { topic: "", assigned: [], revoked: [] },
  authResp: { expiresAt: 0n },
};

function fakeOptions(extra = {}) {
  FakeSocket.accept = () => true;
  FakeSocket.refusal = "";
  FakeSocket.sockets = [];
  return { WebSocket: FakeSocket, keepaliveIntervalMs: 0, ...extra };
}

const records = (from, n) => Array.from({ length: n }, (_, i) =>
  ({ offset: BigInt(from + i), timestamp: 0n, key: new Uint8Array(), value: new TextEncoder().encode(`v${from + i}`), headers: [] }));

test("replies are matched by sequence, whatever their order", async () => {
  const c = await connect("ws://test/kafka", fakeOptions());
  const ws = FakeSocket.sockets[0];
  const a = c.listOffset("t", 0, "earliest");
  const b = c.listOffset("t", 0, "latest");
  const [ra, rb] = ws.requests;
  assert.equal(ra.req.value.timestamp, -2n);
  assert.equal(rb.req.value.timestamp, -1n);
  assert.notEqual(ra.sequence, rb.sequence);
  ws.reply({ sequence: rb.sequence, resp: { case: "kafkaListOffsetResp", value: { offset: 42n } } });
  ws.reply({ sequence: ra.sequence, resp: { case: "kafkaListOffsetResp", value: { offset: 7n } } });
  assert.deepEqual(await Promise.all([a, b]), [7n, 42n]);

  const failed = c.fetch("t", 0, 3);
  ws.reply({ sequence: ws.requests[2].sequence, resp: { case: "errorResp", value: { code: 0, message: "failed to fetch message, topic: t, partition: 0, err: OFFSET_OUT_OF_RANGE" } } });
  await assert.rejects(failed, (e) => e instanceof ServerError && e.message.endsWith("OFFSET_OUT_OF_RANGE"));
  c.close();
});

test("fetch continues at next_offset when the server sets it, else at last + 1", async () => {
  const c = await connect("ws://test/kafka", fakeOptions());
  const ws = FakeSocket.sockets[0];
  ws.onRequest = (req) => {
    const from = Number(req.req.value.offset);
    const value = from === 0
      ? { messages: records(0, 3), nextOffset: 10n } // offsets 3..9 hold no data record
      : { messages: records(from, 2) };
    ws.reply({ sequence: req.sequence, resp: { case: "kafkaFetchResp", value: value } });
  };
  assert.equal((await c.fetch("t", 0, 0)).nextOffset, 10n);
  assert.equal((await c.fetch("t", 0, 10)).nextOffset, 12n);
  c.close();
});

test("a request without a reply times out; one can be aborted; a late reply is ignored", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ requestTimeoutMs: 30 }));
  const ws = FakeSocket.sockets[0];
  await assert.rejects(c.ping(), (e) => e instanceof RequestTimeoutError && e.timeoutMs === 30);
  ws.reply({ sequence: ws.requests[0].sequence, resp: { case: "pongResp", value: {} } });
  const ac = new AbortController();
  const p = c.ping(undefined, { signal: ac.signal, timeoutMs: 10_000 });
  ac.abort();
  await assert.rejects(p, (e) => e instanceof AbortedError);
  c.close();
  await assert.rejects(c.ping(), (e) => e instanceof ConnectionClosedError && e.closeCode === 1000);
});

test("keepalive finds a connection that stopped answering and reconnects", async () => {
  const states = [];
  const c = await connect("ws://test/kafka", fakeOptions({
    keepaliveIntervalMs: 20,
    keepaliveTimeoutMs: 30,
    reconnect: { initialDelayMs: 1, restartDelayMs: 1 },
    onStateChange: (s) => states.push(s),
  }));
  const dead = FakeSocket.sockets[0]; // never answers
  await eventually(() => FakeSocket.sockets.length === 2 && c.state.state === "connected", 5_000, "reconnect");
  assert.ok(dead.requests.length >= 1 && dead.requests[0].req.$case === "cmdPing");
  assert.ok(dead.closed);
  const r = states.find((s) => s.state === "reconnecting");
  assert.equal(r.closeCode, 1006);
  assert.match(r.reason, /keepalive/);
  // A live connection answers the keepalive and stays.
  const live = FakeSocket.sockets[1];
  live.onRequest = (req) => live.reply({ sequence: req.sequence, resp: { case: "pongResp", value: { state: req.req.value.state } } });
  await eventually(() => live.requests.length >= 3, 5_000, "keepalive pings");
  assert.equal(FakeSocket.sockets.length, 2);
  c.close();
});

/** Runs fn with Math.random returning r (the client's jitter). */
async function withRandom(r, fn) {
  const real = Math.random;
  Math.random = () => r;
  try {
    return await fn();
  } finally {
    Math.random = real;
  }
}

/** The [attempt, delayMs] of every reconnecting state. */
const waits = (states) => states.filter((s) => s.state === "reconnecting").map((s) => [s.attempt, s.delayMs]);

test("reconnect waits are drawn between 0 and a cap that doubles per attempt (full jitter); it gives up after maxAttempts", async () => {
  for (const [r, want] of [[1, [4, 8, 16, 20, 20]], [0.5, [2, 4, 8, 10, 10]], [0, [0, 0, 0, 0, 0]]]) {
    const states = [];
    const c = await connect("ws://test/kafka", fakeOptions({
      reconnect: { initialDelayMs: 4, maxDelayMs: 20, maxAttempts: 5 },
      onStateChange: (s) => states.push(s),
    }));
    FakeSocket.accept = () => false;
    await withRandom(r, async () => {
      FakeSocket.sockets[0].serverClose(1006, "");
      await eventually(() => c.state.state === "closed", 5_000, "giving up");
    });
    assert.deepEqual(waits(states), want.map((d, i) => [i + 1, d]), `random ${r}`);
    assert.equal(c.state.closeCode, 1006);
  }
});

test("after 1001, 4008 or a 503 the first wait's cap is restartDelayMs", async () => {
  for (const [code, reason] of [[1001, "going away"], [4008, "slow consumer"], [1006, "Unexpected server response: 503"]]) {
    const states = [];
    const c = await connect("ws://test/kafka", fakeOptions({
      reconnect: { initialDelayMs: 4, maxDelayMs: 100, restartDelayMs: 30, maxAttempts: 3 },
      onStateChange: (s) => states.push(s),
    }));
    FakeSocket.accept = () => false;
    await withRandom(1, async () => {
      FakeSocket.sockets[0].serverClose(code, reason);
      await eventually(() => c.state.state === "closed", 5_000, "giving up");
    });
    assert.deepEqual(waits(states), [[1, 30], [2, 60], [3, 100]], `close ${code} ${reason}`);
  }
});

test("the attempt count resets only once a connection stayed up for resetAfterMs", async () => {
  const states = [];
  const c = await connect("ws://test/kafka", fakeOptions({
    reconnect: { initialDelayMs: 1, maxDelayMs: 1, resetAfterMs: 200 },
    onStateChange: (s) => states.push(s),
  }));
  // Accepted, then dropped at once, three times: the count goes on.
  for (let i = 0; i < 3; i++) {
    FakeSocket.sockets.at(-1).serverClose(1006, "");
    await eventually(() => FakeSocket.sockets.length === i + 2 && c.state.state === "connected", 5_000, "reconnect");
  }
  assert.deepEqual(waits(states).map(([a]) => a), [1, 2, 3]);
  // A connection that stays up resets it.
  await new Promise((r) => setTimeout(r, 250));
  FakeSocket.sockets.at(-1).serverClose(1006, "");
  await eventually(() => c.state.state === "connected" && FakeSocket.sockets.length === 5, 5_000, "reconnect");
  assert.deepEqual(waits(states).map(([a]) => a), [1, 2, 3, 1]);
  c.close();
});

test("a close code that says the client broke the protocol is not retried; 1009 is", async () => {
  for (const code of [1002, 1003, 1007, 1008]) {
    const c = await connect("ws://test/kafka", fakeOptions());
    FakeSocket.sockets[0].serverClose(code, "bad client");
    assert.deepEqual(c.state, { state: "closed", closeCode: code, reason: "bad client" });
    assert.equal(FakeSocket.sockets.length, 1);
  }
  // The client never sends a frame over maxFrameBytes: a 1009 is something else, and passes.
  const c = await connect("ws://test/kafka", fakeOptions({ reconnect: { initialDelayMs: 1, restartDelayMs: 1 } }));
  FakeSocket.sockets[0].serverClose(1009, "message too big");
  await eventually(() => FakeSocket.sockets.length === 2 && c.state.state === "connected", 5_000, "reconnect after 1009");
  c.close();
});

test("the first connect tries again until the server accepts, unless reconnect is false", async () => {
  const options = fakeOptions({ reconnect: { initialDelayMs: 2, maxDelayMs: 5 } });
  let refusals = 3;
  FakeSocket.accept = () => refusals-- <= 0;
  const states = [];
  const c = await connect("ws://test/kafka", { ...options, onStateChange: (s) => states.push(s.state) });
  assert.equal(FakeSocket.sockets.length, 4);
  assert.deepEqual(states.filter((s) => s === "reconnecting").length, 3);
  c.close();

  const once = fakeOptions({ reconnect: false });
  FakeSocket.accept = () => false;
  await assert.rejects(connect("ws://test/kafka", once), (e) => e instanceof ConnectionClosedError && e.closeCode === 1006);
  assert.equal(FakeSocket.sockets.length, 1);
  // An upgrade refused as a client error (404) is not tried again either.
  const refusedOptions = fakeOptions({ reconnect: { initialDelayMs: 1, restartDelayMs: 1 } });
  FakeSocket.accept = () => false;
  FakeSocket.refusal = "Unexpected server response: 404";
  await assert.rejects(connect("ws://test/nope", refusedOptions), (e) => e instanceof ConnectionClosedError && /404/.test(e.reason));
  assert.equal(FakeSocket.sockets.length, 1);
});

test("in-flight requests fail when the connection is lost; requests made while reconnecting wait for it", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ reconnect: { initialDelayMs: 1, restartDelayMs: 1 } }));
  const inFlight = c.ping();
  FakeSocket.accept = () => false;
  FakeSocket.sockets[0].serverClose(1001, "going away");
  await assert.rejects(inFlight, (e) => e instanceof ConnectionClosedError && e.closeCode === 1001);
  const waiting = c.listOffset("t", 0, "latest");
  await eventually(() => FakeSocket.sockets.length >= 3, 5_000, "failed attempts");
  FakeSocket.accept = () => true;
  await eventually(() => c.state.state === "connected", 5_000, "reconnect");
  const ws = FakeSocket.sockets.at(-1);
  assert.equal(ws.requests.length, 1);
  ws.reply({ sequence: ws.requests[0].sequence, resp: { case: "kafkaListOffsetResp", value: { offset: 9n } } });
  assert.equal(await waiting, 9n);
  c.close();
});

test("a resumed subscription asks for the offset after the last one delivered and never repeats a record", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ reconnect: { initialDelayMs: 1, restartDelayMs: 1 } }));
  const push = (ws, seq, partition, msgs, nextOffset = 0n) => ws.reply({
    sequence: seq,
    resp: { case: "kafkaFetchResp", value: { topic: "t", partition, messages: msgs, nextOffset } },
  });
  const ack = (ws, req, starts) => ws.reply({
    sequence: req.sequence,
    resp: { case: "kafkaSubscribeResp", value: { partitions: starts.map(([partition, offset]) => ({ partition, offset: BigInt(offset) })) } },
  });
  let ws = FakeSocket.sockets[0];
  ws.onRequest = (req) => ack(ws, req, [[0, 0], [1, 5]]);
  const got = [];
  const sub = await c.subscribe({ topic: "t", start: "earliest", maxRecords: 3 },
    (ev) => ev.kind === "records" && got.push(...ev.records.map((r) => `${ev.partition}:${r.offset}`)));
  const seq = ws.requests[0].sequence;
  push(ws, seq, 0, records(0, 3));
  push(ws, seq, 1, records(5, 1), 9n); // 6..8 hold no data record
  assert.deepEqual([...sub.positions], [[0, 3n], [1, 9n]]);

  FakeSocket.sockets[0].serverClose(1001, "going away");
  await eventually(() => FakeSocket.sockets.length === 2 && c.state.state === "connected", 5_000, "reconnect");
  ws = FakeSocket.sockets[1];
  await eventually(() => ws.requests.length === 1, 5_000, "resubscribe");
  const resub = ws.requests[0].req.value;
  assert.deepEqual([...resub.partitions].sort(), [0, 1]);
  assert.deepEqual(Object.entries(resub.offsets).sort(), [["0", 3n], ["1", 9n]]);
  assert.equal(resub.maxRecords, 3);
  ack(ws, ws.requests[0], [[0, 3], [1, 9]]);
  const seq2 = ws.requests[0].sequence;
  push(ws, seq2, 0, records(2, 3)); // 2 was delivered before: only 3 and 4 are new
  push(ws, seq, 0, records(9, 1)); // the old sequence is gone
  assert.deepEqual(got, ["0:0", "0:1", "0:2", "1:5", "0:3", "0:4"]);
  assert.equal(sub.sequence, Number(seq2));

  ws.onRequest = (req) => ws.reply({ sequence: req.sequence, resp: { case: "kafkaUnsubscribeResp", value: { subscription: seq2 } } });
  await sub.unsubscribe();
  assert.equal(ws.requests[1].req.value.subscription, seq2);
  push(ws, seq2, 0, records(5, 1));
  assert.equal(got.length, 6);
  c.close();
});

test("a subscription acknowledged after its request timed out is unsubscribed", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ requestTimeoutMs: 20 }));
  const ws = FakeSocket.sockets[0];
  await assert.rejects(c.subscribe({ topic: "t" }), (e) => e instanceof RequestTimeoutError);
  const seq = ws.requests[0].sequence;
  ws.reply({ sequence: seq, resp: { case: "kafkaSubscribeResp", value: { partitions: [{ partition: 0, offset: 0n }] } } });
  assert.equal(ws.requests[1].req.$case, "cmdKafkaUnsubscribe");
  assert.equal(ws.requests[1].req.value.subscription, seq);
  c.close();
});

test("a partition failure is reported and that partition is not resumed", async () => {
  const c = await connect("ws://test/kafka", fakeOptions());
  const ws = FakeSocket.sockets[0];
  ws.onRequest = (req) => ws.reply({ sequence: req.sequence, resp: { case: "kafkaSubscribeResp", value: { partitions: [{ partition: 0, offset: 0n }, { partition: 1, offset: 0n }] } } });
  const sub = await c.subscribe({ topic: "t" });
  ws.reply({ sequence: ws.requests[0].sequence, resp: { case: "errorResp", value: { message: "failed to subscribe, topic: t, partition: 1, err: OFFSET_OUT_OF_RANGE" } } });
  const it = sub[Symbol.asyncIterator]();
  const { value } = await it.next();
  assert.equal(value.kind, "error");
  assert.equal(value.partition, 1);
  assert.ok(value.error instanceof ServerError);
  assert.deepEqual([...sub.positions.keys()], [0]);
  c.close();
  assert.deepEqual(await it.next(), { done: true, value: undefined });
});

test("a plain subscription whose partitions all failed ends with the last error: end event, closed, no resume", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ reconnect: { initialDelayMs: 1, restartDelayMs: 1 } }));
  const ws = FakeSocket.sockets[0];
  ws.onRequest = (req) => ws.reply({ sequence: req.sequence, resp: { case: "kafkaSubscribeResp", value: { partitions: [{ partition: 3, offset: 0n }] } } });
  const events = [];
  const sub = await c.subscribe({ topic: "t", partitions: [3] }, (ev) => events.push(ev));
  ws.reply({ sequence: ws.requests[0].sequence, resp: { case: "errorResp", value: { message: "failed to subscribe, topic: t, partition: 3, err: UNKNOWN_TOPIC_OR_PARTITION" } } });
  assert.ok(sub.ended);
  const err = await sub.closed;
  assert.ok(err instanceof ServerError && err.partition === 3 && err.cause === "UNKNOWN_TOPIC_OR_PARTITION");
  assert.deepEqual(events.map((e) => e.kind), ["error", "end"]);
  assert.equal(events[1].error, err);
  ws.serverClose(1001, "going away");
  await eventually(() => c.state.state === "connected" && FakeSocket.sockets.length === 2, 5_000, "reconnect");
  assert.equal(FakeSocket.sockets[1].requests.length, 0);
  c.close();
});

test("a group subscription loses its partitions with the connection and resubscribes with the group and no offsets", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ reconnect: { initialDelayMs: 1, restartDelayMs: 1 } }));
  const ackGroup = (ws, req) => ws.reply({ sequence: req.sequence, resp: { case: "kafkaSubscribeResp", value: {} } });
  const assignment = (ws, seq, assigned, revoked = []) => ws.reply({
    sequence: seq, resp: { case: "kafkaAssignment", value: { topic: "t", assigned, revoked } },
  });
  const push = (ws, seq, partition, msgs) => ws.reply({
    sequence: seq, resp: { case: "kafkaFetchResp", value: { topic: "t", partition, messages: msgs } },
  });
  let ws = FakeSocket.sockets[0];
  ws.onRequest = (req) => ackGroup(ws, req);
  const events = [];
  const sub = await c.subscribe({ topic: "t", group: "g", start: "earliest" }, (ev) => events.push(ev));
  const req = ws.requests[0].req.value;
  assert.deepEqual([req.group, req.partitions, req.offsets], ["g", [], {}]);
  const seq = ws.requests[0].sequence;
  push(ws, seq, 0, records(0, 1)); // before any assignment: not this subscription's
  assignment(ws, seq, [0, 1, 2]);
  push(ws, seq, 0, records(7, 2));
  push(ws, seq, 1, records(3, 1));
  assignment(ws, seq, [], [1]);
  push(ws, seq, 1, records(4, 1)); // revoked: dropped
  assert.deepEqual([...sub.positions], [[0, 9n], [2, -1n]]);

  ws.serverClose(1006, "");
  await eventually(() => FakeSocket.sockets.length === 2 && c.state.state === "connected", 5_000, "reconnect");
  ws = FakeSocket.sockets[1];
  await eventually(() => ws.requests.length === 1, 5_000, "resubscribe");
  const resub = ws.requests[0].req.value;
  assert.deepEqual([resub.group, resub.partitions, resub.offsets, resub.start.$case], ["g", [], {}, "earliest"]);
  ackGroup(ws, ws.requests[0]);
  const seq2 = ws.requests[0].sequence;
  assignment(ws, seq2, [0]);
  push(ws, seq2, 0, records(8, 3)); // from the committed offset: 8 is delivered again
  assert.deepEqual(events.map((ev) => ev.kind === "records"
    ? `records ${ev.partition}:${ev.records.map((r) => r.offset).join(",")}`
    : `assignment +${ev.assigned} -${ev.revoked} ${ev.offsets.map((o) => `${o.partition}@${o.offset}`)}${ev.lost ? " lost" : ""}`), [
    "assignment +0,1,2 - ",
    "records 0:7,8",
    "records 1:3",
    "assignment + -1 1@4",
    "assignment + -0,2 0@9 lost",
    "assignment +0 - ",
    "records 0:8,9,10",
  ]);
  assert.equal(sub.group, "g");
  c.close();
});

test("every error class names itself explicitly, and ServerError is parsed once into its parts", () => {
  const cases = [
    [new PubSubError("x"), "PubSubError"],
    [new ServerError("failed to fetch message, topic: t, partition: 2, err: broker unreachable"), "ServerError"],
    [new RequestTimeoutError("ping", 5), "RequestTimeoutError"],
    [new ConnectionClosedError(1001, "going away"), "ConnectionClosedError"],
    [new AbortedError("aborted"), "AbortedError"],
    [new RequestTooLargeError("produce", 2, 1), "RequestTooLargeError"],
  ];
  for (const [err, name] of cases) {
    assert.equal(err.name, name);
    assert.ok(err instanceof PubSubError && err instanceof Error);
    assert.ok(String(err).startsWith(`${name}: `));
  }
  const e = cases[1][0];
  assert.deepEqual([e.op, e.topic, e.partition, e.cause, e.retriable, e.code], ["fetch message", "t", 2, "broker unreachable", true, 0]);
  const oor = new ServerError("failed to subscribe, topic: orders, partition: 0, err: OFFSET_OUT_OF_RANGE");
  assert.deepEqual([oor.op, oor.topic, oor.partition, oor.cause, oor.retriable], ["subscribe", "orders", 0, "OFFSET_OUT_OF_RANGE", false]);
  const leader = new ServerError("failed to list offset, topic: a.b-c, partition: 11, err: NOT_LEADER_FOR_PARTITION");
  assert.deepEqual([leader.topic, leader.partition, leader.retriable], ["a.b-c", 11, true]);
  const group = new ServerError("failed to commit offset, group: g, topic: t, err: group not allowed");
  assert.deepEqual([group.op, group.topic, group.partition, group.cause, group.retriable], ["commit offset", "t", undefined, "group not allowed", false]);
  const other = new ServerError("unknown command", 3);
  assert.deepEqual([other.op, other.topic, other.partition, other.cause, other.retriable, other.code], [undefined, undefined, undefined, "unknown command", false, 3]);
});

test("a request over maxFrameBytes is refused locally, nothing is sent, and the client stays connected", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ maxFrameBytes: 1000 }));
  const ws = FakeSocket.sockets[0];
  await assert.rejects(c.produce("t", 0, [{ value: new Uint8Array(1000) }]),
    (e) => e instanceof RequestTooLargeError && e.maxFrameBytes === 1000 && e.bytes > 1000 && e.name === "RequestTooLargeError");
  assert.equal(ws.requests.length, 0);
  assert.equal(c.state.state, "connected");
  ws.onRequest = (req) => ws.reply({ sequence: req.sequence, resp: { case: "kafkaProduceResp", value: { offsets: [{ partition: 0, offset: 7n }] } } });
  assert.deepEqual(await c.produce("t", 0, [{ value: new Uint8Array(900) }]), [{ partition: 0, offset: 7n }]);
  c.close();
});

test("subprotocols and upgrade headers reach the WebSocket class; none are passed when not given", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ protocols: ["pubsub.v1"], headers: { Authorization: "Bearer t" } }));
  assert.deepEqual([FakeSocket.sockets[0].protocols, FakeSocket.sockets[0].options], [["pubsub.v1"], { headers: { Authorization: "Bearer t" } }]);
  c.close();
  const plain = await connect("ws://test/kafka", fakeOptions());
  assert.deepEqual([FakeSocket.sockets[0].protocols, FakeSocket.sockets[0].options], [undefined, undefined]);
  plain.close();
});

test("a binary message made in another realm (an iframe's or a worker's ArrayBuffer) is read", async () => {
  const c = await connect("ws://test/kafka", fakeOptions());
  const ws = FakeSocket.sockets[0];
  const p = c.listOffset("t", 0, "latest");
  const bytes = PubSubResp.encode({ sequence: ws.requests[0].sequence, resp: { $case: "kafkaListOffsetResp", value: { offset: 5n } } }).finish();
  const foreign = vm.runInNewContext(`new ArrayBuffer(${bytes.length})`);
  assert.ok(!(foreign instanceof ArrayBuffer));
  new Uint8Array(foreign).set(bytes);
  ws.onmessage({ data: foreign });
  assert.equal(await p, 5n);
  c.close();
});

/** A fake server for subscriptions of topic "t": acks with starts, pushes on request. */
function subscriptionServer(ws, starts) {
  const s = { subscribes: [], unsubscribes: [], refuse: [] };
  ws.onRequest = (req) => {
    if (req.req.$case === "cmdKafkaSubscribe") {
      s.subscribes.push(req);
      const refusal = s.refuse.shift();
      if (refusal) {
        ws.reply({ sequence: req.sequence, resp: { case: "errorResp", value: { message: refusal } } });
        return;
      }
      const offsets = req.req.value.offsets;
      ws.reply({ sequence: req.sequence, resp: { case: "kafkaSubscribeResp", value: {
        partitions: starts.map(([partition, offset]) => ({ partition, offset: offsets[partition] ?? BigInt(offset) })),
      } } });
    } else if (req.req.$case === "cmdKafkaUnsubscribe") {
      s.unsubscribes.push(req.req.value.subscription);
      ws.reply({ sequence: req.sequence, resp: { case: "kafkaUnsubscribeResp", value: { subscription: req.req.value.subscription } } });
    } else if (req.req.$case === "cmdKafkaListOffset") {
      const { partition, timestamp } = req.req.value;
      ws.reply({ sequence: req.sequence, resp: { case: "kafkaListOffsetResp", value: { offset: (timestamp === -2n ? 100n : 500n) + BigInt(partition) } } });
    }
  };
  s.push = (partition, from, n, seq = s.subscribes.at(-1).sequence) => ws.reply({
    sequence: seq, resp: { case: "kafkaFetchResp", value: { topic: "t", partition, messages: records(from, n) } },
  });
  return s;
}

test("concurrent next() calls get the events in order; the iterator throws the error that ended it", async () => {
  const c = await connect("ws://test/kafka", fakeOptions());
  const server = subscriptionServer(FakeSocket.sockets[0], [[0, 0]]);
  const sub = await c.subscribe({ topic: "t", partitions: [0] });
  const it = sub[Symbol.asyncIterator]();
  const [a, b, d] = [it.next(), it.next(), it.next()];
  server.push(0, 0, 1);
  server.push(0, 1, 2);
  assert.deepEqual((await a).value.records.map((r) => r.offset), [0n]);
  assert.deepEqual((await b).value.records.map((r) => r.offset), [1n, 2n]);
  FakeSocket.sockets[0].reply({ sequence: server.subscribes[0].sequence, resp: { case: "errorResp", value: { message: "failed to subscribe, topic: t, partition: 0, err: not found topic" } } });
  assert.equal((await d).value.kind, "error");
  const e = it.next();
  const after = it.next();
  await assert.rejects(e, (err) => err instanceof ServerError && err.cause === "not found topic");
  assert.deepEqual(await after, { done: true, value: undefined });
  assert.equal((await sub.closed).cause, "not found topic");
  c.close();
});

test("an unread iterator stops the server at maxBufferedRecords and resumes after its queue, with nothing lost or twice", async () => {
  const c = await connect("ws://test/kafka", fakeOptions());
  const ws = FakeSocket.sockets[0];
  const server = subscriptionServer(ws, [[0, 0], [1, 0]]);
  const sub = await c.subscribe({ topic: "t", start: "earliest", maxBufferedRecords: 10 });
  const first = server.subscribes[0].sequence;
  server.push(0, 0, 6);
  server.push(1, 0, 4);
  assert.deepEqual([sub.buffered, server.unsubscribes.length], [10, 0]);
  server.push(0, 6, 3); // over the limit: the client unsubscribes
  assert.deepEqual([sub.buffered, server.unsubscribes], [13, [first]]);
  // Taking records moves positions; the resume waits until half the queue is read.
  const it = sub[Symbol.asyncIterator]();
  assert.deepEqual([...sub.positions], [[0, 0n], [1, 0n]]);
  await it.next();
  assert.deepEqual([sub.buffered, sub.positions.get(0), server.subscribes.length], [7, 6n, 1]);
  await it.next();
  assert.deepEqual([sub.buffered, sub.positions.get(1), server.subscribes.length], [3, 4n, 2]);
  const resume = server.subscribes[1].req.value;
  assert.deepEqual([[...resume.partitions].sort(), Object.entries(resume.offsets).sort()], [[0, 1], [["0", 9n], ["1", 4n]]]);
  server.push(0, 9, 1);
  server.push(0, 6, 1, first); // the old subscription is gone
  const offsets = [];
  for (let i = 0; i < 2; i++) offsets.push(...(await it.next()).value.records.map((r) => r.offset));
  assert.deepEqual(offsets, [6n, 7n, 8n, 9n]);
  assert.deepEqual([sub.buffered, sub.positions.get(0)], [0, 10n]);
  c.close();
});

test("a resume refused for a while is tried again with backoff; one refused for good ends the subscription", async () => {
  const c = await connect("ws://test/kafka", fakeOptions({ reconnect: { initialDelayMs: 1, restartDelayMs: 1, maxDelayMs: 5 } }));
  let server = subscriptionServer(FakeSocket.sockets[0], [[0, 0]]);
  const events = [];
  const sub = await c.subscribe({ topic: "t", partitions: [0] }, (ev) => events.push(ev));
  server.push(0, 0, 2);
  FakeSocket.accept = (ws) => {
    server = subscriptionServer(ws, [[0, 0]]);
    server.refuse.push(
      "failed to subscribe, topic: t, partition: 0, err: broker unreachable",
      "failed to subscribe, topic: t, partition: 0, err: NOT_LEADER_FOR_PARTITION",
    );
    return true;
  };
  FakeSocket.sockets[0].serverClose(1006, "");
  await eventually(() => server.subscribes.length === 3, 5_000, "resume attempts");
  assert.ok(!sub.ended);
  assert.deepEqual(server.subscribes.map((r) => r.req.value.offsets[0]), [2n, 2n, 2n]);
  server.push(0, 2, 1);
  assert.deepEqual(events.flatMap((e) => e.records?.map((r) => r.offset) ?? []), [0n, 1n, 2n]);

  // The topic was deleted meanwhile: the resume is refused and the subscription ends with it.
  FakeSocket.accept = (ws) => {
    server = subscriptionServer(ws, [[0, 0]]);
    server.refuse.push("failed to subscribe, topic: t, partition: 0, err: not found topic");
    return true;
  };
  FakeSocket.sockets.at(-1).serverClose(1006, "");
  const err = await sub.closed;
  assert.ok(err instanceof ServerError && err.cause === "not found topic");
  assert.deepEqual(events.at(-1), { kind: "end", error: err });
  assert.equal(events.filter((e) => e.kind === "end").length, 1);
  c.close();
});

test("a resumed partition out of the log follows autoOffsetReset, per partition", async () => {
  for (const [reset, want] of [["earliest", 100n], ["latest", 500n], ["error", undefined]]) {
    const c = await connect("ws://test/kafka", fakeOptions({ reconnect: { initialDelayMs: 1, restartDelayMs: 1 } }));
    let server = subscriptionServer(FakeSocket.sockets[0], [[0, 0], [1, 0]]);
    const events = [];
    const sub = await c.subscribe({ topic: "t", start: "earliest", autoOffsetReset: reset === "error" ? undefined : reset }, (ev) => events.push(ev));
    server.push(0, 0, 3);
    server.push(1, 0, 3);
    FakeSocket.accept = (ws) => {
      server = subscriptionServer(ws, [[0, 0], [1, 0]]);
      server.refuse.push("failed to subscribe, topic: t, partition: 0, err: OFFSET_OUT_OF_RANGE");
      return true;
    };
    FakeSocket.sockets[0].serverClose(1006, "");
    await eventually(() => server.subscribes.length === 2, 5_000, `resume (${reset})`);
    const resumed = server.subscribes[1].req.value;
    if (want === undefined) {
      // "error" (the default): partition 0 stops with an error event, partition 1 goes on.
      assert.deepEqual([resumed.partitions, resumed.offsets], [[1], { 1: 3n }]);
      const e = events.find((ev) => ev.kind === "error");
      assert.ok(e && e.partition === 0 && e.error.cause === "OFFSET_OUT_OF_RANGE");
      assert.deepEqual([...sub.positions], [[1, 3n]]);
    } else {
      assert.deepEqual([[...resumed.partitions].sort(), resumed.offsets], [[0, 1], { 0: want, 1: 3n }]);
      assert.ok(!events.some((ev) => ev.kind === "error"));
    }
    assert.ok(!sub.ended);
    c.close();
  }
});

/** An unsigned JWT-shaped token with claims (the client only reads its exp). */
function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "RS256", typ: "JWT" })}.${b64(claims)}.c2ln`;
}

test("a token goes in ?access_token= (or Authorization with headers); a token function is called at every connect", async () => {
  const c = await connect("ws://test/kafka?x=1", fakeOptions({ token: "abc" }));
  assert.equal(FakeSocket.sockets[0].url, "ws://test/kafka?x=1&access_token=abc");
  assert.equal(c.url, "ws://test/kafka?x=1");
  c.close();

  const node = await connect("ws://test/kafka", fakeOptions({ token: "abc", headers: { "X-Trace": "1" } }));
  assert.deepEqual([FakeSocket.sockets[0].url, FakeSocket.sockets[0].options], ["ws://test/kafka", { headers: { "X-Trace": "1", Authorization: "Bearer abc" } }]);
  node.close();

  let calls = 0;
  const fresh = await connect("ws://test/kafka", fakeOptions({ token: async () => `t${++calls}`, reconnect: { initialDelayMs: 1 } }));
  FakeSocket.sockets[0].serverClose(1006, "");
  await eventually(() => FakeSocket.sockets.length === 2 && fresh.state.state === "connected", 5_000, "reconnect");
  assert.deepEqual(FakeSocket.sockets.map((s) => new URL(s.url).searchParams.get("access_token")), ["t1", "t2"]);
  fresh.close();

  // A token function that fails is a failed attempt: the client tries again.
  let failures = 2;
  const flaky = await connect("ws://test/kafka", fakeOptions({
    token: () => { if (failures-- > 0) throw new Error("identity provider down"); return "ok"; },
    reconnect: { initialDelayMs: 1 },
  }));
  assert.deepEqual(FakeSocket.sockets.map((s) => new URL(s.url).searchParams.get("access_token")), ["ok"]);
  flaky.close();
});

test("a token is refreshed with cmd_auth before it expires, on the same connection", async () => {
  let n = 0;
  const token = () => jwt({ sub: "u1", n: ++n, exp: Math.floor(Date.now() / 1000) + 2 });
  const c = await connect("ws://test/kafka", fakeOptions({ token, tokenRefreshBeforeMs: 1_900 }));
  const ws = FakeSocket.sockets[0];
  ws.onRequest = (req) => {
    if (req.req.$case !== "cmdAuth") return;
    ws.reply({ sequence: req.sequence, resp: { case: "authResp", value: { expiresAt: BigInt(Date.now() + 2_000) } } });
  };
  // The first refresh comes before the connect token's exp; the next before the server's expires_at.
  await eventually(() => ws.requests.filter((r) => r.req.$case === "cmdAuth").length >= 2, 5_000, "refreshes");
  const auths = ws.requests.filter((r) => r.req.$case === "cmdAuth").map((r) => JSON.parse(Buffer.from(r.req.value.token.split(".")[1], "base64url")).n);
  assert.deepEqual(auths.slice(0, 2), [2, 3]);
  assert.equal(FakeSocket.sockets.length, 1);
  c.close();
});

test("a session ended at token expiry (4401) reconnects at once with a fresh token and resumes its subscriptions", async () => {
  let n = 0;
  const c = await connect("ws://test/kafka", fakeOptions({ token: () => `t${++n}`, reconnect: { initialDelayMs: 5_000 } }));
  const first = subscriptionServer(FakeSocket.sockets[0], [[0, 0]]);
  let server = first;
  const sub = await c.subscribe({ topic: "t", partitions: [0] }, () => undefined);
  server.push(0, 0, 4);
  FakeSocket.accept = (ws) => {
    server = subscriptionServer(ws, [[0, 0]]);
    return true;
  };
  FakeSocket.sockets[0].serverClose(4401, "token expired");
  // Not the 5 s backoff of an outage.
  await eventually(() => server !== first && server.subscribes.length === 1, 2_000, "resume");
  assert.equal(new URL(FakeSocket.sockets[1].url).searchParams.get("access_token"), "t2");
  assert.equal(server.subscribes[0].req.value.offsets[0], 4n);
  assert.ok(!sub.ended);
  c.close();
});

test("a subscription and a fetch carry their record filter", async () => {
  const c = await connect("ws://test/kafka", fakeOptions());
  const ws = FakeSocket.sockets[0];
  const server = subscriptionServer(ws, [[0, 0]]);
  await c.subscribe({ topic: "t", partitions: [0], filter: { key: "user-1", headers: [{ key: "tenant", value: "a" }] } }, () => undefined);
  const f = server.subscribes[0].req.value.filter;
  assert.deepEqual([Buffer.from(f.key).toString(), f.headers.map((h) => [h.key, Buffer.from(h.value).toString()])], ["user-1", [["tenant", "a"]]]);
  ws.onRequest = (req) => ws.reply({ sequence: req.sequence, resp: { case: "kafkaFetchResp", value: {} } });
  await c.fetch("t", 0, 0, { filter: { headers: [{ key: "tenant", value: new Uint8Array([98]) }] } });
  const ff = ws.requests.at(-1).req.value.filter;
  assert.deepEqual([ff.key.length, ff.headers[0].key, [...ff.headers[0].value]], [0, "tenant", [98]]);
  await c.fetch("t", 0, 0);
  assert.equal(ws.requests.at(-1).req.value.filter, undefined);
  c.close();
});

test("records deleted under a live subscription follow autoOffsetReset too: that partition goes on from the earliest offset", async () => {
  const c = await connect("ws://test/kafka", fakeOptions());
  const ws = FakeSocket.sockets[0];
  const server = subscriptionServer(ws, [[0, 0], [1, 0]]);
  const events = [];
  const sub = await c.subscribe({ topic: "t", start: "earliest", autoOffsetReset: "earliest" }, (ev) => events.push(ev));
  const first = server.subscribes[0].sequence;
  server.push(0, 0, 2);
  server.push(1, 0, 2);
  ws.reply({ sequence: first, resp: { case: "errorResp", value: { message: "failed to subscribe, topic: t, partition: 0, err: OFFSET_OUT_OF_RANGE" } } });
  await eventually(() => server.subscribes.length === 2, 5_000, "the new subscription");
  assert.deepEqual(server.unsubscribes, [first]);
  const again = server.subscribes[1].req.value;
  assert.deepEqual([[...again.partitions].sort(), again.offsets], [[0, 1], { 0: 100n, 1: 2n }]);
  server.push(0, 100, 1);
  assert.deepEqual(events.filter((e) => e.kind !== "records"), []);
  assert.deepEqual([...sub.positions].sort(), [[0, 101n], [1, 2n]]);
  c.close();
});
