import { createHash } from 'node:crypto';
import type { Endpoint, LocalService } from '../core/index.ts';
import { serviceKey } from '../core/index.ts';

/**
 * Puts a service set into one canonical order (services by namespace/name, ports by name,
 * endpoints by host and ports) so that two reads of the same backend state compare equal.
 */
export function canonicalServices(services: Iterable<LocalService>): LocalService[] {
  const out: LocalService[] = [];
  for (const s of services) {
    out.push({
      namespace: s.namespace,
      name: s.name,
      ports: [...s.ports].sort((a, b) => cmp(a.name, b.name)),
      endpoints: [...s.endpoints].map(canonicalEndpoint).sort((a, b) => cmp(endpointKey(a), endpointKey(b))),
      exported: s.exported,
      source: s.source,
    });
  }
  return out.sort((a, b) => cmp(serviceKey(a), serviceKey(b)));
}

function canonicalEndpoint(e: Endpoint): Endpoint {
  const ports: Record<string, number> = {};
  for (const k of Object.keys(e.ports).sort()) ports[k] = e.ports[k]!;
  const out: Endpoint = { host: e.host, ports, healthy: e.healthy };
  if (e.zone !== undefined) out.zone = e.zone;
  return out;
}

function endpointKey(e: Endpoint): string {
  return `${e.host}|${JSON.stringify(e.ports)}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A digest of a canonical set: equal digests mean nothing a listener cares about changed. */
export function digestServices(services: readonly LocalService[]): string {
  const h = createHash('sha256');
  for (const s of services) h.update(JSON.stringify(s)).update('\n');
  return h.digest('hex');
}

/**
 * Holds a source's last good set and its listeners. `set()` notifies only when the canonical
 * content changed, so a backend that re-reports the same state never wakes anyone up. The
 * canonical form of each service object is cached by identity: sources keep unchanged services as
 * the same objects, so a set of 1,000 services where one changed costs one canonicalisation.
 */
export class ServiceSetHolder {
  private services: readonly LocalService[] = Object.freeze([]);
  private digest = digestServices([]);
  private readonly listeners = new Set<(services: readonly LocalService[]) => void>();
  private readonly onListenerError: (err: unknown) => void;
  private cache = new WeakMap<LocalService, { key: string; json: string; canonical: LocalService }>();

  constructor(onListenerError: (err: unknown) => void) {
    this.onListenerError = onListenerError;
  }

  current(): readonly LocalService[] {
    return this.services;
  }

  /** Replaces the set; returns true when it changed (and listeners were called). */
  set(services: Iterable<LocalService>): boolean {
    const entries: { key: string; json: string; canonical: LocalService }[] = [];
    for (const s of services) {
      let c = this.cache.get(s);
      if (!c) {
        const canonical = Object.freeze(canonicalServices([s])[0]!);
        c = { key: serviceKey(s), json: JSON.stringify(canonical), canonical };
        this.cache.set(s, c);
      }
      entries.push(c);
    }
    entries.sort((a, b) => cmp(a.key, b.key));
    const h = createHash('sha256');
    for (const e of entries) h.update(e.json).update('\n');
    const digest = h.digest('hex');
    if (digest === this.digest) return false;
    this.digest = digest;
    this.services = Object.freeze(entries.map((e) => e.canonical));
    for (const l of [...this.listeners]) {
      try {
        l(this.services);
      } catch (err) {
        // one faulty listener must not starve the others or break the source's loop
        this.onListenerError(err);
      }
    }
    return true;
  }

  onChange(listener: (services: readonly LocalService[]) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }
}
