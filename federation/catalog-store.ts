import type {
  CatalogChange,
  CatalogView,
  ClusterState,
  RemoteServiceInstance,
  ServiceRef,
} from '../core/index.ts';
import { pastExpiry } from './clock-skew.ts';
import {
  type CatalogExport,
  dropOffer,
  exportCatalog,
  type HeldCluster,
  type HeldTombstone,
  PortLists,
  type Service,
  sameJson,
  sameRouting,
} from './catalog-held.ts';
import { CatalogChanges } from './catalog-changes.ts';
import { ClusterGateways, type HeldGateway, newsFor, offerRevision } from './cluster-gateways.ts';
import {
  type AnnounceMessage,
  type EntryMessage,
  entryKey,
  type TombstoneMessage,
  type WithdrawMessage,
} from './messages.ts';
import type { Proof } from './proof.ts';

export type ApplyResult = 'applied' | 'unchanged' | 'stale_revision' | 'duplicate';

/**
 * The federated view: per (cluster, namespace, name) the offers of each of that cluster's gateways, merged into
 * one entry that lists every fresh gateway offering it; tombstones that keep older revisions out; liveness per
 * cluster and per gateway. It only ever receives messages that passed MessageVerifier; its own rule is "strictly
 * newer revision wins", per gateway. Listeners get the smallest diff once per event-loop turn (catalog-changes.ts).
 */
export class CatalogStore implements CatalogView {
  readonly #self: string;
  readonly #staleAfter: () => number;
  readonly #maxClockSkew: number;
  readonly #ports = new PortLists();
  /** by entryKey(cluster, namespace, name) */
  readonly #tombstones = new Map<string, HeldTombstone>();
  readonly #services = new Map<string, Service>();
  #size = 0;
  readonly #clusters = new Map<string, HeldCluster>();
  readonly #changes = new CatalogChanges((cluster) => {
    const c = this.#clusters.get(cluster);
    return c && this.#clusterState(c);
  });
  /** no entry expires before this (a lower bound): the expiry scan runs only when it is due */
  #nextExpiry = Number.POSITIVE_INFINITY;
  #version = 0;

  /** `maxClockSkew`: how far behind ours a remote clock may be; an expiry counts once it is that far past (clock-skew.ts) */
  constructor(o: { self: string; staleAfter: number | (() => number); maxClockSkew: number }) {
    this.#self = o.self;
    this.#maxClockSkew = o.maxClockSkew;
    const s = o.staleAfter;
    this.#staleAfter = typeof s === 'number' ? () => s : s;
  }

  /**
   * Bumps on every change worth writing to disk: persistence writes only when it moved. A heartbeat that only
   * moves an announcement's revision is not one (the announcement on disk is still a valid one of that cluster):
   * counting it made a view rewrite its whole file after every heartbeat of every cluster, forever.
   */
  get version(): number {
    return this.#version;
  }

  get size(): number {
    return this.#size;
  }

  // ---- CatalogView ----

  services(): readonly ServiceRef[] {
    const out: ServiceRef[] = [];
    for (const svc of this.#services.values()) out.push({ namespace: svc.namespace, name: svc.name });
    return out;
  }

  instances(namespace: string, name: string): readonly RemoteServiceInstance[] {
    const svc = this.#services.get(`${namespace}/${name}`);
    if (!svc) return [];
    return svc.clusters.map((c) => c.entries.get(svc.key)!);
  }

  clusters(): readonly ClusterState[] {
    return [...this.#clusters.values()].map((c) => this.#clusterState(c));
  }

  onChange(listener: (changes: readonly CatalogChange[]) => void): () => void {
    return this.#changes.listen(listener);
  }

  // ---- inputs (verified messages only) ----

  /**
   * An entry offers its service through the gateways it lists (each gateway publishes its own, listing itself):
   * it is news for each of them whose own offer of that service is older, and it is refused as a whole only
   * when it is news for none. The entry's content (ports, weight, locality) is the newest offer's.
   */
  applyEntry(msg: EntryMessage, proof: Proof | undefined, seen: number): ApplyResult {
    if (msg.cluster === this.#self) return 'unchanged';
    const key = entryKey(msg.cluster, msg.namespace, msg.name);
    const tomb = this.#tombstones.get(key);
    if (tomb && tomb.revision >= msg.revision)
      return tomb.revision === msg.revision ? 'duplicate' : 'stale_revision';
    const svcKey = `${msg.namespace}/${msg.name}`;
    const known = this.#clusters.get(msg.cluster);
    const held = known?.entries.get(svcKey);
    const { news, duplicate } = newsFor(known?.gateways, msg.gateways, msg.revision, (g) => {
      const offer = g.offers.get(svcKey);
      return offer === undefined ? undefined : offerRevision(offer, held!.revision);
    });
    if (news.length === 0) return duplicate ? 'duplicate' : 'stale_revision';
    if (tomb) this.#tombstones.delete(key);
    const cluster = known ?? this.#cluster(msg.cluster, seen);
    let svc = this.#services.get(svcKey);
    if (!svc) {
      svc = { key: svcKey, namespace: msg.namespace, name: msg.name, clusters: [] };
      this.#services.set(svcKey, svc);
    }
    const newest = !held || msg.revision > held.revision;
    // the entry's revision moves on: offers stored as "at the entry's revision" keep the one they had
    if (held && newest) cluster.gateways.pin(svc.key, held.revision);
    let gatewaysChanged = false;
    const moved: HeldGateway[] = [];
    for (const named of news) {
      const { gateway: g, created, moved: hasMoved } = cluster.gateways.ensure(named, seen);
      if (hasMoved) moved.push(g);
      gatewaysChanged ||= created || hasMoved || !g.fresh;
      const before = g.offers.get(svc.key);
      if (before !== undefined)
        g.digest.remove(msg.namespace, msg.name, offerRevision(before, held!.revision));
      g.offers.set(svc.key, newest ? (proof ?? true) : { revision: msg.revision, proof });
      g.digest.add(msg.namespace, msg.name, msg.revision);
      if (msg.expiresAt > g.expiresAt) g.expiresAt = msg.expiresAt;
      g.lastSeen = Math.max(g.lastSeen, seen);
      if (!g.fresh) {
        g.fresh = true;
        moved.push(g);
      }
    }
    // a view of 100,000 entries holds ~50 distinct localities, gateway lists and port lists: share them
    if (cluster.lastLocality === undefined || !sameJson(cluster.lastLocality, msg.locality))
      cluster.lastLocality = msg.locality;
    const instance: RemoteServiceInstance = Object.freeze({
      cluster: cluster.cluster,
      namespace: svc.namespace,
      name: svc.name,
      ports: newest ? this.#ports.shared(msg.ports as RemoteServiceInstance['ports']) : held.ports,
      locality: newest ? cluster.lastLocality : held.locality,
      weight: newest ? msg.weight : held.weight,
      gateways: cluster.gateways.listFor(svc.key),
      revision: newest ? msg.revision : held.revision,
      expiresAt: Math.max(held?.expiresAt ?? 0, msg.expiresAt),
      stale: cluster.stale,
    });
    cluster.entries.set(svc.key, instance);
    if (msg.expiresAt + this.#maxClockSkew < this.#nextExpiry)
      this.#nextExpiry = msg.expiresAt + this.#maxClockSkew;
    if (!held) {
      svc.clusters.push(cluster);
      this.#size++;
    }
    this.#version++;
    // a refresh that only moves revision and expiry is not news to a router
    if (!held || !sameRouting(held, instance)) {
      this.#changes.queue(`e:${key}`, { type: 'upsert', instance });
      if (!held) this.#changes.queueCluster(cluster.cluster);
    }
    // a gateway that moved or came back is listed again in its other offers too
    for (const g of moved) this.#relist(cluster, g);
    if (gatewaysChanged) this.#changes.queueCluster(cluster.cluster);
    return 'applied';
  }

  /**
   * A tombstone withdraws the service from the whole cluster: every gateway's offer older than it goes (a
   * gateway that offers it again at a newer revision stays). Refused when every offer held is newer.
   */
  applyTombstone(msg: TombstoneMessage, proof: Proof | undefined, _now: number): ApplyResult {
    if (msg.cluster === this.#self) return 'unchanged';
    const key = entryKey(msg.cluster, msg.namespace, msg.name);
    const c = this.#clusters.get(msg.cluster);
    const svcKey = `${msg.namespace}/${msg.name}`;
    const held = c?.entries.get(svcKey);
    if (c && held && c.gateways.oldestOffer(svcKey, held.revision) >= msg.revision) return 'stale_revision';
    const tomb = this.#tombstones.get(key);
    if (tomb && tomb.revision >= msg.revision)
      return tomb.revision === msg.revision ? 'duplicate' : 'stale_revision';
    this.#tombstones.set(key, { revision: msg.revision, expiresAt: msg.expiresAt, proof });
    this.#version++;
    if (c && held) {
      for (const g of c.gateways.all()) {
        const offer = g.offers.get(svcKey);
        const offered = offer === undefined ? undefined : offerRevision(offer, held.revision);
        if (offered !== undefined && offered < msg.revision) dropOffer(g, held, offered);
      }
      this.#relistEntry(c, svcKey);
    }
    return 'applied';
  }

  /**
   * A gateway's heartbeat: it (each gateway the announcement lists) is fresh again until staleAfter, and lives
   * until the announcement's expiry. Returns 'applied' with `digestMatches` telling whether our copy of that
   * gateway's offers equals its own set.
   */
  applyAnnounce(
    msg: AnnounceMessage,
    proof: Proof | undefined,
    seen: number,
  ): { result: ApplyResult; digestMatches: boolean } {
    if (msg.cluster === this.#self) return { result: 'unchanged', digestMatches: true };
    const named = msg.gateways.length === 0 ? [undefined] : msg.gateways;
    const known = this.#clusters.get(msg.cluster);
    // anti-entropy per gateway: the digest is of the announcing gateway's own offers
    const matches = (): boolean => known?.gateways.get(named[0]?.name ?? '')?.digest.hex() === msg.digest;
    const { news, duplicate } = newsFor(
      known?.gateways,
      msg.gateways,
      msg.revision,
      (g) => g.announceRevision,
    );
    if (news.length === 0)
      return { result: duplicate ? 'duplicate' : 'stale_revision', digestMatches: matches() };
    const c = known ?? this.#cluster(msg.cluster, seen);
    let changed = c.stale || c.lastHeartbeat === undefined || !sameJson(c.locality, msg.locality);
    // a cluster heard again after it went stale: its other gateways get a heartbeat's time to be heard too
    if (c.stale) for (const g of c.gateways.all()) g.lastSeen = Math.max(g.lastSeen, seen);
    for (const n of news) {
      const { gateway: g, created, moved } = c.gateways.ensure(n, seen);
      g.announceRevision = msg.revision;
      g.announceProof = proof;
      g.lastHeartbeat = msg.issuedAt;
      g.lastSeen = Math.max(g.lastSeen, seen);
      if (msg.expiresAt > g.expiresAt) g.expiresAt = msg.expiresAt;
      const back = !g.fresh;
      g.fresh = true;
      if (moved || back) this.#relist(c, g);
      changed ||= created || moved || back;
    }
    c.lastHeartbeat = Math.max(c.lastHeartbeat ?? 0, msg.issuedAt);
    c.locality = msg.locality;
    c.lastSeen = seen;
    if (changed) this.#version++;
    if (c.stale) this.#setStale(c, false);
    else if (changed) this.#changes.queueCluster(c.cluster);
    return {
      result: 'applied',
      digestMatches: c.gateways.get(named[0]?.name ?? '')?.digest.hex() === msg.digest,
    };
  }

  /**
   * A gateway withdrew itself (it drains or stops): it leaves every offer of its cluster older than the
   * withdrawal, and its older messages still in flight are refused until the withdrawal expires. Only its own
   * cluster's identity can sign this for it (the verifier's rule), so no cluster can withdraw another's gateways.
   */
  applyWithdraw(msg: WithdrawMessage): ApplyResult {
    const c = this.#clusters.get(msg.cluster);
    // nothing of that cluster is held: nothing to withdraw, and no empty cluster to make up
    if (msg.cluster === this.#self || !c) return 'unchanged';
    const before = c.gateways.withdrawn.get(msg.gateway);
    if (before && before.revision >= msg.revision)
      return before.revision === msg.revision ? 'duplicate' : 'stale_revision';
    const g = c.gateways.get(msg.gateway);
    // it has announced itself since (it started again): the withdrawal is old news
    if (g && g.announceRevision > msg.revision) return 'stale_revision';
    c.gateways.withdrawn.set(msg.gateway, { revision: msg.revision, expiresAt: msg.expiresAt });
    this.#version++;
    if (g) this.#dropGateway(c, g, msg.revision);
    this.#changes.queueCluster(c.cluster);
    return 'applied';
  }

  /**
   * Anti-entropy: after a complete, verified snapshot of `cluster` as of revision `asOf`, offers we hold of
   * services it does not list and that are not newer than the snapshot were withdrawn while we were not listening.
   */
  prune(cluster: string, listed: ReadonlySet<string>, asOf: number, _now: number): number {
    const c = this.#clusters.get(cluster);
    if (!c) return 0;
    let removed = 0;
    // #remove deletes the entry being visited, which a Map's iterator allows: no copy of 2,000 entries
    for (const held of c.entries.values()) {
      if (listed.has(entryKey(cluster, held.namespace, held.name))) continue;
      const svcKey = `${held.namespace}/${held.name}`;
      let dropped = false;
      for (const g of c.gateways.all()) {
        const offer = g.offers.get(svcKey);
        const offered = offer === undefined ? undefined : offerRevision(offer, held.revision);
        if (offered !== undefined && offered <= asOf) {
          dropOffer(g, held, offered);
          dropped = true;
        }
      }
      if (dropped && !this.#relistEntry(c, svcKey)) removed++;
    }
    return removed;
  }

  /**
   * Staleness and expiry of clusters and of each gateway; skipped while not connected (silence says nothing).
   * `now` is the wall clock, for expiries stamped by other clusters; `seen` the clock silence is measured on
   * (what `apply*` and `resume` were given: monotonic in a gateway), so a step of the wall clock neither makes
   * every cluster stale at once nor keeps a silent one fresh.
   */
  tick(now: number, connected: boolean, seen = now): void {
    if (!connected) return;
    const staleAfter = this.#staleAfter();
    for (const c of this.#clusters.values()) {
      if (!c.stale && seen - c.lastSeen > staleAfter) this.#setStale(c, true);
      // a stale cluster keeps its gateways as they were: the partition may be on our side
      if (!c.stale) this.#tickGateways(c, now, seen, staleAfter);
      for (const [name, w] of c.gateways.withdrawn) {
        if (pastExpiry(w.expiresAt, now, this.#maxClockSkew)) c.gateways.withdrawn.delete(name);
      }
    }
    if (now > this.#nextExpiry) {
      let next = Number.POSITIVE_INFINITY;
      for (const c of this.#clusters.values()) {
        for (const held of c.entries.values()) {
          // a stale cluster's entries are kept (flagged) until it comes back: the partition may be on our side
          const until = held.expiresAt + this.#maxClockSkew;
          if (!c.stale && pastExpiry(held.expiresAt, now, this.#maxClockSkew)) this.#remove(c, held);
          else if (until < next) next = Math.max(until, now + 1000);
        }
      }
      this.#nextExpiry = next;
    }
    for (const [key, t] of this.#tombstones) {
      if (pastExpiry(t.expiresAt, now, this.#maxClockSkew)) {
        this.#tombstones.delete(key);
        this.#version++;
      }
    }
  }

  /** Whether a remote expiry has passed by our clock, with the clock-skew allowance the verifier gave it. */
  expired(expiresAt: number, now: number): boolean {
    return pastExpiry(expiresAt, now, this.#maxClockSkew);
  }

  /** After (re)connecting: staleness counts from now (`seen`, as tick's), not from the start of the outage. */
  resume(seen: number): void {
    for (const c of this.#clusters.values()) {
      c.lastSeen = Math.max(c.lastSeen, seen);
      for (const g of c.gateways.all()) g.lastSeen = Math.max(g.lastSeen, seen);
    }
  }

  /** What persistence writes, one row per gateway's offer, read lazily from the view (catalog-held.ts). */
  exportState(): CatalogExport {
    return exportCatalog(this.#clusters, this.#tombstones);
  }

  /** Marks a cluster stale or live as persisted (used when loading from disk). */
  restoreStale(cluster: string, stale: boolean): void {
    const c = this.#clusters.get(cluster);
    if (c && c.stale !== stale) this.#setStale(c, stale);
  }

  // ---- internals ----

  #cluster(name: string, seen: number): HeldCluster {
    let c = this.#clusters.get(name);
    if (!c) {
      c = {
        cluster: name,
        lastSeen: seen,
        stale: false,
        entries: new Map(),
        gateways: new ClusterGateways(),
        lastLocality: undefined,
      };
      this.#clusters.set(name, c);
      this.#changes.queueCluster(c.cluster);
    }
    return c;
  }

  /** A gateway's freshness and expiry: silent for staleAfter it is no longer listed, expired it is dropped. */
  #tickGateways(c: HeldCluster, now: number, seen: number, staleAfter: number): void {
    for (const g of c.gateways.all()) {
      if (pastExpiry(g.expiresAt, now, this.#maxClockSkew)) {
        this.#dropGateway(c, g, Number.POSITIVE_INFINITY);
        this.#version++;
        this.#changes.queueCluster(c.cluster);
        continue;
      }
      const fresh = seen - g.lastSeen <= staleAfter;
      if (fresh === g.fresh) continue;
      g.fresh = fresh;
      this.#relist(c, g);
      this.#changes.queueCluster(c.cluster);
    }
  }

  /** Drops a gateway's offers older than `before`; the gateway goes too once it offers nothing. */
  #dropGateway(c: HeldCluster, g: HeldGateway, before: number): void {
    for (const [svcKey, offer] of g.offers) {
      const held = c.entries.get(svcKey);
      if (!held) {
        g.offers.delete(svcKey);
        continue;
      }
      const offered = offerRevision(offer, held.revision);
      if (offered >= before) continue;
      dropOffer(g, held, offered);
      this.#relistEntry(c, svcKey);
    }
    if (g.offers.size === 0) c.gateways.delete(g.name);
  }

  /** Lists every offer of `g` again (it moved, went silent or came back). */
  #relist(c: HeldCluster, g: HeldGateway): void {
    for (const svcKey of g.offers.keys()) this.#relistEntry(c, svcKey);
  }

  /** An entry after its offers changed: the gateways that offer it now, or gone when none does (false). */
  #relistEntry(c: HeldCluster, svcKey: string): boolean {
    const held = c.entries.get(svcKey);
    if (!held) return false;
    const revision = c.gateways.newestOffer(svcKey, held.revision);
    if (revision === 0) {
      this.#remove(c, held);
      return false;
    }
    const gateways = c.gateways.listFor(svcKey);
    if (gateways === held.gateways && revision === held.revision) return true;
    const instance = Object.freeze({ ...held, gateways, revision });
    c.entries.set(svcKey, instance);
    this.#version++;
    if (!sameRouting(held, instance)) {
      this.#changes.queue(`e:${entryKey(c.cluster, held.namespace, held.name)}`, {
        type: 'upsert',
        instance,
      });
    }
    return true;
  }

  #remove(c: HeldCluster, inst: RemoteServiceInstance): void {
    const svc = this.#services.get(`${inst.namespace}/${inst.name}`)!;
    for (const g of c.gateways.all()) {
      const offer = g.offers.get(svc.key);
      if (offer !== undefined) dropOffer(g, inst, offerRevision(offer, inst.revision));
    }
    c.entries.delete(svc.key);
    this.#size--;
    const at = svc.clusters.indexOf(c);
    if (at >= 0) svc.clusters.splice(at, 1);
    if (svc.clusters.length === 0) this.#services.delete(svc.key);
    this.#version++;
    this.#changes.queue(`e:${entryKey(inst.cluster, inst.namespace, inst.name)}`, {
      type: 'remove',
      cluster: inst.cluster,
      namespace: inst.namespace,
      name: inst.name,
    });
    this.#changes.queueCluster(c.cluster);
  }

  #setStale(c: HeldCluster, stale: boolean): void {
    c.stale = stale;
    this.#version++;
    this.#changes.queueCluster(c.cluster);
    for (const [svcKey, held] of c.entries) {
      const instance = Object.freeze({ ...held, stale });
      c.entries.set(svcKey, instance);
      this.#changes.queue(`e:${entryKey(c.cluster, held.namespace, held.name)}`, {
        type: 'upsert',
        instance,
      });
    }
  }

  #clusterState(c: HeldCluster): ClusterState {
    const s: ClusterState = {
      cluster: c.cluster,
      gateways: c.gateways.endpoints(),
      stale: c.stale,
      services: c.entries.size,
    };
    if (c.locality) s.locality = c.locality;
    if (c.lastHeartbeat !== undefined) s.lastHeartbeat = c.lastHeartbeat;
    return s;
  }
}
