import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  parseCertificates,
  parseSpiffeId,
  readInputFile,
  readKeyFile,
  TrustBundle,
  verify,
} from '../../ca/index.ts';
import {
  ADMIN_POLICY_SCOPE,
  type CatalogView,
  clusterPolicyScope,
  MeshfedError,
  type PolicyDocument,
  type PolicyProblem,
  parseDuration,
  parsePolicyDocuments,
  policyInvalidError,
  type RemoteServiceInstance,
  type ServicePort,
} from '../../core/index.ts';
import { JwsSigner, PolicyClient, PolicyVerifier, subjects } from '../../federation/index.ts';
import { AdminClient } from '../admin/admin-client.ts';
import type { CommandContext } from '../command.ts';
import { loadDaemonConfig } from '../daemon-config.ts';

/** Flags every `meshfed policy` verb shares: where NATS is, what to trust, who signs. */
export const POLICY_FLAGS = {
  config: { type: 'string', short: 'c' },
  nats: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'trust-domain': { type: 'string' },
  'subject-prefix': { type: 'string' },
  admin: { type: 'string' },
  timeout: { type: 'string' },
  discover: { type: 'string' },
} as const;

export const POLICY_FLAGS_HELP = `Where and as whom (flags, else environment):
  --config FILE          a gateway's config file: its NATS, trust bundle, trust domain and admin socket
  --nats URL[,URL]       NATS servers (MESHFED_NATS_URL)
  --ca FILE              the trust bundle PEM (MESHFED_CA)
  --trust-domain TD      (MESHFED_TRUST_DOMAIN; default: from --config or the signing certificate)
  --cert FILE --key FILE the signing identity (MESHFED_ADMIN_CERT, MESHFED_ADMIN_KEY): an admin certificate
                         (meshfed ca issue --kind admin) for federation-wide policy, or a cluster's federation
                         certificate for AuthorizationPolicy/RateLimit pinned to that cluster
  --admin unix:PATH      a gateway's admin socket, for the catalog check (default: the one of --config)
  --subject-prefix P     (default: from --config, else meshfed)
  --timeout 10s          how long to wait for gateways
  --discover 1s          how long to listen for gateways answering a ping (and after each late answer;
                         with no answer, up to --timeout)
  --json                 machine-readable output`;

export type PolicyFlagValues = { [K in keyof typeof POLICY_FLAGS]?: string } & Record<string, unknown>;

export interface PolicyEnvironment {
  servers: string[];
  subjectPrefix: string;
  inboxPrefix: string;
  trustDomain: string;
  bundle: TrustBundle;
  /** a gateway's admin socket, when known (catalog check) */
  adminSocket: string | undefined;
  timeoutMs: number;
  discoverMs: number;
}

function durationFlag(value: string | undefined, flag: string, fallback: number, command: string): number {
  if (value === undefined) return fallback;
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0)
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: --${flag} "${value}" is not a duration like 500ms or 10s`,
    );
  return ms;
}

/** Resolves flags, then environment, then the gateway config file. */
export function policyEnvironment(
  values: PolicyFlagValues,
  command: string,
  env: NodeJS.ProcessEnv = process.env,
): PolicyEnvironment {
  const loaded = values.config ? loadDaemonConfig(values.config) : undefined;
  const c = loaded?.config;
  const natsFlag = values.nats ?? env.MESHFED_NATS_URL;
  const servers = natsFlag ? natsFlag.split(',').map((s) => s.trim()) : (c?.federation.nats.servers ?? []);
  if (servers.length === 0) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: say where NATS is: --nats nats://host:4222, MESHFED_NATS_URL, or --config gateway.yaml`,
    );
  }
  const caFile =
    values.ca ??
    env.MESHFED_CA ??
    (c && loaded
      ? c.identity.caDir
        ? join(loaded.path(c.identity.caDir), 'bundle.crt')
        : loaded.path(c.identity.bundle!)
      : undefined);
  if (!caFile) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: give the trust bundle (--ca bundle.crt, MESHFED_CA, or --config): everything gateways send back is verified with it`,
    );
  }
  const bundle = TrustBundle.fromPem(readInputFile(caFile), { what: caFile });
  const trustDomain =
    values['trust-domain'] ?? env.MESHFED_TRUST_DOMAIN ?? c?.trustDomain ?? signerTrustDomain(values, env);
  if (!trustDomain) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: give --trust-domain (or MESHFED_TRUST_DOMAIN, or --config)`,
    );
  }
  const admin = values.admin ?? (loaded ? `unix:${loaded.adminSocket}` : undefined);
  return {
    servers,
    subjectPrefix: values['subject-prefix'] ?? c?.federation.subjectPrefix ?? 'meshfed',
    inboxPrefix: c?.federation.nats.inboxPrefix ?? '_INBOX',
    trustDomain,
    bundle,
    adminSocket: admin,
    timeoutMs: durationFlag(values.timeout, 'timeout', 10_000, command),
    discoverMs: durationFlag(values.discover, 'discover', 1_000, command),
  };
}

function signerFiles(values: PolicyFlagValues, env: NodeJS.ProcessEnv) {
  return { cert: values.cert ?? env.MESHFED_ADMIN_CERT, key: values.key ?? env.MESHFED_ADMIN_KEY };
}

/** The trust domain of the signing certificate's SPIFFE ID, read without trusting it (only a default). */
function signerTrustDomain(values: PolicyFlagValues, env: NodeJS.ProcessEnv): string | undefined {
  const { cert } = signerFiles(values, env);
  if (!cert) return undefined;
  const san = parseCertificates(readInputFile(cert), cert)[0]?.subjectAltName ?? '';
  return /URI:spiffe:\/\/([^/,\s]+)/.exec(san)?.[1];
}

export interface PolicySigner {
  jws: JwsSigner;
  /** `admin` or `cluster:<c>` */
  scope: string;
  spiffeId: string;
}

/**
 * The signing identity, verified against the trust bundle before anything is signed: an admin certificate
 * signs the admin scope, a federation certificate its own cluster's scope; anything else is refused here, so
 * `apply` never publishes what every gateway would refuse.
 */
export function loadSigner(
  values: PolicyFlagValues,
  pe: PolicyEnvironment,
  command: string,
  env: NodeJS.ProcessEnv = process.env,
): PolicySigner {
  const { cert, key } = signerFiles(values, env);
  if (!cert || !key) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: give the signing identity: --cert admin.crt --key admin.key (or MESHFED_ADMIN_CERT / MESHFED_ADMIN_KEY); issue one with: meshfed ca issue --kind admin`,
    );
  }
  const chainPem = readInputFile(cert);
  const keyPem = readKeyFile(key);
  const id = verify(chainPem, pe.bundle, {
    trustDomain: pe.trustDomain,
    kinds: ['admin', 'federation'],
    usage: 'signing',
  });
  const parsed = parseSpiffeId(id.spiffeId);
  const scope = parsed.kind === 'admin' ? ADMIN_POLICY_SCOPE : clusterPolicyScope(parsed.cluster!);
  return { jws: new JwsSigner({ chainPem, keyPem }), scope, spiffeId: id.spiffeId };
}

/** A connected PolicyClient; close() when done. */
export async function openPolicyClient(pe: PolicyEnvironment): Promise<{
  client: PolicyClient;
  verifier: PolicyVerifier;
  nc: NatsConnection;
  close: () => Promise<void>;
}> {
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: pe.servers, name: 'meshfed-policy', timeout: pe.timeoutMs });
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_NATS_UNAVAILABLE',
      `cannot reach NATS at ${pe.servers.join(', ')}: ${(err as Error).message}`,
      { cause: err, retryable: true },
    );
  }
  const verifier = new PolicyVerifier({
    trustDomain: pe.trustDomain,
    bundle: () => pe.bundle,
    maxClockSkew: 30_000,
    now: Date.now,
  });
  const client = new PolicyClient({
    nc,
    subjects: subjects(pe.subjectPrefix),
    verifier,
    inboxPrefix: pe.inboxPrefix,
  });
  return { client, verifier, nc, close: () => nc.close() };
}

/** Reads FILE, or every *.yaml / *.yml / *.json in DIR (sorted), and reports every problem of every file at once. */
export function readPolicyFiles(path: string): { documents: PolicyDocument[]; files: string[] } {
  let files: string[];
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((f) => /\.(ya?ml|json)$/.test(f))
          .sort()
          .map((f) => join(path, f))
      : [path];
  } catch (err) {
    throw new MeshfedError('MESHFED_USAGE', `${path}: cannot read (${(err as NodeJS.ErrnoException).code})`, {
      cause: err,
    });
  }
  if (files.length === 0)
    throw new MeshfedError('MESHFED_USAGE', `${path}: no *.yaml, *.yml or *.json file in it`);
  const documents: PolicyDocument[] = [];
  const problems: PolicyProblem[] = [];
  for (const f of files) {
    try {
      documents.push(...parsePolicyDocuments(readInputFile(f), basename(f)));
    } catch (err) {
      const list = (err as MeshfedError).details?.problems as PolicyProblem[] | undefined;
      if ((err as MeshfedError).code !== 'MESHFED_POLICY_INVALID' || !list) throw err;
      problems.push(...list);
    }
  }
  if (problems.length > 0) throw policyInvalidError(problems, path);
  return { documents, files };
}

/**
 * The federated catalog as one gateway's admin API shows it (which clusters offer which service), for the
 * apply-time check of split backends. undefined when no gateway is named.
 */
export async function catalogFromAdmin(
  pe: PolicyEnvironment,
): Promise<Pick<CatalogView, 'instances'> | undefined> {
  if (!pe.adminSocket) return undefined;
  const admin = new AdminClient({ address: pe.adminSocket });
  try {
    const services = (await admin.services()) as {
      namespace: string;
      name: string;
      exported: boolean;
      ports?: ServicePort[];
      offers: { cluster: string; local: boolean }[];
    }[];
    const offers = new Map<string, { clusters: string[]; ports: ServicePort[] }>();
    for (const s of services) {
      const clusters = (s.offers ?? []).filter((o) => !o.local || s.exported).map((o) => o.cluster);
      offers.set(`${s.namespace}/${s.name}`, { clusters, ports: Array.isArray(s.ports) ? s.ports : [] });
    }
    return {
      instances: (namespace, name) => {
        const o = offers.get(`${namespace}/${name}`);
        return (o?.clusters ?? []).map((cluster) => ({ cluster, ports: o!.ports }) as RemoteServiceInstance);
      },
    };
  } finally {
    admin.close();
  }
}

export function say(ctx: CommandContext, line: string): void {
  if (!ctx.json) ctx.stdout.write(`${line}\n`);
}
