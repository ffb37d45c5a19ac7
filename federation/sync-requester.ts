import { nuid } from '@nats-io/transport-node';
import type { Logger } from '../core/index.ts';
import type { JwsSigner } from './jws.ts';
import { SCHEMA_VERSION, type SyncRequestMessage } from './messages.ts';
import type { Subjects } from './subjects.ts';

/**
 * Snapshots requested at once. Each is one cluster's whole set (about 1.3 MB for 2,000 services): pulling a
 * bounded number at a time keeps a new view of 50 clusters from being sent ~65 MB at once, which NATS answers by
 * cutting the view off as a slow consumer (64 MiB pending); eight keep the pipe full on loopback.
 */
const SYNC_CONCURRENCY = 8;

export interface SyncRequesterOptions {
  cluster: string;
  subjects: Subjects;
  /** how long a request waits for its answer; also the signed request's lifetime */
  syncTimeout: number;
  /** a digest mismatch is asked about at most once per this interval per cluster */
  heartbeatInterval: number;
  /** this cluster's current federation signer */
  signer: () => JwsSigner;
  /** publishes on NATS; false when there is no connection */
  send: (subject: string, data: string, reply: string) => boolean;
  log: Logger;
  /** the wall clock, for the signed requests' stamps */
  now: () => number;
  /** the clock waits are measured on (monotonic): a step of the wall clock must not hold back or expire asks */
  steady: () => number;
}

/**
 * The asking side of anti-entropy: which requests of ours are open, which snapshots are in flight (at most eight,
 * one per cluster) and which wait their turn. Every request is signed by this cluster's federation identity and
 * names the inbox its answer goes to.
 */
export class SyncRequester {
  readonly #o: SyncRequesterOptions;
  #inbox = '';
  /** request id → when it was sent; answers to anything else are ignored */
  readonly #open = new Map<string, number>();
  /** cluster → its snapshot request in flight */
  readonly #inFlight = new Map<string, { req: string; at: number }>();
  readonly #queue = new Set<string>();
  readonly #lastAsk = new Map<string, number>();

  constructor(o: SyncRequesterOptions) {
    this.#o = o;
  }

  /**
   * A new connection's inbox: requests sent on an old connection will not be answered. What waits in the queue
   * goes out now: nothing else would send it (an ask for a queued cluster only pumps, and done() needs an answer
   * to a request in flight, which the old connection took with it).
   */
  reset(inbox: string): void {
    this.#inbox = inbox;
    this.#inFlight.clear();
    this.#pump();
  }

  isOpen(req: string): boolean {
    return this.#open.has(req);
  }

  /** whether `req` is the snapshot request in flight to `cluster` (a late or unasked answer is not) */
  isInFlight(cluster: string, req: string): boolean {
    return this.#inFlight.get(cluster)?.req === req;
  }

  /** Asks every publisher to announce itself to us now; their digests then queue the snapshots we lack. */
  askAll(): void {
    const req = nuid.next();
    if (this.#send(this.#o.subjects.syncAll, req))
      this.#o.log.debug({ peer: 'all', req }, 'announcements requested');
  }

  /**
   * Queues a snapshot of `cluster`, unless one is queued, in flight, or was asked within a heartbeat interval;
   * then sends what the queue and the free slots allow (a queued ask whose send failed is tried again here).
   */
  ask(cluster: string): void {
    if (this.#inFlight.has(cluster)) return;
    if (!this.#queue.has(cluster)) {
      const last = this.#lastAsk.get(cluster) ?? Number.NEGATIVE_INFINITY;
      if (this.#o.steady() - last < this.#o.heartbeatInterval) return;
      this.#queue.add(cluster);
    }
    this.#pump();
  }

  /** The snapshot answering `req` from `cluster` is complete: its slot goes to the next cluster waiting. */
  done(cluster: string, req: string): void {
    if (!this.isInFlight(cluster, req)) return;
    this.#inFlight.delete(cluster);
    this.#pump();
  }

  /** Forgets requests older than syncTimeout; an unanswered snapshot frees its slot (the next mismatch asks again). */
  expire(): void {
    const now = this.#o.steady();
    for (const [req, at] of this.#open) {
      if (now - at > this.#o.syncTimeout) this.#open.delete(req);
    }
    for (const [cluster, f] of this.#inFlight) {
      if (now - f.at > this.#o.syncTimeout) this.done(cluster, f.req);
    }
  }

  #pump(): void {
    for (const cluster of this.#queue) {
      if (this.#inFlight.size >= SYNC_CONCURRENCY) return;
      const req = nuid.next();
      if (!this.#send(this.#o.subjects.sync(cluster), req)) return;
      this.#queue.delete(cluster);
      const now = this.#o.steady();
      this.#lastAsk.set(cluster, now);
      this.#inFlight.set(cluster, { req, at: now });
      this.#o.log.debug({ peer: cluster, req }, 'snapshot requested');
    }
  }

  #send(subject: string, req: string): boolean {
    if (!this.#inbox) return false;
    const now = this.#o.now();
    const reply = `${this.#inbox}.${req}`;
    const msg: SyncRequestMessage = {
      v: SCHEMA_VERSION,
      type: 'sync',
      cluster: this.#o.cluster,
      req,
      reply,
      issuedAt: now,
      expiresAt: now + this.#o.syncTimeout,
    };
    if (!this.#o.send(subject, this.#o.signer().sign(msg), reply)) return false;
    this.#open.set(req, this.#o.steady());
    return true;
  }
}
