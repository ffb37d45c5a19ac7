import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { issueLeaf } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { createMesh, echoServer, httpService, type Mesh, request, type TestGateway } from './harness.ts';

let mesh: Mesh;
const closers: (() => unknown)[] = [];

function splitAddr(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

async function gw(cluster: string, o: Parameters<Mesh['gateway']>[1] = {}): Promise<TestGateway> {
  const g = await mesh.gateway(cluster, o);
  closers.push(() => g.close());
  return g;
}

async function echo(label: string) {
  const s = await echoServer(label);
  closers.push(() => s.server.close());
  return s;
}

async function tcpEcho(): Promise<string> {
  const srv = net.createServer((s) => s.pipe(s));
  srv.listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  closers.push(() => srv.close());
  return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

async function refusedCount(g: TestGateway, reason: string): Promise<number> {
  const m = await g.registry.getSingleMetric('meshfed_refused_total')?.get();
  return m?.values.filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0) ?? 0;
}

async function roundTrip(address: string, payload: Buffer): Promise<Buffer> {
  const sock = net.connect(splitAddr(address));
  const chunks: Buffer[] = [];
  let got = 0;
  return await new Promise<Buffer>((resolve, reject) => {
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= payload.length) {
        sock.destroy();
        resolve(Buffer.concat(chunks));
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(Buffer.concat(chunks)));
    sock.write(payload);
  });
}

beforeAll(async () => {
  mesh = await createMesh();
}, 30_000);

afterAll(async () => {
  for (const c of closers.reverse()) await c();
});

test('one east→west call yields one trace with a span from each gateway; the backend gets the new traceparent', async () => {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const a = await gw('ta', { tracer: provider.getTracer('a') });
  const b = await gw('tb', { tracer: provider.getTracer('b') });
  const be = await echo('tb-api');
  const api = httpService('shop', 'api', [be.address]);
  b.source.set([api]);
  a.catalog.offer('tb', api, b.eastWest);
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const r = await request(a.egress, {
    host: 'api.shop.svc.clusterset.local',
    headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` },
  });
  expect(r.status).toBe(200);
  const seen = JSON.parse(r.body).headers.traceparent as string;
  expect(seen.split('-')[1]).toBe(traceId);
  await waitFor(() => exporter.getFinishedSpans().length >= 2, { timeoutMs: 5_000 });
  const spans = exporter.getFinishedSpans();
  expect(new Set(spans.map((s) => s.spanContext().traceId))).toEqual(new Set([traceId]));
  expect(spans.map((s) => s.attributes['meshfed.cluster']).sort()).toEqual(['ta', 'tb']);
  // the backend's parent is the destination gateway's span
  const bSpan = spans.find((s) => s.attributes['meshfed.cluster'] === 'tb')!;
  expect(seen.split('-')[2]).toBe(bSpan.spanContext().spanId);
});

test('TCP via a local port and a CONNECT stream across gateways', async () => {
  const b = await gw('pb');
  const echoAddr = await tcpEcho();
  const db = httpService('data', 'db', [echoAddr], true, 'tcp');
  b.source.set([db]);
  const a = await gw('pa', { config: { tcpPorts: [{ listen: '127.0.0.1:0', service: 'db.data' }] } });
  a.catalog.offer('pb', db, b.eastWest);
  const tcpAddr = a.gateway.addresses()['tcp:db.data']!;
  const payload = Buffer.alloc(200_000, 3);
  const back = await roundTrip(tcpAddr, payload);
  expect(back.equals(payload)).toBe(true);
}, 15_000);

test('a TCP client that resets while the tunnel is dialled opens no CONNECT stream and holds no slot', async () => {
  const b = await gw('pb2');
  const opened = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    opened.add(s);
    s.once('close', () => opened.delete(s));
    s.pipe(s);
  });
  srv.listen(0, '127.0.0.1');
  await new Promise((r) => srv.once('listening', r));
  closers.push(() => srv.close());
  const db = httpService('data', 'db', [`127.0.0.1:${(srv.address() as AddressInfo).port}`], true, 'tcp');
  b.source.set([db]);
  const a = await gw('pa2', { config: { tcpPorts: [{ listen: '127.0.0.1:0', service: 'db.data' }] } });
  a.catalog.offer('pb2', db, b.eastWest);
  const tcpAddr = a.gateway.addresses()['tcp:db.data']!;
  // reset (no FIN to pass on) before the first tunnel session to pb2 is up (its TLS handshake is still running)
  const early = net.connect(splitAddr(tcpAddr));
  await new Promise((r) => early.once('connect', r));
  early.resetAndDestroy();
  const payload = Buffer.alloc(1_000, 5);
  expect((await roundTrip(tcpAddr, payload)).equals(payload)).toBe(true);
  await waitFor(() => opened.size === 0, { timeoutMs: 3_000 });
  const route = a.balancers.explain('data', 'db');
  const outstanding = route.levels.flatMap((l) => l.targets).reduce((n, t) => n + t.outstanding, 0);
  expect(outstanding).toBe(0);
}, 15_000);

test('a TCP port whose endpoint never completes the connect closes the client after timeouts.connect', async () => {
  // an endpoint whose process listens but never accepts (its event loop is blocked): once its accept
  // queue is full, the kernel drops further SYNs and a connect neither succeeds nor fails
  const child = spawn(
    process.execPath,
    [
      '-e',
      // the port goes out synchronously and the loop blocks in the same callback: nothing is ever accepted
      `const s = require('node:net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
        require('node:fs').writeSync(1, s.address().port + '\\n');
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
      });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  closers.push(() => child.kill('SIGKILL'));
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const endpoint = `127.0.0.1:${Number(line.toString().trim())}`;
  const fillers: net.Socket[] = [];
  closers.push(() => {
    for (const f of fillers) f.destroy();
  });
  for (let i = 0; i < 8; i++) fillers.push(net.connect(splitAddr(endpoint)).on('error', () => undefined));
  const a = await gw('pc', {
    config: { tcpPorts: [{ listen: '127.0.0.1:0', service: 'db.data' }] },
    balancer: { timeouts: { connect: 300, request: 15_000, idle: 60_000 } },
  });
  a.source.set([httpService('data', 'db', [endpoint], true, 'tcp')]);
  const client = net.connect(splitAddr(a.gateway.addresses()['tcp:db.data']!));
  client.on('error', () => undefined);
  let closed = false;
  client.once('close', () => {
    closed = true;
  });
  await waitFor(() => closed, { timeoutMs: 5_000, what: 'the gateway to close the client' });
  const targets = a.balancers.explain('data', 'db').levels.flatMap((l) => l.targets);
  expect(targets.reduce((n, t) => n + t.outstanding, 0)).toBe(0);
}, 15_000);

/** A TLS echo server for `vault.data` of `cluster`, with a workload certificate of that cluster. */
async function vaultBackend(cluster: string) {
  const leaf = await issueLeaf(await mesh.intermediate(cluster), {
    kind: 'workload',
    namespace: 'data',
    serviceAccount: 'vault',
    dnsNames: ['vault.data.svc.clusterset.local'],
  });
  const backend = tls.createServer({ cert: leaf.chainPem, key: leaf.keyPem }, (s) => s.pipe(s));
  backend.listen(0, '127.0.0.1');
  await new Promise((r) => backend.once('listening', r));
  closers.push(() => backend.close());
  return { leaf, address: `127.0.0.1:${(backend.address() as AddressInfo).port}` };
}

test('TLS passthrough by SNI: the client completes its handshake with the backend, never the gateway', async () => {
  const b = await gw('sb');
  const { leaf: backendLeaf, address } = await vaultBackend('sb');
  const vault = httpService('data', 'vault', [address], true, 'tls');
  b.source.set([vault]);
  const client = tls.connect({
    ...splitAddr(b.eastWest),
    servername: 'vault.data.svc.clusterset.local',
    ca: mesh.bundle.toPem(),
  });
  await new Promise((resolve, reject) => {
    client.once('secureConnect', resolve);
    client.once('error', reject);
  });
  const strip = (x: string) => x.toLowerCase().replace(/^0+/, '');
  expect(strip(client.getPeerCertificate().serialNumber)).toBe(strip(backendLeaf.serial));
  client.write('ping');
  const [d] = (await new Promise((r) => client.once('data', (x) => r([x])))) as [Buffer];
  expect(d.toString()).toBe('ping');
  client.destroy();
}, 15_000);

test('TLS passthrough: a refused endpoint is released and the connection goes to the other one', async () => {
  const b = await gw('sb2');
  const { address: live } = await vaultBackend('sb2');
  // a port nobody listens on any more: connecting to it is refused at once
  const gone = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => gone.once('listening', r));
  const deadPort = (gone.address() as AddressInfo).port;
  await new Promise((r) => gone.close(r));
  b.source.set([httpService('data', 'vault', [`127.0.0.1:${deadPort}`, live], true, 'tls')]);
  for (let i = 0; i < 10; i++) {
    const client = tls.connect({
      ...splitAddr(b.eastWest),
      servername: 'vault.data.svc.clusterset.local',
      ca: mesh.bundle.toPem(),
    });
    await new Promise((resolve, reject) => {
      client.once('secureConnect', resolve);
      client.once('error', reject);
    });
    client.destroy();
  }
  const targets = b.balancers.explain('data', 'vault').levels.flatMap((l) => l.targets);
  expect(targets.reduce((n, t) => n + t.outstanding, 0)).toBe(0);
}, 15_000);

test('a remote gateway killed mid-traffic: requests fail over to the other cluster within 3 s', async () => {
  const a = await gw('fa');
  const b = await gw('fb');
  const c = await gw('fc');
  const eb = await echo('fb-api');
  const ec = await echo('fc-api');
  const apiB = httpService('shop', 'api', [eb.address]);
  const apiC = httpService('shop', 'api', [ec.address]);
  b.source.set([apiB]);
  c.source.set([apiC]);
  a.catalog.offer('fb', apiB, b.eastWest);
  a.catalog.offer('fc', apiC, c.eastWest);
  for (let i = 0; i < 10; i++)
    expect((await request(a.egress, { host: 'api.shop.svc.clusterset.local' })).status).toBe(200);
  const killedAt = Date.now();
  await b.gateway.stop();
  let lastFailure = 0;
  let ok = 0;
  const failures: string[] = [];
  const deadline = Date.now() + 8_000;
  while (ok < 30 && Date.now() < deadline) {
    const r = await request(a.egress, { host: 'api.shop.svc.clusterset.local' });
    if (r.status === 200) {
      ok++;
      expect(JSON.parse(r.body).label).toBe('fc-api');
    } else {
      lastFailure = Date.now();
      failures.push(`${r.status} ${r.body}`);
    }
  }
  expect(failures.slice(0, 3)).toEqual([]);
  expect(ok).toBe(30);
  expect(lastFailure === 0 || lastFailure - killedAt < 3_000).toBe(true);
});

describe('bad input', () => {
  let a: TestGateway;
  beforeAll(async () => {
    a = await gw('bad', {
      config: { limits: { headersTimeout: 1_000, helloTimeout: 1_000, maxResetsPerSecond: 20 } },
    });
    const be = await echo('bad-web');
    a.source.set([httpService('shop', 'web', [be.address])]);
  });

  async function rawExchange(address: string, data: string): Promise<string> {
    const sock = net.connect(splitAddr(address));
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => undefined);
    sock.write(data);
    await new Promise((r) => sock.once('close', r));
    return Buffer.concat(chunks).toString('latin1');
  }

  test('request smuggling: Content-Length with Transfer-Encoding is a 400, never forwarded', async () => {
    const reply = await rawExchange(
      a.egress,
      'POST / HTTP/1.1\r\nHost: web.shop.svc.clusterset.local\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: web.shop.svc.clusterset.local\r\n\r\n',
    );
    expect(reply.startsWith('HTTP/1.1 400')).toBe(true);
    expect(reply).not.toContain('bad-web');
  });

  test('oversized headers are a 431', async () => {
    const reply = await rawExchange(
      a.egress,
      `GET / HTTP/1.1\r\nHost: web.shop.svc.clusterset.local\r\nX-Big: ${'a'.repeat(40_000)}\r\nConnection: close\r\n\r\n`,
    );
    expect(reply.startsWith('HTTP/1.1 431')).toBe(true);
  });

  test('slowloris: a header block that never ends is cut off by headersTimeout', async () => {
    const sock = net.connect(splitAddr(a.egress));
    sock.on('error', () => undefined);
    sock.write('GET / HTTP/1.1\r\nHost: web.shop.svc.clusterset.local\r\n');
    const t0 = Date.now();
    const timer = setInterval(() => sock.write('X-A: b\r\n'), 100);
    await new Promise((r) => sock.once('close', r));
    clearInterval(timer);
    // headersTimeout is 1 s in the harness; the connection must not live on much past it
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  test('a silent east-west connection is closed after helloTimeout and counted', async () => {
    const sock = net.connect(splitAddr(a.eastWest));
    sock.on('error', () => undefined);
    await new Promise((r) => sock.once('close', r));
    expect(await refusedCount(a, 'hello-timeout')).toBeGreaterThanOrEqual(1);
  });

  test('HTTP/2 rapid reset loses the session', async () => {
    const session = http2.connect(`http://${a.egress}`);
    session.on('error', () => undefined);
    await new Promise((r) => session.once('connect', r));
    const closed = new Promise((r) => session.once('close', r));
    for (let i = 0; i < 300 && !session.destroyed && !session.closed; i++) {
      try {
        const s = session.request({ ':path': '/', ':authority': 'web.shop.svc.clusterset.local' });
        s.on('error', () => undefined);
        s.close(http2.constants.NGHTTP2_CANCEL);
      } catch {
        break;
      }
      if (i % 50 === 49) await new Promise((r) => setImmediate(r));
    }
    await closed;
    await waitFor(async () => (await refusedCount(a, 'rapid-reset')) >= 1, { timeoutMs: 5_000 });
    // the gateway still serves others
    expect((await request(a.egress, { host: 'web.shop.svc.clusterset.local' })).status).toBe(200);
  });

  test('a gateway leaf from an untrusted root never gets a tunnel', async () => {
    const { createRoot, issueIntermediate } = await import('../../ca/index.ts');
    const other = await createRoot({ trustDomain: 'meshfed.test' });
    const leaf = await issueLeaf(await issueIntermediate(other, { cluster: 'evil' }), {
      kind: 'gateway',
      name: 'evil-gw',
    });
    const sock = tls.connect({
      ...splitAddr(a.eastWest),
      cert: leaf.chainPem,
      key: leaf.keyPem,
      ca: mesh.bundle.toPem(),
      ALPNProtocols: ['meshfed-tunnel/1', 'h2'],
      checkServerIdentity: () => undefined,
    });
    sock.on('error', () => undefined);
    sock.once('secureConnect', () => sock.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
    await new Promise((r) => sock.once('close', r));
    // under TLS 1.3 node reports a refused client certificate as a reset (no code names it): tls-error
    const refused = (await refusedCount(a, 'client-cert-untrusted')) + (await refusedCount(a, 'tls-error'));
    expect(refused).toBeGreaterThanOrEqual(1);
  });
});

describe('connection limits', () => {
  /** Opens a connection; the gateway may still close it right after. */
  async function open(address: string): Promise<net.Socket> {
    const sock = net.connect(splitAddr(address));
    sock.on('error', () => undefined);
    closers.push(() => sock.destroy());
    await new Promise((r) => sock.once('connect', r));
    return sock;
  }

  /** Waits until the gateway holds exactly n client connections. */
  async function holds(g: TestGateway, n: number): Promise<void> {
    await waitFor(
      async () =>
        (await g.registry.getSingleMetric('meshfed_active_connections')?.get())?.values.reduce(
          (sum, v) => sum + v.value,
          0,
        ) === n,
      { timeoutMs: 5_000, what: `the gateway to hold ${n} client connections` },
    );
  }

  test('past the per-listener limit a new connection is closed at accept and counted', async () => {
    const g = await gw('limits-listener', {
      config: { limits: { headersTimeout: 10_000, helloTimeout: 10_000, maxConnections: 2 } },
    });
    const kept = [await open(g.egress), await open(g.egress)];
    await holds(g, 2);
    const third = await open(g.egress);
    await new Promise((r) => third.once('close', r));
    expect(await refusedCount(g, 'listener-connection-limit')).toBe(1);
    // the limit is per listener: the east-west listener still takes one
    await open(g.eastWest);
    await holds(g, 3);
    for (const s of kept) expect(s.destroyed).toBe(false);
    // and the gauge says which listener holds them
    const byListener = (await g.registry.getSingleMetric('meshfed_active_connections')?.get())?.values;
    expect(new Map(byListener?.map((v) => [v.labels.listener, v.value]))).toEqual(
      new Map([
        ['egress', 2],
        ['eastWest', 1],
      ]),
    );
  });

  test('past the gateway-wide limit a connection to any listener is closed and counted', async () => {
    const g = await gw('limits-global', {
      config: { limits: { headersTimeout: 10_000, helloTimeout: 10_000, maxTotalConnections: 2 } },
    });
    const kept = [await open(g.egress), await open(g.eastWest)];
    await holds(g, 2);
    const third = await open(g.eastWest);
    await new Promise((r) => third.once('close', r));
    expect(await refusedCount(g, 'global-connection-limit')).toBe(1);
    expect(kept.map((s) => s.destroyed)).toEqual([false, false]);
    // a slot freed by a closed connection can be taken again
    kept[0]!.destroy();
    await holds(g, 1);
    await open(g.egress);
    await holds(g, 2);
    expect(await refusedCount(g, 'global-connection-limit')).toBe(1);
  });
});
