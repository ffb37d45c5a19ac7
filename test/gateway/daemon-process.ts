import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type CaMaterial, createRoot, issueIntermediate } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { freePort } from '../../cli/demo/free-port.ts';
import { request } from './harness.ts';

const BIN = join(process.cwd(), 'bin', 'meshfed.js');

export interface GatewayFiles {
  dir: string;
  /** the config file */
  config: string;
  egress: string;
  eastWest: string;
  admin: string;
  /** the trust root of the gateway's bundle */
  root: CaMaterial;
  /** the intermediates of the clusters asked for in `otherClusters`, from that root */
  cas: Record<string, CaMaterial>;
}

export interface GatewayProcess extends GatewayFiles {
  child: ChildProcess;
  /** everything the process wrote so far (stdout and stderr) */
  output(): string;
  /** SIGTERM, and the exit code */
  stop(): Promise<number | null>;
}

/**
 * The directory of a gateway of cluster `east` (or `cluster`) named `<cluster>-gw`: its own CA directory
 * (`ca`, a cluster directory made by `meshfed ca cluster`; else one under `root` and `intermediate` when
 * given, else under a fresh root), a static services file (`services`: name → local address, all exported
 * HTTP services in namespace shop) and a config with fixed loopback ports.
 */
export async function writeGatewayFiles(o: {
  natsUrl: string;
  services: Record<string, string>;
  /** merged into the config file */
  config?: Record<string, unknown>;
  /**
   * other clusters of the same root; their intermediates are written to intermediates.pem and named
   * by identity.intermediates
   */
  otherClusters?: string[];
  root?: CaMaterial;
  /** the cluster's intermediate under `root` */
  intermediate?: CaMaterial;
  /** default east */
  cluster?: string;
  /**
   * a cluster directory made by `meshfed ca cluster` (absolute path) under `root`, used in place of one
   * made for this gateway alone
   */
  ca?: { root: CaMaterial; clusterDir: string };
}): Promise<GatewayFiles> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-gw-'));
  const cluster = o.cluster ?? 'east';
  const root = o.ca?.root ?? o.root ?? (await createRoot({ trustDomain: 'mesh.example' }));
  const caDir = o.ca?.clusterDir ?? join(dir, 'ca');
  if (!o.ca) {
    const inter = o.intermediate ?? (await issueIntermediate(root, { cluster }));
    mkdirSync(caDir, { mode: 0o700 });
    writeFileSync(join(caDir, 'ca.crt'), inter.chainPem);
    writeFileSync(join(caDir, 'ca.key'), inter.keyPem, { mode: 0o600 });
    writeFileSync(join(caDir, 'bundle.crt'), root.certPem);
  }
  const cas: Record<string, CaMaterial> = {};
  for (const other of o.otherClusters ?? []) cas[other] = await issueIntermediate(root, { cluster: other });
  if (o.otherClusters) {
    writeFileSync(
      join(dir, 'intermediates.pem'),
      Object.values(cas)
        .map((c) => c.certPem)
        .join(''),
    );
  }
  const services = Object.entries(o.services).map(([name, address]) => ({
    namespace: 'shop',
    name,
    exported: true,
    ports: [{ name: 'http', port: 80, protocol: 'http' }],
    endpoints: [
      {
        host: address.slice(0, address.lastIndexOf(':')),
        ports: { http: Number(address.slice(address.lastIndexOf(':') + 1)) },
        healthy: true,
      },
    ],
  }));
  writeFileSync(join(dir, 'services.yaml'), stringify({ services }));
  const [eastWest, egress, admin] = [await freePort(), await freePort(), await freePort()];
  const config = {
    cluster,
    trustDomain: 'mesh.example',
    name: `${cluster}-gw`,
    locality: { region: 'r1', zone: 'z1' },
    stateDir: 'state',
    identity: {
      caDir,
      leafTtl: '1h',
      ...(o.otherClusters ? { intermediates: 'intermediates.pem' } : {}),
    },
    drainTimeout: '5s',
    gateway: {
      listeners: {
        eastWest: `127.0.0.1:${eastWest}`,
        egress: `127.0.0.1:${egress}`,
        admin: `127.0.0.1:${admin}`,
      },
    },
    federation: { nats: { servers: [o.natsUrl] }, heartbeatInterval: '1s', staleAfter: '5s' },
    discovery: { sources: [{ type: 'static', file: 'services.yaml' }] },
    observability: { logLevel: 'warn' },
    ...o.config,
  };
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, stringify(config));
  return {
    dir,
    config: file,
    egress: `127.0.0.1:${egress}`,
    eastWest: `127.0.0.1:${eastWest}`,
    admin: `127.0.0.1:${admin}`,
    root,
    cas,
  };
}

/**
 * A real `meshfed gateway` process from writeGatewayFiles. Its ports are picked free a moment before it
 * binds them; when another process took one meanwhile (EADDRINUSE, seen on a busy host), it starts again
 * with fresh files and ports, up to three times.
 */
export async function startGatewayProcess(
  o: Parameters<typeof writeGatewayFiles>[0] & {
    args?: string[];
    /** added to this process's environment (e.g. test/helpers/skewed-clock.ts's) */
    env?: Record<string, string>;
  },
): Promise<GatewayProcess> {
  for (let attempt = 1; ; attempt++) {
    const g = await spawnGateway(o);
    const exited = once(g.child, 'exit').then(() => 'exited' as const);
    const ready = waitFor(
      async () => {
        if (g.child.exitCode !== null) return 'exited' as const;
        const r = await request(g.admin, { host: g.admin, path: '/readyz' }).catch(() => undefined);
        // ready, and said by this process: on a busy host another test's gateway may have taken the admin
        // port picked for this one (which then exits with EADDRINUSE and is started again below)
        return r?.status === 200 && answeredBy(r.body) === g.child.pid ? ('ready' as const) : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: `gateway ${g.config} to be ready` },
    );
    if ((await Promise.race([ready, exited])) === 'ready') return g;
    const why = `the gateway exited with ${g.child.exitCode}: ${g.output()}`;
    if (attempt >= 3 || !/EADDRINUSE|address already in use/i.test(g.output())) throw new Error(why);
  }
}

async function spawnGateway(o: Parameters<typeof startGatewayProcess>[0]): Promise<GatewayProcess> {
  const files = await writeGatewayFiles(o);
  const { dir, config: file } = files;
  const child = spawn(process.execPath, [BIN, 'gateway', '--config', file, ...(o.args ?? [])], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(o.env ? { env: { ...process.env, ...o.env } } : {}),
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return {
    ...files,
    child,
    output: () => out,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      return code as number | null;
    },
  };
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** the pid in an admin /readyz answer */
export function answeredBy(body: string): number | undefined {
  try {
    return (JSON.parse(body) as { pid?: number }).pid;
  } catch {
    return undefined;
  }
}
