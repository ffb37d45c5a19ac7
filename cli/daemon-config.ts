import { dirname, isAbsolute, join, resolve } from 'node:path';
import { balancerConfigSchema } from '../gateway/balancer/index.ts';
import { discoveryConfigSchema } from '../discovery/index.ts';
import { federationConfigSchema } from '../federation/index.ts';
import { gatewayConfigSchema } from '../gateway/index.ts';
import { dnsLabel, duration, hostPort, loadConfigFile, MeshfedError, z } from '../core/index.ts';
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
    leafTtl: duration()
      .default(86_400_000)
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
  });

const observabilitySchema = z
  .strictObject({
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    requestLogSampleRate: z
      .number()
      .min(0)
      .max(1)
      .default(0)
      .describe('share of proxied requests logged at info (0: none; metrics and spans always carry them)'),
    tracing: tracingConfigSchema,
  })
  .default({ logLevel: 'info', requestLogSampleRate: 0, tracing: { exporter: 'none', sampleRatio: 1 } });

export const daemonConfigSchema = z.strictObject({
  cluster: dnsLabel().describe(
    "this gateway's cluster; its identities are spiffe://<trustDomain>/cluster/<cluster>/…",
  ),
  trustDomain: z.string().min(1).describe('the federation trust domain, e.g. mesh.example'),
  name: dnsLabel().default('gateway').describe("this gateway's name within its cluster"),
  locality: z
    .strictObject({ region: z.string().min(1), zone: z.string().min(1) })
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
    .default({}),
  workers: z
    .number()
    .int()
    .min(1)
    .max(256)
    .default(1)
    .describe(
      'data-plane processes (node:cluster). 1: one event loop in this process. N > 1: N workers bind the data-plane ports with SO_REUSEPORT (Linux spreads connections), this process supervises them (restarts a crashed one) and serves the admin listener with their metrics summed',
    ),
  drainTimeout: duration()
    .default(15_000)
    .describe('SIGTERM: how long in-flight requests may take to finish'),
  gateway: gatewayConfigSchema,
  balancer: balancerConfigSchema,
  federation: federationConfigSchema,
  discovery: discoveryConfigSchema,
  observability: observabilitySchema,
});

export type DaemonConfig = z.output<typeof daemonConfigSchema>;

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
  const config = loadConfigFile(daemonConfigSchema, abs, { renamed: RENAMED_OPTIONS });
  const base = dirname(abs);
  const path = (p: string) => (isAbsolute(p) ? p : join(base, p));
  const adminSocket = path(config.admin.socket ?? join(config.stateDir, 'admin.sock'));
  if (adminSocket.length > 100) {
    throw new MeshfedError(
      'MESHFED_CONFIG_INVALID',
      `${file}: admin.socket: the path ${adminSocket} is too long for a Unix socket (max ~100 bytes); set admin.socket to a shorter path`,
    );
  }
  return { file: abs, config, path, adminSocket };
}
