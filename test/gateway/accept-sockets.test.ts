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
 * Binds data-plane listener `name` whose handler admits (and holds) each connection, keeps the loop busy (about
 * 3 ms of work a turn) while `n` clients connect, and returns connections accepted per turn and the turns from
 * the first accept to the last.
 */
async function acceptTurns(
  limits: Record<string, unknown>,
  n: number,
  name = 'egress',
): Promise<{ perTurn: number; acceptingTurns: number; sockets: number }> {
  const { l } = listeners(limits);
  let accepted = 0;
  let firstTurn = 0;
  let lastTurn = 0;
  const held: net.Socket[] = [];
  closers.push(() => {
    for (const s of held) s.destroy();
  });
  const make = () =>
    net.createServer((s) => {
      if (l.admit(s, name)) accepted++;
      if (accepted === 1) firstTurn = turns;
      lastTurn = turns;
      held.push(s);
    });
  await l.bind(make, { host: '127.0.0.1', port: 0 }, name);
  const port = Number(l.bound[name]!.split(':').pop());
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
  return { perTurn: accepted / turns, acceptingTurns: lastTurn - firstTurn + 1, sockets: l.servers.length };
}

async function acceptedPerTurn(acceptSockets: number, n: number): Promise<number> {
  const r = await acceptTurns({ acceptSockets }, n);
  expect(r.sockets).toBe(acceptSockets);
  return r.perTurn;
}

test('one listening socket accepts at most one connection a loop turn (why the gateway binds several)', async () => {
  expect(await acceptedPerTurn(1, 60)).toBeLessThanOrEqual(1);
});

test('eight sockets with SO_REUSEPORT accept several connections a turn, and all of them', async () => {
  expect(await acceptedPerTurn(8, 240)).toBeGreaterThan(2.5);
});

// The chaos flood (docs/reliability.md, "the TCP kind"): a TCP port gets a new connection per call, and with
// eight sockets a loaded gateway accepted at most eight a turn; its callers queued in the kernel, connected
// and unanswered, until their deadline. 160 connections need at least 20 turns on eight sockets; on the TCP
// ports' 64 the kernel's spread puts more than 15 on one socket about once in 10^5 runs.
test('regression: a TCP port accepts a burst of connections in a few turns, as many a turn as its 64 sockets', async () => {
  const r = await acceptTurns({}, 160, 'tcp:echo.chaos');
  expect(r.acceptingTurns).toBeLessThan(16);
  expect(r.sockets).toBe(64);
});

test('the egress and east-west listeners keep limits.acceptSockets; TCP ports take limits.tcpPortAcceptSockets', async () => {
  const { l } = listeners({ acceptSockets: 3, tcpPortAcceptSockets: 5 });
  await l.bind(() => net.createServer(), { host: '127.0.0.1', port: 0 }, 'egress');
  await l.bind(() => net.createServer(), { host: '127.0.0.1', port: 0 }, 'tcp:echo.chaos');
  expect(l.servers).toHaveLength(8);
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
