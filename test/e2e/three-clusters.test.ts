import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect } from 'node:net';
import { waitFor } from '../../core/index.ts';
import { parsePrometheusText } from '../helpers/prometheus.ts';
import { greeterClient, HttpCaller, sayHello } from '../../cli/demo/traffic.ts';

/**
 * The whole product, as a user runs it: `meshfed demo --headless` starts three real nats-servers
 * (a supercluster) and three `meshfed gateway` child processes; we call across clusters, stop a
 * service, watch failover, and check the admin CLI's --json views agree with what happened.
 */

const NODE = process.execPath;
const BIN = join(process.cwd(), 'bin', 'meshfed.js');
const HELLO = 'hello.demo.svc.clusterset.local';

interface DemoInfo {
  clusters: {
    name: string;
    config: string;
    pid: number;
    addresses: { eastWest: string; egress: string; admin: string; tcpHello?: string };
    dashboard: string;
    services: { name: string; port: number; pid: number }[];
  }[];
}

let demo: ChildProcess;
let info: DemoInfo;

function cli(args: string[]): { code: number | null; json: unknown; stderr: string } {
  const r = spawnSync(NODE, [BIN, ...args, '--json'], { encoding: 'utf8', timeout: 20_000 });
  let json: unknown;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { code: r.status, json, stderr: r.stderr };
}

function cluster(name: string) {
  const c = info.clusters.find((x) => x.name === name);
  if (!c) throw new Error(`no cluster ${name}`);
  return c;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-e2e-'));
  demo = spawn(NODE, [BIN, 'demo', '--headless', '--dir', join(dir, 'demo')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  demo.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const rl = createInterface({ input: demo.stdout! });
  const line = await Promise.race([
    once(rl, 'line').then(([l]) => l as string),
    once(demo, 'exit').then(([code]) => {
      throw new Error(`demo exited with ${code}: ${stderr}`);
    }),
  ]);
  info = JSON.parse(line) as DemoInfo;
}, 300_000);

afterAll(async () => {
  if (demo && demo.exitCode === null) {
    const exited = once(demo, 'exit');
    demo.kill('SIGTERM');
    await exited;
  }
});

describe('three clusters, end to end', () => {
  test('HTTP from east is served in east (same zone first)', async () => {
    const caller = new HttpCaller(cluster('east').addresses.egress, HELLO);
    const results = await Promise.all(Array.from({ length: 20 }, () => caller.call()));
    await caller.close();
    expect(results.every((r) => r.ok)).toBe(true);
    expect(new Set(results.map((r) => r.cluster))).toEqual(new Set(['east']));
  });

  test('gRPC unary and server-streaming from east reach greeter in west or eu, with status', async () => {
    const client = greeterClient(cluster('east').addresses.egress);
    try {
      const reply = await sayHello(client, 'e2e');
      expect(reply.message).toBe('hello e2e');
      expect(['west', 'eu']).toContain(reply.cluster);
      const messages: { seq: number }[] = [];
      const stream = client.SayHelloStream({ name: 's', count: 5 });
      for await (const m of stream) messages.push(m as { seq: number });
      expect(messages.map((m) => m.seq)).toEqual([0, 1, 2, 3, 4]);
      await expect(sayHello(client, 'fail')).rejects.toMatchObject({ code: 9 });
    } finally {
      client.close();
    }
  });

  test('a service that is not exported is refused with a 503 that says so', async () => {
    const caller = new HttpCaller(cluster('west').addresses.egress, 'internal.demo.svc.clusterset.local');
    const r = await caller.call();
    await caller.close();
    expect(r.ok).toBe(false);
    expect(r.status).toBe(503);
  });

  test('the admin CLI sees every cluster live and every exported service where it runs', () => {
    const clusters = cli(['clusters', '--config', cluster('east').config]);
    expect({ code: clusters.code, stderr: clusters.stderr }).toEqual({ code: 0, stderr: '' });
    const names = (clusters.json as { name: string; stale: boolean }[]).map((c) => c.name).sort();
    expect(names).toEqual(['east', 'eu', 'west']);
    expect((clusters.json as { stale: boolean }[]).every((c) => !c.stale)).toBe(true);
    const services = cli(['services', '--config', cluster('east').config]);
    expect(services.code).toBe(0);
    const hello = (services.json as { name: string; offers: { cluster: string }[] }[]).find(
      (s) => s.name === 'hello',
    );
    expect(hello?.offers.map((o) => o.cluster).sort()).toEqual(['east', 'eu', 'west']);
    const greeter = (services.json as { name: string; offers: { cluster: string }[] }[]).find(
      (s) => s.name === 'greeter',
    );
    expect(greeter?.offers.map((o) => o.cluster).sort()).toEqual(['eu', 'west']);
    const status = cli(['status', '--config', cluster('west').config]);
    expect(status.code).toBe(0);
    expect(status.json).toMatchObject({ cluster: 'west', nats_connected: true });
  });

  test("stopping east's hello fails over to another locality; routes --json shows why", async () => {
    const east = cluster('east');
    const hello = east.services.find((s) => s.name === 'hello.demo')!;
    process.kill(hello.pid, 'SIGTERM');
    await waitFor(() => !alive(hello.pid), { timeoutMs: 5000, what: 'east hello to stop' });
    const caller = new HttpCaller(east.addresses.egress, HELLO);
    const started = Date.now();
    // within a few seconds every call is served by west or eu, and none fails
    await waitFor(
      async () => {
        const rs = await Promise.all(Array.from({ length: 10 }, () => caller.call()));
        return rs.every((r) => r.ok && r.cluster !== 'east');
      },
      { timeoutMs: 10_000, intervalMs: 100, what: 'failover away from east' },
    );
    expect(Date.now() - started).toBeLessThan(10_000);
    const after = await Promise.all(Array.from({ length: 30 }, () => caller.call()));
    await caller.close();
    expect(after.filter((r) => !r.ok)).toEqual([]);
    expect(after.every((r) => r.cluster === 'west' || r.cluster === 'eu')).toBe(true);
    const routes = cli(['routes', 'hello.demo', '--config', east.config]);
    expect({ code: routes.code, stderr: routes.stderr }).toEqual({ code: 0, stderr: '' });
    expect(JSON.stringify(routes.json)).toContain('west');
  });

  test('meshfed check reaches every remote gateway over mTLS and NATS, and says OK', () => {
    const r = cli(['check', '--config', cluster('west').config]);
    const results = (r.json as { results: { check: string; status: string; detail: string }[] }).results;
    const failed = results.filter((x) => x.status === 'FAIL');
    expect(failed).toEqual([]);
    expect(r.code).toBe(0);
    const mtls = results.filter((x) => x.check.startsWith('mTLS to '));
    expect(mtls.map((x) => x.check).sort()).toEqual(['mTLS to east/east-gw', 'mTLS to eu/eu-gw']);
    expect(mtls.every((x) => x.status === 'OK')).toBe(true);
    // every gateway of this version offers the fast path, and check says which protocol each one chose
    expect(mtls.map((x) => x.detail.includes('data plane: HTTP/1.1 fast path (meshfed-h1/1)'))).toEqual([
      true,
      true,
    ]);
    expect(results.find((x) => x.check === 'NATS reachable')?.status).toBe('OK');
  });

  test('/metrics parses as Prometheus text and carries the operator series with cluster labels', async () => {
    const res = await fetch(`http://${cluster('east').addresses.admin}/metrics`);
    expect(res.status).toBe(200);
    const families = parsePrometheusText(await res.text());
    for (const name of [
      'meshfed_requests_total',
      'meshfed_request_duration_seconds',
      'meshfed_active_connections',
      'meshfed_upstream_healthy',
      'meshfed_outlier_ejections_total',
      'meshfed_catalog_services',
      'meshfed_catalog_rejected_total',
      'meshfed_cert_expiry_seconds',
      'meshfed_nats_connected',
      'meshfed_upstream_connects_total',
      'meshfed_upstream_connections',
    ]) {
      expect({ name, present: families.has(name) }).toEqual({ name, present: true });
    }
    expect(families.get('meshfed_request_duration_seconds')!.type).toBe('histogram');
    const served = families.get('meshfed_requests_total')!.samples;
    expect(
      served.some((s) => s.labels.source_cluster === 'east' && s.labels.destination_cluster === 'west'),
    ).toBe(true);
    expect(families.get('meshfed_nats_connected')!.samples[0]!.value).toBe(1);
    // the HTTP calls from east to west went over the fast path: dialled, and counted by how the dial ended
    const dials = families.get('meshfed_upstream_connects_total')!.samples;
    expect(
      dials.some(
        (s) =>
          s.labels.source_cluster === 'east' &&
          s.labels.destination_cluster === 'west' &&
          s.labels.protocol === 'fast-path' &&
          ['new', 'resumed'].includes(s.labels.result!) &&
          s.value > 0,
      ),
    ).toBe(true);
    expect(families.get('meshfed_cert_expiry_seconds')!.samples.every((s) => s.value > 0)).toBe(true);
  });

  test('gRPC statuses are counted on both sides; meshfed stat and the dashboard read the daemons', async () => {
    // only the gRPC family: a young process's event-loop figures may read NaN, which is not what this checks
    const grpcOf = async (c: string) => {
      const text = await (await fetch(`http://${cluster(c).addresses.admin}/metrics`)).text();
      const lines = text.split('\n').filter((l) => l.includes('meshfed_grpc_responses_total'));
      return parsePrometheusText(lines.join('\n')).get('meshfed_grpc_responses_total')!.samples;
    };
    const grpc = await grpcOf('east');
    // the earlier sayHello(client, 'fail') ended with FAILED_PRECONDITION (9), sent from east
    const failed = grpc.filter((s) => s.labels.grpc_status === '9' && s.labels.direction === 'outbound');
    expect(failed.map((s) => [s.labels.destination_service, s.value])).toEqual([['greeter.demo', 1]]);
    const served = failed[0]!.labels.destination_cluster!;
    const inbound = (await grpcOf(served)).filter(
      (s) => s.labels.grpc_status === '9' && s.labels.direction === 'inbound',
    );
    expect(inbound.map((s) => [s.labels.source_cluster, s.value])).toEqual([['east', 1]]);

    const stat = cli(['stat', 'hello.demo', '--config', cluster('east').config, '--window', '5m']);
    expect({ code: stat.code, stderr: stat.stderr }).toEqual({ code: 0, stderr: '' });
    const lines = (stat.json as { lines: { destinationCluster: string; requests: number }[] }).lines;
    // east served its own calls before the failover, west or eu after it
    expect(lines.map((l) => l.destinationCluster)).toEqual(expect.arrayContaining(['east']));
    expect(lines.some((l) => l.destinationCluster === 'west' || l.destinationCluster === 'eu')).toBe(true);

    const ui = await fetch(`${cluster('east').dashboard}/state`);
    expect(ui.status).toBe(200);
    const state = (await ui.json()) as { clusters: { name: string; stale: boolean }[] };
    expect(state.clusters.map((c) => c.name).sort()).toEqual(['east', 'eu', 'west']);
  });

  test('the demo stops everything it started', async () => {
    const pids = info.clusters.flatMap((c) => [c.pid, ...c.services.map((s) => s.pid)]);
    const exited = once(demo, 'exit');
    demo.kill('SIGTERM');
    const [code] = await exited;
    expect(code).toBe(0);
    await waitFor(() => pids.every((p) => !alive(p)), {
      timeoutMs: 10_000,
      what: 'every demo process to exit',
    });
    const egress = cluster('east').addresses.egress.split(':');
    await expect(
      new Promise((resolve, reject) => {
        const s = connect(Number(egress[1]), egress[0]!);
        s.once('connect', () => {
          s.destroy();
          resolve('connected');
        });
        s.once('error', reject);
      }),
    ).rejects.toThrow();
  });
});
