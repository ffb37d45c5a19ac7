import type { Logger } from '../core/index.ts';
import type { CatalogStore } from './catalog-store.ts';
import { SetDigest } from './digest.ts';
import { type EntryMessage, entryKey, type SnapshotMessage } from './messages.ts';
import type { ProofMaker } from './proof.ts';

/** How a snapshot part reached us: as the answer to our own request, or pushed on the cluster's bulk subject. */
export type SnapshotVia = 'reply' | 'push';

/** One snapshot being received: parts arrive in any order, each verified (and applied) on arrival. */
interface Collection {
  req: string;
  parts: number;
  seen: Set<number>;
  keys: Set<string>;
  digest: SetDigest;
  count: number;
  asOf: number;
  expectedDigest: string;
  startedAt: number;
}

export interface PartOutcome {
  /** entries of this part that changed the view */
  applied: number;
  /** the last missing part arrived (or the snapshot had one part) */
  complete: boolean;
}

/**
 * Turns verified snapshot parts into view changes. Every part's entries apply on arrival; only a complete
 * snapshot whose entries match its signed count and digest prunes what the cluster no longer lists.
 *
 * What is held is bounded per cluster, so no cluster can crowd out another's snapshots: at most one collection
 * answering our own request to that cluster and one for its latest push (a newer push replaces an incomplete
 * one). A single-part snapshot never needs a collection. The number of clusters is bounded by the trust bundle:
 * every part was signed by that cluster's federation identity.
 */
export class SnapshotAssembly {
  readonly #store: CatalogStore;
  readonly #proofs: ProofMaker | undefined;
  readonly #log: Logger;
  readonly #syncTimeout: number;
  readonly #held = new Map<string, { reply?: Collection; push?: Collection }>();

  constructor(o: { store: CatalogStore; proofs: ProofMaker | undefined; log: Logger; syncTimeout: number }) {
    this.#store = o.store;
    this.#proofs = o.proofs;
    this.#log = o.log;
    this.#syncTimeout = o.syncTimeout;
  }

  /** Collections held (for tests and metrics): never more than two per cluster. */
  get size(): number {
    let n = 0;
    for (const h of this.#held.values()) n += (h.reply ? 1 : 0) + (h.push ? 1 : 0);
    return n;
  }

  /** `now`: the wall clock, for the entries' expiries; `seen`: the clock durations are measured on (monotonic) */
  add(
    snap: SnapshotMessage,
    raw: Uint8Array,
    via: SnapshotVia,
    signer: string,
    now: number,
    seen = now,
  ): PartOutcome {
    if (snap.part >= snap.parts) return { applied: 0, complete: false };
    const col = snap.parts === 1 ? newCollection(snap, seen) : this.#collection(snap, via, seen);
    if (!col) return { applied: 0, complete: false };
    col.seen.add(snap.part);
    const proof = this.#proofs?.make(raw);
    let applied = 0;
    for (const e of snap.entries) {
      const key = entryKey(e.cluster, e.namespace, e.name);
      if (col.keys.has(key)) continue;
      col.keys.add(key);
      col.digest.add(e.namespace, e.name, e.revision);
      if (this.#store.expired(e.expiresAt, now)) continue;
      if (this.#store.applyEntry(e as EntryMessage, proof, seen) === 'applied') applied++;
    }
    if (col.seen.size < col.parts) return { applied, complete: false };
    const slots = this.#held.get(snap.cluster);
    if (slots?.[via] === col) delete slots[via];
    if (slots && !slots.reply && !slots.push) this.#held.delete(snap.cluster);
    this.#log.debug(
      {
        peer: snap.cluster,
        req: col.req,
        via,
        parts: col.parts,
        entries: col.count,
        ms: seen - col.startedAt,
      },
      'snapshot received',
    );
    if (col.digest.count === col.count && col.digest.hex() === col.expectedDigest) {
      const removed = this.#store.prune(snap.cluster, col.keys, col.asOf, now);
      if (removed > 0) {
        this.#log.info(
          { peer: snap.cluster, removed },
          'anti-entropy removed entries withdrawn while we were not listening',
        );
      }
    } else {
      this.#log.warn(
        { peer: snap.cluster, signer, count: col.digest.count, expected: col.count },
        'a snapshot did not match its own digest; nothing pruned',
      );
    }
    return { applied, complete: true };
  }

  /** Forgets collections older than syncTimeout (the request is asked again by anti-entropy); `seen` as add's. */
  expire(seen: number): void {
    for (const [cluster, slots] of this.#held) {
      if (slots.reply && seen - slots.reply.startedAt > this.#syncTimeout) delete slots.reply;
      if (slots.push && seen - slots.push.startedAt > this.#syncTimeout) delete slots.push;
      if (!slots.reply && !slots.push) this.#held.delete(cluster);
    }
  }

  /** The collection this part belongs to; a part of another snapshot on the same slot replaces it. */
  #collection(snap: SnapshotMessage, via: SnapshotVia, now: number): Collection | undefined {
    let slots = this.#held.get(snap.cluster);
    if (!slots) {
      slots = {};
      this.#held.set(snap.cluster, slots);
    }
    const held = slots[via];
    if (held && held.req === snap.req && held.asOf === snap.asOf) {
      // a part that contradicts the first one, or a repeated part, changes nothing
      if (held.parts !== snap.parts || held.seen.has(snap.part)) return undefined;
      return held;
    }
    const col = newCollection(snap, now);
    slots[via] = col;
    return col;
  }
}

function newCollection(snap: SnapshotMessage, now: number): Collection {
  return {
    req: snap.req,
    parts: snap.parts,
    seen: new Set(),
    keys: new Set(),
    digest: new SetDigest(),
    count: snap.count,
    asOf: snap.asOf,
    expectedDigest: snap.digest,
    startedAt: now,
  };
}
