import type { KafkaMessage } from "./gen/decode/pubsub.js";
import type { PartitionOffset } from "./client.js";
import type { PubSubError, ServerError } from "./errors.js";

/** Records the server pushed for one partition of a subscription. */
export interface RecordBatch {
  kind: "records";
  topic: string;
  partition: number;
  /** The records, in offset order, never one delivered before. */
  records: KafkaMessage[];
  /** The offset the subscription continues at in this partition. */
  nextOffset: bigint;
}

/**
 * One partition of a subscription failed and stopped (its records were
 * deleted under a slow reader, the topic was deleted, ...); the other
 * partitions go on. When it was the last one, the subscription ends with
 * this error.
 */
export interface PartitionError {
  kind: "error";
  topic: string;
  /** The failed partition, when the server's message names one. */
  partition: number | undefined;
  error: ServerError;
}

/**
 * A change of a group subscription's partitions (kafka_assignment). The
 * server pushes `assigned` before the first records of those partitions and
 * `revoked` after the last records of partitions taken away; the group waits
 * a bounded time (10 s) for the member to commit them before another member
 * takes them over from the committed offsets.
 */
export interface Assignment {
  kind: "assignment";
  topic: string;
  /** Partitions the group gave this subscription. */
  assigned: number[];
  /** Partitions taken away from this subscription. */
  revoked: number[];
  /**
   * For revoked partitions: the offset after the last record delivered of
   * each (those with no record delivered are left out). Commit them, with
   * the subscription's group, once everything before this event is
   * processed, so that the next owner starts where this one stopped.
   */
  offsets: PartitionOffset[];
  /**
   * True when the client made this revocation itself because the connection
   * was lost: the session is no longer a member of the group, so a commit
   * cannot hand these partitions over. After the reconnect the subscription
   * joins the group again and is assigned partitions anew.
   */
  lost: boolean;
}

/**
 * The last event of a callback subscription: it ended, with the error that
 * ended it, or `undefined` after unsubscribe() or close().
 */
export interface SubscriptionEnd {
  kind: "end";
  error: PubSubError | undefined;
}

/** What a subscription delivers: record batches, partition failures and, for a group, assignments. */
export type SubscriptionEvent = RecordBatch | PartitionError | Assignment;

/** Where a subscription starts in every partition it has no offset for. */
export type StartPosition =
  | "earliest"
  | "latest"
  | { offset: bigint | number }
  | { timestamp: number | Date };

/**
 * What a partition does when its next offset is no longer in the log
 * (OFFSET_OUT_OF_RANGE: retention deleted it while disconnected, or under
 * a slow reader): go on from the partition's earliest or latest offset, or
 * stop that partition with an `error` event.
 */
export type AutoOffsetReset = "earliest" | "latest" | "error";

/** Only records whose key equals `key` (when set) and that carry every listed header with that value. */
export interface RecordFilter {
  key?: Uint8Array | string;
  headers?: { key: string; value: Uint8Array | string }[];
}

/** What to subscribe to. */
export interface SubscribeOptions {
  topic: string;
  /** The partitions to read; empty or absent means every partition. Not with group. */
  partitions?: number[];
  /** Where to start; default "latest". */
  start?: StartPosition;
  /** Start offsets of single partitions, overriding start. Not with group. */
  offsets?: Record<number, bigint | number>;
  /**
   * Read as one member of this consumer group: the group assigns the
   * partitions (see Assignment), each read from the group's committed
   * offset, or from start where it has none.
   */
  group?: string;
  /** At most this many records per push; 0 or absent: as many as one fetch holds. */
  maxRecords?: number;
  /**
   * What a partition does when its next offset is out of the log, per
   * partition; default "error" (that partition stops with an `error`
   * event, the others go on). Not with group (the group's committed
   * offsets decide).
   */
  autoOffsetReset?: AutoOffsetReset;
  /**
   * Records an iterator holds unread before the client stops the server
   * sending (it unsubscribes, and subscribes again from where the queue ends
   * once the application has read it down to half); default 10,000. The
   * pushes already on their way are still queued, so the count may pass it
   * by one fetch. Callback subscriptions hold nothing.
   */
  maxBufferedRecords?: number;
  /** Only records that match this filter are pushed (applied by the server, after the identity's scope). */
  filter?: RecordFilter;
}

/** Receives a subscription's events instead of its async iterator; `end` comes last, once. */
export type SubscriptionCallback = (event: SubscriptionEvent | SubscriptionEnd) => void;

/** @internal What a Subscription needs from its client. */
export interface SubscriptionOwner {
  unsubscribe(sub: Subscription): Promise<void>;
  /** The subscription holds more than maxBufferedRecords: stop the server sending. */
  pause(sub: Subscription): void;
  /** The application read the queue down: the server may send again. */
  drained(sub: Subscription): void;
}

/** The position of an assigned partition before its first record: any offset is new. */
const unknownPosition = -1n;

/** The default of SubscribeOptions.maxBufferedRecords. */
const defaultMaxBufferedRecords = 10_000;

/**
 * A live subscription. The server pushes records of its partitions; the
 * client tracks the next offset of every partition and, after a reconnect,
 * subscribes again from there, so every record is delivered exactly once and
 * in order per partition. A group subscription instead joins its group again
 * after a reconnect and resumes from the group's committed offsets: records
 * it did not commit may be delivered again. Read it with `for await` or give
 * subscribe() a callback. An iterator holds at most about
 * `maxBufferedRecords` unread records: beyond that the server stops sending
 * until the application catches up.
 */
export class Subscription implements AsyncIterable<SubscriptionEvent> {
  /** The subscribed topic. */
  readonly topic: string;
  /** The consumer group of a group subscription, else undefined. */
  readonly group: string | undefined;
  /** The offset each partition started at, from the server's first answer. */
  readonly starts: ReadonlyMap<number, bigint>;
  /**
   * Settles once, when the subscription ends: with the error that ended it
   * (a refused resume, every partition failed, the client closed for good),
   * or `undefined` after unsubscribe() or close(). It never rejects.
   */
  readonly closed: Promise<PubSubError | undefined>;
  /** @internal Whether the server serves it now: none, a subscribe request on its way, or live. */
  link: "none" | "pending" | "live" = "none";
  /** @internal The queue is over maxBufferedRecords: the server must not send. */
  paused = false;

  readonly #options: SubscribeOptions;
  readonly #owner: SubscriptionOwner;
  readonly #callback: SubscriptionCallback | undefined;
  readonly #maxBuffered: number;
  /** The next offset after what the application took, per partition. */
  readonly #positions = new Map<number, bigint>();
  /** The next offset after what was received (queued or taken): where a resume starts. */
  readonly #received = new Map<number, bigint>();
  readonly #queue: SubscriptionEvent[] = [];
  #buffered = 0;
  readonly #waiting: { resolve: (r: IteratorResult<SubscriptionEvent>) => void; reject: (e: unknown) => void }[] = [];
  #ended = false;
  #endError: PubSubError | undefined = undefined;
  #settleClosed: (e: PubSubError | undefined) => void = () => undefined;
  #sequence: number;

  /** @internal Built by Client.subscribe once the server acknowledged. */
  constructor(owner: SubscriptionOwner, options: SubscribeOptions, sequence: number,
    starts: Map<number, bigint>, callback: SubscriptionCallback | undefined) {
    this.#owner = owner;
    this.#options = options;
    this.topic = options.topic;
    this.group = options.group || undefined;
    this.#sequence = sequence;
    this.starts = starts;
    for (const [p, o] of starts) {
      this.#positions.set(p, o);
      this.#received.set(p, o);
    }
    this.#callback = callback;
    this.#maxBuffered = Math.max(1, options.maxBufferedRecords ?? defaultMaxBufferedRecords);
    this.closed = new Promise((resolve) => {
      this.#settleClosed = resolve;
    });
  }

  /** The sequence the server's pushes carry now (it changes on resubscribe). */
  get sequence(): number {
    return this.#sequence;
  }

  /**
   * The next offset of every live partition after the records the
   * application took (read from the iterator, or handed to the callback):
   * commit these. For a group subscription, its assigned partitions (-1
   * until the first record of one is taken).
   */
  get positions(): ReadonlyMap<number, bigint> {
    return this.#positions;
  }

  /** Records received and not yet read from the iterator (always 0 with a callback). */
  get buffered(): number {
    return this.#buffered;
  }

  /** Whether the subscription ended (unsubscribed, failed or client closed). */
  get ended(): boolean {
    return this.#ended;
  }

  /** @internal What the subscription does when a resumed partition's offset is out of the log. */
  get autoOffsetReset(): AutoOffsetReset {
    return this.#options.autoOffsetReset ?? "error";
  }

  /** Ends the subscription; no event but `end` follows the returned promise. */
  unsubscribe(): Promise<void> {
    return this.#owner.unsubscribe(this);
  }

  /** @internal The request that resumes the subscription where its received records end. */
  resumeOptions(): SubscribeOptions {
    // A group resumes from its committed offsets: the request as it was.
    if (this.group !== undefined) return this.#options;
    const offsets: Record<number, bigint> = {};
    for (const [p, o] of this.#received) offsets[p] = o;
    return { ...this.#options, partitions: [...this.#received.keys()], offsets };
  }

  /** @internal The subscription now lives under a new sequence. */
  resumed(sequence: number): void {
    this.#sequence = sequence;
  }

  /** @internal Queues records, unless they were received before. */
  deliverRecords(partition: number, records: KafkaMessage[], serverNext: bigint): void {
    const position = this.#received.get(partition);
    if (this.#ended || position === undefined) return;
    // A push never repeats a record; this guard keeps it so whatever the
    // server does across a resume.
    const fresh = records.filter((r) => r.offset >= position);
    const last = fresh.length > 0 ? fresh[fresh.length - 1].offset + 1n : position;
    const next = serverNext > last ? serverNext : last;
    this.#received.set(partition, next);
    if (fresh.length > 0) {
      this.#emit({ kind: "records", topic: this.topic, partition, records: fresh, nextOffset: next });
    } else if (next !== position && this.#buffered === 0) {
      // Offsets without data records: nothing to take, so taken moves too.
      this.#positions.set(partition, next);
    }
  }

  /** @internal The group changed the subscription's partitions. */
  deliverAssignment(assigned: number[], revoked: number[]): void {
    if (this.#ended || this.group === undefined) return;
    // A partition assigned again starts wherever the group's committed offset is.
    for (const p of assigned) this.#received.set(p, unknownPosition);
    this.#emitAssignment(assigned, revoked, false);
  }

  /** @internal The connection was lost: a group subscription's partitions went with it. */
  connectionLost(): void {
    if (this.#ended || this.group === undefined || this.#received.size === 0) return;
    this.#emitAssignment([], [...this.#received.keys()].sort((a, b) => a - b), true);
  }

  /** Forgets the revoked partitions and emits the assignment with where each stood. */
  #emitAssignment(assigned: number[], revoked: number[], lost: boolean): void {
    const offsets: PartitionOffset[] = [];
    for (const p of revoked) {
      const o = this.#received.get(p);
      if (o !== undefined && o !== unknownPosition) offsets.push({ partition: p, offset: o });
      this.#received.delete(p);
    }
    this.#emit({ kind: "assignment", topic: this.topic, assigned, revoked, offsets, lost });
  }

  /**
   * @internal A partition failed: it is not resumed. Returns false when no
   * partition is left (a subscription that is not a group's then ends).
   */
  deliverError(error: ServerError): boolean {
    if (this.#ended) return true;
    const partition = error.partition;
    if (partition !== undefined) this.#received.delete(partition);
    this.#emit({ kind: "error", topic: this.topic, partition, error });
    return this.group !== undefined || this.#received.size > 0;
  }

  /** @internal A resumed partition goes on from offset (autoOffsetReset). */
  resetPartition(partition: number, offset: bigint): void {
    if (!this.#received.has(partition)) return;
    this.#received.set(partition, offset);
    if (this.#buffered === 0) this.#positions.set(partition, offset);
  }

  /**
   * @internal Ends the subscription. An error is what `closed` resolves with
   * and what the iterator throws after the events it holds; without one
   * (unsubscribe, close) the unread events are dropped.
   */
  end(error?: PubSubError): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = error;
    if (error === undefined) {
      this.#queue.length = 0;
      this.#buffered = 0;
    }
    this.#settleClosed(error);
    if (this.#callback) {
      this.#call({ kind: "end", error });
      return;
    }
    // Waiting readers mean the queue is empty: the first one gets the error.
    for (const w of this.#waiting.splice(0)) {
      const err = this.#endError;
      this.#endError = undefined;
      if (err !== undefined) w.reject(err);
      else w.resolve({ done: true, value: undefined });
    }
  }

  #call(event: SubscriptionEvent | SubscriptionEnd): void {
    try {
      this.#callback!(event);
    } catch (e) {
      console.error("pubsub client: subscription callback threw", e);
    }
  }

  #emit(event: SubscriptionEvent): void {
    if (this.#callback) {
      this.#took(event);
      this.#call(event);
      return;
    }
    const w = this.#waiting.shift();
    if (w) {
      this.#took(event);
      w.resolve({ done: false, value: event });
      return;
    }
    this.#queue.push(event);
    if (event.kind === "records") {
      this.#buffered += event.records.length;
      if (this.#buffered > this.#maxBuffered && !this.paused) {
        this.paused = true;
        this.#owner.pause(this);
      }
    }
  }

  /** The application has event: positions move past it. */
  #took(event: SubscriptionEvent): void {
    if (event.kind === "records") {
      this.#positions.set(event.partition, event.nextOffset);
    } else if (event.kind === "assignment") {
      for (const p of event.revoked) this.#positions.delete(p);
      for (const p of event.assigned) this.#positions.set(p, unknownPosition);
    } else if (event.partition !== undefined) {
      this.#positions.delete(event.partition);
    }
  }

  #take(): SubscriptionEvent | undefined {
    const event = this.#queue.shift();
    if (!event) return undefined;
    this.#took(event);
    if (event.kind === "records") {
      this.#buffered -= event.records.length;
      if (this.paused && this.#buffered <= this.#maxBuffered / 2) {
        this.paused = false;
        if (!this.#ended) this.#owner.drained(this);
      }
    }
    return event;
  }

  /**
   * Iterates the subscription's events; leaving the loop unsubscribes. The
   * iterator finishes when the subscription ends, throwing the error that
   * ended it. next() may be called again before the last call settled: the
   * calls get the events in order.
   */
  [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent> {
    return {
      next: () => {
        const queued = this.#take();
        if (queued) return Promise.resolve({ done: false, value: queued });
        if (this.#ended) {
          const err = this.#endError;
          this.#endError = undefined;
          return err === undefined ? Promise.resolve({ done: true, value: undefined }) : Promise.reject(err);
        }
        return new Promise((resolve, reject) => {
          this.#waiting.push({ resolve, reject });
        });
      },
      return: async () => {
        if (!this.#ended) await this.unsubscribe().catch(() => undefined);
        return { done: true, value: undefined };
      },
    };
  }
}
