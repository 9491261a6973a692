import type { KafkaMessage } from "./gen/pubsub_pb.js";
import type { PartitionOffset } from "./client.js";
import type { ServerError } from "./errors.js";

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
 * partitions go on.
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

/** What a subscription delivers: record batches, partition failures and, for a group, assignments. */
export type SubscriptionEvent = RecordBatch | PartitionError | Assignment;

/** Where a subscription starts in every partition it has no offset for. */
export type StartPosition =
  | "earliest"
  | "latest"
  | { offset: bigint | number }
  | { timestamp: number | Date };

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
}

/** Receives a subscription's events instead of its async iterator. */
export type SubscriptionCallback = (event: SubscriptionEvent) => void;

/** What a Subscription needs from its client. */
export interface SubscriptionOwner {
  unsubscribe(sub: Subscription): Promise<void>;
}

const partitionInMessage = /partition: (-?\d+)/;

/** The position of an assigned partition before its first record: any offset is new. */
const unknownPosition = -1n;

/**
 * A live subscription. The server pushes records of its partitions; the
 * client tracks the next offset of every partition and, after a reconnect,
 * subscribes again from there, so every record is delivered exactly once and
 * in order per partition. A group subscription instead joins its group again
 * after a reconnect and resumes from the group's committed offsets: records
 * it did not commit may be delivered again. Read it with `for await` or give
 * subscribe() a callback. Events wait in memory until read: a reader that
 * stops reading grows the queue (the server cannot slow a browser down).
 */
export class Subscription implements AsyncIterable<SubscriptionEvent> {
  /** The subscribed topic. */
  readonly topic: string;
  /** The consumer group of a group subscription, else undefined. */
  readonly group: string | undefined;
  /** The offset each partition started at, from the server's first answer. */
  readonly starts: ReadonlyMap<number, bigint>;

  readonly #options: SubscribeOptions;
  readonly #owner: SubscriptionOwner;
  readonly #callback: SubscriptionCallback | undefined;
  readonly #positions = new Map<number, bigint>();
  readonly #queue: SubscriptionEvent[] = [];
  #waiting: { resolve: (r: IteratorResult<SubscriptionEvent>) => void; reject: (e: unknown) => void } | null = null;
  #ended = false;
  #endError: unknown = undefined;
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
    for (const [p, o] of starts) this.#positions.set(p, o);
    this.#callback = callback;
  }

  /** The sequence the server's pushes carry now (it changes on resubscribe). */
  get sequence(): number {
    return this.#sequence;
  }

  /**
   * The next offset of every live partition: where a resume starts. For a
   * group subscription, its assigned partitions (-1 until the first record
   * of one is delivered).
   */
  get positions(): ReadonlyMap<number, bigint> {
    return this.#positions;
  }

  /** Whether the subscription ended (unsubscribed, failed or client closed). */
  get ended(): boolean {
    return this.#ended;
  }

  /** Ends the subscription; no event follows the returned promise. */
  unsubscribe(): Promise<void> {
    return this.#owner.unsubscribe(this);
  }

  /** @internal The request that resumes the subscription where it stands. */
  resumeOptions(): SubscribeOptions {
    // A group resumes from its committed offsets: the request as it was.
    if (this.group !== undefined) return this.#options;
    const offsets: Record<number, bigint> = {};
    for (const [p, o] of this.#positions) offsets[p] = o;
    return { ...this.#options, partitions: [...this.#positions.keys()], offsets };
  }

  /** @internal The subscription now lives under a new sequence. */
  resumed(sequence: number): void {
    this.#sequence = sequence;
  }

  /** @internal Delivers records, unless they were delivered before. */
  deliverRecords(partition: number, records: KafkaMessage[], serverNext: bigint): void {
    const position = this.#positions.get(partition);
    if (this.#ended || position === undefined) return;
    // A push never repeats a record; this guard keeps it so whatever the
    // server does across a resume.
    const fresh = records.filter((r) => r.offset >= position);
    const last = fresh.length > 0 ? fresh[fresh.length - 1].offset + 1n : position;
    const next = serverNext > last ? serverNext : last;
    this.#positions.set(partition, next);
    if (fresh.length > 0) this.#emit({ kind: "records", topic: this.topic, partition, records: fresh, nextOffset: next });
  }

  /** @internal The group changed the subscription's partitions. */
  deliverAssignment(assigned: number[], revoked: number[]): void {
    if (this.#ended || this.group === undefined) return;
    // A partition assigned again starts wherever the group's committed offset is.
    for (const p of assigned) this.#positions.set(p, unknownPosition);
    this.#emitAssignment(assigned, revoked, false);
  }

  /** @internal The connection was lost: a group subscription's partitions went with it. */
  connectionLost(): void {
    if (this.#ended || this.group === undefined || this.#positions.size === 0) return;
    this.#emitAssignment([], [...this.#positions.keys()].sort((a, b) => a - b), true);
  }

  /** Forgets the revoked partitions and emits the assignment with where each stood. */
  #emitAssignment(assigned: number[], revoked: number[], lost: boolean): void {
    const offsets: PartitionOffset[] = [];
    for (const p of revoked) {
      const o = this.#positions.get(p);
      if (o !== undefined && o !== unknownPosition) offsets.push({ partition: p, offset: o });
      this.#positions.delete(p);
    }
    this.#emit({ kind: "assignment", topic: this.topic, assigned, revoked, offsets, lost });
  }

  /** @internal A partition failed: it is not resumed. */
  deliverError(error: ServerError): void {
    if (this.#ended) return;
    const m = partitionInMessage.exec(error.message);
    const partition = m ? Number(m[1]) : undefined;
    if (partition !== undefined) this.#positions.delete(partition);
    this.#emit({ kind: "error", topic: this.topic, partition, error });
  }

  /** @internal Ends the subscription; an error makes the iterator throw it. */
  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endError = error;
    // A waiting reader means the queue is empty.
    const w = this.#waiting;
    this.#waiting = null;
    if (!w) return;
    this.#endError = undefined;
    if (error !== undefined) w.reject(error);
    else w.resolve({ done: true, value: undefined });
  }

  #emit(event: SubscriptionEvent): void {
    if (this.#callback) {
      try {
        this.#callback(event);
      } catch (e) {
        console.error("pubsub client: subscription callback threw", e);
      }
      return;
    }
    const w = this.#waiting;
    if (w) {
      this.#waiting = null;
      w.resolve({ done: false, value: event });
    } else {
      this.#queue.push(event);
    }
  }

  /** Iterates the subscription's events; leaving the loop unsubscribes. */
  [Symbol.asyncIterator](): AsyncIterator<SubscriptionEvent> {
    return {
      next: () => {
        const queued = this.#queue.shift();
        if (queued) return Promise.resolve({ done: false, value: queued });
        if (this.#ended) {
          const err = this.#endError;
          this.#endError = undefined;
          return err === undefined ? Promise.resolve({ done: true, value: undefined }) : Promise.reject(err);
        }
        return new Promise((resolve, reject) => {
          this.#waiting = { resolve, reject };
        });
      },
      return: async () => {
        if (!this.#ended) await this.unsubscribe().catch(() => undefined);
        return { done: true, value: undefined };
      },
    };
  }
}
