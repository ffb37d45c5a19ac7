// Handshake admission's shares: the listener's, each source address's, and what a resumed handshake costs.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import { createRoot } from '../../ca/index.ts';
import { Counter, createRegistry } from '../../core/metrics.ts';
import { parseClientHello } from '../../gateway/client-hello.ts';
import {
  HandshakeAdmission,
  RESUMED_COST,
  sourceKey,
  ticketIssuedBy,
} from '../../gateway/handshake-admission.ts';

let port = 10_000;
/** a connection as admission sees it: its remote address and port, destroy() and a close event */
function conn(address: string): Socket & { destroyed: boolean } {
  const e = new EventEmitter() as EventEmitter & { destroyed: boolean };
  return Object.assign(e, {
    remoteAddress: address,
    remotePort: port++,
    destroyed: false,
    destroy() {
      e.destroyed = true;
      e.emit('close');
    },
  }) as unknown as Socket & { destroyed: boolean };
}

function admission(o: { perSecond?: number; perSource?: number; maxPerSource?: number; max?: number }) {
  let now = 0;
  const refused = new Counter({
    name: 'refused_total',
    help: 'refused',
    labelNames: ['listener', 'reason'],
    registers: [createRegistry()],
  });
  const a = new HandshakeAdmission({
    maxInProgress: o.max ?? 1_000,
    perSecond: o.perSecond ?? 1_000,
    maxInProgressPerSource: o.maxPerSource ?? 1_000,
    perSecondPerSource: o.perSource ?? 1_000,
    refused,
    listener: 'eastWest',
    now: () => now,
  });
  const reasons = async () =>
    Object.fromEntries((await refused.get()).values.map((v) => [v.labels.reason, v.value]));
  return { a, reasons, advance: (ms: number) => (now += ms) };
}

/** admits `n` connections from `address` and completes each handshake at once (full, or resumed) */
function dial(a: HandshakeAdmission, address: string, n: number, resumed = false): number {
  let admitted = 0;
  for (let i = 0; i < n; i++) {
    const s = conn(address);
    if (a.admit(s)) {
      admitted++;
      a.secured(Object.assign(s, { isSessionReused: () => resumed }) as unknown as TLSSocket);
    }
  }
  return admitted;
}

test('one source past its rate is refused while another is still admitted', async () => {
  const { a, reasons } = admission({ perSecond: 200, perSource: 10 });
  expect(dial(a, '192.0.2.7', 30)).toBe(10);
  expect(dial(a, '192.0.2.8', 5)).toBe(5);
  expect(await reasons()).toEqual({ 'handshake-source-rate': 20 });
});

test('a source refills at its own rate', () => {
  const { a, advance } = admission({ perSource: 10 });
  expect(dial(a, '192.0.2.7', 10)).toBe(10);
  expect(dial(a, '192.0.2.7', 1)).toBe(0);
  advance(500);
  expect(dial(a, '192.0.2.7', 10)).toBe(5);
});

test('one source cannot hold every handshake slot: its share of those in progress is bounded', async () => {
  const { a, reasons } = admission({ max: 100, maxPerSource: 3 });
  const stalled = Array.from({ length: 5 }, () => conn('192.0.2.7'));
  expect(stalled.map((s) => a.admit(s))).toEqual([true, true, true, false, false]);
  expect(a.admit(conn('192.0.2.9'))).toBe(true);
  expect(await reasons()).toEqual({ 'handshake-source-limit': 2 });
  // a stalled handshake that closes frees its source's slot
  stalled[0]!.destroy();
  expect(a.admit(conn('192.0.2.7'))).toBe(true);
});

test('the listener-wide rate still bounds many sources together', async () => {
  const { a, reasons } = admission({ perSecond: 20, perSource: 10 });
  let admitted = 0;
  for (let i = 0; i < 10; i++) admitted += dial(a, `192.0.2.${i + 1}`, 5);
  expect(admitted).toBe(20);
  expect(await reasons()).toEqual({ 'handshake-rate': 30 });
});

test('a resumed handshake costs its source nothing: a peer may dial per request', () => {
  const { a } = admission({ perSecond: 1_000, perSource: 10 });
  expect(dial(a, '192.0.2.7', 300, true)).toBe(300);
});

test('a resumed handshake costs the listener RESUMED_COST of a token', () => {
  const { a } = admission({ perSecond: 10, perSource: 10 });
  const admitted = dial(a, '192.0.2.7', 1_000, true);
  // 10 tokens at RESUMED_COST each, less the whole token the last one is charged until it completes
  // (about 180; full handshakes: 10)
  const expected = (10 - 1) / RESUMED_COST + 1;
  expect(admitted).toBeGreaterThanOrEqual(expected - 2);
  expect(admitted).toBeLessThanOrEqual(expected);
});

test('dials that offer a ticket of ours are admitted for RESUMED_COST each: five at once on a nearly empty bucket', async () => {
  const { a, reasons } = admission({ perSecond: 10, perSource: 10 });
  expect(dial(a, '192.0.2.7', 9)).toBe(9);
  // one token left: five dials under way at once, each offering a ticket this gateway issued
  const offering = Array.from({ length: 5 }, () => conn('192.0.2.7'));
  expect(offering.map((s) => a.admit(s, true))).toEqual([true, true, true, true, true]);
  for (const s of offering)
    a.secured(Object.assign(s, { isSessionReused: () => true }) as unknown as TLSSocket);
  expect(await reasons()).toEqual({});
  // the same five without a ticket known to be ours: each is charged a whole token until it completes
  const { a: b } = admission({ perSecond: 10, perSource: 10 });
  expect(dial(b, '192.0.2.7', 9)).toBe(9);
  expect(Array.from({ length: 5 }, () => b.admit(conn('192.0.2.7')))).toEqual([
    true,
    false,
    false,
    false,
    false,
  ]);
});

test('a ticket of ours that ends in a full handshake, or in none, is charged the rest of a whole token', async () => {
  const { a, reasons, advance } = admission({ perSecond: 10, perSource: 1_000 });
  // five end full (the ticket had expired), five close before their handshake ends (a binder that failed)
  for (let i = 0; i < 5; i++) {
    const s = conn('192.0.2.7');
    expect(a.admit(s, true)).toBe(true);
    a.secured(Object.assign(s, { isSessionReused: () => false }) as unknown as TLSSocket);
  }
  for (let i = 0; i < 5; i++) {
    const s = conn('192.0.2.7');
    expect(a.admit(s, true)).toBe(true);
    s.destroy();
  }
  // ten whole tokens spent: the bucket is empty for full handshakes and for tickets alike
  expect(a.admit(conn('192.0.2.8'))).toBe(false);
  expect(a.admit(conn('192.0.2.8'), true)).toBe(false);
  expect(await reasons()).toEqual({ 'handshake-rate': 2 });
  advance(150);
  expect(a.admit(conn('192.0.2.8'))).toBe(true);
});

test("a ticket's source share is charged when it does not resume", () => {
  const { a } = admission({ perSecond: 1_000, perSource: 3 });
  for (let i = 0; i < 3; i++) {
    const s = conn('192.0.2.7');
    expect(a.admit(s, true)).toBe(true);
    a.secured(Object.assign(s, { isSessionReused: () => false }) as unknown as TLSSocket);
  }
  expect(a.admit(conn('192.0.2.7'))).toBe(false);
});

describe('ticketIssuedBy', () => {
  /** a TLS 1.3 server, a first connection that gets a ticket, and the ClientHello of a second that offers it */
  async function offeredTicket(): Promise<{
    server: tls.Server;
    other: tls.Server;
    hello: Buffer;
    rotate: () => void;
  }> {
    const root = await createRoot({ trustDomain: 'tickets.example' });
    const options = { cert: root.certPem, key: root.keyPem, minVersion: 'TLSv1.3' as const };
    const server = tls.createServer(options, (s) => s.end('x'));
    const other = tls.createServer(options);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const connect = (session?: Buffer, relay?: number) =>
      new Promise<Buffer | undefined>((resolve, reject) => {
        let ticket: Buffer | undefined;
        const s = tls.connect({ port: relay ?? port, host: '127.0.0.1', rejectUnauthorized: false, session });
        s.on('session', (t: Buffer) => {
          ticket = t;
        });
        s.on('error', reject);
        s.on('data', () => undefined);
        s.on('close', () => resolve(ticket));
      });
    const ticket = await connect();
    expect(ticket).toBeDefined();
    // a relay that keeps the first bytes the second connection sends: its ClientHello
    let hello: Buffer | undefined;
    const relay = net.createServer((c) => {
      const up = net.connect(port, '127.0.0.1');
      c.once('data', (d: Buffer) => {
        hello = d;
        up.write(d);
        c.pipe(up);
      });
      up.pipe(c);
      c.on('error', () => undefined);
      up.on('error', () => undefined);
      // either side gone takes the other with it (pipe alone leaves the relay's side half open)
      c.once('close', () => up.destroy());
      up.once('close', () => c.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    await connect(ticket, (relay.address() as AddressInfo).port);
    relay.close();
    server.close();
    return { server, other, hello: hello!, rotate: () => server.setSecureContext(options) };
  }

  test("a ticket this server issued is known by its key name and MAC; another server's, or one byte changed, is not", async () => {
    const { server, other, hello, rotate } = await offeredTicket();
    const parsed = parseClientHello(hello);
    if (!parsed.ok) throw new Error(`the ClientHello did not parse: ${parsed.reason}`);
    const ticket = parsed.ticket;
    expect(ticket).toBeDefined();
    expect(ticketIssuedBy(server, ticket)).toBe(true);
    expect(ticketIssuedBy(other, ticket)).toBe(false);
    const changed = Buffer.from(ticket!);
    changed[40] = changed[40]! ^ 1;
    expect(ticketIssuedBy(server, changed)).toBe(false);
    expect(ticketIssuedBy(server, ticket!.subarray(0, 60))).toBe(false);
    expect(ticketIssuedBy(server, undefined)).toBe(false);
    // the MAC secret changed under the same key name: the secret checked is the one in force, not one kept from before
    const keys = server.getTicketKeys();
    server.setTicketKeys(Buffer.concat([keys.subarray(0, 16), randomBytes(32)]));
    expect(ticketIssuedBy(server, ticket)).toBe(false);
    server.setTicketKeys(keys);
    expect(ticketIssuedBy(server, ticket)).toBe(true);
    // new ticket keys (a new secure context, as on every rotation): the old ticket is no longer ours
    rotate();
    expect(ticketIssuedBy(server, ticket)).toBe(false);
  });
});

test.each([
  ['127.0.0.1', '127.0.0.1'],
  ['::ffff:10.1.2.3', '10.1.2.3'],
  ['2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'],
  ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
  ['2001:DB8::1', '2001:db8:0:0::/64'],
  ['::1', '0:0:0:0::/64'],
  ['fe80::1%eth0', 'fe80:0:0:0::/64'],
])('source key of %s is %s', (address, key) => {
  expect(sourceKey(address)).toBe(key);
});
