import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  CmdKafkaCommitSchema,
  CmdKafkaCommittedSchema,
  CmdKafkaFetchSchema,
  CmdKafkaProduceSchema,
  CmdKafkaListOffsetSchema,
  CmdKafkaSubscribeSchema,
  CmdKafkaUnsubscribeSchema,
  CmdPingSchema,
  KafkaHeaderSchema,
  KafkaPartitionOffsetSchema,
  KafkaRecordSchema,
  PubSubReqSchema,
  PubSubRespSchema,
  type KafkaMessage,
  type PubSubReq,
  type PubSubResp,
} from "./gen/pubsub_pb.js";
import { AbortedError, ConnectionClosedError, PubSubError, RequestTimeoutError, ServerError } from "./errors.js";
import {
  Subscription,
  type SubscribeOptions,
  type SubscriptionCallback,
  type SubscriptionOwner,
} from "./subscription.js";

/**
 * The part of the WebSocket API the client uses. Browsers' global
 * WebSocket, Node 22's global WebSocket and the `ws` package's all have it.
 */
export interface WebSocketLike {
  binaryType: string;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: `globalThis.WebSocket` or `(await import("ws")).WebSocket`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** The state of the client's connection, reported to onStateChange. */
export type ConnectionState =
  | { state: "connecting" }
  | { state: "connected" }
  /** The connection was lost; the next attempt starts after delayMs. */
  | { state: "reconnecting"; attempt: number; delayMs: number; closeCode: number; reason: string }
  /** For good: close() was called, reconnecting is off or gave up. */
  | { state: "closed"; closeCode: number; reason: string };

/** How the client reconnects after losing its connection. */
export interface ReconnectOptions {
  /** The first wait; default 250 ms. Each further attempt doubles it (±20% jitter). */
  initialDelayMs?: number;
  /** The longest wait between attempts; default 10 s. */
  maxDelayMs?: number;
  /** Attempts per outage before giving up; default unlimited. */
  maxAttempts?: number;
}

/** Options of connect(). */
export interface ConnectOptions {
  /** The WebSocket class; default the global one (browsers, Node 22+). In Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** How long a request waits for its reply (connecting included); default 10 s. */
  requestTimeoutMs?: number;
  /** Reconnect settings, or false to stay closed after the connection ends. Default on. */
  reconnect?: ReconnectOptions | false;
  /**
   * After this long without any message from the server the client sends a
   * cmd_ping; default 15 s, 0 turns keepalive off. Browsers cannot see
   * WebSocket pings, so this is how a dead connection is found.
   */
  keepaliveIntervalMs?: number;
  /** A keepalive ping unanswered this long drops the connection; default 10 s. */
  keepaliveTimeoutMs?: number;
  /** Called on every change of the connection's state. */
  onStateChange?: (state: ConnectionState) => void;
}

/** Per-request options. */
export interface RequestOptions {
  /** Overrides ConnectOptions.requestTimeoutMs. */
  timeoutMs?: number;
  /** Cancels the request (it rejects with AbortedError). */
  signal?: AbortSignal;
}

/** The answer to fetch(). */
export interface FetchResult {
  records: KafkaMessage[];
  /** The offset to fetch next: the server's next_offset when set, else last + 1. */
  nextOffset: bigint;
}

/** Bytes, or a string sent as UTF-8. */
export type Bytes = Uint8Array | string;

/** A record to produce. */
export interface ProduceRecord {
  key?: Bytes;
  value?: Bytes;
  headers?: { key: string; value: Bytes }[];
  /** The record's time (ms or a Date); absent: the time the gateway hands it to Kafka. */
  timestamp?: number | Date;
}

/** Where Kafka stored a produced record, or a partition's committed offset. */
export interface PartitionOffset {
  partition: number;
  offset: bigint;
}

/** Where listOffset looks: earliest, latest (the next offset written) or a time in ms. */
export type OffsetQuery = "earliest" | "latest" | number | bigint | Date;

/** Close codes after which reconnecting cannot help: the client broke the protocol. */
const permanentCloseCodes = new Set([1002, 1003, 1007, 1008, 1009]);

/** A request waiting to be sent or answered. */
interface Pending {
  req: PubSubReq;
  what: string;
  resolve: (resp: PubSubResp) => void;
  reject: (err: unknown) => void;
  /** Runs when the reply comes, before the caller sees it (subscriptions register here). */
  onReply?: (resp: PubSubResp, sequence: number) => void;
  sequence?: number;
}

type Req = PubSubReq["req"];

/** Opens a connection to a pub-sub endpoint such as ws://127.0.0.1:9080/kafka. */
export async function connect(url: string, options: ConnectOptions = {}): Promise<Client> {
  const client = new Client(url, options);
  await client.opened;
  return client;
}

/**
 * A connection to one pub-sub endpoint. Requests are matched to replies by
 * sequence and may run concurrently; subscriptions survive reconnects.
 */
export class Client implements SubscriptionOwner {
  /** The endpoint URL. */
  readonly url: string;
  /** Settles when the first connection opens, or rejects when it cannot. */
  readonly opened: Promise<void>;

  readonly #WebSocket: WebSocketConstructor;
  readonly #timeoutMs: number;
  readonly #reconnect: Required<ReconnectOptions> | false;
  readonly #keepaliveIntervalMs: number;
  readonly #keepaliveTimeoutMs: number;
  readonly #onStateChange: ((s: ConnectionState) => void) | undefined;

  #ws: WebSocketLike | null = null;
  #state: ConnectionState = { state: "connecting" };
  #everOpened = false;
  #attempt = 0;
  #nextSequence = 1;
  /** Sent requests by sequence. */
  readonly #inFlight = new Map<number, Pending>();
  /** Requests waiting for a connection. */
  readonly #unsent = new Set<Pending>();
  /** Live subscriptions, and the ones among them the server serves now by sequence. */
  readonly #subscriptions = new Set<Subscription>();
  readonly #bySequence = new Map<number, Subscription>();
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #keepaliveTimer: ReturnType<typeof setInterval> | undefined;
  #lastReceived = 0;
  #keepalivePending = false;
  #settleOpened: { resolve: () => void; reject: (e: unknown) => void } | undefined;

  /** Prefer connect(), which waits for the connection. */
  constructor(url: string, options: ConnectOptions = {}) {
    this.url = url;
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new PubSubError("no WebSocket class: pass options.WebSocket (in Node 20, the `ws` package's WebSocket)");
    }
    this.#WebSocket = WS;
    this.#timeoutMs = options.requestTimeoutMs ?? 10_000;
    this.#reconnect = options.reconnect === false ? false : {
      initialDelayMs: options.reconnect?.initialDelayMs ?? 250,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 10_000,
      maxAttempts: options.reconnect?.maxAttempts ?? Infinity,
    };
    this.#keepaliveIntervalMs = options.keepaliveIntervalMs ?? 15_000;
    this.#keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? 10_000;
    this.#onStateChange = options.onStateChange;
    this.opened = new Promise((resolve, reject) => {
      this.#settleOpened = { resolve, reject };
    });
    this.opened.catch(() => undefined);
    this.#open();
  }

  /** The connection's state now. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Sends cmd_ping and returns the state bytes the server echoed. */
  async ping(state: Uint8Array = new Uint8Array(), opts?: RequestOptions): Promise<Uint8Array> {
    const resp = await this.#request({ case: "cmdPing", value: create(CmdPingSchema, { state }) }, "ping", opts);
    return expect(resp, "pongResp").state;
  }

  /** Looks up an offset of a partition (cmd_kafka_list_offset). */
  async listOffset(topic: string, partition: number, query: OffsetQuery, opts?: RequestOptions): Promise<bigint> {
    const timestamp = query === "earliest" ? -2n : query === "latest" ? -1n : BigInt(query instanceof Date ? query.getTime() : query);
    const resp = await this.#request({
      case: "cmdKafkaListOffset",
      value: create(CmdKafkaListOffsetSchema, { topic, partition, timestamp }),
    }, `list offset of ${topic}/${partition}`, opts);
    return expect(resp, "kafkaListOffsetResp").offset;
  }

  /** Reads records of a partition from offset on (cmd_kafka_fetch). */
  async fetch(topic: string, partition: number, offset: bigint | number, opts?: RequestOptions): Promise<FetchResult> {
    const from = BigInt(offset);
    const resp = await this.#request({
      case: "cmdKafkaFetch",
      value: create(CmdKafkaFetchSchema, { topic, partition, offset: from }),
    }, `fetch of ${topic}/${partition}`, opts);
    const fr = expect(resp, "kafkaFetchResp");
    return { records: fr.messages, nextOffset: nextOffset(fr.messages, fr.nextOffset, from) };
  }

  /**
   * Writes records to a partition of a topic (cmd_kafka_produce); partition
   * -1 lets Kafka's default partitioner choose by key. Resolves once Kafka
   * acknowledged every record, with where each one was stored, in order. A
   * request cut off by a lost connection fails with ConnectionClosedError
   * and its outcome is unknown: it is not sent again.
   */
  async produce(topic: string, partition: number, records: ProduceRecord[], opts?: RequestOptions): Promise<PartitionOffset[]> {
    const resp = await this.#request({
      case: "cmdKafkaProduce",
      value: create(CmdKafkaProduceSchema, {
        topic,
        partition,
        records: records.map((r) => create(KafkaRecordSchema, {
          key: bytes(r.key),
          value: bytes(r.value),
          headers: (r.headers ?? []).map((h) => create(KafkaHeaderSchema, { key: h.key, value: bytes(h.value) })),
          timestamp: BigInt(r.timestamp instanceof Date ? r.timestamp.getTime() : r.timestamp ?? 0),
        })),
      }),
    }, `produce to ${topic}`, opts);
    return expect(resp, "kafkaProduceResp").offsets.map(({ partition, offset }) => ({ partition, offset }));
  }

  /** Stores a consumer group's next offsets (last processed + 1) for partitions of a topic (cmd_kafka_commit). */
  async commit(group: string, topic: string, offsets: PartitionOffset[], metadata = "", opts?: RequestOptions): Promise<void> {
    const resp = await this.#request({
      case: "cmdKafkaCommit",
      value: create(CmdKafkaCommitSchema, {
        group,
        topic,
        metadata,
        offsets: offsets.map((o) => create(KafkaPartitionOffsetSchema, o)),
      }),
    }, `commit of ${group} for ${topic}`, opts);
    expect(resp, "kafkaCommitResp");
  }

  /** Reads a consumer group's committed offsets (-1 where it has none); no partitions: all (cmd_kafka_committed). */
  async committed(group: string, topic: string, partitions: number[] = [], opts?: RequestOptions): Promise<PartitionOffset[]> {
    const resp = await this.#request({
      case: "cmdKafkaCommitted",
      value: create(CmdKafkaCommittedSchema, { group, topic, partitions }),
    }, `committed offsets of ${group} for ${topic}`, opts);
    return expect(resp, "kafkaCommittedResp").offsets.map(({ partition, offset }) => ({ partition, offset }));
  }

  /**
   * Subscribes to partitions of a topic, or with options.group as a member
   * of a consumer group; resolves once the server accepted. With a callback,
   * events go to it; otherwise read the subscription with `for await`. A
   * group subscription's events include assignments: on a revocation,
   * commit its offsets (`commit(group, topic, ev.offsets)`) to hand the
   * partitions over without a record delivered twice.
   */
  subscribe(options: SubscribeOptions, callback?: SubscriptionCallback, opts?: RequestOptions): Promise<Subscription> {
    return new Promise<Subscription>((resolve, reject) => {
      let sub: Subscription | undefined;
      this.#request(subscribeRequest(options), `subscribe to ${options.topic}`, opts, (resp, sequence) => {
        const ack = resp.resp.case === "kafkaSubscribeResp" ? resp.resp.value : undefined;
        if (!ack) return;
        const starts = new Map<number, bigint>();
        for (const p of ack.partitions) starts.set(p.partition, p.offset);
        sub = new Subscription(this, options, sequence, starts, callback);
        this.#subscriptions.add(sub);
        this.#bySequence.set(sequence, sub);
      }).then((resp) => {
        expect(resp, "kafkaSubscribeResp");
        resolve(sub!);
      }, reject);
    });
  }

  /** Ends a subscription (cmd_kafka_unsubscribe); no event follows. */
  async unsubscribe(sub: Subscription, opts?: RequestOptions): Promise<void> {
    if (!this.#subscriptions.delete(sub)) return;
    const sequence = sub.sequence;
    const served = this.#bySequence.get(sequence) === sub;
    this.#bySequence.delete(sequence);
    sub.end();
    // A subscription not served now (reconnecting) has nothing to end on the server.
    if (!served || this.#state.state !== "connected") return;
    const resp = await this.#request({
      case: "cmdKafkaUnsubscribe",
      value: create(CmdKafkaUnsubscribeSchema, { subscription: BigInt(sequence) }),
    }, "unsubscribe", opts);
    expect(resp, "kafkaUnsubscribeResp");
  }

  /** Closes the connection for good (code 1000); pending requests fail and subscriptions end. */
  close(): void {
    const ws = this.#ws;
    this.#detach();
    ws?.close(1000, "client closed");
    this.#finish(1000, "client closed");
  }

  #setState(state: ConnectionState): void {
    this.#state = state;
    try {
      this.#onStateChange?.(state);
    } catch (e) {
      console.error("pubsub client: onStateChange threw", e);
    }
  }

  #open(): void {
    let ws: WebSocketLike;
    try {
      ws = new this.#WebSocket(this.url);
    } catch (e) {
      this.#finish(1006, `cannot open ${this.url}: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    this.#ws = ws;
    ws.binaryType = "arraybuffer";
    let failure = "";
    ws.onopen = () => this.#onOpen();
    ws.onmessage = (ev: { data: unknown }) => this.#onMessage(ev.data);
    ws.onerror = (ev: { message?: string; error?: { message?: string } }) => {
      failure = ev?.message ?? ev?.error?.message ?? "";
    };
    ws.onclose = (ev: { code?: number; reason?: string }) => {
      this.#detach();
      this.#onDisconnect(ev?.code ?? 1006, ev?.reason || failure);
    };
  }

  /**
   * Forgets the current socket: none of its events is handled from now on.
   * Its errors still get a listener that ignores them (an EventEmitter-based
   * socket such as `ws` throws an error nobody listens to).
   */
  #detach(): void {
    const ws = this.#ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = ignore;
    this.#ws = null;
    clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
    this.#keepalivePending = false;
  }

  #onOpen(): void {
    this.#attempt = 0;
    this.#everOpened = true;
    this.#lastReceived = Date.now();
    this.#setState({ state: "connected" });
    this.#settleOpened?.resolve();
    this.#settleOpened = undefined;
    if (this.#keepaliveIntervalMs > 0) {
      this.#keepaliveTimer = setInterval(() => this.#keepalive(), Math.max(this.#keepaliveIntervalMs / 2, 10));
    }
    for (const sub of this.#subscriptions) this.#resume(sub);
    for (const p of this.#unsent) {
      this.#unsent.delete(p);
      this.#send(p);
    }
  }

  /** Subscribes again from the subscription's positions after a reconnect. */
  #resume(sub: Subscription): void {
    if (sub.group === undefined && sub.positions.size === 0) {
      // Every partition failed: nothing is left to resume (and no partitions would mean all).
      this.#subscriptions.delete(sub);
      sub.end();
      return;
    }
    this.#request(subscribeRequest(sub.resumeOptions()), `resume subscription to ${sub.topic}`, undefined, (resp, sequence) => {
      if (resp.resp.case !== "kafkaSubscribeResp" || !this.#subscriptions.has(sub)) return;
      sub.resumed(sequence);
      this.#bySequence.set(sequence, sub);
    }).then((resp) => {
      if (!this.#subscriptions.has(sub)) {
        // Unsubscribed while resuming: end it on the server too.
        this.#request({ case: "cmdKafkaUnsubscribe", value: create(CmdKafkaUnsubscribeSchema, { subscription: resp.sequence }) },
          "unsubscribe", undefined).catch(() => undefined);
      }
    }, (err) => {
      // A lost connection resumes again on the next one; a refusal ends the subscription.
      if (err instanceof ConnectionClosedError && this.#state.state !== "closed") return;
      this.#subscriptions.delete(sub);
      sub.end(err);
    });
  }

  #keepalive(): void {
    if (this.#keepalivePending || Date.now() - this.#lastReceived < this.#keepaliveIntervalMs) return;
    const ws = this.#ws;
    this.#keepalivePending = true;
    this.ping(utf8.encode("keepalive"), { timeoutMs: this.#keepaliveTimeoutMs }).then(
      () => { this.#keepalivePending = false; },
      (err) => {
        this.#keepalivePending = false;
        if (!(err instanceof RequestTimeoutError) || this.#ws !== ws || !ws) return;
        this.#detach();
        ws.close(4000, "keepalive timeout");
        this.#onDisconnect(1006, `no reply to a keepalive ping within ${this.#keepaliveTimeoutMs} ms`);
      },
    );
  }

  #onMessage(data: unknown): void {
    this.#lastReceived = Date.now();
    let resp: PubSubResp;
    try {
      if (!(data instanceof ArrayBuffer)) throw new Error("not a binary message");
      resp = fromBinary(PubSubRespSchema, new Uint8Array(data));
    } catch (e) {
      const ws = this.#ws;
      this.#detach();
      ws?.close(1002, "invalid reply");
      this.#finish(1002, `cannot decode a reply: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    const sequence = Number(resp.sequence);
    const pending = this.#inFlight.get(sequence);
    if (pending) {
      this.#inFlight.delete(sequence);
      pending.onReply?.(resp, sequence);
      if (resp.resp.case === "errorResp") pending.reject(new ServerError(resp.resp.value.message, resp.resp.value.code));
      else pending.resolve(resp);
      return;
    }
    const sub = this.#bySequence.get(sequence);
    if (!sub) {
      // A late reply to a request that timed out, or a push after unsubscribe.
      // A subscription acknowledged after its request gave up is ended, so
      // the server does not push for nobody.
      if (resp.resp.case === "kafkaSubscribeResp") {
        this.#request({ case: "cmdKafkaUnsubscribe", value: create(CmdKafkaUnsubscribeSchema, { subscription: resp.sequence }) },
          "unsubscribe", undefined).catch(() => undefined);
      }
      return;
    }
    switch (resp.resp.case) {
      case "kafkaFetchResp": {
        const fr = resp.resp.value;
        sub.deliverRecords(fr.partition, fr.messages, fr.nextOffset);
        break;
      }
      case "kafkaAssignment":
        sub.deliverAssignment(resp.resp.value.assigned, resp.resp.value.revoked);
        break;
      case "errorResp":
        sub.deliverError(new ServerError(resp.resp.value.message, resp.resp.value.code));
        break;
    }
  }

  #onDisconnect(code: number, reason: string): void {
    const err = new ConnectionClosedError(code, reason);
    for (const p of this.#inFlight.values()) p.reject(err);
    this.#inFlight.clear();
    this.#bySequence.clear();
    for (const sub of this.#subscriptions) sub.connectionLost();
    if (!this.#everOpened) {
      this.#settleOpened?.reject(err);
      this.#settleOpened = undefined;
      this.#finish(code, reason);
      return;
    }
    const r = this.#reconnect;
    if (!r || permanentCloseCodes.has(code) || this.#attempt >= r.maxAttempts || this.#state.state === "closed") {
      this.#finish(code, reason);
      return;
    }
    this.#attempt++;
    const base = Math.min(r.maxDelayMs, r.initialDelayMs * 2 ** (this.#attempt - 1));
    const delayMs = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.#setState({ state: "reconnecting", attempt: this.#attempt, delayMs, closeCode: code, reason });
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#setState({ state: "connecting" });
      this.#open();
    }, delayMs);
  }

  /** Ends the client: every request fails and every subscription ends. */
  #finish(code: number, reason: string): void {
    if (this.#state.state === "closed") return;
    clearTimeout(this.#reconnectTimer);
    const err = new ConnectionClosedError(code, reason);
    this.#settleOpened?.reject(err);
    this.#settleOpened = undefined;
    this.#setState({ state: "closed", closeCode: code, reason });
    for (const p of [...this.#inFlight.values(), ...this.#unsent]) p.reject(err);
    this.#inFlight.clear();
    this.#unsent.clear();
    for (const sub of this.#subscriptions) sub.end(code === 1000 ? undefined : err);
    this.#subscriptions.clear();
    this.#bySequence.clear();
  }

  /** Sends a request when connected and settles with its reply, its timeout or the connection's end. */
  #request(req: Req, what: string, opts: RequestOptions | undefined,
    onReply?: (resp: PubSubResp, sequence: number) => void): Promise<PubSubResp> {
    return new Promise<PubSubResp>((resolve, reject) => {
      if (this.#state.state === "closed") {
        reject(new ConnectionClosedError(this.#state.closeCode, this.#state.reason));
        return;
      }
      const signal = opts?.signal;
      if (signal?.aborted) {
        reject(new AbortedError(`${what}: aborted`));
        return;
      }
      const timeoutMs = opts?.timeoutMs ?? this.#timeoutMs;
      const forget = () => {
        this.#unsent.delete(p);
        if (p.sequence !== undefined) this.#inFlight.delete(p.sequence);
      };
      const onAbort = () => {
        forget();
        p.reject(new AbortedError(`${what}: aborted`));
      };
      const timer = setTimeout(() => {
        forget();
        p.reject(new RequestTimeoutError(what, timeoutMs));
      }, timeoutMs);
      const settle = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const p: Pending = {
        req: create(PubSubReqSchema, { req }),
        what,
        resolve: (r) => { settle(); resolve(r); },
        reject: (e) => { settle(); reject(e); },
        onReply,
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      if (this.#state.state === "connected") this.#send(p);
      else this.#unsent.add(p);
    });
  }

  #send(p: Pending): void {
    const ws = this.#ws;
    if (!ws) {
      this.#unsent.add(p);
      return;
    }
    const sequence = this.#nextSequence++;
    p.sequence = sequence;
    p.req.sequence = BigInt(sequence);
    this.#inFlight.set(sequence, p);
    try {
      ws.send(toBinary(PubSubReqSchema, p.req));
    } catch (e) {
      this.#inFlight.delete(sequence);
      p.reject(new PubSubError(`${p.what}: send failed: ${e instanceof Error ? e.message : String(e)}`));
    }
  }
}

function ignore(): void {}

const utf8 = new TextEncoder();

function bytes(b: Bytes | undefined): Uint8Array {
  return typeof b === "string" ? utf8.encode(b) : b ?? new Uint8Array();
}

/** The offset after a fetch or push: next_offset when the server set it, else last + 1. */
function nextOffset(records: KafkaMessage[], serverNext: bigint, from: bigint): bigint {
  if (serverNext > 0n) return serverNext;
  return records.length > 0 ? records[records.length - 1].offset + 1n : from;
}

function subscribeRequest(o: SubscribeOptions): Req {
  let start: { case: "earliest" | "latest"; value: boolean } | { case: "offset" | "timestamp"; value: bigint };
  const s = o.start ?? "latest";
  if (s === "earliest" || s === "latest") start = { case: s, value: true };
  else if ("offset" in s) start = { case: "offset", value: BigInt(s.offset) };
  else start = { case: "timestamp", value: BigInt(s.timestamp instanceof Date ? s.timestamp.getTime() : s.timestamp) };
  const offsets: { [k: number]: bigint } = {};
  for (const [p, off] of Object.entries(o.offsets ?? {})) offsets[Number(p)] = BigInt(off);
  return {
    case: "cmdKafkaSubscribe",
    value: create(CmdKafkaSubscribeSchema, {
      topic: o.topic,
      partitions: o.partitions ?? [],
      start,
      offsets,
      maxRecords: o.maxRecords ?? 0,
      group: o.group ?? "",
    }),
  };
}

/** Returns the reply of the expected kind, or throws. */
function expect<K extends NonNullable<PubSubResp["resp"]["case"]>>(resp: PubSubResp, kind: K): ReplyOf<K> {
  if (resp.resp.case !== kind) throw new PubSubError(`unexpected reply ${resp.resp.case ?? "(empty)"}, want ${kind}`);
  return resp.resp.value as ReplyOf<K>;
}

/** The message of reply kind K. */
type ReplyOf<K> = Extract<PubSubResp["resp"], { case: K }> extends { value: infer V } ? V : never;
