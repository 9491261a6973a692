// Requests are only encoded and replies only decoded: each comes from a
// codec generated with just that half, so the bundle holds no other.
import { PubSubReq, type CmdKafkaSubscribe, type KafkaFilter, type KafkaHeader } from "./gen/encode/pubsub.js";
import { PubSubResp, type KafkaMessage } from "./gen/decode/pubsub.js";
import {
  AbortedError,
  ConnectionClosedError,
  PubSubError,
  RequestTimeoutError,
  RequestTooLargeError,
  ServerError,
} from "./errors.js";
import {
  Subscription,
  type RecordFilter,
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

/**
 * A WebSocket class: `globalThis.WebSocket` or `(await import("ws")).WebSocket`.
 * The third argument (`{ headers }`) is passed only when ConnectOptions.headers is set.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[],
  options?: { headers?: Record<string, string> }) => WebSocketLike;

/** The state of the client's connection, reported to onStateChange. */
export type ConnectionState =
  | { state: "connecting" }
  | { state: "connected" }
  /** The connection was lost (or could not be opened); the next attempt starts after delayMs. */
  | { state: "reconnecting"; attempt: number; delayMs: number; closeCode: number; reason: string }
  /** For good: close() was called, reconnecting is off or gave up. */
  | { state: "closed"; closeCode: number; reason: string };

/**
 * How the client connects again after losing its connection, or after its
 * first attempt failed. Each wait is drawn at random between 0 and a cap
 * that doubles with every attempt (full jitter), so clients that lost the
 * same server do not come back at once.
 */
export interface ReconnectOptions {
  /** The cap of the first wait; default 250 ms. */
  initialDelayMs?: number;
  /** The largest cap; default 10 s. */
  maxDelayMs?: number;
  /** Attempts per outage before giving up; default unlimited. */
  maxAttempts?: number;
  /**
   * The cap of the first wait after the server said it is going away (1001),
   * dropped a slow consumer (4008) or answered 503 (at capacity): a
   * restarting server does not get every client back in the same moment.
   * Default 2 s (at most maxDelayMs).
   */
  restartDelayMs?: number;
  /**
   * A connection that stayed up this long, or whose resumed subscriptions
   * were all acknowledged, resets the attempt count; default 5 s. A server
   * that accepts and drops at once keeps the waits growing.
   */
  resetAfterMs?: number;
}

/** Options of connect(). */
export interface ConnectOptions {
  /** The WebSocket class; default the global one (browsers, Node 22+). In Node 20 pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
  /** WebSocket subprotocols to offer; default none. */
  protocols?: string | string[];
  /** Headers of the upgrade request, e.g. Authorization (Node's `ws` only: browsers cannot set them). */
  headers?: Record<string, string>;
  /** How long a request waits for its reply (connecting included); default 10 s. */
  requestTimeoutMs?: number;
  /**
   * Reconnect settings, or false to stay closed after the connection ends
   * (and to fail when the first attempt does). Default on.
   */
  reconnect?: ReconnectOptions | false;
  /**
   * After this long without any message from the server the client sends a
   * cmd_ping; default 15 s, 0 turns keepalive off. Browsers cannot see
   * WebSocket pings, so this is how a dead connection is found.
   */
  keepaliveIntervalMs?: number;
  /** A keepalive ping unanswered this long drops the connection; default 10 s. */
  keepaliveTimeoutMs?: number;
  /**
   * The largest request the server accepts (its session.max_frame_bytes);
   * default 1 MiB, the server's default. A larger request is refused here
   * with RequestTooLargeError instead of the server closing with 1009.
   */
  maxFrameBytes?: number;
  /**
   * A bearer token (a JWT) for the gateway, or a function that returns one:
   * it is called at every connect, and again before the token expires (its
   * `exp`, or the server's `auth_resp.expires_at`) to refresh the session
   * with `cmd_auth`. Sent as `?access_token=` (what browsers can send), or
   * as `Authorization: Bearer` when `headers` is set. A session the server
   * ends at expiry (4401) reconnects with a fresh token.
   */
  token?: string | (() => string | Promise<string>);
  /** How long before the token expires it is refreshed; default 30 s (at most half its remaining life). */
  tokenRefreshBeforeMs?: number;
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

/** Options of fetch(). */
export interface FetchOptions extends RequestOptions {
  /** Only records that match this filter are returned (applied by the server). */
  filter?: RecordFilter;
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

/**
 * Close codes after which reconnecting cannot help: the client broke the
 * protocol. (1009, a message too large, is not among them: the client
 * never sends one over maxFrameBytes, so a 1009 means something else.)
 */
const permanentCloseCodes = new Set([1002, 1003, 1007, 1008]);

/** The close code of a session whose token expired. */
const tokenExpired = 4401;

/** Closes after which the server is restarting or shedding load: the first wait is longer. */
const restartCloseCodes = new Set([1001, 4008]);

/** An upgrade refused with this HTTP status (as Node's `ws` reports it). */
const httpStatus = /Unexpected server response: (\d{3})/;

/** A request waiting to be sent or answered. */
interface Pending {
  frame: Uint8Array;
  sequence: number;
  what: string;
  resolve: (resp: PubSubResp) => void;
  reject: (err: unknown) => void;
  /** Runs when the reply comes, before the caller sees it (subscriptions register here). */
  onReply?: (resp: PubSubResp, sequence: number) => void;
}

type Req = PubSubReq["req"];

/**
 * Opens a connection to a pub-sub endpoint such as ws://127.0.0.1:9080/kafka.
 * While the server cannot be reached it tries again with the reconnect
 * backoff (unless `reconnect: false`), so it resolves once connected.
 */
export async function connect(url: string, options: ConnectOptions = {}): Promise<Client> {
  const client = new Client(url, options);
  await client.opened;
  return client;
}

/**
 * A connection to one pub-sub endpoint. Requests are matched to replies by
 * sequence and may run concurrently; subscriptions survive reconnects.
 */
export class Client {
  /** The endpoint URL. */
  readonly url: string;
  /** Settles when the first connection opens, or rejects when the client gives up. */
  readonly opened: Promise<void>;

  readonly #options: ConnectOptions;
  readonly #WebSocket: WebSocketConstructor;
  readonly #timeoutMs: number;
  readonly #reconnect: Required<ReconnectOptions> | false;
  readonly #backoff: Required<ReconnectOptions>;
  readonly #keepaliveIntervalMs: number;
  readonly #keepaliveTimeoutMs: number;
  readonly #maxFrameBytes: number;

  #ws: WebSocketLike | null = null;
  #state: ConnectionState = { state: "connecting" };
  #attempt = 0;
  /** The outage began with a restart signal (1001, 4008, 503). */
  #restarting = false;
  #nextSequence = 1;
  /** Sent requests by sequence. */
  readonly #inFlight = new Map<number, Pending>();
  /** Requests waiting for a connection. */
  readonly #unsent = new Set<Pending>();
  /** Live subscriptions, and the ones among them the server serves now by sequence. */
  readonly #subscriptions = new Set<Subscription>();
  readonly #bySequence = new Map<number, Subscription>();
  /** Subscriptions whose resume failed for a while: their attempt count and timer. */
  readonly #retries = new Map<Subscription, { attempt: number; timer?: ReturnType<typeof setTimeout> }>();
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #stableTimer: ReturnType<typeof setTimeout> | undefined;
  #refreshTimer: ReturnType<typeof setTimeout> | undefined;
  #keepaliveTimer: ReturnType<typeof setInterval> | undefined;
  #lastReceived = 0;
  #keepalivePending = false;
  #settleOpened: { resolve: () => void; reject: (e: unknown) => void } | undefined;
  /** What this client's subscriptions call. */
  readonly #owner: SubscriptionOwner = {
    unsubscribe: (sub) => this.unsubscribe(sub),
    pause: (sub) => this.#pause(sub),
    drained: (sub) => void this.#serve(sub),
  };

  /** Prefer connect(), which waits for the connection. */
  constructor(url: string, options: ConnectOptions = {}) {
    this.url = url;
    this.#options = options;
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new PubSubError("no WebSocket class: pass options.WebSocket (in Node 20, the `ws` package's WebSocket)");
    }
    this.#WebSocket = WS;
    this.#timeoutMs = options.requestTimeoutMs ?? 10_000;
    const r = options.reconnect || {};
    this.#backoff = {
      initialDelayMs: r.initialDelayMs ?? 250,
      maxDelayMs: r.maxDelayMs ?? 10_000,
      maxAttempts: r.maxAttempts ?? Infinity,
      restartDelayMs: r.restartDelayMs ?? 2_000,
      resetAfterMs: r.resetAfterMs ?? 5_000,
    };
    this.#reconnect = options.reconnect === false ? false : this.#backoff;
    this.#keepaliveIntervalMs = options.keepaliveIntervalMs ?? 15_000;
    this.#keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? 10_000;
    this.#maxFrameBytes = options.maxFrameBytes ?? 1 << 20;
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
    const resp = await this.#request({ $case: "cmdPing", value: { state } }, "ping", opts);
    return expect(resp, "pongResp").state;
  }

  /** Looks up an offset of a partition (cmd_kafka_list_offset). */
  async listOffset(topic: string, partition: number, query: OffsetQuery, opts?: RequestOptions): Promise<bigint> {
    const timestamp = query === "earliest" ? -2n : query === "latest" ? -1n : BigInt(query instanceof Date ? query.getTime() : query);
    const resp = await this.#request({ $case: "cmdKafkaListOffset", value: { topic, partition, timestamp } },
      `list offset of ${topic}/${partition}`, opts);
    return expect(resp, "kafkaListOffsetResp").offset;
  }

  /** Reads records of a partition from offset on (cmd_kafka_fetch), those matching opts.filter if given. */
  async fetch(topic: string, partition: number, offset: bigint | number, opts?: FetchOptions): Promise<FetchResult> {
    const from = BigInt(offset);
    const resp = await this.#request({
      $case: "cmdKafkaFetch",
      value: { topic, partition, offset: from, filter: filter(opts?.filter) },
    }, `fetch of ${topic}/${partition}`, opts);
    const fr = expect(resp, "kafkaFetchResp");
    return { records: fr.messages, nextOffset: nextOffset(fr.messages, fr.nextOffset, from) };
  }

  /**
   * Writes records to a partition of a topic (cmd_kafka_produce); partition
   * -1 lets Kafka's default partitioner choose by key. Resolves once Kafka
   * acknowledged every record, with where each one was stored, in order. A
   * request cut off by a lost connection fails with ConnectionClosedError
   * and its outcome is unknown: it is not sent again. A request larger than
   * maxFrameBytes fails with RequestTooLargeError and is not sent.
   */
  async produce(topic: string, partition: number, records: ProduceRecord[], opts?: RequestOptions): Promise<PartitionOffset[]> {
    const resp = await this.#request({
      $case: "cmdKafkaProduce",
      value: {
        topic,
        partition,
        records: records.map((r) => ({
          key: bytes(r.key),
          value: bytes(r.value),
          headers: headers(r.headers),
          timestamp: BigInt(r.timestamp instanceof Date ? r.timestamp.getTime() : r.timestamp ?? 0),
        })),
      },
    }, `produce to ${topic}`, opts);
    return expect(resp, "kafkaProduceResp").offsets.map(({ partition, offset }) => ({ partition, offset }));
  }

  /** Stores a consumer group's next offsets (last processed + 1) for partitions of a topic (cmd_kafka_commit). */
  async commit(group: string, topic: string, offsets: PartitionOffset[], metadata = "", opts?: RequestOptions): Promise<void> {
    const resp = await this.#request({
      $case: "cmdKafkaCommit",
      value: { group, topic, metadata, offsets: offsets.map(({ partition, offset }) => ({ partition, offset })) },
    }, `commit of ${group} for ${topic}`, opts);
    expect(resp, "kafkaCommitResp");
  }

  /** Reads a consumer group's committed offsets (-1 where it has none); no partitions: all (cmd_kafka_committed). */
  async committed(group: string, topic: string, partitions: number[] = [], opts?: RequestOptions): Promise<PartitionOffset[]> {
    const resp = await this.#request({ $case: "cmdKafkaCommitted", value: { group, topic, partitions } },
      `committed offsets of ${group} for ${topic}`, opts);
    return expect(resp, "kafkaCommittedResp").offsets.map(({ partition, offset }) => ({ partition, offset }));
  }

  /**
   * Subscribes to partitions of a topic, or with options.group as a member
   * of a consumer group; resolves once the server accepted. With a callback,
   * events go to it (and `end` last); otherwise read the subscription with
   * `for await`. A group subscription's events include assignments: on a
   * revocation, commit its offsets (`commit(group, topic, ev.offsets)`) to
   * hand the partitions over without a record delivered twice.
   */
  subscribe(options: SubscribeOptions, callback?: SubscriptionCallback, opts?: RequestOptions): Promise<Subscription> {
    return new Promise<Subscription>((resolve, reject) => {
      let sub: Subscription | undefined;
      this.#request(subscribeRequest(options), `subscribe to ${options.topic}`, opts, (resp, sequence) => {
        if (resp.resp?.$case !== "kafkaSubscribeResp") return;
        const starts = new Map<number, bigint>();
        for (const p of resp.resp.value.partitions) starts.set(p.partition, p.offset);
        sub = new Subscription(this.#owner, options, sequence, starts, callback);
        sub.link = "live";
        this.#subscriptions.add(sub);
        this.#bySequence.set(sequence, sub);
      }).then((resp) => {
        expect(resp, "kafkaSubscribeResp");
        resolve(sub!);
      }, reject);
    });
  }

  /** Ends a subscription (cmd_kafka_unsubscribe); no event but `end` follows. */
  async unsubscribe(sub: Subscription, opts?: RequestOptions): Promise<void> {
    if (!this.#subscriptions.has(sub)) return;
    const sequence = sub.sequence;
    const served = sub.link === "live" && this.#bySequence.get(sequence) === sub;
    this.#end(sub, undefined);
    // A subscription not served now (reconnecting, paused) has nothing to end on the server.
    if (!served || this.#state.state !== "connected") return;
    const resp = await this.#request({ $case: "cmdKafkaUnsubscribe", value: { subscription: BigInt(sequence) } }, "unsubscribe", opts);
    expect(resp, "kafkaUnsubscribeResp");
  }

  /** Closes the connection for good (code 1000); pending requests fail and subscriptions end. */
  close(): void {
    const ws = this.#ws;
    this.#detach();
    ws?.close(1000, "client closed");
    this.#finish(1000, "client closed");
  }

  /** The subscription's queue is full: the server stops sending until it drains. */
  #pause(sub: Subscription): void {
    // A pending resume checks on its ack.
    if (sub.link === "live" && this.#bySequence.get(sub.sequence) === sub) this.#stopServing(sub, () => void this.#serve(sub));
  }

  /**
   * Ends the server's subscription of a live one and then runs next. Pushes
   * keep coming until the server answers: they are queued (a group's
   * revocation counts them), and a resume starts after them.
   */
  #stopServing(sub: Subscription, next: () => void): void {
    const sequence = sub.sequence;
    sub.link = "pending";
    const done = () => {
      if (this.#bySequence.get(sequence) !== sub) return; // the connection went meanwhile
      this.#bySequence.delete(sequence);
      sub.link = "none";
      next();
    };
    this.#request({ $case: "cmdKafkaUnsubscribe", value: { subscription: BigInt(sequence) } }, "unsubscribe", undefined).then(done, done);
  }

  #setState(state: ConnectionState): void {
    this.#state = state;
    try {
      this.#options.onStateChange?.(state);
    } catch (e) {
      console.error("pubsub client: onStateChange threw", e);
    }
  }

  /** Opens a socket, with a token (fetched first when it is a function). */
  #open(): void {
    const { token } = this.#options;
    if (typeof token === "function") {
      Promise.resolve().then(token).then((t) => {
        if (this.#state.state === "connecting") this.#openSocket(t);
      }, (e) => {
        if (this.#state.state === "connecting") this.#onDisconnect(1006, `token: ${e instanceof Error ? e.message : String(e)}`);
      });
    } else {
      this.#openSocket(token);
    }
  }

  #openSocket(token: string | undefined): void {
    let ws: WebSocketLike;
    let { protocols, headers } = this.#options;
    let url = this.url;
    try {
      if (token !== undefined) {
        if (headers) {
          headers = { ...headers, Authorization: `Bearer ${token}` };
        } else {
          const u = new URL(url);
          u.searchParams.set("access_token", token);
          url = u.href;
        }
        this.#scheduleRefresh(expiry(token));
      }
      ws = headers ? new this.#WebSocket(url, protocols ?? [], { headers })
        : protocols ? new this.#WebSocket(url, protocols) : new this.#WebSocket(url);
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
   * Refreshes the session's token before expiresAt (ms since the epoch):
   * only a token function can give a fresh one. A refused refresh leaves
   * the session to end at expiry (4401), after which the client reconnects.
   */
  #scheduleRefresh(expiresAt: number | undefined): void {
    clearTimeout(this.#refreshTimer);
    const fresh = this.#options.token;
    if (typeof fresh !== "function" || !expiresAt) return;
    const left = expiresAt - Date.now();
    const wait = Math.max(0, left - Math.min(this.#options.tokenRefreshBeforeMs ?? 30_000, left / 2));
    this.#refreshTimer = setTimeout(async () => {
      try {
        const token = await fresh();
        const resp = await this.#request({ $case: "cmdAuth", value: { token } }, "token refresh", undefined);
        this.#scheduleRefresh(Number(expect(resp, "authResp").expiresAt) || expiry(token));
      } catch {
        // The session ends at expiry with 4401, and the next connect takes a fresh token.
      }
    }, wait);
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
    clearTimeout(this.#stableTimer);
    this.#keepaliveTimer = this.#stableTimer = undefined;
    this.#keepalivePending = false;
  }

  #onOpen(): void {
    const ws = this.#ws;
    this.#lastReceived = Date.now();
    this.#setState({ state: "connected" });
    this.#settleOpened?.resolve();
    this.#settleOpened = undefined;
    if (this.#keepaliveIntervalMs > 0) {
      this.#keepaliveTimer = setInterval(() => this.#keepalive(), Math.max(this.#keepaliveIntervalMs / 2, 10));
    }
    // The attempt count resets once this connection proved itself.
    const stable = () => {
      if (this.#ws !== ws) return;
      clearTimeout(this.#stableTimer);
      this.#attempt = 0;
      this.#restarting = false;
    };
    this.#stableTimer = setTimeout(stable, this.#backoff.resetAfterMs);
    const resumes = [...this.#subscriptions].map((sub) => this.#serve(sub));
    if (resumes.length > 0) void Promise.all(resumes).then((ok) => { if (ok.every(Boolean)) stable(); });
    for (const p of this.#unsent) {
      this.#unsent.delete(p);
      this.#send(p);
    }
  }

  /**
   * Subscribes again from where the subscription's received records end,
   * unless the server serves it already, a request is on its way or its
   * queue is full. Resolves true once the server acknowledged.
   */
  async #serve(sub: Subscription): Promise<boolean> {
    if (sub.ended || sub.link !== "none" || sub.paused || !this.#subscriptions.has(sub)) return false;
    const retry = this.#retries.get(sub);
    clearTimeout(retry?.timer);
    sub.link = "pending";
    try {
      await this.#request(subscribeRequest(sub.resumeOptions()), `resume subscription to ${sub.topic}`, undefined, (resp, sequence) => {
        if (resp.resp?.$case !== "kafkaSubscribeResp") return;
        if (!this.#subscriptions.has(sub)) {
          // Unsubscribed while resuming: end it on the server too.
          this.#request({ $case: "cmdKafkaUnsubscribe", value: { subscription: BigInt(sequence) } }, "unsubscribe", undefined)
            .catch(() => undefined);
          return;
        }
        sub.resumed(sequence);
        sub.link = "live";
        this.#bySequence.set(sequence, sub);
        if (sub.paused) this.#pause(sub);
      });
    } catch (err) {
      if (sub.link === "pending") sub.link = "none";
      this.#resumeFailed(sub, err);
      return false;
    }
    this.#retries.delete(sub);
    return true;
  }

  /**
   * A resume was refused. A lost connection resumes on the next one;
   * transient failures are tried again with backoff; an offset out of the
   * log follows the subscription's autoOffsetReset for that partition;
   * anything else ends the subscription with the error.
   */
  #resumeFailed(sub: Subscription, err: unknown): void {
    if (!this.#subscriptions.has(sub) || err instanceof ConnectionClosedError) return;
    if (resettable(sub, err)) {
      const partition = err.partition!;
      const reset = sub.autoOffsetReset;
      if (reset === "error") {
        if (sub.deliverError(err)) void this.#serve(sub);
        else this.#end(sub, err);
        return;
      }
      sub.link = "pending"; // no other resume while the offset is looked up
      this.listOffset(sub.topic, partition, reset).then((offset) => {
        sub.link = "none";
        sub.resetPartition(partition, offset);
        void this.#serve(sub);
      }, (e) => {
        sub.link = "none";
        this.#resumeFailed(sub, e);
      });
      return;
    }
    if ((err instanceof ServerError && err.retriable) || err instanceof RequestTimeoutError) {
      const retry = this.#retries.get(sub) ?? { attempt: 0 };
      this.#retries.set(sub, retry);
      retry.attempt++;
      retry.timer = setTimeout(() => void this.#serve(sub), this.#delay(retry.attempt, false));
      return;
    }
    this.#end(sub, err instanceof PubSubError ? err : new PubSubError(String(err)));
  }

  /** Forgets a subscription and ends it. */
  #end(sub: Subscription, err: PubSubError | undefined): void {
    this.#subscriptions.delete(sub);
    if (this.#bySequence.get(sub.sequence) === sub) this.#bySequence.delete(sub.sequence);
    clearTimeout(this.#retries.get(sub)?.timer);
    this.#retries.delete(sub);
    sub.link = "none";
    sub.end(err);
  }

  /** A wait before attempt (1, 2, ...): random up to a cap that doubles per attempt (full jitter). */
  #delay(attempt: number, restarting: boolean): number {
    const b = this.#backoff;
    const first = restarting ? Math.max(b.initialDelayMs, b.restartDelayMs) : b.initialDelayMs;
    const cap = Math.min(b.maxDelayMs, first * 2 ** Math.min(attempt - 1, 30));
    return Math.round(Math.random() * cap);
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
      const frame = binary(data);
      if (!frame) throw new Error("not a binary message");
      resp = PubSubResp.decode(frame);
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
      if (resp.resp?.$case === "errorResp") pending.reject(new ServerError(resp.resp.value.message, resp.resp.value.code));
      else pending.resolve(resp);
      return;
    }
    const sub = this.#bySequence.get(sequence);
    if (!sub) {
      // A late reply to a request that timed out, or a push after unsubscribe.
      // A subscription acknowledged after its request gave up is ended, so
      // the server does not push for nobody.
      if (resp.resp?.$case === "kafkaSubscribeResp") {
        this.#request({ $case: "cmdKafkaUnsubscribe", value: { subscription: resp.sequence } }, "unsubscribe", undefined)
          .catch(() => undefined);
      }
      return;
    }
    switch (resp.resp?.$case) {
      case "kafkaFetchResp": {
        const fr = resp.resp.value;
        sub.deliverRecords(fr.partition, fr.messages, fr.nextOffset);
        break;
      }
      case "kafkaAssignment":
        sub.deliverAssignment(resp.resp.value.assigned, resp.resp.value.revoked);
        break;
      case "errorResp": {
        const err = new ServerError(resp.resp.value.message, resp.resp.value.code);
        if (resettable(sub, err) && sub.autoOffsetReset !== "error" && sub.link === "live") {
          // The records were deleted under the reader: that partition goes
          // on from the end autoOffsetReset names, in a new subscription.
          this.#stopServing(sub, () => this.#resumeFailed(sub, err));
        } else if (!sub.deliverError(err)) {
          this.#end(sub, err); // The last partition failed: nothing is left to read.
        }
        break;
      }
    }
  }

  #onDisconnect(code: number, reason: string): void {
    const err = new ConnectionClosedError(code, reason);
    for (const p of this.#inFlight.values()) p.reject(err);
    this.#inFlight.clear();
    this.#bySequence.clear();
    for (const sub of this.#subscriptions) {
      sub.link = "none";
      sub.connectionLost();
    }
    const r = this.#reconnect;
    const status = Number(httpStatus.exec(reason)?.[1] ?? 0);
    // An upgrade refused as a client error (404, 401, ...) stays refused; 408 and 429 may pass later.
    const refused = status >= 400 && status < 500 && status !== 408 && status !== 429;
    if (!r || permanentCloseCodes.has(code) || refused || this.#attempt >= r.maxAttempts || this.#state.state === "closed") {
      this.#finish(code, reason);
      return;
    }
    if (this.#attempt === 0) this.#restarting = restartCloseCodes.has(code) || status === 503;
    this.#attempt++;
    // An expired token is not an outage: the next attempt takes a fresh token at once.
    const delayMs = code === tokenExpired && this.#attempt === 1 ? 0 : this.#delay(this.#attempt, this.#restarting);
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
    clearTimeout(this.#refreshTimer);
    const err = new ConnectionClosedError(code, reason);
    this.#settleOpened?.reject(err);
    this.#settleOpened = undefined;
    this.#setState({ state: "closed", closeCode: code, reason });
    for (const p of [...this.#inFlight.values(), ...this.#unsent]) p.reject(err);
    this.#inFlight.clear();
    this.#unsent.clear();
    for (const sub of [...this.#subscriptions]) this.#end(sub, code === 1000 ? undefined : err);
  }

  /**
   * Encodes a request (refusing one over maxFrameBytes), sends it when
   * connected and settles with its reply, its timeout or the connection's end.
   */
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
      const sequence = this.#nextSequence++;
      const frame = PubSubReq.encode({ sequence: BigInt(sequence), req }).finish();
      if (frame.length > this.#maxFrameBytes) {
        reject(new RequestTooLargeError(what, frame.length, this.#maxFrameBytes));
        return;
      }
      const timeoutMs = opts?.timeoutMs ?? this.#timeoutMs;
      const forget = () => {
        this.#unsent.delete(p);
        if (this.#inFlight.get(sequence) === p) this.#inFlight.delete(sequence);
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
        frame,
        sequence,
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
    this.#inFlight.set(p.sequence, p);
    try {
      ws.send(p.frame);
    } catch (e) {
      this.#inFlight.delete(p.sequence);
      p.reject(new PubSubError(`${p.what}: send failed: ${e instanceof Error ? e.message : String(e)}`));
    }
  }
}

function ignore(): void {}

/** Whether err is a partition's offset out of the log, which a plain subscription's autoOffsetReset handles. */
function resettable(sub: Subscription, err: unknown): err is ServerError {
  return err instanceof ServerError && err.cause === "OFFSET_OUT_OF_RANGE" && err.partition !== undefined && sub.group === undefined;
}

const utf8 = new TextEncoder();

function bytes(b: Bytes | undefined): Uint8Array {
  return typeof b === "string" ? utf8.encode(b) : b ?? new Uint8Array();
}

function headers(hs: { key: string; value: Bytes }[] | undefined): KafkaHeader[] {
  return (hs ?? []).map((h) => ({ key: h.key, value: bytes(h.value) }));
}

function filter(f: RecordFilter | undefined): KafkaFilter | undefined {
  return f ? { key: bytes(f.key), headers: headers(f.headers) } : undefined;
}

/**
 * The bytes of a binary message: an ArrayBuffer (also one made in another
 * realm, such as a worker's or an iframe's, where instanceof fails) or a view.
 */
function binary(data: unknown): Uint8Array | undefined {
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Object.prototype.toString.call(data) === "[object ArrayBuffer]") return new Uint8Array(data as ArrayBuffer);
  return undefined;
}

/** A JWT's `exp` in ms since the epoch, when the token is a JWT that has one. */
function expiry(token: string): number | undefined {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(payload)).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** The offset after a fetch or push: next_offset when the server set it, else last + 1. */
function nextOffset(records: KafkaMessage[], serverNext: bigint, from: bigint): bigint {
  if (serverNext > 0n) return serverNext;
  return records.length > 0 ? records[records.length - 1].offset + 1n : from;
}

function subscribeRequest(o: SubscribeOptions): Req {
  let start: CmdKafkaSubscribe["start"];
  const s = o.start ?? "latest";
  if (s === "earliest" || s === "latest") start = { $case: s, value: true };
  else if ("offset" in s) start = { $case: "offset", value: BigInt(s.offset) };
  else start = { $case: "timestamp", value: BigInt(s.timestamp instanceof Date ? s.timestamp.getTime() : s.timestamp) };
  const offsets: { [k: number]: bigint } = {};
  for (const [p, off] of Object.entries(o.offsets ?? {})) offsets[Number(p)] = BigInt(off);
  return {
    $case: "cmdKafkaSubscribe",
    value: {
      topic: o.topic,
      partitions: o.partitions ?? [],
      start,
      offsets,
      maxRecords: o.maxRecords ?? 0,
      group: o.group ?? "",
      filter: filter(o.filter),
    },
  };
}

/** Returns the reply of the expected kind, or throws. */
function expect<K extends NonNullable<PubSubResp["resp"]>["$case"]>(resp: PubSubResp, kind: K): ReplyOf<K> {
  if (resp.resp?.$case !== kind) throw new PubSubError(`unexpected reply ${resp.resp?.$case ?? "(empty)"}, want ${kind}`);
  return resp.resp.value as ReplyOf<K>;
}

/** The message of reply kind K. */
type ReplyOf<K> = Extract<NonNullable<PubSubResp["resp"]>, { $case: K }> extends { value: infer V } ? V : never;
