// limits.acceptSockets: node's event loop accepts one connection per listening socket per turn, so a gateway
// whose loop is busy queued new connections in the kernel until the backlog overflowed (the chaos flood's
// TCP port and egress listener, Recv-Q 1025/1024 while the gateway used a third of a core). These tests count
// loop turns, not time: n sockets bound with SO_REUSEPORT accept more than one connection a turn.
import net, { type AddressInfo } from 'node:net';
import { MeshfedError, waitFor } from '../../core/index.ts';
import { Counter, createRegistry } from '../../core/metrics.ts';
import { gatewayConfigSchema } from '../../gateway/config.ts';
import { Listeners } from '../../gateway/listeners.ts';

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function listeners(limits: Record<string, unknown> = {}): { l: Listeners; refused: Counter } {
  const limitsParsed = gatewayConfigSchema.parse({
    listeners: { eastWest: '127.0.0.1:0', egress: '127.0.0.1:0' },
    limits,
  }).limits;
  const refused = new Counter({
    name: 'refused_total',
    help: 'refused',
    labelNames: ['listener', 'reason'],
    registers: [createRegistry()],
  });
  const l = new Listeners({
    limits: limitsParsed,
    trustedNetworks: ['127.0.0.0/8'],
    refused,
    reusePort: false,
  });
  closers.push(() => Promise.all(l.servers.map((s) => new Promise((r) => s.close(r)))));
  return { l, refused };
}

/**
 * Binds a data-plane listener whose handler admits (and holds) each connection, keeps the loop busy (about
 * 3 ms of work a turn) while `n` clients connect, and returns connections accepted per turn.
 */
async function acceptedPerTurn(acceptSockets: number, n: number): Promise<number> {
  const { l } = listeners({ acceptSockets });
  let accepted = 0;
  const held: net.Socket[] = [];
  closers.push(() => {
    for (const s of held) s.destroy();
  });
  const make = () =>
    net.createServer((s) => {
      if (l.admit(s, 'egress')) accepted++;
      held.push(s);
    });
  await l.bind(make, { host: '127.0.0.1', port: 0 }, 'egress');
  expect(l.servers).toHaveLength(acceptSockets);
  const port = Number(l.bound.egress!.split(':').pop());
  // the clients connect inside the first busy turn: on loopback the kernel completes their handshakes at
  // once, and from then on only the loop's accepts (one per socket per turn) let them in
  const clients: net.Socket[] = [];
  closers.push(() => {
    for (const c of clients) c.destroy();
  });
  let turns = 0;
  let busy = true;
  const spin = () => {
    if (!busy) return;
    if (turns === 0)
      for (let i = 0; i < n; i++) {
        const c = net.connect(port, '127.0.0.1');
        c.on('error', () => undefined);
        clients.push(c);
      }
    turns++;
    const t = performance.now();
    while (performance.now() - t < 3);
    setImmediate(spin);
  };
  spin();
  try {
    await waitFor(() => accepted === n, { timeoutMs: 20_000, what: `${n} connections accepted` });
  } finally {
    busy = false;
  }
  return accepted / turns;
}

test('one listening socket accepts at most one connection a loop turn (why the gateway binds several)', async () => {
  expect(await acceptedPerTurn(1, 60)).toBeLessThanOrEqual(1);
});

test('eight sockets with SO_REUSEPORT accept several connections a turn, and all of them', async () => {
  expect(await acceptedPerTurn(8, 240)).toBeGreaterThan(2.5);
});

test('the per-listener connection limit holds over all of its sockets', async () => {
  const { l, refused } = listeners({ acceptSockets: 4, maxConnections: 3 });
  const held: net.Socket[] = [];
  const make = () =>
    net.createServer((s) => {
      l.admit(s, 'egress');
      held.push(s);
    });
  await l.bind(make, { host: '127.0.0.1', port: 0 }, 'egress');
  const port = Number(l.bound.egress!.split(':').pop());
  const clients = Array.from({ length: 12 }, () => {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => undefined);
    return c;
  });
  closers.push(() => {
    for (const s of [...held, ...clients]) s.destroy();
  });
  await waitFor(() => held.length === 12, { timeoutMs: 10_000, what: '12 connections accepted' });
  const refusedNow = (await refused.get()).values.find(
    (v) => v.labels.reason === 'listener-connection-limit',
  );
  expect(refusedNow?.value).toBe(9);
  expect(held.filter((s) => !s.destroyed)).toHaveLength(3);
});

test('a port another process of this user holds with SO_REUSEPORT is refused, not shared', async () => {
  const other = net.createServer();
  await new Promise<void>((r) => other.listen({ port: 0, host: '127.0.0.1', reusePort: true }, r));
  closers.push(() => new Promise((r) => other.close(r)));
  const port = (other.address() as AddressInfo).port;
  const { l } = listeners({ acceptSockets: 4 });
  const bind = l.bind(() => net.createServer(), { host: '127.0.0.1', port }, 'egress');
  await expect(bind).rejects.toThrow(MeshfedError);
  await expect(bind).rejects.toThrow(new RegExp(`listener egress cannot bind 127.0.0.1:${port}`));
  expect(l.servers).toHaveLength(0);
});

test('the admin listener is one socket whatever acceptSockets says', async () => {
  const { l } = listeners({ acceptSockets: 4 });
  await l.bind(net.createServer(), { host: '127.0.0.1', port: 0 }, 'admin');
  expect(l.servers).toHaveLength(1);
});
