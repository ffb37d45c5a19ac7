import { dnsLabel, duration, hostPort, PROTOCOLS, z } from '../core/index.ts';

/** "host:port" or "http(s)://host:port"; Consul's default agent address is 127.0.0.1:8500. */
const consulAddress = z
  .string()
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
  })
  .prefault('127.0.0.1:8500')
  .describe('the Consul agent: host:port or http(s)://host:port');

const backoff = z
  .strictObject({
    min: duration().prefault('250ms').describe('first retry delay after a failed call'),
    max: duration().prefault('30s').describe('cap on the retry delay (it doubles per failure, with jitter)'),
  })
  .prefault({})
  .describe('retry delays after a failed call to the API');

const consulAuth = {
  address: consulAddress,
  token: z
    .string()
    .min(1)
    .optional()
    .describe('ACL token; prefer tokenFile so the token stays out of the config file'),
  tokenFile: z.string().min(1).optional().describe('file holding the ACL token'),
  datacenter: z.string().min(1).optional().describe("Consul datacenter (default: the agent's own)"),
  timeout: duration()
    .prefault('10s')
    .describe('per-request timeout of non-blocking calls (blocking queries allow wait + wait/16 on top)'),
};

export const staticSourceSchema = z.strictObject({
  type: z.literal('static'),
  file: z
    .string()
    .min(1)
    .describe('the services file (YAML, see docs/discovery.md); re-read when it changes'),
  debounce: duration()
    .prefault('100ms')
    .describe("how long to wait for an editor's burst of writes to settle before re-reading"),
});

export const consulSourceSchema = z.strictObject({
  type: z.literal('consul'),
  ...consulAuth,
  exportTag: z
    .string()
    .min(1)
    .default('meshfed-export')
    .describe('a service is exported when any instance carries this tag, or meta `<exportTag>=true`'),
  namespace: dnsLabel()
    .default('default')
    .describe('meshfed namespace for services that carry no `meshfed-namespace` meta'),
  wait: duration().prefault('5m').describe('blocking query wait (Consul caps it at 10m)'),
  concurrency: z
    .number()
    .int()
    .min(1)
    .max(64)
    .default(8)
    .describe('parallel non-blocking reads of changed services (two long polls are always open besides)'),
  resync: duration()
    .prefault('5m')
    .describe('full re-read of every service, which also catches instances registered without checks'),
  backoff,
});

const kubernetesAccess = {
  kubeconfig: z
    .string()
    .min(1)
    .optional()
    .describe('kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)'),
  context: z.string().min(1).optional().describe("kubeconfig context (default: the file's current one)"),
  inCluster: z
    .boolean()
    .default(false)
    .describe("use the pod's service account (KUBERNETES_SERVICE_HOST + the mounted token)"),
};

export const kubernetesSourceSchema = z.strictObject({
  type: z.literal('kubernetes'),
  ...kubernetesAccess,
  namespaces: z
    .array(dnsLabel())
    .default([])
    .describe('namespaces to watch; empty: all (needs a ClusterRole)'),
  watchTimeout: duration()
    .prefault('5m')
    .describe('asked of the API server per watch; the watch is then re-opened from the last resourceVersion'),
  idleTimeout: duration()
    .prefault('10m')
    .describe('a watch that delivers nothing (not even a bookmark) for this long is treated as dead'),
  backoff,
});

export const consulSinkSchema = z.strictObject({
  type: z.literal('consul'),
  ...consulAuth,
  nameTemplate: z
    .string()
    .min(1)
    .default('{name}')
    .describe('the Consul service name of an imported service; `{name}` and `{namespace}` are replaced'),
  egressAddress: hostPort('127.0.0.1')
    .optional()
    .describe(
      'where local apps reach imported services (default: the address the egress listener is bound to; loopback for a wildcard)',
    ),
  tags: z.array(z.string().min(1)).default(['meshfed-imported']).describe('tags of every registration'),
  backoff,
});

export const kubernetesSinkSchema = z.strictObject({
  type: z.literal('kubernetes'),
  ...kubernetesAccess,
  egressAddress: hostPort()
    .optional()
    .describe(
      "an IP:port routable from pods (default: $POD_IP and the egress listener's port, else the egress listener's address)",
    ),
  backoff,
});

export const sourceConfigSchema = z.discriminatedUnion('type', [
  staticSourceSchema,
  consulSourceSchema,
  kubernetesSourceSchema,
]);
export const sinkConfigSchema = z.discriminatedUnion('type', [consulSinkSchema, kubernetesSinkSchema]);

export const discoveryConfigSchema = z.strictObject({
  sources: z
    .array(sourceConfigSchema)
    .min(1, 'at least one discovery source is required')
    .describe("where this cluster's services come from; several are merged"),
  sinks: z
    .array(sinkConfigSchema)
    .default([])
    .describe('where imported services are registered so local apps resolve them'),
  importDebounce: duration()
    .prefault('200ms')
    .describe('how long the import reconciler lets catalog changes settle before applying them'),
  resyncInterval: duration()
    .prefault('5m')
    .describe('periodic full re-apply, which repairs registrations someone changed by hand'),
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
