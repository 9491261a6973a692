// Integration tests of the client against the real pubsub-server binary and
// an in-memory Kafka in its own process (so the server can be restarted
// while Kafka keeps its records). Records are produced in snappy batches
// with JSON values and a header, as franz-go's producer writes them.
import assert from "node:assert/strict";
import { writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { WebSocket } from "ws";
import { Client, ConnectionClosedError, RequestTooLargeError, ServerError, connect } from "../dist/index.js";
import { clusterConfig, eventually, startIssuer, startKafka, startServer } from "./harness.mjs";

const decoder = new TextDecoder();

async function setup(t) {
  const kafka = await startKafka(t, "orders:2,secret:1");
  const dir = await mkdtemp(join(tmpdir(), "pubsub-js-config-"));
  const config = join(dir, "config.json");
  await writeFile(config, clusterConfig(kafka.brokers, ["orders"], { produce_topics: ["orders"], groups: ["app-*"] }));
  const server = await startServer(t, ["-config", config]);
  return { kafka, server };
}

function open(t, url, options = {}) {
  return connect(url, { WebSocket, ...options }).then((c) => {
    t.after(() => c.close());
    return c;
  });
}

test("ping, list offset and fetch of compressed JSON records with headers", async (t) => {
  const { kafka, server } = await setup(t);
  await kafka.produce("orders", 0, 120);
  const c = await open(t, server.url());

  const state = await c.ping(new TextEncoder().encode("hello"));
  assert.equal(decoder.decode(state), "hello");
  assert.equal(await c.listOffset("orders", 0, "earliest"), 0n);
  assert.equal(await c.listOffset("orders", 0, "latest"), 120n);

  // Fetch requests run concurrently; each reply finds its request by sequence.
  const [a, b] = await Promise.all([c.fetch("orders", 0, 0), c.fetch("orders", 0, 100)]);
  assert.equal(a.records[0].offset, 0n);
  assert.equal(b.records[0].offset, 100n);

  const seen = [];
  for (let next = 0n; next < 120n;) {
    const { records, nextOffset } = await c.fetch("orders", 0, next);
    assert.ok(records.length > 0);
    assert.equal(nextOffset, records[records.length - 1].offset + 1n);
    for (const r of records) {
      const value = JSON.parse(decoder.decode(r.value));
      assert.equal(value.n, Number(r.offset));
      assert.equal(decoder.decode(r.key), `k${r.offset}`);
      assert.deepEqual(r.headers.map((h) => [h.key, decoder.decode(h.value)]), [["source", "testkafka"]]);
      seen.push(r.offset);
    }
    next = nextOffset;
  }
  assert.deepEqual(seen, Array.from({ length: 120 }, (_, i) => BigInt(i)));
  const end = await c.fetch("orders", 0, 120n);
  assert.deepEqual([end.records.length, end.nextOffset], [0, 120n]);
});

test("server errors are typed, carry the server's message and leave the connection usable", async (t) => {
  const { server } = await setup(t);
  const c = await open(t, server.url());
  await assert.rejects(c.fetch("secret", 0, 0), (err) => err instanceof ServerError &&
    err.message === "failed to fetch message, topic: secret, partition: 0, err: topic not allowed" && err.code === 0);
  await assert.rejects(c.fetch("orders", 0, 5), (err) => err instanceof ServerError && err.message.endsWith("err: OFFSET_OUT_OF_RANGE"));
  await assert.rejects(c.subscribe({ topic: "secret", start: "earliest" }),
    (err) => err instanceof ServerError && /^failed to subscribe, topic: secret, .*err: topic not allowed$/.test(err.message));
  assert.equal(decoder.decode(await c.ping(new TextEncoder().encode("still here"))), "still here");
});

test("subscribe as an async iterator and with a callback; unsubscribe stops the pushes", async (t) => {
  const { kafka, server } = await setup(t);
  await kafka.produce("orders", 0, 5);
  await kafka.produce("orders", 1, 3);
  const c = await open(t, server.url());

  const sub = await c.subscribe({ topic: "orders", start: "earliest" });
  assert.deepEqual([...sub.starts.entries()].sort(), [[0, 0n], [1, 0n]]);
  const got = new Map([[0, []], [1, []]]);
  for await (const ev of sub) {
    assert.equal(ev.kind, "records");
    got.get(ev.partition).push(...ev.records.map((r) => r.offset));
    if (got.get(0).length === 5 && got.get(1).length === 3) break; // leaving the loop unsubscribes
  }
  assert.deepEqual(got.get(0), [0n, 1n, 2n, 3n, 4n]);
  assert.deepEqual(got.get(1), [0n, 1n, 2n]);
  assert.ok(sub.ended);

  const events = [];
  const cb = await c.subscribe({ topic: "orders", partitions: [1], start: "latest" }, (ev) => ev.kind === "records" && events.push(ev));
  await kafka.produce("orders", 1, 2, 3);
  await eventually(() => events.flatMap((e) => e.records).length === 2, 10_000, "callback records");
  assert.deepEqual(events.flatMap((e) => e.records.map((r) => JSON.parse(decoder.decode(r.value)).n)), [3, 4]);
  assert.equal(cb.positions.get(1), 5n);
  await cb.unsubscribe();
  await kafka.produce("orders", 1, 2, 5);
  // A fetch that sees the new records is answered after any push they would cause.
  const { records } = await c.fetch("orders", 1, 5);
  assert.equal(records.length, 2);
  assert.equal(events.flatMap((e) => e.records).length, 2);
});

test("a subscription resumes across a server restart with every record exactly once", async (t) => {
  const { kafka, server } = await setup(t);
  await kafka.produce("orders", 0, 50);
  await kafka.produce("orders", 1, 50);
  const states = [];
  const c = await open(t, server.url(), {
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
    onStateChange: (s) => states.push(s),
  });
  const got = new Map([[0, []], [1, []]]);
  const total = () => got.get(0).length + got.get(1).length;
  await c.subscribe({ topic: "orders", start: "earliest", maxRecords: 7 }, (ev) => {
    if (ev.kind === "end") return; // when the test closes the client
    assert.equal(ev.kind, "records");
    got.get(ev.partition).push(...ev.records.map((r) => r.offset));
  });
  await eventually(() => total() === 100, 10_000, "records before the restart");

  await server.stop();
  await kafka.produce("orders", 0, 50, 50); // written while the server is down
  await server.restart();
  await kafka.produce("orders", 1, 50, 50);
  await eventually(() => total() === 200, 20_000, "records after the restart");

  const expected = Array.from({ length: 100 }, (_, i) => BigInt(i));
  assert.deepEqual(got.get(0), expected);
  assert.deepEqual(got.get(1), expected);
  const reconnecting = states.find((s) => s.state === "reconnecting");
  assert.ok(reconnecting, `states: ${JSON.stringify(states)}`);
  assert.equal(reconnecting.closeCode, 1001);
  assert.equal(states.at(-1).state, "connected");
});

test("without reconnect the client closes with the server's close code", async (t) => {
  const { server } = await setup(t);
  const c = await open(t, server.url(), { reconnect: false });
  const sub = await c.subscribe({ topic: "orders" });
  const ended = assert.rejects((async () => {
    for await (const _ of sub) { /* no records */ }
  })(), (err) => err instanceof ConnectionClosedError && err.closeCode === 1001);
  await server.stop();
  await ended;
  assert.deepEqual(c.state.state, "closed");
  await assert.rejects(c.ping(), (err) => err instanceof ConnectionClosedError && err.closeCode === 1001);
});

test("connect rejects clearly when the endpoint does not exist, or when closed while connecting", async (t) => {
  const { server } = await setup(t);
  await assert.rejects(connect(server.url("nope"), { WebSocket }),
    (err) => err instanceof ConnectionClosedError && err.closeCode === 1006 && /404/.test(err.reason));
  const c = new Client(server.url(), { WebSocket });
  c.close(); // ws reports an error for a socket closed while connecting; nothing throws
  await assert.rejects(c.opened, (err) => err instanceof ConnectionClosedError && err.closeCode === 1000);
  assert.equal(decoder.decode(await (await open(t, server.url())).ping(new TextEncoder().encode("ok"))), "ok");
});

test("produce, commit and read back committed offsets", async (t) => {
  const { server } = await setup(t);
  const c = await open(t, server.url());
  const written = await c.produce("orders", 1, [
    { key: "user-1", value: JSON.stringify({ click: 1 }), headers: [{ key: "source", value: "browser" }] },
    { key: new Uint8Array([0, 255]), value: new Uint8Array([1, 2, 3]), timestamp: new Date(1_700_000_000_000) },
  ]);
  assert.deepEqual(written, [{ partition: 1, offset: 0n }, { partition: 1, offset: 1n }]);
  const { records } = await c.fetch("orders", 1, 0);
  assert.deepEqual(records.map((r) => [decoder.decode(r.key), decoder.decode(r.value)]).slice(0, 1), [["user-1", '{"click":1}']]);
  assert.deepEqual(records[0].headers.map((h) => [h.key, decoder.decode(h.value)]), [["source", "browser"]]);
  assert.deepEqual([...records[1].value], [1, 2, 3]);
  assert.equal(records[1].timestamp, 1_700_000_000_000n);
  await assert.rejects(c.produce("secret", 0, [{ value: "x" }]),
    (err) => err instanceof ServerError && err.message === "failed to produce message, topic: secret, partition: 0, err: topic not allowed");

  assert.deepEqual(await c.committed("app-1", "orders"), [{ partition: 0, offset: -1n }, { partition: 1, offset: -1n }]);
  await c.commit("app-1", "orders", [{ partition: 1, offset: 2n }]);
  assert.deepEqual(await c.committed("app-1", "orders", [1]), [{ partition: 1, offset: 2n }]);
  await assert.rejects(c.commit("other", "orders", [{ partition: 1, offset: 2n }]), (err) => err instanceof ServerError && /not allowed/.test(err.message));
});

/** Starts Kafka with topic "events" of four partitions and a server that allows groups app-*. */
async function setupGroups(t) {
  const kafka = await startKafka(t, "events:4");
  const dir = await mkdtemp(join(tmpdir(), "pubsub-js-config-"));
  const config = join(dir, "config.json");
  await writeFile(config, clusterConfig(kafka.brokers, ["events"], { groups: ["app-*"] }));
  const server = await startServer(t, ["-config", config]);
  return { kafka, server };
}

/**
 * A member of group that processes records in its callback, checks that each
 * comes from a partition assigned to it (assignments before records) and,
 * when a partition is revoked, commits what it processed of it. stop() stops
 * processing, commits and leaves, as PROTOCOL.md says a member leaves
 * without a record delivered twice.
 */
async function groupMember(c, group, topic) {
  const m = { processed: [], assignments: [], assigned: new Set(), outside: [], errors: [], stopped: false };
  m.sub = await c.subscribe({ topic, group, start: "earliest" }, (ev) => {
    if (m.stopped || ev.kind === "end") return;
    if (ev.kind === "error") {
      m.errors.push(ev.error);
      return;
    }
    if (ev.kind === "assignment") {
      m.assignments.push(ev);
      for (const p of ev.assigned) m.assigned.add(p);
      for (const p of ev.revoked) m.assigned.delete(p);
      if (ev.offsets.length > 0 && !ev.lost) c.commit(group, topic, ev.offsets).catch((e) => m.errors.push(e));
      return;
    }
    if (!m.assigned.has(ev.partition)) m.outside.push(ev.partition);
    for (const r of ev.records) m.processed.push(`${ev.partition}/${JSON.parse(decoder.decode(r.value)).n}`);
  });
  m.stop = async () => {
    m.stopped = true;
    const offsets = [...m.sub.positions].filter(([, o]) => o >= 0n).map(([partition, offset]) => ({ partition, offset }));
    if (offsets.length > 0) await c.commit(group, topic, offsets);
    await m.sub.unsubscribe();
  };
  return m;
}

/** Produces count records (values n = first..first+count-1) to every partition of "events". */
function produceAll(kafka, count, first) {
  return Promise.all([0, 1, 2, 3].map((p) => kafka.produce("events", p, count, first)));
}

function expectedRecords(from, to) {
  return [0, 1, 2, 3].flatMap((p) => Array.from({ length: to - from }, (_, i) => `${p}/${from + i}`)).sort();
}

test("two members of a group split a topic; one leaving hands its partitions over with commits, none lost or twice", async (t) => {
  const { kafka, server } = await setupGroups(t);
  await produceAll(kafka, 30, 0);
  const a = await groupMember(await open(t, server.url()), "app-split", "events");
  await eventually(() => a.processed.length === 120, 20_000, "the first member's records");
  assert.deepEqual(a.assignments[0].assigned, [0, 1, 2, 3]);

  // A second member joins: the group moves partitions to it; the first
  // commits them on revocation, so the second starts after what it read.
  const b = await groupMember(await open(t, server.url()), "app-split", "events");
  await eventually(() => b.assigned.size > 0 && a.assigned.size > 0 && a.assigned.size + b.assigned.size === 4, 30_000, "the split");
  assert.deepEqual([...a.assigned, ...b.assigned].sort(), [0, 1, 2, 3]);
  await produceAll(kafka, 30, 30);
  await eventually(() => a.processed.length + b.processed.length === 240, 20_000, "records after the split");
  assert.ok(a.assignments.some((ev) => ev.revoked.length > 0 && ev.offsets.length > 0), "the first member committed a revocation");
  assert.ok(b.processed.length > 0, "the second member read records");
  assert.deepEqual([...a.processed, ...b.processed].sort(), expectedRecords(0, 60));

  // The first member leaves: its partitions move to the second, which
  // starts at the offsets the first committed.
  await a.stop();
  await eventually(() => b.assigned.size === 4, 30_000, "the handover");
  await produceAll(kafka, 30, 60);
  // One more record per partition: a record pushed twice would come before it.
  await produceAll(kafka, 1, 90);
  await eventually(() => [0, 1, 2, 3].every((p) => b.processed.includes(`${p}/90`)), 20_000, "records after the handover");
  assert.deepEqual([...a.processed, ...b.processed].sort(), expectedRecords(0, 91));
  for (const m of [a, b]) {
    assert.deepEqual(m.outside, [], "records of partitions not assigned");
    assert.deepEqual(m.errors, [], "partition failures or failed commits");
    assert.equal(m.assignments[0].assigned.length > 0, true, "an assignment comes first");
  }
});

test("a group subscription rejoins after a server restart and resumes from the committed offsets", async (t) => {
  const { kafka, server } = await setupGroups(t);
  await produceAll(kafka, 20, 0);
  const c = await open(t, server.url(), { reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
  const events = [];
  const sub = await c.subscribe({ topic: "events", group: "app-resume", start: "earliest" });
  const reading = (async () => {
    for await (const ev of sub) events.push(ev);
  })();
  assert.equal(sub.group, "app-resume");
  const records = () => events.filter((e) => e.kind === "records").flatMap((e) => e.records.map((r) => `${e.partition}/${JSON.parse(decoder.decode(r.value)).n}`));
  await eventually(() => records().length === 80, 20_000, "records before the restart");
  assert.deepEqual(records().sort(), expectedRecords(0, 20));
  assert.deepEqual(events[0], { kind: "assignment", topic: "events", assigned: [0, 1, 2, 3], revoked: [], offsets: [], lost: false });
  assert.deepEqual([...sub.positions].sort(), [[0, 20n], [1, 20n], [2, 20n], [3, 20n]]);
  // Processed and committed up to 15 only: the rest is delivered again.
  await c.commit("app-resume", "events", [0, 1, 2, 3].map((partition) => ({ partition, offset: 15n })));

  const before = events.length;
  await server.stop();
  await produceAll(kafka, 5, 20);
  await server.restart();
  await eventually(() => records().length === 80 + 40, 30_000, "records after the restart");
  const after = events.slice(before);
  // Every partition was revoked (by the server leaving the group, or by the
  // client when the connection went) before the new assignment.
  const revokedAt = after.findIndex((e) => e.kind === "assignment" && e.assigned.length > 0);
  assert.deepEqual(after.slice(0, revokedAt).flatMap((e) => e.revoked).sort(), [0, 1, 2, 3]);
  assert.deepEqual(after[revokedAt].assigned, [0, 1, 2, 3]);
  assert.deepEqual(records().slice(80).sort(), [0, 1, 2, 3].flatMap((p) => Array.from({ length: 10 }, (_, i) => `${p}/${15 + i}`)).sort());
  await sub.unsubscribe();
  await reading;
});

/** Starts Kafka with topics and a server that allows reading them (topics "name:partitions,..."). */
async function setupTopics(t, topics) {
  const kafka = await startKafka(t, topics);
  const dir = await mkdtemp(join(tmpdir(), "pubsub-js-config-"));
  const config = join(dir, "config.json");
  await writeFile(config, clusterConfig(kafka.brokers, topics.split(",").map((s) => s.split(":")[0])));
  const server = await startServer(t, ["-config", config]);
  return { kafka, server };
}

/** A callback subscription's events, with the offsets it got per partition. */
async function collect(c, options) {
  const events = [];
  const sub = await c.subscribe(options, (ev) => events.push(ev));
  const offsets = (p) => events.filter((e) => e.kind === "records" && e.partition === p).flatMap((e) => e.records.map((r) => Number(r.offset)));
  return { sub, events, offsets };
}

const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);

test("a resume refused because the topic was deleted ends the subscription with the error", async (t) => {
  const { kafka, server } = await setup(t);
  await kafka.produce("orders", 0, 3);
  const c = await open(t, server.url(), { reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  const s = await collect(c, { topic: "orders", partitions: [0], start: "earliest" });
  await eventually(() => s.offsets(0).length === 3, 10_000, "records");
  await server.stop();
  await kafka.deleteTopic("orders");
  await server.restart();
  const err = await s.sub.closed;
  t.diagnostic(`ended with: ${err?.message}`);
  assert.ok(err instanceof ServerError && err.op === "subscribe" && err.topic === "orders" && !err.retriable, String(err));
  assert.deepEqual(s.events.at(-1), { kind: "end", error: err });
  assert.equal(s.events.filter((e) => e.kind === "end").length, 1);
  assert.equal(c.state.state, "connected");
});

test("a resume whose offset retention deleted follows autoOffsetReset per partition", async (t) => {
  const { kafka, server } = await setupTopics(t, "r-earliest:2,r-latest:2,r-error:2");
  const topics = ["r-earliest", "r-latest", "r-error"];
  for (const topic of topics) await Promise.all([kafka.produce(topic, 0, 10), kafka.produce(topic, 1, 10)]);
  const c = await open(t, server.url(), { reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
  const subs = {};
  for (const topic of topics) {
    const autoOffsetReset = topic.slice(2);
    subs[topic] = await collect(c, { topic, start: "earliest", ...(autoOffsetReset === "error" ? {} : { autoOffsetReset }) });
  }
  await eventually(() => topics.every((tp) => subs[tp].offsets(0).length === 10 && subs[tp].offsets(1).length === 10), 10_000, "records");

  await server.stop();
  for (const topic of topics) {
    await Promise.all([kafka.produce(topic, 0, 10, 10), kafka.produce(topic, 1, 10, 10)]);
    await kafka.deleteRecords(topic, 0, 15); // partition 0's next offset (10) is gone
  }
  await server.restart();
  // latest: partition 0 goes on from the end of the log once resumed.
  await eventually(() => subs["r-latest"].sub.positions.get(0) === 20n, 20_000, "the reset to latest");
  for (const topic of topics) await kafka.produce(topic, 0, 1, 20);

  // Partition 1 of every subscription goes on where it stopped.
  await eventually(() => topics.every((tp) => subs[tp].offsets(1).length === 20), 20_000, "partition 1 after the restart");
  // earliest: from the new log start; latest: from the end, so only the record written after the resume.
  await eventually(() => subs["r-earliest"].offsets(0).length === 16 && subs["r-latest"].offsets(0).length === 11, 20_000, "partition 0 after the reset");
  assert.deepEqual(subs["r-earliest"].offsets(0), [...range(0, 10), ...range(15, 21)]);
  assert.deepEqual(subs["r-latest"].offsets(0), [...range(0, 10), 20]);
  // error (the default): partition 0 stopped with the error, partition 1 goes on.
  const errors = subs["r-error"].events.filter((e) => e.kind === "error");
  assert.equal(errors.length, 1);
  assert.deepEqual([errors[0].partition, errors[0].error.cause], [0, "OFFSET_OUT_OF_RANGE"]);
  assert.deepEqual(subs["r-error"].offsets(0), range(0, 10));
  assert.deepEqual([...subs["r-error"].sub.positions.keys()], [1]);
  for (const topic of topics) {
    assert.ok(!subs[topic].sub.ended, topic);
    assert.deepEqual(subs[topic].offsets(1), range(0, 20), topic);
  }
});

test("a never-read iterator over 200k records of 1 KiB holds bounded memory, then delivers every record once in order", { timeout: 240_000 }, async (t) => {
  const { kafka, server } = await setup(t);
  const total = 200_000, batch = 10_000;
  for (let first = 0; first < total; first += batch) await kafka.produce("orders", 0, batch, first, 1024);
  const c = await open(t, server.url());
  // What the client holds: live heap and buffers after a full collection.
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc");
  const memory = () => { gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
  const baseline = memory();
  let peak = 0;
  const sample = () => { peak = Math.max(peak, memory() - baseline); };

  const sub = await c.subscribe({ topic: "orders", partitions: [0], start: "earliest" });
  await eventually(() => sub.buffered >= 10_000, 60_000, "the queue filling");
  // Past the limit the client stopped the server; what was on its way
  // still arrives, then the queue stands still while nobody reads.
  sample();
  let last = -1, since = Date.now();
  await eventually(() => {
    if (sub.buffered !== last) [last, since] = [sub.buffered, Date.now()];
    return Date.now() - since > 500;
  }, 30_000, "the queue standing still");
  const stood = sub.buffered;
  await new Promise((r) => setTimeout(r, 1_000));
  assert.equal(sub.buffered, stood);
  assert.ok(stood < 30_000, `buffered ${stood}`); // the limit, and what the server and the sockets held
  assert.equal(sub.positions.get(0), 0n);
  sample();

  let next = 0;
  for await (const ev of sub) {
    assert.equal(ev.kind, "records");
    for (const r of ev.records) {
      assert.equal(Number(r.offset), next);
      assert.equal(r.value.length > 1024, true);
      next++;
    }
    if (next % 10_000 < ev.records.length) sample();
    if (next === total) break;
  }
  t.diagnostic(`peak memory over the baseline: ${(peak / 2 ** 20).toFixed(1)} MiB; queue stood at ${stood} records`);
  assert.equal(next, total);
  assert.ok(peak < 100 * 2 ** 20, `peak ${(peak / 2 ** 20).toFixed(1)} MiB`);
});

test("the first connect waits for a server that is not up yet", async (t) => {
  const { server } = await setup(t);
  await server.stop();
  const states = [];
  const connecting = connect(server.url(), { WebSocket, reconnect: { initialDelayMs: 20, maxDelayMs: 100 }, onStateChange: (s) => states.push(s) });
  await eventually(() => states.filter((s) => s.state === "reconnecting").length >= 2, 10_000, "failed attempts");
  await server.restart();
  const c = await connecting;
  t.after(() => c.close());
  assert.equal(c.state.state, "connected");
  assert.equal(decoder.decode(await c.ping(new TextEncoder().encode("up"))), "up");
});

test("a 2 MiB produce is refused locally with RequestTooLargeError and the client stays connected", async (t) => {
  const { server } = await setup(t);
  const c = await open(t, server.url());
  await assert.rejects(c.produce("orders", 0, [{ value: new Uint8Array(2 << 20) }]),
    (err) => err instanceof RequestTooLargeError && err.maxFrameBytes === 1 << 20 && err.name === "RequestTooLargeError");
  assert.equal(c.state.state, "connected");
  assert.deepEqual(await c.produce("orders", 0, [{ value: new Uint8Array(512 << 10) }]), [{ partition: 0, offset: 0n }]);
});

/** Kafka with topic "orders" (one partition) behind a server that requires a token of issuer. */
async function setupIdentity(t) {
  const kafka = await startKafka(t, "orders:1");
  const issuer = await startIssuer();
  const dir = await mkdtemp(join(tmpdir(), "pubsub-js-config-"));
  const config = join(dir, "config.json");
  await writeFile(config, clusterConfig(kafka.brokers, ["orders"], { access: [{ read: ["orders"] }] },
    { identity: { required: true, jwt: { jwks_file: issuer.jwksFile } } }));
  const server = await startServer(t, ["-config", config]);
  return { kafka, issuer, server };
}

test("a token function refreshes the session with cmd_auth before the token expires, on the same connection", async (t) => {
  const { issuer, server } = await setupIdentity(t);
  await assert.rejects(connect(server.url(), { WebSocket, reconnect: false }), (err) => err instanceof ConnectionClosedError && /401/.test(err.reason));
  let calls = 0;
  const states = [];
  const c = await open(t, server.url(), {
    token: () => { calls++; return issuer.token({ sub: "u1" }, 3); },
    onStateChange: (s) => states.push(s.state),
  });
  // Each 3 s token is refreshed halfway: past two lifetimes the first connection still serves.
  await eventually(() => calls >= 5, 15_000, "refreshes");
  assert.equal(decoder.decode(await c.ping(new TextEncoder().encode("alive"))), "alive");
  assert.deepEqual(states, ["connected"]);
});

test("a session ended at token expiry (4401) reconnects with a fresh token and resumes with every record once", async (t) => {
  const { kafka, issuer, server } = await setupIdentity(t);
  await kafka.produce("orders", 0, 3);
  let calls = 0;
  const states = [];
  // The refresh (the second call) names another subject: the server refuses it, and ends the session at exp.
  const c = await open(t, server.url(), {
    token: () => (++calls === 2 ? issuer.token({ sub: "someone-else" }, 600) : issuer.token({ sub: "u1" }, calls === 1 ? 2 : 600)),
    reconnect: { initialDelayMs: 5_000 },
    onStateChange: (s) => states.push(s),
  });
  const s = await collect(c, { topic: "orders", partitions: [0], start: "earliest" });
  await eventually(() => s.offsets(0).length === 3, 10_000, "records before expiry");
  await eventually(() => states.some((st) => st.state === "reconnecting"), 10_000, "the session's end");
  const ended = states.find((st) => st.state === "reconnecting");
  assert.deepEqual([ended.closeCode, ended.reason, ended.delayMs], [4401, "token expired", 0]);
  await eventually(() => c.state.state === "connected", 10_000, "the reconnect");
  await kafka.produce("orders", 0, 3, 3);
  await eventually(() => s.offsets(0).length === 6, 10_000, "records after the reconnect");
  assert.deepEqual(s.offsets(0), range(0, 6));
  assert.equal(calls, 3);
  assert.ok(!s.sub.ended);
});

test("record filters on fetch and subscribe, applied by the server", async (t) => {
  const { server } = await setup(t);
  const c = await open(t, server.url());
  const written = (from, n) => Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return { key: `u${i % 3}`, value: `v${i}`, headers: [{ key: "tenant", value: i % 2 === 0 ? "a" : "b" }] };
  });
  await c.produce("orders", 0, written(0, 6));
  const offsets = (records) => records.map((r) => Number(r.offset));
  const a = await c.fetch("orders", 0, 0, { filter: { headers: [{ key: "tenant", value: "a" }] } });
  assert.deepEqual([offsets(a.records), a.nextOffset], [[0, 2, 4], 6n]);
  const one = await c.fetch("orders", 0, 0, { filter: { key: "u1", headers: [{ key: "tenant", value: "b" }] } });
  assert.deepEqual([offsets(one.records), one.nextOffset], [[1], 6n]);
  const none = await c.fetch("orders", 0, 0, { filter: { key: "nobody" } });
  assert.deepEqual([offsets(none.records), none.nextOffset], [[], 6n]);

  const s = await collect(c, { topic: "orders", partitions: [0], start: "earliest", filter: { headers: [{ key: "tenant", value: "b" }] } });
  await c.produce("orders", 0, written(6, 4));
  await eventually(() => s.offsets(0).includes(9), 10_000, "filtered pushes");
  assert.deepEqual(s.offsets(0), [1, 3, 5, 7, 9]);
});
