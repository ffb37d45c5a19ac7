import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CaMaterial,
  CertificateSource,
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  TrustBundle,
} from '../../ca/index.ts';
import {
  createRegistry,
  type EndpointSource,
  type LocalService,
  type Logger,
  type Registry,
  silentLogger,
} from '../../core/index.ts';
import {
  type AnnounceMessage,
  type EntryMessage,
  FederationNode,
  type FederationConfigInput,
  type FederationNodeOptions,
  JwsSigner,
  SCHEMA_VERSION,
  type SyncRequestMessage,
} from '../../federation/index.ts';

export const TD = 'mesh.example';

/** One trust root, one intermediate and one federation leaf per cluster. */
export interface Pki {
  root: CaMaterial;
  bundle: TrustBundle;
  intermediates: Map<string, CaMaterial>;
  leaves: Map<string, IssuedLeaf>;
}

export async function makePki(clusters: string[], trustDomain = TD): Promise<Pki> {
  const root = await createRoot({ trustDomain });
  const bundle = TrustBundle.fromPem(root.certPem);
  const intermediates = new Map<string, CaMaterial>();
  const leaves = new Map<string, IssuedLeaf>();
  for (const c of clusters) {
    const ca = await issueIntermediate(root, { cluster: c });
    intermediates.set(c, ca);
    leaves.set(c, await issueLeaf(ca, { kind: 'federation' }));
  }
  return { root, bundle, intermediates, leaves };
}

export async function certificateSource(pki: Pki, cluster: string): Promise<CertificateSource> {
  const src = new CertificateSource({
    logger: silentLogger(),
    issue: async () => pki.leaves.get(cluster)!,
    bundle: () => pki.bundle,
  });
  await src.start();
  return src;
}

/** A test EndpointSource whose set the test replaces. */
export class ListSource implements EndpointSource {
  readonly name = 'list';
  #services: LocalService[];
  readonly #listeners = new Set<(s: readonly LocalService[]) => void>();

  constructor(services: LocalService[] = []) {
    this.#services = services;
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  current(): readonly LocalService[] {
    return this.#services;
  }
  onChange(listener: (s: readonly LocalService[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  set(services: LocalService[]): void {
    this.#services = services;
    for (const l of this.#listeners) l(services);
  }
}

export function service(
  namespace: string,
  name: string,
  healthy = 2,
  o: { exported?: boolean; port?: number } = {},
): LocalService {
  return {
    namespace,
    name,
    source: 'test',
    exported: o.exported ?? true,
    ports: [{ name: 'http', port: o.port ?? 8080, protocol: 'http' }],
    endpoints: Array.from({ length: healthy }, (_, i) => ({
      host: `10.0.0.${i + 1}`,
      ports: { http: 8080 },
      healthy: true,
    })),
  };
}

export function tempDir(prefix = 'meshfed-fed-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Intervals short enough for tests, with room for a loaded CI host: stale after 3 s of silence. */
export const FAST: Partial<FederationConfigInput> = {
  heartbeatInterval: '200ms',
  staleAfter: '3s',
  entryTtl: '30s',
  syncTimeout: '5s',
};

export async function startNode(o: {
  pki: Pki;
  cluster: string;
  servers: string[];
  source?: EndpointSource;
  stateDir?: string;
  registry?: Registry;
  logger?: Logger;
  config?: Partial<FederationConfigInput>;
  links?: FederationNodeOptions['links'];
  advertise?: boolean;
  /** the one gateway this node publishes for (default gw-1 at 127.0.0.1:15443) */
  gateway?: { name: string; address: string };
}): Promise<FederationNode> {
  const node = new FederationNode({
    config: {
      nats: { servers: o.servers, reconnectWait: '200ms' },
      ...FAST,
      ...(o.stateDir ? { stateDir: o.stateDir } : {}),
      ...o.config,
    },
    cluster: o.cluster,
    trustDomain: TD,
    locality: { region: `region-${o.cluster}`, zone: `zone-${o.cluster}-a` },
    gateways: [o.gateway ?? { name: 'gw-1', address: `127.0.0.1:${15443}` }],
    signer: await certificateSource(o.pki, o.cluster),
    bundle: () => o.pki.bundle,
    ...(o.source ? { source: o.source } : {}),
    ...(o.links ? { links: o.links } : {}),
    ...(o.advertise === false ? { advertise: false } : {}),
    logger: o.logger ?? silentLogger(),
    registry: o.registry ?? createRegistry(),
    now: Date.now,
  });
  await node.start();
  return node;
}

/** The (cluster → weight) map a view holds for one service. */
export function offers(node: FederationNode, namespace: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of node.instances(namespace, name)) out[i.cluster] = i.weight;
  return out;
}

/** meshfed_catalog_sync_refused_total{reason}: snapshot and announcement requests a responder left unanswered */
export async function refusedValue(registry: Registry, reason: string): Promise<number> {
  const m = await registry.getSingleMetric('meshfed_catalog_sync_refused_total')?.get();
  return m?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

export async function counterValue(registry: Registry, reason: string): Promise<number> {
  const m = await registry.getSingleMetric('meshfed_catalog_rejected_total')?.get();
  return m?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/** An entry payload of `cluster` (default east's shop/orders, issued now, revision = now in µs), fields overridable. */
export function entryMessage(o: Partial<EntryMessage> = {}): EntryMessage {
  const now = Date.now();
  return {
    v: SCHEMA_VERSION,
    type: 'entry',
    cluster: 'east',
    namespace: 'shop',
    name: 'orders',
    revision: now * 1000,
    issuedAt: now,
    expiresAt: now + 60_000,
    ports: [{ name: 'http', port: 8080, protocol: 'http' }],
    locality: { region: 'r', zone: 'z' },
    gateways: [{ name: 'gw-1', address: '127.0.0.1:15443' }],
    weight: 1,
    ...o,
  };
}

/** Signs as `cluster`'s federation identity: what a leaked federation key lets an attacker do. */
export function signerOf(pki: Pki, cluster: string): JwsSigner {
  const leaf = pki.leaves.get(cluster)!;
  return new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
}

/** A snapshot request signed by `cluster`'s federation identity, for the inbox `reply`. */
export function signedSyncRequest(pki: Pki, cluster: string, req: string, reply: string): string {
  const now = Date.now();
  const msg: SyncRequestMessage = {
    v: SCHEMA_VERSION,
    type: 'sync',
    cluster,
    req,
    reply,
    issuedAt: now,
    expiresAt: now + 30_000,
  };
  return signerOf(pki, cluster).sign(msg);
}

/** An announcement payload of `cluster` (default east, issued now, revision = now in µs), fields overridable. */
export function announceMessage(o: Partial<AnnounceMessage> = {}): AnnounceMessage {
  const now = Date.now();
  return {
    v: SCHEMA_VERSION,
    type: 'announce',
    cluster: 'east',
    revision: now * 1000,
    issuedAt: now,
    expiresAt: now + 60_000,
    locality: { region: 'r', zone: 'z' },
    gateways: [{ name: 'gw', address: '127.0.0.1:15443' }],
    services: 0,
    digest: '0'.repeat(32),
    ...o,
  };
}
