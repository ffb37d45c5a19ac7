import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { type AdminBackend, AdminServer } from '../../cli/admin/admin-server.ts';
import type { CommandContext } from '../../cli/command.ts';
import { statCommand, topCommand } from '../../cli/commands/traffic-verbs.ts';
import { silentLogger, waitFor } from '../../core/index.ts';
import { createMesh, helloAcross, request, type TestGateway } from '../gateway/harness.ts';

// `meshfed stat` and `meshfed top` against real gateways after known traffic, through the admin API.

const HOST = 'hello.shop.svc.clusterset.local';
const N = 12;
const M = 3;
let east: TestGateway;
let west: TestGateway;
const closers: (() => unknown)[] = [];
const sockets: Record<string, string> = {};

function backendOf(g: TestGateway): AdminBackend {
  const none = () => {
    throw new Error('not used here');
  };
  return {
    status: none,
    clusters: none,
    services: none,
    routes: none,
    stats: async (ms) => g.gateway.traffic(ms),
  };
}

beforeAll(async () => {
  // a failing backend must not be ejected halfway through the known traffic
  const hop = await helloAcross(await createMesh(), { balancer: { outlier: { consecutiveFailures: 1000 } } });
  ({ east, west } = hop);
  closers.push(() => hop.close());
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-stat-'));
  for (const g of [east, west]) {
    const socketPath = join(dir, `${g.cluster}.sock`);
    const server = new AdminServer({ backend: backendOf(g), socketPath, logger: silentLogger() });
    await server.start();
    closers.push(() => server.stop());
    sockets[g.cluster] = `unix:${socketPath}`;
  }
  for (let i = 0; i < N; i++) await request(east.egress, { host: HOST, path: `/p/${i}` });
  for (let i = 0; i < M; i++)
    await request(east.egress, { host: HOST, path: '/status/503', method: 'POST', body: 'x' });
  await waitFor(() => west.gateway.traffic(60_000).rows.reduce((n, r) => n + r.requests, 0) === N + M, {
    timeoutMs: 5_000,
    what: 'west to record every call',
  });
  await waitFor(() => east.gateway.traffic(60_000).rows.reduce((n, r) => n + r.requests, 0) === N + M, {
    timeoutMs: 5_000,
    what: 'east to record every call',
  });
}, 30_000);

afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

async function run(command: typeof statCommand, argv: string[]): Promise<string> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const ctx: CommandContext = {
    argv,
    json: argv.includes('--json'),
    debug: false,
    stdout,
    stderr: new PassThrough(),
    signal: new AbortController().signal,
  };
  await command.run(ctx);
  return out;
}

test('meshfed stat --json: both sides of the hop, with exact counts and success rate', async () => {
  const fromEast = JSON.parse(await run(statCommand, ['hello.shop', '--admin', sockets.east!, '--json']));
  expect(fromEast.windowSeconds).toBe(60);
  expect(fromEast.lines).toHaveLength(1);
  expect(fromEast.lines[0]).toMatchObject({
    service: 'hello.shop',
    direction: 'outbound',
    sourceCluster: 'east',
    destinationCluster: 'west',
    requests: N + M,
    failures: M,
    successRate: N / (N + M),
  });
  expect(fromEast.lines[0].p99Ms).toBeGreaterThan(0);
  expect(fromEast.lines[0].p50Ms).toBeLessThanOrEqual(fromEast.lines[0].p99Ms);
  const fromWest = JSON.parse(await run(statCommand, ['--admin', sockets.west!, '--json', '--window', '2m']));
  expect(fromWest.windowSeconds).toBe(120);
  expect(
    fromWest.lines.map((l: { direction: string; requests: number; failures: number }) => [
      l.direction,
      l.requests,
      l.failures,
    ]),
  ).toEqual([['inbound', N + M, M]]);
});

test('meshfed stat: a table with one row per service and cluster pair', async () => {
  const text = await run(statCommand, ['--admin', sockets.east!]);
  const [head, row, ...rest] = text.trimEnd().split('\n');
  expect(head!.split(/\s+/)).toEqual([
    'SERVICE',
    'SIDE',
    'FROM',
    'TO',
    'SUCCESS',
    'RPS',
    'REQUESTS',
    'P50',
    'P95',
    'P99',
  ]);
  expect(row!.split(/\s+/).slice(0, 7)).toEqual([
    'hello.shop',
    'outbound',
    'east',
    'west',
    '80.00%',
    '0.25',
    String(N + M),
  ]);
  expect(rest).toEqual([]);
  // another service: nothing to show, said in words
  expect(await run(statCommand, ['other.shop', '--admin', sockets.east!])).toBe('no calls in this window\n');
});

test('meshfed top: refreshes a bounded number of times, as a table and as JSON lines', async () => {
  const json = await run(topCommand, [
    '--admin',
    sockets.east!,
    '--json',
    '--iterations',
    '2',
    '--interval',
    '100ms',
    '--window',
    '60s',
  ]);
  const frames = json
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(frames).toHaveLength(2);
  for (const f of frames)
    expect(f.lines[0]).toMatchObject({ service: 'hello.shop', destinationCluster: 'west', requests: N + M });
  const table = await run(topCommand, ['--admin', sockets.east!, '--iterations', '1', '--window', '60s']);
  expect(table).toMatch(/^meshfed top — unix:.* — last 60s, busiest first/);
  expect(table).toContain('hello.shop  outbound  east  west  80.00%');
  await expect(run(topCommand, ['--admin', sockets.east!, '--window', '1h'])).rejects.toMatchObject({
    code: 'MESHFED_USAGE',
  });
});
