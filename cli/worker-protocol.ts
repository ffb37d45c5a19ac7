import type { IssuedLeaf } from '../ca/index.ts';
import {
  buildPolicySet,
  type CatalogChange,
  type CatalogView,
  type ClusterState,
  type EndpointSource,
  EMPTY_POLICY_SET,
  type LocalService,
  type MetricFamily,
  type PolicyDocument,
  type PolicyScopeRevision,
  type PolicySet,
  type PolicyView,
  type RemoteServiceInstance,
  type ServiceRef,
  serviceKey,
} from '../core/index.ts';
import type { PolicySummary, TrafficSnapshot } from '../gateway/index.ts';
import type { DaemonConfig } from './daemon-config.ts';

// Messages between the supervisor (node:cluster primary, which runs identity, discovery and federation)
// and its data-plane workers. The channel uses node's "advanced" serialization, so Dates survive.

export interface TrustMaterial {
  /** the bundle's roots */
  roots: string;
  /** intermediates the bundle knows besides (identity.intermediates) */
  intermediates: string;
}

export type ToWorker =
  | {
      t: 'init';
      /** the daemon config with concrete listener ports */
      config: DaemonConfig;
      leaf: IssuedLeaf;
      trust: TrustMaterial;
      local: readonly LocalService[];
      instances: readonly RemoteServiceInstance[];
      clusters: readonly ClusterState[];
      policy: PolicySnapshot;
    }
  | { t: 'leaf'; leaf: IssuedLeaf }
  | { t: 'trust'; trust: TrustMaterial }
  | { t: 'local'; services: readonly LocalService[] }
  | { t: 'catalog'; changes: readonly CatalogChange[] }
  | { t: 'policy'; policy: PolicySnapshot }
  /** counters, metrics and the golden metrics' window of `windowMs` */
  | { t: 'stats'; id: number; windowMs: number }
  /** what the worker's gateway enforces (/debug/policy) */
  | { t: 'policy-state'; id: number }
  | { t: 'drain'; timeoutMs: number; noticeMs: number };

/**
 * Set in the environment of every data-plane worker the supervisor forks: `meshfed gateway` loads node:cluster
 * and the worker's modules only then (a gateway of one process never needs them).
 */
export const GATEWAY_WORKER_ENV = 'MESHFED_GATEWAY_WORKER';

/** A PolicySet as it crosses to a worker (the worker indexes it again). */
export interface PolicySnapshot {
  documents: readonly PolicyDocument[];
  scopes: readonly PolicyScopeRevision[];
}

export function policySnapshot(set: PolicySet): PolicySnapshot {
  return { documents: set.documents, scopes: set.scopes };
}

export interface WorkerStats {
  pid: number;
  /** requests this worker proxied since it started */
  requests: number;
  connections: number;
  startedAtMs: number;
}

export type FromWorker =
  /** the worker listens for messages: the supervisor answers with init */
  | { t: 'hello' }
  | { t: 'ready'; addresses: Record<string, string> }
  | { t: 'stats'; id: number; stats: WorkerStats; metrics: MetricFamily[]; traffic: TrafficSnapshot }
  | { t: 'policy-state'; id: number; pid: number; startedAtMs: number; policy: PolicySummary | null }
  | { t: 'failed'; message: string };

/** The supervisor's catalog as a worker sees it: a snapshot, then every change as the primary saw it. */
export class MirroredCatalog implements CatalogView {
  /**
   * offers by service (`namespace/name`), then by cluster: the data plane asks for one service's offers
   * on every egress request and every route resolution, which must not scan the whole catalog
   */
  private readonly byService = new Map<string, Map<string, RemoteServiceInstance>>();
  private readonly clusterStates = new Map<string, ClusterState>();
  private readonly listeners = new Set<(c: readonly CatalogChange[]) => void>();

  constructor(instances: readonly RemoteServiceInstance[], clusters: readonly ClusterState[]) {
    for (const i of instances) this.upsert(i);
    for (const c of clusters) this.clusterStates.set(c.cluster, c);
  }

  apply(changes: readonly CatalogChange[]): void {
    for (const c of changes) {
      if (c.type === 'upsert') this.upsert(c.instance);
      else if (c.type === 'remove') this.remove(c);
      else this.clusterStates.set(c.state.cluster, c.state);
    }
    for (const l of this.listeners) l(changes);
  }

  private upsert(i: RemoteServiceInstance): void {
    const key = serviceKey(i);
    let offers = this.byService.get(key);
    if (!offers) {
      offers = new Map();
      this.byService.set(key, offers);
    }
    offers.set(i.cluster, i);
  }

  private remove(r: { cluster: string; namespace: string; name: string }): void {
    const key = serviceKey(r);
    const offers = this.byService.get(key);
    if (!offers) return;
    offers.delete(r.cluster);
    if (offers.size === 0) this.byService.delete(key);
  }

  services(): readonly ServiceRef[] {
    const out: ServiceRef[] = [];
    for (const offers of this.byService.values()) {
      const first = offers.values().next().value!;
      out.push({ namespace: first.namespace, name: first.name });
    }
    return out;
  }

  instances(namespace: string, name: string): readonly RemoteServiceInstance[] {
    const offers = this.byService.get(serviceKey({ namespace, name }));
    return offers ? [...offers.values()] : [];
  }

  clusters(): readonly ClusterState[] {
    return [...this.clusterStates.values()];
  }

  onChange(listener: (changes: readonly CatalogChange[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** This cluster's services as the supervisor's discovery sources last reported them. */
export class MirroredSource implements EndpointSource {
  readonly name = 'supervisor';
  private services: readonly LocalService[];
  private readonly listeners = new Set<(s: readonly LocalService[]) => void>();

  constructor(services: readonly LocalService[]) {
    this.services = services;
  }

  async start(): Promise<void> {}
  async stop(): Promise<void> {}

  current(): readonly LocalService[] {
    return this.services;
  }

  set(services: readonly LocalService[]): void {
    this.services = services;
    for (const l of this.listeners) l(services);
  }

  onChange(listener: (services: readonly LocalService[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** The supervisor's policy as a worker sees it: every revision whole, as the primary put it in force. */
export class MirroredPolicy implements PolicyView {
  private set: PolicySet = EMPTY_POLICY_SET;
  private readonly listeners = new Set<(set: PolicySet) => void>();

  constructor(snapshot: PolicySnapshot) {
    this.apply(snapshot);
  }

  apply(snapshot: PolicySnapshot): void {
    this.set = buildPolicySet(snapshot.documents, {
      revision: this.set.revision + 1,
      scopes: snapshot.scopes,
    });
    for (const l of this.listeners) l(this.set);
  }

  current(): PolicySet {
    return this.set;
  }

  onChange(listener: (set: PolicySet) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
