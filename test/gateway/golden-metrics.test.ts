import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { issueLeaf } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { goldenSeriesBound, TUNNEL_ALPN } from '../../gateway/index.ts';
import { createMesh, helloAcross, httpService, type Mesh, request, type TestGateway } from './harness.ts';

// Golden metrics on real gateways: both sides of a hop say exactly what crossed it, in every mode, and
// no traffic can grow the series past the stated bound.

const GOLDEN = [
  'meshfed_requests_total',
  'meshfed_responses_total',
  'meshfed_grpc_responses_total',
  'meshfed_request_duration_seconds',
  'meshfed_request_bytes_total',
  'meshfed_response_bytes_total',
];
const HOST = 'hello.shop.svc.clusterset.local';

let mesh: Mesh;
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  mesh = await createMesh();
});

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function gw(cluster: string, o: Parameters<Mesh['gateway']>[1] = {}): Promise<TestGateway> {
  // a failing backend must not be ejected halfway through the known traffic
  const g = await mesh.gateway(cluster, { balancer: { outlier: { consecutiveFailures: 1000 } }, ...o });
  closers.push(() => g.close());
  return g;
}

interface Value {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

async function values(g: TestGateway, name: string): Promise<Value[]> {
  return ((await g.registry.getSingleMetric(name)?.get())?.values ?? []) as Value[];
}

/** the value of the one series whose labels include `labels` (0 when none does) */
async function value(
  g: TestGateway,
  name: string,
  labels: Record<string, string>,
  suffix = '',
): Promise<number> {
  const matches = (await values(g, name)).filter(
    (v) =>
      (suffix === '' || v.metricName === `${name}${suffix}`) &&
      Object.entries(labels).every(([k, x]) => String(v.labels[k]) === x),
  );
  return matches.reduce((n, v) => n + v.value, 0);
}

async function seriesCount(g: TestGateway): Promise<number> {
  let n = 0;
  for (const name of GOLDEN) n += (await values(g, name)).length;
  return n;
}

/**
 * Waits until the sending side (`east`, labels `out`) and the receiving side (`west`, `inn`) of a hop have
 * each recorded `n` calls (a call is recorded when it is over, which may follow the client's last byte by a
 * tick); then each side with its labels, to check.
 */
async function bothSidesRecord(
  east: TestGateway,
  out: Record<string, string>,
  west: TestGateway,
  inn: Record<string, string>,
  n: number,
): Promise<[TestGateway, Record<string, string>][]> {
  await waitFor(
    async () =>
      (await value(east, 'meshfed_requests_total', out)) === n &&
      (await value(west, 'meshfed_requests_total', inn)) === n,
    { timeoutMs: 5_000, what: `both sides of the hop to record ${n} call(s)` },
  );
  return [
    [east, out],
    [west, inn],
  ];
}

/** east calls hello.shop, served only by west; a failing backend is never ejected halfway through */
async function eastToWest(o: Parameters<Mesh['gateway']>[1] = {}) {
  const hop = await helloAcross(mesh, { balancer: { outlier: { consecutiveFailures: 1000 } }, ...o });
  closers.push(() => hop.close());
  return hop;
}

test('after N good and M failing calls from east to west, both gateways count exactly that', async () => {
  const { east, west } = await eastToWest();
  const N = 20;
  const M = 5;
  for (let i = 0; i < N; i++) {
    const r = await request(east.egress, { host: HOST, path: `/ok/${i}` });
    expect(r.status).toBe(200);
  }
  // POST is not retried, so each failing call is one request on both sides
  for (let i = 0; i < M; i++) {
    const r = await request(east.egress, { host: HOST, path: '/status/500', method: 'POST', body: 'x' });
    expect(r.status).toBe(500);
  }
  const hop = { source_cluster: 'east', destination_cluster: 'west', destination_service: 'hello.shop' };
  const out = { ...hop, direction: 'outbound', protocol: 'http', source_workload: 'unknown' };
  const inn = { ...hop, direction: 'inbound', protocol: 'http', source_workload: 'unknown' };
  // a call is recorded when its response is over, which may follow the client's last byte by a tick
  await waitFor(
    async () =>
      (await value(east, 'meshfed_requests_total', out)) === N + M &&
      (await value(west, 'meshfed_requests_total', inn)) === N + M,
    { timeoutMs: 5_000, what: 'both gateways to record every call' },
  );
  for (const [g, labels] of [
    [east, out],
    [west, inn],
  ] as const) {
    expect({
      requests: await value(g, 'meshfed_requests_total', labels),
      ok: await value(g, 'meshfed_responses_total', { ...labels, status_class: '2xx' }),
      failed: await value(g, 'meshfed_responses_total', { ...labels, status_class: '5xx' }),
      observed: await value(g, 'meshfed_request_duration_seconds', labels, '_count'),
      bodyIn: await value(g, 'meshfed_request_bytes_total', labels),
      grpc: (await values(g, 'meshfed_grpc_responses_total')).length,
    }).toEqual({ requests: N + M, ok: N, failed: M, observed: N + M, bodyIn: M, grpc: 0 });
    // the latency of a loopback hop lands in the low buckets, never only in +Inf
    expect(await value(g, 'meshfed_request_duration_seconds', { ...labels, le: '1' }, '_bucket')).toBe(N + M);
  }
  const sentBack = await value(east, 'meshfed_response_bytes_total', out);
  expect(sentBack).toBeGreaterThan(0);
  expect(await value(west, 'meshfed_response_bytes_total', inn)).toBe(sentBack);
  // the windowed view that `meshfed stat` and /ui read says the same
  const row = east.gateway.traffic(60_000).rows.find((r) => r.direction === 'outbound');
  expect(row).toMatchObject({ ...out, requests: N + M, failures: M, bytesIn: M });
  // no other tuple appeared, and the old `service`/`code` labels are gone
  expect((await values(east, 'meshfed_requests_total')).map((v) => v.labels)).toEqual([out]);
}, 30_000);

test('1,000 distinct paths and 1,000 distinct callers keep the series within the stated bound', async () => {
  const limits = { clusters: 8, services: 8, workloads: 10, tuples: 32 };
  const { east, west } = await eastToWest({ metricLimits: limits });

  // 1,000 paths through east's egress (paths are never a label)
  const paths = Array.from({ length: 1000 }, (_, i) => `/item/${i}?q=${i}`);
  for (let i = 0; i < paths.length; i += 50) {
    const batch = await Promise.all(
      paths.slice(i, i + 50).map((path) => request(east.egress, { host: HOST, path })),
    );
    expect(batch.every((r) => r.status === 200)).toBe(true);
  }
  // 1,000 workloads of east asserted by a gateway of east on the tunnel to west (each ns/sa distinct)
  const leaf = await issueLeaf(await mesh.intermediate('east'), { kind: 'gateway', name: 'east-peer' });
  const chain = (leaf.chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [])
    .slice(1)
    .map((b) => new X509Certificate(b).raw.toString('base64'))
    .join(',');
  const [host, port] = west.eastWest.split(':') as [string, string];
  const session = http2.connect(`https://${west.eastWest}`, {
    createConnection: () =>
      tls.connect({
        host,
        port: Number(port),
        ca: mesh.bundle.toPem(),
        cert: leaf.chainPem,
        key: leaf.keyPem,
        ALPNProtocols: [TUNNEL_ALPN, 'h2'],
        checkServerIdentity: () => undefined,
      }),
  });
  session.on('error', () => undefined);
  closers.push(() => session.close());
  const call = (i: number) =>
    new Promise<number>((resolve, reject) => {
      const s = session.request({
        ':path': `/caller/${i}`,
        ':authority': HOST,
        'x-meshfed-service': 'shop/hello/http',
        'x-meshfed-chain': chain,
        'x-meshfed-caller': `spiffe://meshfed.test/cluster/east/ns/team-${i}/sa/app-${i}`,
      });
      let status = 0;
      s.on('response', (h) => {
        status = Number(h[':status']);
      });
      s.resume();
      s.on('end', () => resolve(status));
      s.on('error', reject);
    });
  for (let i = 0; i < 1000; i += 50) {
    const batch = await Promise.all(Array.from({ length: 50 }, (_, k) => call(i + k)));
    expect(batch.every((s) => s === 200)).toBe(true);
  }
  await waitFor(
    async () =>
      (await value(west, 'meshfed_requests_total', { direction: 'inbound' })) === 2000 &&
      (await value(east, 'meshfed_requests_total', { direction: 'outbound' })) === 1000,
    { timeoutMs: 10_000, what: 'every call to be recorded' },
  );
  const bound = goldenSeriesBound(limits);
  for (const g of [east, west]) expect(await seriesCount(g)).toBeLessThanOrEqual(bound);
  const workloads = new Set(
    (await values(west, 'meshfed_requests_total')).map((v) => v.labels.source_workload),
  );
  // the first `workloads` callers keep their ns/sa, then `other`; east's own calls are `unknown`
  expect(workloads.size).toBe(limits.workloads + 2);
  expect(workloads).toContain('other');
  expect(workloads).toContain('team-0/app-0');
  // the default limits' bound is what docs/observability.md states, and every series is documented
  const doc = readFileSync(new URL('../../docs/observability.md', import.meta.url), 'utf8');
  expect(doc).toContain(`**(512 + 8) × 45 = ${goldenSeriesBound().toLocaleString('en-US')} golden series**`);
  const names = (await east.registry.getMetricsAsJSON()).map((m) => m.name);
  expect(names.filter((n) => !doc.includes(`\`${n}\``))).toEqual([]);
}, 60_000);

test('TCP ports, CONNECT streams and SNI passthrough carry the same labels on both sides', async () => {
  const tcpBackend = net.createServer((s) => s.pipe(s));
  tcpBackend.listen(0, '127.0.0.1');
  await new Promise((r) => tcpBackend.once('listening', r));
  closers.push(() => tcpBackend.close());
  const db = httpService(
    'data',
    'db',
    [`127.0.0.1:${(tcpBackend.address() as AddressInfo).port}`],
    true,
    'tcp',
  );
  const west = await gw('west');
  west.source.set([db]);
  const east = await gw('east', { config: { tcpPorts: [{ listen: '127.0.0.1:0', service: 'db.data' }] } });
  east.catalog.offer('west', db, west.eastWest);
  const [host, port] = east.gateway.addresses()['tcp:db.data']!.split(':') as [string, string];
  const payload = Buffer.alloc(10_000, 7);
  await new Promise<void>((resolve, reject) => {
    const s = net.connect({ host, port: Number(port) });
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      if (got >= payload.length) s.end();
    });
    s.on('close', () => resolve());
    s.on('error', reject);
    s.write(payload);
  });
  const hop = {
    protocol: 'tcp',
    source_cluster: 'east',
    source_workload: 'unknown',
    destination_cluster: 'west',
    destination_service: 'db.data',
  };
  const out = { ...hop, direction: 'outbound' };
  const inn = { ...hop, direction: 'inbound' };
  for (const [g, labels] of await bothSidesRecord(east, out, west, inn, 1)) {
    expect({
      ok: await value(g, 'meshfed_responses_total', { ...labels, status_class: '2xx' }),
      in: await value(g, 'meshfed_request_bytes_total', labels),
      out: await value(g, 'meshfed_response_bytes_total', labels),
    }).toEqual({ ok: 1, in: payload.length, out: payload.length });
  }
  const names = (await values(west, 'meshfed_requests_total')).map((v) => Object.keys(v.labels).sort());
  const httpNames = [
    'destination_cluster',
    'destination_service',
    'direction',
    'protocol',
    'source_cluster',
    'source_workload',
  ];
  expect(names).toEqual([httpNames]);

  // SNI passthrough into west: the TLS is not opened here, so nothing says who calls (source `unknown`)
  const leaf = await issueLeaf(await mesh.intermediate('west'), { kind: 'gateway', name: 'vault' });
  const vaultServer = tls.createServer({ cert: leaf.chainPem, key: leaf.keyPem }, (s) => s.pipe(s));
  vaultServer.listen(0, '127.0.0.1');
  await new Promise((r) => vaultServer.once('listening', r));
  closers.push(() => vaultServer.close());
  west.source.set([
    db,
    httpService('data', 'vault', [`127.0.0.1:${(vaultServer.address() as AddressInfo).port}`], true, 'tls'),
  ]);
  const [wh, wp] = west.eastWest.split(':') as [string, string];
  const client = tls.connect({
    host: wh,
    port: Number(wp),
    servername: 'vault.data.svc.clusterset.local',
    ca: mesh.bundle.toPem(),
    checkServerIdentity: () => undefined,
  });
  await new Promise((resolve, reject) => {
    client.once('secureConnect', resolve);
    client.once('error', reject);
  });
  client.write('ping');
  await new Promise((r) => client.once('data', r));
  const closed = new Promise((r) => client.once('close', r));
  client.end();
  await closed;
  const tlsLabels = {
    direction: 'inbound',
    protocol: 'tls',
    source_cluster: 'unknown',
    source_workload: 'unknown',
    destination_cluster: 'west',
    destination_service: 'vault.data',
  };
  await waitFor(async () => (await value(west, 'meshfed_requests_total', tlsLabels)) === 1, {
    timeoutMs: 5_000,
    what: 'the passthrough connection to be recorded',
  });
  expect(await value(west, 'meshfed_responses_total', { ...tlsLabels, status_class: '2xx' })).toBe(1);
  expect(await value(west, 'meshfed_request_bytes_total', tlsLabels)).toBeGreaterThan(4);
}, 30_000);

/** A backend that sends the request body back as it arrives: no content-length, so node frames it chunked. */
async function chunkedEcho(): Promise<string> {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    req.pipe(res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => {
    server.closeAllConnections();
    server.close();
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** POSTs `pieces` as a chunked body (one chunk a write, no content-length) and reads the whole answer. */
async function postChunked(egress: string, pieces: Buffer[]): Promise<{ status: number; body: Buffer }> {
  const [host, port] = egress.split(':') as [string, string];
  const req = http.request({
    host,
    port: Number(port),
    method: 'POST',
    path: '/upload',
    headers: { host: HOST },
    agent: false,
  });
  for (const p of pieces) req.write(p);
  req.end();
  const [res] = (await once(req, 'response')) as [http.IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  expect(res.headers['content-length']).toBeUndefined();
  return { status: res.statusCode ?? 0, body: Buffer.concat(chunks) };
}

test.each([
  ['the fast path', { east: true, west: true }],
  ['the HTTP/2 tunnel into an HTTP/1.1 backend (undici)', { east: false, west: false }],
  ['the fast path falling back to the tunnel', { east: true, west: false }],
])(
  'a chunked body counts its payload bytes, in and out, on both sides: %s',
  async (_path, fast) => {
    const backend = await chunkedEcho();
    const hello = httpService('shop', 'hello', [backend]);
    const west = await gw('west', { config: { fastPath: fast.west } });
    west.source.set([hello]);
    const east = await gw('east', { config: { fastPath: fast.east } });
    east.catalog.offer('west', hello, west.eastWest);
    // three chunks of odd sizes: chunk lines ("1f3\r\n") would show as extra bytes if they were counted
    const pieces = [Buffer.alloc(499, 1), Buffer.alloc(4096, 2), Buffer.alloc(7, 3)];
    const size = pieces.reduce((n, p) => n + p.length, 0);
    const r = await postChunked(east.egress, pieces);
    expect(r.status).toBe(200);
    expect(r.body.length).toBe(size);
    const hop = { source_cluster: 'east', destination_cluster: 'west', destination_service: 'hello.shop' };
    const out = { ...hop, direction: 'outbound' };
    const inn = { ...hop, direction: 'inbound' };
    for (const [g, labels] of await bothSidesRecord(east, out, west, inn, 1)) {
      expect({
        in: await value(g, 'meshfed_request_bytes_total', labels),
        out: await value(g, 'meshfed_response_bytes_total', labels),
      }).toEqual({ in: size, out: size });
    }
  },
  30_000,
);

test("a chunked body to a local HTTP/1.1 backend through node's server and undici counts its payload bytes", async () => {
  const backend = await chunkedEcho();
  const east = await gw('east', { config: { fastPath: false } });
  east.source.set([httpService('shop', 'hello', [backend])]);
  const pieces = [Buffer.alloc(1000, 1), Buffer.alloc(24, 2)];
  const r = await postChunked(east.egress, pieces);
  expect(r.body.length).toBe(1024);
  const local = {
    direction: 'outbound',
    source_cluster: 'east',
    destination_cluster: 'east',
    destination_service: 'hello.shop',
  };
  await waitFor(async () => (await value(east, 'meshfed_requests_total', local)) === 1, {
    timeoutMs: 5_000,
    what: 'the call to be recorded',
  });
  expect(await value(east, 'meshfed_request_bytes_total', local)).toBe(1024);
  expect(await value(east, 'meshfed_response_bytes_total', local)).toBe(1024);
});

test('a chunked body retried after a refused connect is counted once, whole', async () => {
  const backend = await chunkedEcho();
  // a port nothing listens on: a try there fails before undici reads any of the body
  const dead = net.createServer().listen(0, '127.0.0.1');
  await once(dead, 'listening');
  const deadAddress = `127.0.0.1:${(dead.address() as AddressInfo).port}`;
  await new Promise((r) => dead.close(r));
  const east = await gw('east', { config: { fastPath: false } });
  east.source.set([httpService('shop', 'hello', [deadAddress, backend])]);
  const pieces = [Buffer.alloc(300, 1), Buffer.alloc(33, 2)];
  const calls = 8;
  for (let i = 0; i < calls; i++) {
    const r = await postChunked(east.egress, pieces);
    expect({ status: r.status, size: r.body.length }).toEqual({ status: 200, size: 333 });
  }
  const local = { direction: 'outbound', destination_cluster: 'east', destination_service: 'hello.shop' };
  await waitFor(async () => (await value(east, 'meshfed_requests_total', local)) === calls, {
    timeoutMs: 5_000,
    what: 'every call to be recorded',
  });
  expect(await value(east, 'meshfed_request_bytes_total', local)).toBe(calls * 333);
  // the dead endpoint was tried (so some bodies were retried), and no try counted a body twice
  expect(await value(east, 'meshfed_upstream_retries_total', { failure: 'connect' })).toBeGreaterThan(0);
});
