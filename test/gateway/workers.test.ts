import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { waitFor } from '../../core/index.ts';
import { SCHEMA_VERSION } from '../../federation/index.ts';
import { makePki, type Pki, signerOf } from '../federation/helpers.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import { parsePrometheusText } from '../helpers/prometheus.ts';
import { alive, type GatewayProcess, startGatewayProcess } from './daemon-process.ts';
import { echoServer, request } from './harness.ts';

// `workers: 2`: real processes sharing the data-plane ports with SO_REUSEPORT under one supervisor.

interface WorkersView {
  supervisor: number;
  desired: number;
  restarts: number;
  workers: { pid: number; requests: number; connections: number; startedAtMs: number }[];
}

let nats: NatsServerProcess;
let pki: Pki;
let gw: GatewayProcess;
let backend: Awaited<ReturnType<typeof echoServer>>;

async function workers(): Promise<WorkersView> {
  const r = await request(gw.admin, { host: gw.admin, path: '/debug/workers' });
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as WorkersView;
}

/** `count` requests, each on a new connection, so the kernel spreads them over the workers. */
async function burst(count: number): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < count; i += 10) {
    const batch = Array.from({ length: Math.min(10, count - i) }, () =>
      request(gw.egress, { host: 'web.shop.svc.clusterset.local' }).then((r) => r.status),
    );
    statuses.push(...(await Promise.all(batch)));
  }
  return statuses;
}

beforeAll(async () => {
  [nats, pki] = await Promise.all([startNatsServer({ name: 'workers' }), makePki(['east', 'west'])]);
  backend = await echoServer('east-web');
  gw = await startGatewayProcess({
    natsUrl: nats.url,
    root: pki.root,
    intermediate: pki.intermediates.get('east')!,
    services: { web: backend.address },
    config: { workers: 3 },
    // the flag wins over the file
    args: ['--workers', '2'],
  });
}, 90_000);

afterAll(async () => {
  await gw?.stop();
  backend?.server.close();
  await nats?.stop();
});

test('requests are served by more than one worker process; /metrics sums them', async () => {
  const before = await workers();
  expect(before.desired).toBe(2);
  expect(before.workers).toHaveLength(2);
  expect(before.workers.map((w) => w.pid)).not.toContain(before.supervisor);
  const statuses = await burst(200);
  expect(statuses.every((s) => s === 200)).toBe(true);
  const after = await workers();
  const served = after.workers.map((w) => w.requests);
  expect(served.filter((n) => n > 0).length).toBe(2);
  expect(served.reduce((a, b) => a + b, 0)).toBe(200);
  const m = await request(gw.admin, { host: gw.admin, path: '/metrics' });
  const families = parsePrometheusText(m.body);
  const requests = families.get('meshfed_requests_total');
  expect(requests?.samples.reduce((a, s) => a + s.value, 0)).toBe(200);
  // the supervisor's own series are there too
  expect(families.has('meshfed_nats_connected')).toBe(true);
  expect(families.get('meshfed_workers')?.samples).toContainEqual(
    expect.objectContaining({ labels: { state: 'ready' }, value: 2 }),
  );
}, 60_000);

test("/stats and the dashboard add up every worker's window", async () => {
  const r = await request(gw.admin, { host: gw.admin, path: '/stats?window=300' });
  expect(r.status).toBe(200);
  const snap = JSON.parse(r.body) as { windowMs: number; rows: { requests: number; direction: string }[] };
  expect(snap.windowMs).toBe(300_000);
  // the 200 calls of the test before, served by two workers, as one window
  expect(snap.rows.reduce((n, row) => n + row.requests, 0)).toBe(200);
  expect(new Set(snap.rows.map((row) => row.direction))).toEqual(new Set(['outbound']));
  const ui = await request(gw.admin, { host: gw.admin, path: '/ui/state' });
  expect(ui.status).toBe(200);
  const state = JSON.parse(ui.body) as {
    services: { service: string; offers: { cluster: string; local: boolean; health: string }[] }[];
  };
  const web = state.services.find((s) => s.service === 'web.shop');
  // health comes from the workers' balancers (the supervisor's own never carry traffic)
  expect(web?.offers).toEqual([expect.objectContaining({ cluster: 'east', local: true, health: 'healthy' })]);
});

test("the supervisor's dashboard draws the links another cluster's gateways report", async () => {
  const nc = await connect({ servers: nats.url });
  try {
    const report = () => {
      const now = Date.now();
      return signerOf(pki, 'west').sign({
        v: SCHEMA_VERSION,
        type: 'links',
        cluster: 'west',
        gateway: 'west-gw',
        issuedAt: now,
        expiresAt: now + 30_000,
        windowMs: 5_000,
        links: [{ to: 'eu', requests: 50, failures: 5, p99Ms: 12.5 }],
      });
    };
    // published until the supervisor holds it: its subscription may still be on its way to the server
    const link = await waitFor(
      async () => {
        nc.publish('meshfed.links.west', report());
        const ui = await request(gw.admin, { host: gw.admin, path: '/ui/state' });
        const state = JSON.parse(ui.body) as { links: { from: string; to: string }[] };
        return state.links.find((l) => l.from === 'west' && l.to === 'eu');
      },
      { timeoutMs: 15_000, intervalMs: 200, what: 'the reported link west → eu on the dashboard' },
    );
    expect(link).toMatchObject({
      requests: 50,
      rps: 10,
      successRate: 0.9,
      p99Ms: 12.5,
      reportedBy: { gateways: 1 },
    });
  } finally {
    await nc.close();
  }
});

test('a killed worker is replaced and traffic keeps flowing', async () => {
  const before = await workers();
  const victim = before.workers[0]!.pid;
  process.kill(victim, 'SIGKILL');
  const after = await waitFor(
    async () => {
      const v = await workers();
      return v.workers.length === 2 && !v.workers.some((w) => w.pid === victim) ? v : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  expect(after.restarts).toBe(1);
  expect(after.workers.every((w) => alive(w.pid))).toBe(true);
  const statuses = await burst(50);
  expect(statuses.every((s) => s === 200)).toBe(true);
}, 60_000);

test('meshfed status answers from the supervisor', () => {
  const r = spawnSync(
    process.execPath,
    [join(process.cwd(), 'bin', 'meshfed.js'), 'status', '--config', gw.config, '--json'],
    {
      encoding: 'utf8',
      timeout: 20_000,
    },
  );
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const status = JSON.parse(r.stdout) as { cluster: string; addresses: Record<string, string> };
  expect(status.cluster).toBe('east');
  expect(status.addresses.egress).toBe(gw.egress);
}, 30_000);

test('every process of a quiet multi-worker gateway shrinks its heap once: both workers and the supervisor', async () => {
  // a gateway of its own that serves nothing: each process's first shrink comes a second after it starts, and
  // none again for 10 minutes (no request re-arms them), so the sum over processes is the number of processes
  const quiet = await startGatewayProcess({
    natsUrl: nats.url,
    root: pki.root,
    intermediate: pki.intermediates.get('east')!,
    services: { web: backend.address },
    config: { workers: 2, idleHeapShrink: '1s' },
  });
  try {
    const shrinks = async () => {
      const m = await request(quiet.admin, { host: quiet.admin, path: '/metrics' });
      return parsePrometheusText(m.body).get('meshfed_idle_heap_shrinks_total')?.samples[0]?.value ?? 0;
    };
    await waitFor(async () => (await shrinks()) >= 3, {
      timeoutMs: 30_000,
      intervalMs: 250,
      what: 'two workers and the supervisor to shrink their heaps',
    });
    expect(await shrinks()).toBe(3);
  } finally {
    await quiet.stop();
  }
}, 60_000);

test('SIGTERM drains every worker and the supervisor exits 0', async () => {
  const pids = (await workers()).workers.map((w) => w.pid);
  expect(await gw.stop()).toBe(0);
  expect(pids.filter(alive)).toEqual([]);
}, 30_000);
