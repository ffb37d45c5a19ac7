import type { GatewayEndpoint } from '../core/index.ts';
import { SetDigest } from './digest.ts';
import { Proof } from './proof.ts';

/**
 * One gateway's offer of one service, as small as the common case allows. At the entry's own revision (the
 * newest offer: with one gateway, every offer) it is only its proof, or `true` when proofs are not kept: no
 * number and no record per offer. An older offer (another gateway published since) holds its own revision.
 */
export type Offer = Proof | true | { readonly revision: number; readonly proof: Proof | undefined };

/** the revision of an offer of an entry whose own revision is `entryRevision` */
export function offerRevision(o: Offer, entryRevision: number): number {
  return o === true || o instanceof Proof ? entryRevision : o.revision;
}

/** what vouches for an offer, when proofs are kept */
export function offerProof(o: Offer): Proof | undefined {
  return o === true ? undefined : o instanceof Proof ? o : o.proof;
}

/**
 * One gateway of a remote cluster as the view holds it. Every offer of that cluster that lists it holds the same
 * frozen `endpoint`; what is per offer is only a revision (and, with persistence, a proof).
 */
export interface HeldGateway {
  /** '' stands for entries that named no gateway: they offer a service but give nobody to dial */
  readonly name: string;
  endpoint: GatewayEndpoint | undefined;
  /** service key (`namespace/name`, its Service record's string) → this gateway's offer of it */
  readonly offers: Map<string, Offer>;
  /** its offers as (name, revision): compared with the digest its own announcements carry */
  readonly digest: SetDigest;
  announceRevision: number;
  announceProof: Proof | undefined;
  /** the issue time of its last announcement, as it reported it */
  lastHeartbeat: number | undefined;
  /** local clock: when we last heard from it; silent for staleAfter, it gets no new traffic */
  lastSeen: number;
  /** the latest expiry any of its messages claimed: past it, it and its offers are dropped */
  expiresAt: number;
  /** listed in its offers (heard within staleAfter, or its whole cluster is stale) */
  fresh: boolean;
}

/**
 * The gateways a message names (none: the unnamed one) that it is news for: those whose own last revision
 * (`last`: of their offer of that service, or of their announcement) is older. `duplicate` says some refusal
 * was no replay: an equal revision, or one sent before that gateway withdrew (still in flight then).
 */
export function newsFor(
  gateways: ClusterGateways | undefined,
  named: readonly GatewayEndpoint[],
  revision: number,
  last: (g: HeldGateway) => number | undefined,
): { news: (GatewayEndpoint | undefined)[]; duplicate: boolean } {
  const news: (GatewayEndpoint | undefined)[] = [];
  let duplicate = false;
  for (const g of named.length === 0 ? [undefined] : named) {
    const name = g?.name ?? '';
    if (news.some((n) => (n?.name ?? '') === name)) continue;
    const withdrawn = gateways?.withdrawn.get(name);
    const held = gateways?.get(name);
    const before = held && last(held);
    if (withdrawn && withdrawn.revision >= revision) duplicate = true;
    else if (before !== undefined && before >= revision) duplicate ||= before === revision;
    else news.push(g);
  }
  return { news, duplicate };
}

/** distinct gateway lists shared between offers; past this many the sharing starts over */
const LISTS_MAX = 1024;

/**
 * The gateways of one remote cluster, each with its own heartbeat and expiry, and the gateway lists its offers
 * show. Each gateway announces itself and publishes its own offers; an offer lists every fresh gateway that
 * offers it, so a cluster's share is spread over all its live gateways instead of following whichever
 * published last. The lists are interned: 2,000 offers of a cluster with two gateways hold one array.
 */
export class ClusterGateways {
  readonly #byName = new Map<string, HeldGateway>();
  /** sorted by name: the order of every list */
  #sorted: HeldGateway[] = [];
  readonly #lists = new Map<string, GatewayEndpoint[]>();
  /** gateways that withdrew themselves: older messages of theirs are refused until the withdrawal expires */
  readonly withdrawn = new Map<string, { revision: number; expiresAt: number }>();

  get(name: string): HeldGateway | undefined {
    return this.#byName.get(name);
  }

  get size(): number {
    return this.#byName.size;
  }

  /** in name order */
  all(): readonly HeldGateway[] {
    return this.#sorted;
  }

  /**
   * The gateway named by a message, made if new. `moved` is true when the message gives it another address or
   * locality than the one its offers show: the caller then rebuilds them.
   */
  ensure(
    named: GatewayEndpoint | undefined,
    seen: number,
  ): { gateway: HeldGateway; created: boolean; moved: boolean } {
    const name = named?.name ?? '';
    let g = this.#byName.get(name);
    if (!g) {
      g = {
        name,
        endpoint: named ? endpointOf(named) : undefined,
        offers: new Map(),
        digest: new SetDigest(),
        announceRevision: 0,
        announceProof: undefined,
        lastHeartbeat: undefined,
        lastSeen: seen,
        expiresAt: 0,
        fresh: true,
      };
      this.#byName.set(name, g);
      this.#sorted = [...this.#byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
      return { gateway: g, created: true, moved: false };
    }
    if (!named || (g.endpoint && sameEndpoint(g.endpoint, named)))
      return { gateway: g, created: false, moved: false };
    g.endpoint = endpointOf(named);
    this.#lists.clear();
    return { gateway: g, created: false, moved: true };
  }

  delete(name: string): void {
    if (!this.#byName.delete(name)) return;
    this.#sorted = this.#sorted.filter((g) => g.name !== name);
  }

  /** The fresh gateways that offer `svcKey`, in name order: one shared array per distinct list. */
  listFor(svcKey: string): GatewayEndpoint[] {
    let key = '';
    for (const g of this.#sorted) if (g.fresh && g.endpoint && g.offers.has(svcKey)) key += `${g.name}\n`;
    const shared = this.#lists.get(key);
    if (shared) return shared;
    const list: GatewayEndpoint[] = [];
    for (const g of this.#sorted) if (g.fresh && g.endpoint && g.offers.has(svcKey)) list.push(g.endpoint);
    // shared by many offers: nobody may change it
    Object.freeze(list);
    if (this.#lists.size >= LISTS_MAX) this.#lists.clear();
    this.#lists.set(key, list);
    return list;
  }

  /** the newest revision any gateway offers `svcKey` at (0 when none does); the entry's own is `entryRevision` */
  newestOffer(svcKey: string, entryRevision: number): number {
    let newest = 0;
    for (const g of this.#sorted) {
      const o = g.offers.get(svcKey);
      if (o !== undefined) newest = Math.max(newest, offerRevision(o, entryRevision));
    }
    return newest;
  }

  /** the oldest revision any gateway offers `svcKey` at (infinite when none does) */
  oldestOffer(svcKey: string, entryRevision: number): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const g of this.#sorted) {
      const o = g.offers.get(svcKey);
      if (o !== undefined) oldest = Math.min(oldest, offerRevision(o, entryRevision));
    }
    return oldest;
  }

  /** Before an entry's revision moves on: its offers at the old one say so themselves. */
  pin(svcKey: string, entryRevision: number): void {
    for (const g of this.#sorted) {
      const o = g.offers.get(svcKey);
      if (o === true || o instanceof Proof)
        g.offers.set(svcKey, { revision: entryRevision, proof: offerProof(o) });
    }
  }

  /** every fresh gateway with an address, for the cluster's state */
  endpoints(): GatewayEndpoint[] {
    const out: GatewayEndpoint[] = [];
    for (const g of this.#sorted) if (g.fresh && g.endpoint) out.push(g.endpoint);
    return out;
  }
}

function endpointOf(g: GatewayEndpoint): GatewayEndpoint {
  const e: GatewayEndpoint = { name: g.name, address: g.address };
  if (g.locality) e.locality = Object.freeze({ region: g.locality.region, zone: g.locality.zone });
  return Object.freeze(e);
}

function sameEndpoint(a: GatewayEndpoint, b: GatewayEndpoint): boolean {
  return (
    a.address === b.address &&
    a.locality?.region === b.locality?.region &&
    a.locality?.zone === b.locality?.zone
  );
}
