/** The base class of every error this client throws. */
export class PubSubError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * The server answered a request with error_resp. `message` is the server's
 * text, e.g. `failed to fetch message, topic: T, partition: P, err: CAUSE`.
 */
export class ServerError extends PubSubError {
  /** ErrorResp.code as the server sent it (0 for every failure it reports today). */
  readonly code: number;

  constructor(message: string, code: number) {
    super(message);
    this.code = code;
  }
}

/** A request got no reply within its timeout. */
export class RequestTimeoutError extends PubSubError {
  /** The timeout that expired, in milliseconds. */
  readonly timeoutMs: number;

  constructor(what: string, timeoutMs: number) {
    super(`${what}: no reply within ${timeoutMs} ms`);
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
    this.closeCode = closeCode;
    this.reason = reason;
  }
}

/** The request was cancelled through its AbortSignal. */
export class AbortedError extends PubSubError {}
