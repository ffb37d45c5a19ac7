import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { CoreV1Api, CustomObjectsApi, DiscoveryV1Api, type KubeConfig } from '@kubernetes/client-node';
import { type ImportedService, type ImportSink, type Logger, MeshfedError } from '../core/index.ts';
import type { KubernetesSinkConfig } from './config.ts';
import { runAll } from './consul-sink.ts';
import type { KubeItem } from './kube-list-watch.ts';
import { kubeError, loadKubeConfig, statusOf, withTimeout } from './kubernetes-client.ts';
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, MCS_GROUP, MCS_VERSION } from './kubernetes-source.ts';

export const SPEC_HASH_ANNOTATION = 'meshfed.io/spec-hash';
export const CLUSTERS_ANNOTATION = 'meshfed.io/clusters';
export const OWNER_ANNOTATION = 'meshfed.io/owner';
export const IMPORTED_ANNOTATION = 'meshfed.io/imported-service';
const SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;

export interface KubernetesSinkOptions {
  config: KubernetesSinkConfig;
  gatewayId: string;
  /** the egress listener; must be routable from pods (config.egressAddress wins) */
  egress: { host: string; port: number };
  log: Logger;
  kubeConfig?: KubeConfig;
  concurrency?: number;
  /** per API call (ms); a hung API server turns into a retryable error */
  timeoutMs?: number;
}

/** The Service meshfed derives for an import; kept within the 63-character name limit. */
export function derivedServiceName(name: string): string {
  const full = `${name}-clusterset`;
  if (full.length <= 63) return full;
  const h = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, 63 - 'clusterset'.length - 10)}-${h}-clusterset`;
}

interface Resource {
  kind: string;
  list(): Promise<KubeItem[]>;
  get(ns: string, name: string): Promise<KubeItem>;
  create(ns: string, body: KubeItem): Promise<KubeItem>;
  replace(ns: string, name: string, body: KubeItem): Promise<KubeItem>;
  delete(ns: string, name: string): Promise<unknown>;
}

/**
 * Makes imported services resolvable in Kubernetes: per import an MCS ServiceImport, a selector-less
 * Service `<name>-clusterset` and an EndpointSlice pointing at the gateway's egress listener, all
 * labelled `app.kubernetes.io/managed-by: meshfed`. apply() lists what carries that label, creates,
 * replaces (re-reading on 409 Conflict) and garbage-collects; an object with one of our names but
 * without the label belongs to someone else and is never changed or deleted.
 */
export class KubernetesSink implements ImportSink {
  readonly name = 'kubernetes';
  private readonly config: KubernetesSinkConfig;
  private readonly gatewayId: string;
  private readonly egress: { host: string; port: number };
  private readonly log: Logger;
  private readonly concurrency: number;
  private readonly timeoutMs: number;
  private kc: KubeConfig | undefined;
  private res: { services: Resource; slices: Resource; imports: Resource } | undefined;
  private server = '';
  private warnedNoCrd = false;
  private readonly warnedConflicts = new Set<string>();

  constructor(options: KubernetesSinkOptions) {
    this.config = options.config;
    this.gatewayId = options.gatewayId;
    this.egress = options.config.egressAddress ?? options.egress;
    this.log = options.log.child({ sink: 'kubernetes' });
    this.concurrency = options.concurrency ?? 8;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.kc = options.kubeConfig;
  }

  async start(): Promise<void> {
    const kc = this.kc ?? loadKubeConfig(this.config);
    this.kc = kc;
    this.server = kc.getCurrentCluster()?.server ?? '';
    const core = kc.makeApiClient(CoreV1Api);
    const disc = kc.makeApiClient(DiscoveryV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const mcs = { group: MCS_GROUP, version: MCS_VERSION, plural: 'serviceimports' };
    const items = (x: unknown) => ((x as { items?: KubeItem[] }).items ?? []) as KubeItem[];
    this.res = {
      services: {
        kind: 'Service',
        list: async () => items(await core.listServiceForAllNamespaces({ labelSelector: SELECTOR })),
        get: async (namespace, name) => (await core.readNamespacedService({ namespace, name })) as KubeItem,
        create: async (namespace, body) =>
          (await core.createNamespacedService({ namespace, body: body as never })) as KubeItem,
        replace: async (namespace, name, body) =>
          (await core.replaceNamespacedService({ namespace, name, body: body as never })) as KubeItem,
        delete: (namespace, name) => core.deleteNamespacedService({ namespace, name }),
      },
      slices: {
        kind: 'EndpointSlice',
        list: async () => items(await disc.listEndpointSliceForAllNamespaces({ labelSelector: SELECTOR })),
        get: async (namespace, name) =>
          (await disc.readNamespacedEndpointSlice({ namespace, name })) as unknown as KubeItem,
        create: async (namespace, body) =>
          (await disc.createNamespacedEndpointSlice({
            namespace,
            body: body as never,
          })) as unknown as KubeItem,
        replace: async (namespace, name, body) =>
          (await disc.replaceNamespacedEndpointSlice({
            namespace,
            name,
            body: body as never,
          })) as unknown as KubeItem,
        delete: (namespace, name) => disc.deleteNamespacedEndpointSlice({ namespace, name }),
      },
      imports: {
        kind: 'ServiceImport',
        list: async () => items(await custom.listClusterCustomObject({ ...mcs, labelSelector: SELECTOR })),
        get: async (namespace, name) =>
          (await custom.getNamespacedCustomObject({ ...mcs, namespace, name })) as KubeItem,
        create: async (namespace, body) =>
          (await custom.createNamespacedCustomObject({ ...mcs, namespace, body })) as KubeItem,
        replace: async (namespace, name, body) =>
          (await custom.replaceNamespacedCustomObject({ ...mcs, namespace, name, body })) as KubeItem,
        delete: (namespace, name) => custom.deleteNamespacedCustomObject({ ...mcs, namespace, name }),
      },
    };
  }

  async stop(): Promise<void> {
    this.res = undefined;
  }

  async apply(services: readonly ImportedService[]): Promise<void> {
    const res = this.res;
    if (!res) throw new MeshfedError('MESHFED_INTERNAL', 'KubernetesSink.apply called before start()');
    const [svcList, sliceList, importList] = await Promise.all([
      this.call(() => res.services.list(), 'list managed Services'),
      this.call(() => res.slices.list(), 'list managed EndpointSlices'),
      this.call(() => res.imports.list(), 'list managed ServiceImports').catch((err: unknown) => {
        if (statusOf(err) !== 404) throw err;
        if (!this.warnedNoCrd) {
          this.warnedNoCrd = true;
          this.log.warn(
            'the ServiceImport CRD (multicluster.x-k8s.io/v1alpha1) is not installed: imports get a Service and EndpointSlice only; apply deploy/kubernetes/mcs-crds.yaml',
          );
        }
        return undefined;
      }),
    ]);
    const have = {
      services: byKey(svcList),
      slices: byKey(sliceList),
      imports: importList === undefined ? undefined : byKey(importList),
    };
    const want = { services: new Set<string>(), slices: new Set<string>(), imports: new Set<string>() };
    const ops: (() => Promise<unknown>)[] = [];
    let changes = 0;
    for (const s of services) {
      const svcName = derivedServiceName(s.name);
      want.services.add(`${s.namespace}/${svcName}`);
      want.slices.add(`${s.namespace}/${svcName}-gw`);
      if (have.imports) want.imports.add(`${s.namespace}/${s.name}`);
      ops.push(async () => {
        const svc = await this.ensure(res.services, have.services, this.serviceBody(s, svcName));
        if (svc.changed) changes++;
        const slice = await this.ensure(res.slices, have.slices, this.sliceBody(s, svcName));
        if (slice.changed) changes++;
        if (have.imports && svc.object) {
          const ip = (svc.object.spec as { clusterIP?: string } | undefined)?.clusterIP;
          const imp = await this.ensure(res.imports, have.imports, this.importBody(s, ip));
          if (imp.changed) changes++;
        }
      });
    }
    // garbage: ours (by label) and no longer wanted; imports first so DNS stops answering first
    const gc: [Resource, Map<string, KubeItem> | undefined, Set<string>][] = [
      [res.imports, have.imports, want.imports],
      [res.slices, have.slices, want.slices],
      [res.services, have.services, want.services],
    ];
    for (const [r, existing, wanted] of gc) {
      for (const [k, item] of existing ?? []) {
        if (wanted.has(k) || !isManaged(item)) continue;
        const [ns, name] = k.split('/') as [string, string];
        ops.push(async () => {
          try {
            await this.call(() => r.delete(ns, name), `delete ${r.kind} ${k}`);
            changes++;
          } catch (err) {
            if (statusOf(err) !== 404) throw err; // already gone is what we wanted
          }
        });
      }
    }
    await runAll(ops, this.concurrency);
    if (changes > 0) this.log.info({ changes, imports: services.length }, 'Kubernetes imports reconciled');
  }

  /** Creates or replaces one object we own; never touches an object without our label. */
  private async ensure(
    r: Resource,
    existing: Map<string, KubeItem>,
    body: KubeItem,
  ): Promise<{ object: KubeItem | undefined; changed: boolean }> {
    const ns = body.metadata!.namespace!;
    const name = body.metadata!.name!;
    const key = `${ns}/${name}`;
    const hash = body.metadata!.annotations![SPEC_HASH_ANNOTATION];
    let current = existing.get(key);
    for (let attempt = 0; attempt < 4; attempt++) {
      if (current && !isManaged(current)) return this.foreign(r, key);
      if (current && current.metadata?.annotations?.[SPEC_HASH_ANNOTATION] === hash) {
        return { object: current, changed: false };
      }
      try {
        if (!current) {
          const created = await this.call(() => r.create(ns, body), `create ${r.kind} ${key}`);
          return { object: created, changed: true };
        }
        const next = {
          ...body,
          metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion },
        };
        const replaced = await this.call(() => r.replace(ns, name, next), `replace ${r.kind} ${key}`);
        return { object: replaced, changed: true };
      } catch (err) {
        const status = statusOf(err);
        if (status !== 409) throw err;
        // 409: AlreadyExists on create, or Conflict (stale resourceVersion) on replace:
        // re-read the object as it is now and decide again
        current = await this.call(() => r.get(ns, name), `read ${r.kind} ${key}`);
      }
    }
    throw new MeshfedError(
      'MESHFED_DISCOVERY_UNAVAILABLE',
      `${r.kind} ${key} kept changing under meshfed (409 four times)`,
      {
        retryable: true,
      },
    );
  }

  private foreign(r: Resource, key: string): { object: undefined; changed: false } {
    const k = `${r.kind}/${key}`;
    if (!this.warnedConflicts.has(k)) {
      this.warnedConflicts.add(k);
      this.log.error(
        { object: k },
        `${r.kind} ${key} exists but is not labelled ${SELECTOR}; meshfed will not modify it, so this import stays unresolvable here until it is renamed or removed`,
      );
    }
    return { object: undefined, changed: false };
  }

  private meta(
    namespace: string,
    name: string,
    s: ImportedService,
    spec: unknown,
    extraLabels: Record<string, string> = {},
  ) {
    return {
      namespace,
      name,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, ...extraLabels },
      annotations: {
        [CLUSTERS_ANNOTATION]: s.clusters.join(','),
        [OWNER_ANNOTATION]: this.gatewayId,
        [IMPORTED_ANNOTATION]: `${s.namespace}/${s.name}`,
        [SPEC_HASH_ANNOTATION]: createHash('sha256')
          .update(JSON.stringify([spec, s.clusters, extraLabels]))
          .digest('hex')
          .slice(0, 16),
      },
    };
  }

  private serviceBody(s: ImportedService, svcName: string): KubeItem {
    const spec = {
      type: 'ClusterIP',
      ports: s.ports.map((p) => ({
        name: p.name,
        port: p.port,
        protocol: 'TCP',
        targetPort: this.egress.port,
        appProtocol: appProtocolOf(p.protocol),
      })),
    };
    return { apiVersion: 'v1', kind: 'Service', metadata: this.meta(s.namespace, svcName, s, spec), spec };
  }

  private sliceBody(s: ImportedService, svcName: string): KubeItem {
    const family = isIP(this.egress.host);
    const addressType = family === 6 ? 'IPv6' : family === 4 ? 'IPv4' : 'FQDN';
    const body = {
      addressType,
      endpoints: [{ addresses: [this.egress.host], conditions: { ready: true } }],
      ports: s.ports.map((p) => ({ name: p.name, port: this.egress.port, protocol: 'TCP' })),
    };
    return {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: this.meta(s.namespace, `${svcName}-gw`, s, body, {
        'kubernetes.io/service-name': svcName,
        // not the endpointslice controller's value, so the controller leaves this slice alone
        'endpointslice.kubernetes.io/managed-by': 'meshfed.io',
      }),
      ...body,
    };
  }

  private importBody(s: ImportedService, clusterIP: string | undefined): KubeItem {
    const spec: Record<string, unknown> = {
      type: 'ClusterSetIP',
      ports: s.ports.map((p) => ({
        name: p.name,
        port: p.port,
        protocol: 'TCP',
        appProtocol: appProtocolOf(p.protocol),
      })),
    };
    if (clusterIP && clusterIP !== 'None') spec.ips = [clusterIP];
    return {
      apiVersion: `${MCS_GROUP}/${MCS_VERSION}`,
      kind: 'ServiceImport',
      metadata: this.meta(s.namespace, s.name, s, spec),
      spec,
    };
  }

  private async call<T>(fn: () => Promise<T>, what: string): Promise<T> {
    try {
      return await withTimeout(fn(), this.timeoutMs, what, this.server);
    } catch (err) {
      throw kubeError(err, what, this.server);
    }
  }
}

function appProtocolOf(p: string): string {
  return p === 'http2' ? 'kubernetes.io/h2c' : p;
}

function isManaged(item: KubeItem): boolean {
  return item.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE;
}

function byKey(items: KubeItem[]): Map<string, KubeItem> {
  const m = new Map<string, KubeItem>();
  for (const i of items) if (i.metadata?.name) m.set(`${i.metadata.namespace ?? ''}/${i.metadata.name}`, i);
  return m;
}
