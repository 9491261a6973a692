/**
 * The base class of every error this client throws. Each class sets `name`
 * explicitly (minifiers rename classes), so `err.name` is stable.
 */
export class PubSubError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PubSubError";
  }
}

/**
 * Causes after which the same request may succeed when tried again: the
 * broker or its leadership is moving, or it was slow. Kafka's retriable
 * error codes as Kafka spells them, and the gateway's plain-word causes.
 */
const retriableCauses = new Set([
  "broker unreachable",
  "request timed out",
  "COORDINATOR_LOAD_IN_PROGRESS",
  "COORDINATOR_NOT_AVAILABLE",
  "FENCED_LEADER_EPOCH",
  "KAFKA_STORAGE_ERROR",
  "LEADER_NOT_AVAILABLE",
  "NETWORK_EXCEPTION",
  "NOT_COORDINATOR",
  "NOT_ENOUGH_REPLICAS",
  "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
  "NOT_LEADER_FOR_PARTITION",
  "NOT_LEADER_OR_FOLLOWER",
  "OFFSET_NOT_AVAILABLE",
  "REBALANCE_IN_PROGRESS",
  "REPLICA_NOT_AVAILABLE",
  "REQUEST_TIMED_OUT",
  "UNKNOWN_LEADER_EPOCH",
]);

/** `failed to OP, key: value, ..., err: CAUSE`, the server's error format. */
const serverMessage = /^failed to ([^,]+), (.*?)err: ([\s\S]*)$/;

/**
 * The server answered a request with error_resp. `message` is the server's
 * text, e.g. `failed to fetch message, topic: T, partition: P, err: CAUSE`,
 * parsed once into its parts; a text in another form leaves them undefined
 * (and `cause` the whole text).
 */
export class ServerError extends PubSubError {
  /** ErrorResp.code as the server sent it (0 for every failure it reports today). */
  readonly code: number;
  /** What failed, in the server's words: "fetch message", "subscribe", "list offset", ... */
  readonly op: string | undefined;
  /** The topic the failed command named. */
  readonly topic: string | undefined;
  /** The partition the failed command named. */
  readonly partition: number | undefined;
  /** Why: a Kafka error name (`OFFSET_OUT_OF_RANGE`, ...) or plain words (`topic not allowed`, ...). */
  readonly cause: string;
  /** Whether the same request may succeed when tried again (the broker was unreachable, slow or moving). */
  readonly retriable: boolean;

  constructor(message: string, code = 0) {
    super(message);
    this.name = "ServerError";
    this.code = code;
    const m = serverMessage.exec(message);
    const fields = new Map<string, string>();
    for (const part of m ? m[2].split(", ") : []) {
      const i = part.indexOf(": ");
      if (i > 0) fields.set(part.slice(0, i), part.slice(i + 2).replace(/,$/, ""));
    }
    this.op = m?.[1];
    this.topic = fields.get("topic");
    const p = fields.get("partition");
    this.partition = p !== undefined && /^-?\d+$/.test(p) ? Number(p) : undefined;
    this.cause = m ? m[3] : message;
    this.retriable = retriableCauses.has(this.cause);
  }
}

/** A request got no reply within its timeout. */
export class RequestTimeoutError extends PubSubError {
  /** The timeout that expired, in milliseconds. */
  readonly timeoutMs: number;

  constructor(what: string, timeoutMs: number) {
    super(`${what}: no reply within ${timeoutMs} ms`);
    this.name = "RequestTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The connection ended (or could not be opened) before a request was
 * answered. `closeCode` is the WebSocket close code: 1001 when the server
 * shuts down, 4008 for a slow consumer, 1006 when the connection was lost
 * without a close frame (or could not be opened), 1000 after close().
 */
export class ConnectionClosedError extends PubSubError {
  /** The WebSocket close code. */
  readonly closeCode: number;
  /** The close reason the peer sent, if any. */
  readonly reason: string;

  constructor(closeCode: number, reason: string) {
    super(`connection closed with code ${closeCode}${reason ? ` (${reason})` : ""}`);
    this.name = "ConnectionClosedError";
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

/** The request was cancelled through its AbortSignal. */
export class AbortedError extends PubSubError {
  constructor(message: string) {
    super(message);
    this.name = "AbortedError";
  }
}

/**
 * A request is larger than the server accepts in one frame
 * (ConnectOptions.maxFrameBytes): it was not sent, and the connection stays.
 */
export class RequestTooLargeError extends PubSubError {
  /** The encoded request's size in bytes. */
  readonly bytes: number;
  /** The limit it exceeds. */
  readonly maxFrameBytes: number;

  constructor(what: string, bytes: number, maxFrameBytes: number) {
    super(`${what}: the request is ${bytes} bytes, more than the server's frame limit of ${maxFrameBytes} bytes`);
    this.name = "RequestTooLargeError";
    this.bytes = bytes;
    this.maxFrameBytes = maxFrameBytes;
  }
}
