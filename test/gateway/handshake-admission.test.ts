// Handshake admission's shares: the listener's, each source address's, and what a resumed handshake costs.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Counter, createRegistry } from '../../core/metrics.ts';
import { HandshakeAdmission, RESUMED_COST, sourceKey } from '../../gateway/handshake-admission.ts';

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
