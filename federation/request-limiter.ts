/** Why a request went unanswered; the `reason` label of meshfed_catalog_sync_refused_total. */
export type RefusalReason = 'requester_rate' | 'total_rate';

interface Bucket {
  tokens: number;
  at: number;
}

/** requesters remembered at once; the longest idle is forgotten first (a forgotten one starts with a full bucket) */
const REQUESTERS_MAX = 4096;

/**
 * Token buckets in front of a responder: one per requester and one for everyone together. A snapshot costs the
 * responder real CPU (cutting and signing its whole set), so one cluster asking in a loop is held to its own
 * rate, and everyone together to the total. The requester is the cluster that signed the request (see
 * sync-responder.ts): a name nobody can cycle. Time comes from the caller.
 */
export class RequestLimiter {
  readonly #o: { perRequester: number; perRequesterBurst: number; total: number; totalBurst: number };
  readonly #requesters = new Map<string, Bucket>();
  readonly #total: Bucket;

  constructor(
    o: { perRequester: number; perRequesterBurst: number; total: number; totalBurst: number },
    now: number,
  ) {
    this.#o = o;
    this.#total = { tokens: o.totalBurst, at: now };
  }

  /** Takes one token for `requester`; undefined when the request may be answered. */
  take(requester: string, now: number): RefusalReason | undefined {
    let b = this.#requesters.get(requester);
    if (b) {
      this.#requesters.delete(requester);
    } else {
      if (this.#requesters.size >= REQUESTERS_MAX)
        this.#requesters.delete(this.#requesters.keys().next().value!);
      b = { tokens: this.#o.perRequesterBurst, at: now };
    }
    // re-inserted: the map's order is least recently seen first
    this.#requesters.set(requester, b);
    refill(b, now, this.#o.perRequester, this.#o.perRequesterBurst);
    if (b.tokens < 1) return 'requester_rate';
    refill(this.#total, now, this.#o.total, this.#o.totalBurst);
    if (this.#total.tokens < 1) return 'total_rate';
    b.tokens -= 1;
    this.#total.tokens -= 1;
    return undefined;
  }
}

function refill(b: Bucket, now: number, perSecond: number, burst: number): void {
  if (now > b.at) {
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
    b.at = now;
  }
}
