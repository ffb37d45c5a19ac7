import type { GatewayEndpoint, LocalService, Locality } from '../core/index.ts';
import { SetDigest } from './digest.ts';
import type { JwsSigner } from './jws.ts';
import {
  type AnnounceMessage,
  type EntryMessage,
  SCHEMA_VERSION,
  type SnapshotMessage,
  type TombstoneMessage,
  type WithdrawMessage,
} from './messages.ts';

/**
 * Revisions are microsecond-scale timestamps that never repeat or go back within a process: `max(last + 1,
 * now × 1000)`. A restarted publisher therefore continues above its previous revisions without persisting a
 * counter (as long as its clock did not step back by more than the downtime), and `now × 1000` stays below 2^53
 * until the year 2255.
 */
export class RevisionClock {
  #last = 0;
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  next(): number {
    this.#last = Math.max(this.#last + 1, this.#now() * 1000);
    return this.#last;
  }

  get last(): number {
    return this.#last;
  }
}

interface Own {
  msg: EntryMessage;
  /** the routing content, to tell a real change from a refresh */
  content: string;
  /** the source object it was built from: an unchanged object is skipped without rebuilding */
  from?: LocalService;
  /** the entry's JSON size, for cutting snapshots into parts */
  bytes: number;
}

export interface PublisherOptions {
  cluster: string;
  locality: Locality;
  gateways: GatewayEndpoint[];
  entryTtl: number;
  signer: () => JwsSigner;
  /** the clock: revisions, issuedAt and expiresAt come from it */
  now: () => number;
}

/**
 * This cluster's side of the catalog: turns the exported local services into signed entries and tombstones,
 * refreshes them before they expire, announces the gateways with a digest of the live set, and cuts snapshots.
 * It does no I/O: the node sends what it returns.
 */
export class CatalogPublisher {
  readonly #o: PublisherOptions;
  readonly #clock: RevisionClock;
  readonly #now: () => number;
  readonly #own = new Map<string, Own>();
  readonly #digest = new SetDigest();
  #lastList: readonly LocalService[] | undefined;
  #signEach = true;

  constructor(o: PublisherOptions) {
    this.#o = o;
    this.#now = o.now;
    this.#clock = new RevisionClock(this.#now);
  }

  get size(): number {
    return this.#own.size;
  }

  /**
   * The new local set; returns the signed messages (entries and tombstones) to publish. With `sign: false` the
   * new revisions are recorded but nothing is signed: the caller publishes a bulk snapshot instead.
   */
  update(services: readonly LocalService[], o: { sign?: boolean } = {}): string[] {
    this.#signEach = o.sign !== false;
    const last = this.#lastList;
    this.#lastList = services;
    // fast path: the same list with a few objects replaced under the same names (sources replace what changed)
    if (last && last.length === services.length) {
      const changed: LocalService[] = [];
      let sameNames = true;
      for (let i = 0; i < services.length; i++) {
        const s = services[i]!;
        const l = last[i]!;
        if (s === l) continue;
        if (
          s.namespace !== l.namespace ||
          s.name !== l.name ||
          s.exported !== l.exported ||
          s.ports.length === 0
        ) {
          sameNames = false;
          break;
        }
        changed.push(s);
      }
      if (sameNames) return this.#apply(changed, false);
    }
    return this.#apply(services, true);
  }

  #apply(services: readonly LocalService[], complete: boolean): string[] {
    const out: string[] = [];
    const seen = new Set<string>();
    for (const s of services) {
      if (!s.exported || s.ports.length === 0) continue;
      const key = `${s.namespace}/${s.name}`;
      seen.add(key);
      const before = this.#own.get(key);
      if (before && before.from === s) continue;
      const content = {
        ports: s.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
        weight: s.endpoints.filter((e) => e.healthy).length,
      };
      const contentKey = JSON.stringify(content);
      if (before && before.content === contentKey) {
        before.from = s;
        continue;
      }
      const jws = this.#sign(s.namespace, s.name, content.ports, content.weight, contentKey, s);
      if (jws) out.push(jws);
    }
    if (complete) {
      for (const [key, held] of this.#own) {
        if (!seen.has(key)) out.push(this.#withdraw(key, held));
      }
    }
    return out;
  }

  /**
   * Gives every entry a new revision and expiry (TTL refresh, signer rotation, gateway change) without signing
   * each: the caller publishes them as a bulk snapshot, one signature per part instead of per entry.
   */
  refreshAll(): void {
    this.#signEach = false;
    for (const h of [...this.#own.values()]) {
      this.#sign(h.msg.namespace, h.msg.name, h.msg.ports, h.msg.weight, h.content, h.from);
    }
  }

  /** Tombstones for everything exported (graceful withdraw on stop). */
  withdrawAll(): string[] {
    return [...this.#own].map(([key, held]) => this.#withdraw(key, held));
  }

  announce(): string {
    const now = this.#now();
    const msg: AnnounceMessage = {
      v: SCHEMA_VERSION,
      type: 'announce',
      cluster: this.#o.cluster,
      revision: this.#clock.next(),
      issuedAt: now,
      expiresAt: now + this.#o.entryTtl,
      locality: this.#o.locality,
      gateways: this.#o.gateways,
      services: this.#own.size,
      digest: this.#digest.hex(),
    };
    return this.#o.signer().sign(msg);
  }

  /**
   * This gateway withdrawing itself by name, one message per gateway it publishes for: newer than everything it
   * published, valid for as long as its entries could still be, so a receiver refuses its older entries until they
   * would have expired anyway.
   */
  withdrawGateways(): string[] {
    const now = this.#now();
    return this.#o.gateways.map((g) => {
      const msg: WithdrawMessage = {
        v: SCHEMA_VERSION,
        type: 'withdraw',
        cluster: this.#o.cluster,
        gateway: g.name,
        revision: this.#clock.next(),
        issuedAt: now,
        expiresAt: now + this.#o.entryTtl,
      };
      return this.#o.signer().sign(msg);
    });
  }

  /** The whole live set as signed parts of at most `partBytes` of payload each. */
  snapshot(req: string, partBytes: number): string[] {
    const now = this.#now();
    const asOf = this.#clock.next();
    const groups: EntryMessage[][] = [[]];
    let size = 0;
    for (const h of this.#own.values()) {
      const len = h.bytes + 1;
      if (size + len > partBytes && groups[groups.length - 1]!.length > 0) {
        groups.push([]);
        size = 0;
      }
      groups[groups.length - 1]!.push(h.msg);
      size += len;
    }
    const signer = this.#o.signer();
    return groups.map((entries, part) => {
      const msg: SnapshotMessage = {
        v: SCHEMA_VERSION,
        type: 'snapshot',
        cluster: this.#o.cluster,
        req,
        part,
        parts: groups.length,
        asOf,
        count: this.#own.size,
        digest: this.#digest.hex(),
        issuedAt: now,
        expiresAt: now + this.#o.entryTtl,
        entries,
      };
      return signer.sign(msg);
    });
  }

  setGateways(gateways: GatewayEndpoint[]): void {
    this.#o.gateways = gateways;
  }

  #sign(
    namespace: string,
    name: string,
    ports: EntryMessage['ports'],
    weight: number,
    content: string,
    from: LocalService | undefined,
  ): string {
    const now = this.#now();
    const key = `${namespace}/${name}`;
    const held = this.#own.get(key);
    const msg: EntryMessage = {
      v: SCHEMA_VERSION,
      type: 'entry',
      cluster: this.#o.cluster,
      namespace,
      name,
      revision: this.#clock.next(),
      issuedAt: now,
      expiresAt: now + this.#o.entryTtl,
      ports,
      locality: this.#o.locality,
      gateways: this.#o.gateways,
      weight,
    };
    const jws = this.#signEach ? this.#o.signer().sign(msg) : '';
    if (held) this.#digest.remove(namespace, name, held.msg.revision);
    this.#digest.add(namespace, name, msg.revision);
    const own: Own = { msg, content, bytes: JSON.stringify(msg).length };
    if (from) own.from = from;
    this.#own.set(key, own);
    return jws;
  }

  #withdraw(key: string, held: Own): string {
    const now = this.#now();
    const msg: TombstoneMessage = {
      v: SCHEMA_VERSION,
      type: 'tombstone',
      cluster: this.#o.cluster,
      namespace: held.msg.namespace,
      name: held.msg.name,
      revision: this.#clock.next(),
      issuedAt: now,
      expiresAt: now + this.#o.entryTtl,
    };
    this.#own.delete(key);
    this.#digest.remove(held.msg.namespace, held.msg.name, held.msg.revision);
    return this.#o.signer().sign(msg);
  }
}
