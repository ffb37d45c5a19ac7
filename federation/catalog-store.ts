import type {
  CatalogChange,
  CatalogView,
  ClusterState,
  GatewayEndpoint,
  Locality,
  RemoteServiceInstance,
  ServiceRef,
} from '../core/index.ts';
import { pastExpiry } from './clock-skew.ts';
import { SetDigest } from './digest.ts';
import { type AnnounceMessage, type EntryMessage, entryKey, type TombstoneMessage } from './messages.ts';
import type { Proof } from './proof.ts';

interface HeldTombstone {
  revision: number;
  expiresAt: number;
  proof: Proof | undefined;
}

interface HeldCluster {
  cluster: string;
  locality?: Locality;
  gateways: GatewayEndpoint[];
  /** the announcement's own issue time, as the cluster reported it */
  lastHeartbeat?: number;
  announceRevision: number;
  announceProof: Proof | undefined;
  /** local clock: when we last heard from it (or resumed listening); staleness counts from here */
  lastSeen: number;
  stale: boolean;
  digest: SetDigest;
  /** its entries by service key (`namespace/name`, the string its Service record holds) */
  entries: Map<string, RemoteServiceInstance>;
  /** what vouches for each entry, when the caller keeps proofs (persistence) */
  proofs: Map<string, Proof>;
  /** the locality and gateways of its last entry: the next entry that carries equal ones shares them */
  lastLocality: Locality | undefined;
  lastGateways: GatewayEndpoint[] | undefined;
}

/**
 * One service name and the clusters that offer it. Its strings are the only copies: every cluster's entry
 * shares them, so 100,000 entries of 2,000 services hold 2,000 names, not 100,000 (and no per-entry keys).
 */
interface Service {
  key: string;
  namespace: string;
  name: string;
  clusters: HeldCluster[];
}

/** distinct port lists shared between entries; beyond this many, new ones are simply not shared */
const PORTS_INTERNED_MAX = 10_000;

export type ApplyResult = 'applied' | 'unchanged' | 'stale_revision' | 'duplicate';

/** The view as persistence reads it: re-iterable lists, read from the view each time they are iterated. */
export interface CatalogExport {
  entries: Iterable<{ key: string; revision: number; proof: Proof }>;
  tombstones: Iterable<{ key: string; revision: number; proof: Proof }>;
  announces: Iterable<{ cluster: string; revision: number; proof: Proof; stale: boolean }>;
}

/**
 * The federated view: the newest verified entry per (cluster, namespace, name), tombstones that keep older
 * revisions out, and per-cluster liveness. It only ever receives messages that passed MessageVerifier; its own
 * rule is "strictly newer revision wins". Changes are coalesced per key and delivered once per event-loop turn,
 * so listeners get the smallest diff (an entry changed twice in one turn is reported once).
 */
export class CatalogStore implements CatalogView {
  readonly #self: string;
  readonly #staleAfter: () => number;
  readonly #maxClockSkew: number;
  readonly #ports = new Map<string, RemoteServiceInstance['ports']>();
  /** by entryKey(cluster, namespace, name) */
  readonly #tombstones = new Map<string, HeldTombstone>();
  readonly #services = new Map<string, Service>();
  #size = 0;
  readonly #clusters = new Map<string, HeldCluster>();
  readonly #listeners = new Set<(changes: readonly CatalogChange[]) => void>();
  #pending = new Map<string, CatalogChange>();
  /** no entry expires before this (a lower bound): the expiry scan runs only when it is due */
  #nextExpiry = Number.POSITIVE_INFINITY;
  #flushScheduled = false;
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
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // ---- inputs (verified messages only) ----

  applyEntry(msg: EntryMessage, proof: Proof | undefined, now: number): ApplyResult {
    if (msg.cluster === this.#self) return 'unchanged';
    const c = this.#clusters.get(msg.cluster);
    const svcKey = `${msg.namespace}/${msg.name}`;
    const held = c?.entries.get(svcKey);
    if (held) {
      if (held.revision === msg.revision) return 'duplicate';
      if (held.revision > msg.revision) return 'stale_revision';
    }
    const key = entryKey(msg.cluster, msg.namespace, msg.name);
    const tomb = this.#tombstones.get(key);
    if (tomb && tomb.revision >= msg.revision)
      return tomb.revision === msg.revision ? 'duplicate' : 'stale_revision';
    if (tomb) this.#tombstones.delete(key);
    const cluster = c ?? this.#cluster(msg.cluster, now);
    let svc = this.#services.get(svcKey);
    if (!svc) {
      svc = { key: svcKey, namespace: msg.namespace, name: msg.name, clusters: [] };
      this.#services.set(svcKey, svc);
    }
    // a view of 100,000 entries holds ~50 distinct localities, gateway lists and port lists: share them
    if (cluster.lastLocality === undefined || !sameJson(cluster.lastLocality, msg.locality))
      cluster.lastLocality = msg.locality;
    if (cluster.lastGateways === undefined || !sameJson(cluster.lastGateways, msg.gateways))
      cluster.lastGateways = msg.gateways;
    const instance: RemoteServiceInstance = Object.freeze({
      cluster: cluster.cluster,
      namespace: svc.namespace,
      name: svc.name,
      ports: this.#sharedPorts(msg.ports as RemoteServiceInstance['ports']),
      locality: cluster.lastLocality,
      weight: msg.weight,
      gateways: cluster.lastGateways,
      revision: msg.revision,
      expiresAt: msg.expiresAt,
      stale: cluster.stale,
    });
    cluster.entries.set(svc.key, instance);
    if (proof) cluster.proofs.set(svc.key, proof);
    else cluster.proofs.delete(svc.key);
    if (msg.expiresAt + this.#maxClockSkew < this.#nextExpiry)
      this.#nextExpiry = msg.expiresAt + this.#maxClockSkew;
    if (held) {
      cluster.digest.remove(msg.namespace, msg.name, held.revision);
    } else {
      svc.clusters.push(cluster);
      this.#size++;
    }
    cluster.digest.add(msg.namespace, msg.name, msg.revision);
    this.#version++;
    // a refresh that only moves revision and expiry is not news to a router
    if (!held || !sameRouting(held, instance)) {
      this.#queue(`e:${key}`, { type: 'upsert', instance });
      if (!held) this.#queueCluster(cluster);
    }
    return 'applied';
  }

  applyTombstone(msg: TombstoneMessage, proof: Proof | undefined, _now: number): ApplyResult {
    if (msg.cluster === this.#self) return 'unchanged';
    const key = entryKey(msg.cluster, msg.namespace, msg.name);
    const c = this.#clusters.get(msg.cluster);
    const held = c?.entries.get(`${msg.namespace}/${msg.name}`);
    if (held && held.revision >= msg.revision) return 'stale_revision';
    const tomb = this.#tombstones.get(key);
    if (tomb && tomb.revision >= msg.revision)
      return tomb.revision === msg.revision ? 'duplicate' : 'stale_revision';
    this.#tombstones.set(key, { revision: msg.revision, expiresAt: msg.expiresAt, proof });
    this.#version++;
    if (c && held) this.#remove(c, held);
    return 'applied';
  }

  /** Returns 'applied' with `digestMatches` telling whether our copy of that cluster's set equals its own. */
  applyAnnounce(
    msg: AnnounceMessage,
    proof: Proof | undefined,
    now: number,
  ): { result: ApplyResult; digestMatches: boolean } {
    if (msg.cluster === this.#self) return { result: 'unchanged', digestMatches: true };
    const c = this.#cluster(msg.cluster, now);
    if (c.announceRevision >= msg.revision) {
      return {
        result: c.announceRevision === msg.revision ? 'duplicate' : 'stale_revision',
        digestMatches: c.digest.hex() === msg.digest,
      };
    }
    const changed =
      c.stale ||
      c.lastHeartbeat === undefined ||
      JSON.stringify([c.locality, c.gateways]) !== JSON.stringify([msg.locality, msg.gateways]);
    c.announceRevision = msg.revision;
    c.announceProof = proof;
    c.lastHeartbeat = msg.issuedAt;
    c.locality = msg.locality;
    c.gateways = msg.gateways;
    c.lastSeen = now;
    if (changed) this.#version++;
    if (c.stale) this.#setStale(c, false);
    else if (changed) this.#queueCluster(c);
    return { result: 'applied', digestMatches: c.digest.hex() === msg.digest };
  }

  /**
   * Anti-entropy: after a complete, verified snapshot of `cluster` as of revision `asOf`, entries we hold that it
   * does not list and that are not newer than the snapshot were withdrawn while we were not listening.
   */
  prune(cluster: string, listed: ReadonlySet<string>, asOf: number, _now: number): number {
    const c = this.#clusters.get(cluster);
    if (!c) return 0;
    let removed = 0;
    // #remove deletes the entry being visited, which a Map's iterator allows: no copy of 2,000 entries
    for (const held of c.entries.values()) {
      if (held.revision > asOf || listed.has(entryKey(cluster, held.namespace, held.name))) continue;
      this.#remove(c, held);
      removed++;
    }
    return removed;
  }

  /** Staleness and expiry. Skipped while this node is not connected: silence then says nothing about others. */
  tick(now: number, connected: boolean): void {
    if (!connected) return;
    const staleAfter = this.#staleAfter();
    for (const c of this.#clusters.values()) {
      if (!c.stale && now - c.lastSeen > staleAfter) this.#setStale(c, true);
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

  /** After (re)connecting: staleness counts from now, not from the start of the outage. */
  resume(now: number): void {
    for (const c of this.#clusters.values()) c.lastSeen = Math.max(c.lastSeen, now);
  }

  digestOf(cluster: string): string | undefined {
    return this.#clusters.get(cluster)?.digest.hex();
  }

  /**
   * What persistence writes: every held proof and which (key, revision) it vouches for (items without one are left
   * out). The lists are read lazily, each time they are iterated, so writing a view of 100,000 entries never
   * copies it; iterated again later, they show the view as it is then.
   */
  exportState(): CatalogExport {
    const clusters = this.#clusters;
    const tombstones = this.#tombstones;
    return {
      entries: {
        *[Symbol.iterator]() {
          for (const c of clusters.values()) {
            for (const [svcKey, proof] of c.proofs) {
              const held = c.entries.get(svcKey)!;
              yield { key: entryKey(c.cluster, held.namespace, held.name), revision: held.revision, proof };
            }
          }
        },
      },
      tombstones: {
        *[Symbol.iterator]() {
          for (const [key, t] of tombstones) if (t.proof) yield { key, revision: t.revision, proof: t.proof };
        },
      },
      announces: {
        *[Symbol.iterator]() {
          for (const c of clusters.values()) {
            if (c.announceProof) {
              yield {
                cluster: c.cluster,
                revision: c.announceRevision,
                proof: c.announceProof,
                stale: c.stale,
              };
            }
          }
        },
      },
    };
  }

  /** Marks a cluster stale or live as persisted (used when loading from disk). */
  restoreStale(cluster: string, stale: boolean): void {
    const c = this.#clusters.get(cluster);
    if (c && c.stale !== stale) this.#setStale(c, stale);
  }

  // ---- internals ----

  #cluster(name: string, now: number): HeldCluster {
    let c = this.#clusters.get(name);
    if (!c) {
      c = {
        cluster: name,
        gateways: [],
        announceRevision: 0,
        lastSeen: now,
        stale: false,
        digest: new SetDigest(),
        entries: new Map(),
        proofs: new Map(),
        announceProof: undefined,
        lastLocality: undefined,
        lastGateways: undefined,
      };
      this.#clusters.set(name, c);
      this.#queueCluster(c);
    }
    return c;
  }

  #sharedPorts(ports: RemoteServiceInstance['ports']): RemoteServiceInstance['ports'] {
    let id = '';
    for (const p of ports) id += `${p.name}:${p.port}:${p.protocol},`;
    const shared = this.#ports.get(id);
    if (shared) return shared;
    if (this.#ports.size < PORTS_INTERNED_MAX) this.#ports.set(id, ports);
    return ports;
  }

  #remove(c: HeldCluster, inst: RemoteServiceInstance): void {
    const svc = this.#services.get(`${inst.namespace}/${inst.name}`)!;
    c.entries.delete(svc.key);
    c.proofs.delete(svc.key);
    this.#size--;
    const at = svc.clusters.indexOf(c);
    if (at >= 0) svc.clusters.splice(at, 1);
    if (svc.clusters.length === 0) this.#services.delete(svc.key);
    c.digest.remove(inst.namespace, inst.name, inst.revision);
    this.#version++;
    this.#queue(`e:${entryKey(inst.cluster, inst.namespace, inst.name)}`, {
      type: 'remove',
      cluster: inst.cluster,
      namespace: inst.namespace,
      name: inst.name,
    });
    this.#queueCluster(c);
  }

  #setStale(c: HeldCluster, stale: boolean): void {
    c.stale = stale;
    this.#version++;
    this.#queueCluster(c);
    for (const [svcKey, held] of c.entries) {
      const instance = Object.freeze({ ...held, stale });
      c.entries.set(svcKey, instance);
      this.#queue(`e:${entryKey(c.cluster, held.namespace, held.name)}`, { type: 'upsert', instance });
    }
  }

  #clusterState(c: HeldCluster): ClusterState {
    const s: ClusterState = {
      cluster: c.cluster,
      gateways: c.gateways,
      stale: c.stale,
      services: c.entries.size,
    };
    if (c.locality) s.locality = c.locality;
    if (c.lastHeartbeat !== undefined) s.lastHeartbeat = c.lastHeartbeat;
    return s;
  }

  #queueCluster(c: HeldCluster): void {
    // resolved at flush time, so the listener sees the cluster's final state of this turn
    this.#queue(`c:${c.cluster}`, {
      type: 'cluster',
      state: { cluster: c.cluster, gateways: [], stale: false, services: 0 },
    });
  }

  #queue(id: string, change: CatalogChange): void {
    if (this.#listeners.size === 0) return;
    this.#pending.delete(id);
    this.#pending.set(id, change);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    const pending = this.#pending;
    this.#pending = new Map();
    const changes: CatalogChange[] = [];
    for (const [id, change] of pending) {
      if (change.type === 'cluster') {
        const c = this.#clusters.get(id.slice(2));
        if (c) changes.push({ type: 'cluster', state: this.#clusterState(c) });
      } else changes.push(change);
    }
    if (changes.length === 0) return;
    for (const l of this.#listeners) {
      try {
        l(changes);
      } catch {
        // a listener's bug must not stop delivery to the others
      }
    }
  }
}

function sameRouting(a: RemoteServiceInstance, b: RemoteServiceInstance): boolean {
  return (
    a.weight === b.weight &&
    a.stale === b.stale &&
    sameJson(a.ports, b.ports) &&
    sameJson(a.locality, b.locality) &&
    sameJson(a.gateways, b.gateways)
  );
}

/** Deep equality of JSON data (objects, arrays, primitives); key order does not matter. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}
