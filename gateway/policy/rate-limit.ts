import type { RateLimit, RateLimitBucket } from '../../core/index.ts';

/** Callers (clusters or SPIFFE IDs) one limit keeps a bucket for; the least recently seen is evicted past it. */
export const MAX_BUCKETS_PER_LIMIT = 10_000;

interface Bucket {
  tokens: number;
  /** when `tokens` was last brought up to date (ms) */
  at: number;
}

/**
 * One RateLimit's token buckets in this gateway process: `requests` tokens per `interval` ms, up to
 * `burst`, refilled lazily on use. Per-caller buckets live in a map bounded by MAX_BUCKETS_PER_LIMIT; an
 * evicted caller comes back to a full bucket, so the bound trades exactness for memory only for callers
 * beyond it.
 */
export class RateLimiter {
  readonly id: string;
  readonly per: RateLimitBucket;
  /** what decides whether the limiter can be kept across policy changes */
  readonly shape: string;
  readonly settings: { requests: number; interval: number; burst: number; bucketPer: RateLimitBucket };
  readonly #perMs: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, Bucket>();
  readonly #max: number;

  constructor(doc: RateLimit, now: number, maxBuckets = MAX_BUCKETS_PER_LIMIT) {
    const s = doc.spec;
    this.id = doc.metadata.name;
    this.per = s.bucketPer;
    this.shape = rateLimitShape(doc);
    this.settings = { requests: s.requests, interval: s.interval, burst: s.burst, bucketPer: s.bucketPer };
    this.#perMs = s.requests / s.interval;
    this.#burst = s.burst;
    this.#max = maxBuckets;
    if (s.bucketPer === 'gateway') this.#buckets.set('', { tokens: s.burst, at: now });
  }

  /** The bucket key of a call: '' for the gateway, the source cluster, or the caller's SPIFFE ID. */
  keyOf(call: { caller?: string; sourceCluster?: string }): string {
    if (this.per === 'sourceCluster') return call.sourceCluster ?? '';
    if (this.per === 'caller') return call.caller ?? call.sourceCluster ?? '';
    return '';
  }

  /** 0 when a token is available now, else the ms until one is (nothing is taken). */
  wait(key: string, now: number): number {
    const b = this.#refill(key, now);
    return b.tokens >= 1 ? 0 : Math.ceil((1 - b.tokens) / this.#perMs);
  }

  /** Takes one token (call after wait() said 0 for every limit that applies). */
  take(key: string, now: number): void {
    this.#refill(key, now).tokens -= 1;
  }

  get size(): number {
    return this.#buckets.size;
  }

  #refill(key: string, now: number): Bucket {
    let b = this.#buckets.get(key);
    if (!b) {
      if (this.#buckets.size >= this.#max) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(key, b);
    } else if (this.per !== 'gateway') {
      // most recently used last: the first key is the one to evict
      this.#buckets.delete(key);
      this.#buckets.set(key, b);
    }
    if (now > b.at) {
      b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
      b.at = now;
    }
    return b;
  }
}

export function rateLimitShape(doc: RateLimit): string {
  const s = doc.spec;
  return `${doc.metadata.name}|${s.target.service}|${s.target.cluster ?? ''}|${s.requests}|${s.interval}|${s.burst}|${s.bucketPer}`;
}

/**
 * Whether a call may pass every limit of its service: 0, with a token taken from each, or the ms until
 * the slowest limit has one again (nothing taken, so a refused call spends no other limit's token).
 */
export function admit(
  limiters: readonly RateLimiter[],
  call: { caller?: string; sourceCluster?: string },
  now: number,
): { waitMs: number; limiter?: RateLimiter } {
  let waitMs = 0;
  let limiter: RateLimiter | undefined;
  for (const l of limiters) {
    const w = l.wait(l.keyOf(call), now);
    if (w > waitMs) {
      waitMs = w;
      limiter = l;
    }
  }
  if (waitMs > 0) return limiter ? { waitMs, limiter } : { waitMs };
  for (const l of limiters) l.take(l.keyOf(call), now);
  return { waitMs: 0 };
}
