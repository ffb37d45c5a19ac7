import { dirname, isAbsolute, join, resolve } from 'node:path';
import { balancerConfigSchema, DEFAULT_GOLDEN_LIMITS } from '../gateway/index.ts';
import { discoveryConfigSchema } from '../discovery/index.ts';
import { federationConfigSchema } from '../federation/index.ts';
import { gatewayConfigSchema } from '../gateway/index.ts';
import { dnsLabel, duration, hostPort, isWildcardHost, loadConfigFile, z } from '../core/index.ts';
import { tracingConfigSchema } from './telemetry-config.ts';

const identitySchema = z
  .strictObject({
    caDir: z
      .string()
      .min(1)
      .optional()
      .describe(
        'directory made by `meshfed ca cluster` (ca.crt, ca.key, bundle.crt): the gateway issues and renews its own short-lived gateway and federation leaves from it',
      ),
    leafTtl: duration({ long: true })
      .prefault('24h')
      .describe('lifetime of self-issued leaves (with caDir); renewed at 2/3 of it'),
    gatewayCert: z
      .string()
      .min(1)
      .optional()
      .describe('gateway leaf + intermediate PEM (`meshfed ca issue --kind gateway`)'),
    gatewayKey: z.string().min(1).optional().describe('its private key (mode 0600)'),
    federationCert: z
      .string()
      .min(1)
      .optional()
      .describe('federation leaf + intermediate PEM (`--kind federation`)'),
    federationKey: z.string().min(1).optional().describe('its private key (mode 0600)'),
    bundle: z.string().min(1).optional().describe('trust bundle PEM: every root of the federation'),
    intermediates: z
      .string()
      .min(1)
      .optional()
      .describe(
        "PEM file of other clusters' intermediates, added to the bundle so peers that send only their leaf (third-party mTLS clients) verify; re-read on SIGHUP",
      ),
  })
  .superRefine((v, ctx) => {
    const files = [v.gatewayCert, v.gatewayKey, v.federationCert, v.federationKey, v.bundle];
    if (v.caDir === undefined && files.some((f) => f === undefined)) {
      ctx.addIssue({
        code: 'custom',
        message:
          'set either caDir, or all of gatewayCert, gatewayKey, federationCert, federationKey and bundle',
      });
    }
  })
  .describe(
    'where the gateway and federation identities come from: either caDir, or all of gatewayCert, gatewayKey, federationCert, federationKey and bundle',
  );

/**
 * 65536 → "65,536". Not `toLocaleString('en-US')`: that loads ICU's number-format data, about 5 MB resident in
 * every gateway from its start (the schema is built at import), for a config description.
 */
const withThousands = (n: number) => String(n).replace(/\B(?=(\d{3})+$)/g, ',');

/** A cap of the golden metrics: at least 1, and small enough that the series bound stays a bound. */
const cap = (max: number, fallback: number, what: string) =>
  z
    .number()
    .int()
    .min(1)
    .max(max)
    .default(fallback)
    .describe(`${what} (1 to ${withThousands(max)})`);

/**
 * The caps that bound the golden metrics' series (docs/observability.md, "cardinality"). Past a cap a label
 * reads `other`; past `tuples` a new label tuple is counted under the overflow tuple of its direction and
 * protocol. The maxima keep one process under about 450,000 golden series.
 */
const metricLimitsSchema = z
  .strictObject({
    clusters: cap(
      4096,
      DEFAULT_GOLDEN_LIMITS.clusters,
      'distinct values of source_cluster and destination_cluster together; past it a cluster is labelled "other"',
    ),
    services: cap(
      65_536,
      DEFAULT_GOLDEN_LIMITS.services,
      'distinct destination_service values; past it a service is labelled "other"',
    ),
    workloads: cap(
      65_536,
      DEFAULT_GOLDEN_LIMITS.workloads,
      'distinct source_workload values ("unknown" not counted); past it a workload is labelled "other"',
    ),
    tuples: cap(
      10_000,
      DEFAULT_GOLDEN_LIMITS.tuples,
      'label tuples with series of their own; a call of a new tuple past it is counted under (direction, protocol, other, other, other, other). The golden series of one process stay within (tuples + 8) × 45',
    ),
  })
  .prefault({})
  .describe('caps on the golden metrics, so no traffic can grow /metrics without bound');

const observabilitySchema = z
  .strictObject({
    logLevel: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('root log level (pino JSON on stdout); SIGHUP applies a change live'),
    tracing: tracingConfigSchema,
    metricLimits: metricLimitsSchema,
  })
  .prefault({});

/** Unix socket paths must fit sun_path: 108 bytes on Linux, 104 on macOS; keep a margin. */
export const MAX_SOCKET_PATH = 100;

/** The admin socket a config names, resolved against the config file's directory. */
export function adminSocketPath(
  config: { admin: { socket?: string | undefined }; stateDir: string },
  base: string,
) {
  const p = config.admin.socket ?? join(config.stateDir, 'admin.sock');
  return isAbsolute(p) ? p : join(base, p);
}

const daemonFields = z.strictObject({
  cluster: dnsLabel().describe(
    "this gateway's cluster; its identities are spiffe://<trustDomain>/cluster/<cluster>/…",
  ),
  trustDomain: z.string().min(1).describe('the federation trust domain, e.g. mesh.example'),
  name: dnsLabel().default('gateway').describe("this gateway's name within its cluster"),
  locality: z
    .strictObject({
      region: z.string().min(1).describe('region of this gateway, e.g. us-east'),
      zone: z.string().min(1).describe('zone within the region, e.g. us-east-1a'),
    })
    .describe('where this gateway runs; drives locality-aware load balancing'),
  advertise: hostPort()
    .optional()
    .describe(
      'host:port other clusters dial for this gateway (default: the east-west listener address when it is not a wildcard)',
    ),
  stateDir: z.string().min(1).describe('where the last verified catalog and the admin socket live'),
  identity: identitySchema,
  admin: z
    .strictObject({
      socket: z
        .string()
        .min(1)
        .optional()
        .describe('admin gRPC Unix socket (default <stateDir>/admin.sock, mode 0600)'),
      grpc: hostPort('127.0.0.1')
        .optional()
        .describe(
          'admin gRPC over TCP with mTLS; callers need an admin identity (`meshfed ca issue --kind admin`)',
        ),
    })
    .prefault({}),
  workers: z
    .number()
    .int()
    .min(1)
    .max(256)
    .default(1)
    .describe(
      'data-plane processes (node:cluster). 1: one event loop in this process. N > 1: N workers bind the data-plane ports with SO_REUSEPORT (Linux spreads connections), this process supervises them (restarts a crashed one) and serves the admin listener with their metrics summed',
    ),
  drainNotice: duration()
    .prefault('2s')
    .describe(
      'SIGTERM: how long at most the gateway keeps accepting while it tells peers (GOAWAY) and clients (connection: close) to move, before it stops accepting; it stops sooner once no request came for 0.5 s',
    ),
  drainTimeout: duration()
    .prefault('15s')
    .describe('SIGTERM: how long in-flight requests may take to finish'),
  idleHeapShrink: duration()
    .prefault('30s')
    .describe(
      'once no request has been in flight or started for this long, the gateway process runs one compacting collection that gives back the memory V8 keeps pooled after bursts (start-up, catalog syncs, traffic): 7-9 MB for an idle gateway. It pauses the process for tens of milliseconds (79 ms on a demo gateway), with no request in flight; it runs again after requests (or calls on the admin socket, whose first one loads the gRPC server) came and went, or after 10 minutes. With workers, each worker does this for its own requests, and the supervisor (which serves none) this long after start, then every 10 minutes. Counted by meshfed_idle_heap_*. Needs node --expose-gc, which `meshfed gateway` sets. 0: never',
    ),
  gateway: gatewayConfigSchema,
  balancer: balancerConfigSchema,
  federation: federationConfigSchema,
  discovery: discoveryConfigSchema,
  observability: observabilitySchema,
});

const WILDCARD_ADVERTISE =
  'required when gateway.listeners.eastWest listens on a wildcard address; set it to the host:port other clusters dial';

/**
 * The gateway config. Rules that span fields are part of the schema (with `when`, so they are checked even
 * when other fields are wrong: every problem is reported in one error).
 */
export const daemonConfigSchema = daemonFields.refine(
  (c) => {
    const ew = (c as Partial<DaemonConfig>).gateway?.listeners?.eastWest;
    return c.advertise !== undefined || typeof ew?.host !== 'string' || !isWildcardHost(ew.host);
  },
  { path: ['advertise'], message: WILDCARD_ADVERTISE, always: true },
);

/** daemonConfigSchema plus the rules that depend on where the file lives (`base`, its directory). */
export function daemonConfigSchemaAt(base: string) {
  return daemonConfigSchema.refine(
    (c) => {
      // checked even when other fields failed: look only at what this rule needs
      const v = c as { stateDir?: unknown; admin?: { socket?: unknown } };
      const socket = v.admin?.socket;
      if (typeof v.stateDir !== 'string' || (socket !== undefined && typeof socket !== 'string')) return true;
      return adminSocketPath({ stateDir: v.stateDir, admin: { socket } }, base).length <= MAX_SOCKET_PATH;
    },
    {
      path: ['admin', 'socket'],
      message: `the admin socket path is longer than a Unix socket allows (${MAX_SOCKET_PATH} bytes); set admin.socket to a shorter path`,
      always: true,
    },
  );
}

export type DaemonConfig = z.output<typeof daemonFields>;

/** Options renamed since earlier versions: using the old name fails with the new one. */
export const RENAMED_OPTIONS: Record<string, string> = {
  'listeners.eastWest': 'gateway.listeners.eastWest',
  'gateway.ingress': 'gateway.listeners.eastWest',
  'gateway.egressTrustedNetworks': 'gateway.egress.trustedNetworks',
  // the retry budget counts retries over a window now, not retries in flight (docs/load-balancing.md)
  'balancer.retry.minRetryConcurrency': 'balancer.retry.minRetriesPerSecond',
};

export interface LoadedDaemonConfig {
  file: string;
  config: DaemonConfig;
  /** resolves a path from the config relative to the config file's directory */
  path(p: string): string;
  adminSocket: string;
}

export function loadDaemonConfig(file: string): LoadedDaemonConfig {
  const abs = resolve(file);
  const base = dirname(abs);
  const config = loadConfigFile(daemonConfigSchemaAt(base), abs, { renamed: RENAMED_OPTIONS });
  const path = (p: string) => (isAbsolute(p) ? p : join(base, p));
  return { file: abs, config, path, adminSocket: adminSocketPath(config, base) };
}
