import { dnsLabel, duration, hostPort, PROTOCOLS, z } from '../core/index.ts';

/** "host:port" or "http(s)://host:port"; Consul's default agent address is 127.0.0.1:8500. */
const consulAddress = z
  .string()
  .default('127.0.0.1:8500')
  .transform((value, ctx) => {
    const text = /^https?:\/\//.test(value) ? value : `http://${value}`;
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      ctx.addIssue({ code: 'custom', message: `expected host:port or http(s)://host:port, got ${value}` });
      return z.NEVER;
    }
    const secure = url.protocol === 'https:';
    const port = url.port === '' ? (secure ? 443 : 80) : Number(url.port);
    return { host: url.hostname.replace(/^\[|\]$/g, ''), port, secure };
  });

const backoff = z
  .strictObject({ min: duration().default(250), max: duration().default(30_000) })
  .default({ min: 250, max: 30_000 });

const consulAuth = {
  address: consulAddress,
  /** ACL token; prefer tokenFile so the token stays out of the config file */
  token: z.string().min(1).optional(),
  tokenFile: z.string().min(1).optional(),
  datacenter: z.string().min(1).optional(),
  /** per-request timeout of non-blocking calls (blocking queries allow wait + wait/16 on top) */
  timeout: duration().default(10_000),
};

export const staticSourceSchema = z.strictObject({
  type: z.literal('static'),
  file: z.string().min(1),
  /** how long to wait for an editor's burst of writes to settle before re-reading */
  debounce: duration().default(100),
});

export const consulSourceSchema = z.strictObject({
  type: z.literal('consul'),
  ...consulAuth,
  /** a service is exported when any instance carries this tag, or meta `<exportTag>=true` */
  exportTag: z.string().min(1).default('meshfed-export'),
  /** meshfed namespace for services that carry no `meshfed-namespace` meta */
  namespace: dnsLabel().default('default'),
  /** blocking query wait (Consul caps it at 10m) */
  wait: duration().default(300_000),
  /** parallel non-blocking reads of changed services (two long polls are always open besides) */
  concurrency: z.number().int().min(1).max(64).default(8),
  /** full re-read of every service, which also catches instances registered without checks */
  resync: duration().default(300_000),
  backoff,
});

const kubernetesAccess = {
  /** kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or in-cluster */
  kubeconfig: z.string().min(1).optional(),
  context: z.string().min(1).optional(),
  /** use the pod's service account (KUBERNETES_SERVICE_HOST + the mounted token) */
  inCluster: z.boolean().default(false),
};

export const kubernetesSourceSchema = z.strictObject({
  type: z.literal('kubernetes'),
  ...kubernetesAccess,
  /** namespaces to watch; empty = all (needs a ClusterRole) */
  namespaces: z.array(dnsLabel()).default([]),
  /** asked of the API server per watch; the watch is then re-opened from the last resourceVersion */
  watchTimeout: duration().default(300_000),
  /** a watch that delivers nothing (not even a bookmark) for this long is treated as dead */
  idleTimeout: duration().default(600_000),
  backoff,
});

export const consulSinkSchema = z.strictObject({
  type: z.literal('consul'),
  ...consulAuth,
  /** the Consul service name of an imported service; `{name}` and `{namespace}` are replaced */
  nameTemplate: z.string().min(1).default('{name}'),
  /** where local apps reach imported services (the gateway's egress listener) */
  egressAddress: hostPort('127.0.0.1').optional(),
  tags: z.array(z.string().min(1)).default(['meshfed-imported']),
  backoff,
});

export const kubernetesSinkSchema = z.strictObject({
  type: z.literal('kubernetes'),
  ...kubernetesAccess,
  /** an IP:port routable from pods, usually the gateway pod's IP and egress port */
  egressAddress: hostPort().optional(),
  backoff,
});

export const sourceConfigSchema = z.discriminatedUnion('type', [
  staticSourceSchema,
  consulSourceSchema,
  kubernetesSourceSchema,
]);
export const sinkConfigSchema = z.discriminatedUnion('type', [consulSinkSchema, kubernetesSinkSchema]);

export const discoveryConfigSchema = z.strictObject({
  sources: z.array(sourceConfigSchema).min(1, 'at least one discovery source is required'),
  sinks: z.array(sinkConfigSchema).default([]),
  /** how long the import reconciler lets catalog changes settle before applying them */
  importDebounce: duration().default(200),
  /** periodic full re-apply, which repairs registrations someone changed by hand */
  resyncInterval: duration().default(300_000),
});

export type DiscoveryConfig = z.output<typeof discoveryConfigSchema>;
export type StaticSourceConfig = z.output<typeof staticSourceSchema>;
export type ConsulSourceConfig = z.output<typeof consulSourceSchema>;
export type KubernetesSourceConfig = z.output<typeof kubernetesSourceSchema>;
export type ConsulSinkConfig = z.output<typeof consulSinkSchema>;
export type KubernetesSinkConfig = z.output<typeof kubernetesSinkSchema>;

/** The static services file (`sources[].file`). */
const portSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/, 'expected a port name such as "http"'),
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(PROTOCOLS as unknown as [string, ...string[]]),
});

const endpointSchema = z.strictObject({
  host: z.string().min(1),
  /** port name → port; a port left out uses the service port's number */
  ports: z.record(z.string(), z.number().int().min(1).max(65535)).default({}),
  healthy: z.boolean().default(true),
  zone: z.string().min(1).optional(),
});

const staticServiceSchema = z
  .strictObject({
    namespace: dnsLabel().default('default'),
    name: dnsLabel(),
    exported: z.boolean().default(false),
    ports: z.array(portSchema).min(1, 'a service needs at least one port'),
    endpoints: z.array(endpointSchema).default([]),
  })
  .superRefine((svc, ctx) => {
    const names = new Set<string>();
    svc.ports.forEach((p, i) => {
      if (names.has(p.name))
        ctx.addIssue({
          code: 'custom',
          path: ['ports', i, 'name'],
          message: `duplicate port name ${p.name}`,
        });
      names.add(p.name);
    });
    svc.endpoints.forEach((e, i) => {
      for (const k of Object.keys(e.ports)) {
        if (!names.has(k))
          ctx.addIssue({
            code: 'custom',
            path: ['endpoints', i, 'ports', k],
            message: `no service port is named ${k} (known: ${[...names].join(', ')})`,
          });
      }
    });
  });

export const staticFileSchema = z
  .strictObject({ services: z.array(staticServiceSchema).default([]) })
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.services.forEach((s, i) => {
      const key = `${s.namespace}/${s.name}`;
      if (seen.has(key))
        ctx.addIssue({ code: 'custom', path: ['services', i, 'name'], message: `duplicate service ${key}` });
      seen.add(key);
    });
  });

export type StaticFile = z.output<typeof staticFileSchema>;
