import type { LinkReport } from '../core/index.ts';
import { pastExpiry } from './clock-skew.ts';
import type { LinksMessage } from './messages.ts';

/** gateways whose reports are held at once: a cluster inventing gateway names cannot grow it past this */
const MAX_GATEWAYS = 1024;
/** of which one cluster may hold at most this many */
const MAX_GATEWAYS_PER_CLUSTER = 64;

/**
 * The latest verified link report of every gateway of the other clusters. A report is dropped when it
 * expires (a gateway that stops reporting, or a stale cluster, stops showing links), and the set is bounded
 * in total and per cluster: a newer report replaces its gateway's, and past a bound the oldest report goes.
 */
export class LinkReports {
  readonly #byGateway = new Map<string, LinkReport & { expiresAt: number }>();
  readonly #maxClockSkew: number;

  /** `maxClockSkew`: reports are stamped by their gateway's clock, which may run this far behind ours */
  constructor(maxClockSkew: number) {
    this.#maxClockSkew = maxClockSkew;
  }

  /** false when it is not newer than the report this gateway already has */
  apply(msg: LinksMessage): boolean {
    const key = `${msg.cluster}/${msg.gateway}`;
    const held = this.#byGateway.get(key);
    if (held && held.issuedAt >= msg.issuedAt) return false;
    this.#byGateway.delete(key);
    if (!held) this.#makeRoom(msg.cluster);
    this.#byGateway.set(key, {
      cluster: msg.cluster,
      gateway: msg.gateway,
      windowMs: msg.windowMs,
      issuedAt: msg.issuedAt,
      expiresAt: msg.expiresAt,
      links: msg.links.map((l) => ({ ...l, failures: Math.min(l.failures, l.requests) })),
    });
    return true;
  }

  expire(now: number): void {
    for (const [key, r] of this.#byGateway)
      if (pastExpiry(r.expiresAt, now, this.#maxClockSkew)) this.#byGateway.delete(key);
  }

  reports(now: number): LinkReport[] {
    const out: LinkReport[] = [];
    for (const r of this.#byGateway.values()) {
      if (pastExpiry(r.expiresAt, now, this.#maxClockSkew)) continue;
      const { expiresAt: _, ...report } = r;
      out.push(report);
    }
    return out;
  }

  get size(): number {
    return this.#byGateway.size;
  }

  /** the map keeps insertion order and a replaced report is re-inserted, so the first one found is the oldest */
  #makeRoom(cluster: string): void {
    let ofCluster = 0;
    let oldestOfCluster: string | undefined;
    for (const [key, r] of this.#byGateway) {
      if (r.cluster !== cluster) continue;
      ofCluster++;
      oldestOfCluster ??= key;
    }
    if (ofCluster >= MAX_GATEWAYS_PER_CLUSTER && oldestOfCluster) this.#byGateway.delete(oldestOfCluster);
    else if (this.#byGateway.size >= MAX_GATEWAYS)
      this.#byGateway.delete(this.#byGateway.keys().next().value!);
  }
}
