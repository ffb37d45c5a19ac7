import type { Locality, RemoteServiceInstance } from '../core/index.ts';
import { type ClusterGateways, type HeldGateway, offerProof, offerRevision } from './cluster-gateways.ts';
import { entryKey } from './messages.ts';
import type { Proof } from './proof.ts';

/** The view's records of one remote cluster and of its tombstones (CatalogStore's state), and what reads them. */

export interface HeldTombstone {
  revision: number;
  expiresAt: number;
  proof: Proof | undefined;
}

export interface HeldCluster {
  cluster: string;
  locality?: Locality;
  /** the newest issue time of its gateways' announcements, as they reported it */
  lastHeartbeat?: number;
  /** local clock: when we last heard from any of its gateways (or resumed listening); staleness counts from here */
  lastSeen: number;
  stale: boolean;
  /** its entries by service key (`namespace/name`, the string its Service record holds) */
  entries: Map<string, RemoteServiceInstance>;
  /** its gateways, each with its own offers, heartbeat and expiry; an entry lists the fresh ones that offer it */
  gateways: ClusterGateways;
  /** the locality of its last entry: the next entry that carries an equal one shares it */
  lastLocality: Locality | undefined;
}

/** The view as persistence reads it: re-iterable lists, read from the view each time they are iterated. */
export interface CatalogExport {
  entries: Iterable<{ key: string; revision: number; proof: Proof }>;
  tombstones: Iterable<{ key: string; revision: number; proof: Proof }>;
  announces: Iterable<{ cluster: string; revision: number; proof: Proof; stale: boolean }>;
}

/**
 * One service name and the clusters that offer it. Its strings are the only copies: every cluster's entry
 * shares them, so 100,000 entries of 2,000 services hold 2,000 names, not 100,000 (and no per-entry keys).
 */
export interface Service {
  key: string;
  namespace: string;
  name: string;
  clusters: HeldCluster[];
}

/** distinct port lists shared between entries; beyond this many, new ones are simply not shared */
const PORTS_INTERNED_MAX = 10_000;

/** Port lists shared between entries: a view of 100,000 entries holds a handful of distinct ones. */
export class PortLists {
  readonly #ports = new Map<string, RemoteServiceInstance['ports']>();

  shared(ports: RemoteServiceInstance['ports']): RemoteServiceInstance['ports'] {
    let id = '';
    for (const p of ports) id += `${p.name}:${p.port}:${p.protocol},`;
    const shared = this.#ports.get(id);
    if (shared) return shared;
    if (this.#ports.size < PORTS_INTERNED_MAX) this.#ports.set(id, ports);
    return ports;
  }
}

/**
 * What persistence writes: every held proof and which (key, revision) it vouches for (items without one are left
 * out): one row per gateway's offer, so a restarted view lists every gateway again. The lists are read lazily,
 * each time they are iterated, so writing a view of 100,000 entries never copies it; iterated again later, they
 * show the view as it is then.
 */
export function exportCatalog(
  clusters: ReadonlyMap<string, HeldCluster>,
  tombstones: ReadonlyMap<string, HeldTombstone>,
): CatalogExport {
  return {
    entries: {
      *[Symbol.iterator]() {
        for (const c of clusters.values()) {
          for (const g of c.gateways.all()) {
            for (const [svcKey, offer] of g.offers) {
              const proof = offerProof(offer);
              if (!proof) continue;
              const held = c.entries.get(svcKey)!;
              const revision = offerRevision(offer, held.revision);
              yield { key: entryKey(c.cluster, held.namespace, held.name), revision, proof };
            }
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
          let last: Proof | undefined;
          for (const g of c.gateways.all()) {
            // one announcement that lists several gateways is written once
            if (!g.announceProof || g.announceProof === last) continue;
            last = g.announceProof;
            yield { cluster: c.cluster, revision: g.announceRevision, proof: last, stale: c.stale };
          }
        }
      },
    },
  };
}

/** One gateway no longer offers `held`'s service (its revision `offered` leaves the gateway's digest). */
export function dropOffer(g: HeldGateway, held: RemoteServiceInstance, offered: number): void {
  const svcKey = `${held.namespace}/${held.name}`;
  g.offers.delete(svcKey);
  g.digest.remove(held.namespace, held.name, offered);
}

export function sameRouting(a: RemoteServiceInstance, b: RemoteServiceInstance): boolean {
  return (
    a.weight === b.weight &&
    a.stale === b.stale &&
    sameJson(a.ports, b.ports) &&
    sameJson(a.locality, b.locality) &&
    sameJson(a.gateways, b.gateways)
  );
}

/** Deep equality of JSON data (objects, arrays, primitives); key order does not matter. */
export function sameJson(a: unknown, b: unknown): boolean {
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
