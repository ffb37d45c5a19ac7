import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { type CaMaterial, createRoot, issueIntermediate } from '../../ca/index.ts';
import { freePort, waitFor } from '../../core/index.ts';
import { request } from './harness.ts';

const BIN = join(process.cwd(), 'bin', 'meshfed.js');

export interface GatewayProcess {
  child: ChildProcess;
  dir: string;
  config: string;
  egress: string;
  eastWest: string;
  admin: string;
  /** everything the process wrote so far (stdout and stderr) */
  output(): string;
  /** SIGTERM, and the exit code */
  stop(): Promise<number | null>;
  /** the trust root of the gateway's bundle */
  root: CaMaterial;
  /** the intermediates of the clusters asked for in `otherClusters`, from that root */
  cas: Record<string, CaMaterial>;
}

/**
 * A real `meshfed gateway` process of cluster `east` (or `cluster`): its own CA directory (or `ca`), a static services file
 * (`services`: name → local address, all exported HTTP services in namespace shop) and a config
 * with fixed loopback ports.
 */
export async function startGatewayProcess(o: {
  natsUrl: string;
  services: Record<string, string>;
  /** merged into the config file */
  config?: Record<string, unknown>;
  args?: string[];
  /**
   * other clusters of the same root; their intermediates are written to intermediates.pem and named
   * by identity.intermediates
   */
  otherClusters?: string[];
  /** default east */
  cluster?: string;
  /**
   * a cluster directory made by `meshfed ca cluster` (absolute path) under `root`, used in place of one
   * made for this gateway alone
   */
  ca?: { root: CaMaterial; clusterDir: string };
}): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-gw-'));
  const cluster = o.cluster ?? 'east';
  const root = o.ca?.root ?? (await createRoot({ trustDomain: 'mesh.example' }));
  const caDir = o.ca?.clusterDir ?? join(dir, 'ca');
  if (!o.ca) {
    const inter = await issueIntermediate(root, { cluster });
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
  const child = spawn(process.execPath, [BIN, 'gateway', '--config', file, ...(o.args ?? [])], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const g: GatewayProcess = {
    child,
    dir,
    config: file,
    egress: `127.0.0.1:${egress}`,
    eastWest: `127.0.0.1:${eastWest}`,
    admin: `127.0.0.1:${admin}`,
    output: () => out,
    root,
    cas,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      return code as number | null;
    },
  };
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}: ${out}`);
      const r = await request(g.admin, { host: 'admin', path: '/readyz' }).catch(() => undefined);
      return r?.status === 200;
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  return g;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
