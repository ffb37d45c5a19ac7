import {
  type AnnounceMessage,
  CatalogStore,
  type EntryMessage,
  SCHEMA_VERSION,
  type TombstoneMessage,
  type WithdrawMessage,
} from '../../federation/index.ts';
import { ProofMaker } from '../../federation/proof.ts';
import { announceMessage, entryMessage } from './helpers.ts';

// The view's rules for several gateways of one cluster (issue #15), message by message: each gateway's
// offers have their own revisions, heartbeat and expiry; tombstones and snapshots speak for the cluster.

const T0 = 1_800_000_000_000;
const STALE_AFTER = 3_000;
const gw = (name: string) => ({ name, address: `127.0.0.${name === 'gw-a' ? 1 : 2}:15443` });

function store(): CatalogStore {
  return new CatalogStore({ self: 'east', staleAfter: STALE_AFTER, maxClockSkew: 1_000 });
}

/** west's entry for shop/orders from gateway `name`, issued at `at` (revision = at in µs + `bump`) */
function entry(name: string, at: number, o: Partial<EntryMessage> = {}): EntryMessage {
  return entryMessage({
    cluster: 'west',
    gateways: [gw(name)],
    revision: at * 1000,
    issuedAt: at,
    expiresAt: at + 10_000,
    ...o,
  });
}

function announce(name: string, at: number): AnnounceMessage {
  return announceMessage({
    cluster: 'west',
    gateways: [gw(name)],
    revision: at * 1000 + 1,
    issuedAt: at,
    expiresAt: at + 10_000,
  });
}

function tombstone(at: number): TombstoneMessage {
  return {
    v: SCHEMA_VERSION,
    type: 'tombstone',
    cluster: 'west',
    namespace: 'shop',
    name: 'orders',
    revision: at * 1000,
    issuedAt: at,
    expiresAt: at + 10_000,
  };
}

function withdraw(name: string, at: number): WithdrawMessage {
  return {
    v: SCHEMA_VERSION,
    type: 'withdraw',
    cluster: 'west',
    gateway: name,
    revision: at * 1000 + 2,
    issuedAt: at,
    expiresAt: at + 10_000,
  };
}

function listed(s: CatalogStore): string[] | undefined {
  return s.instances('shop', 'orders')[0]?.gateways.map((g) => g.name);
}

test('interleaved revisions of two gateways neither refuse nor replace each other', () => {
  const s = store();
  expect(s.applyEntry(entry('gw-a', T0 + 10), undefined, T0)).toBe('applied');
  // older than gw-a's, but news for gw-b
  expect(s.applyEntry(entry('gw-b', T0 + 5, { weight: 7 }), undefined, T0)).toBe('applied');
  expect(listed(s)).toEqual(['gw-a', 'gw-b']);
  // the content is the newest offer's
  expect(s.instances('shop', 'orders')[0]).toMatchObject({ weight: 1, revision: (T0 + 10) * 1000 });
  expect(s.applyEntry(entry('gw-b', T0 + 5), undefined, T0)).toBe('duplicate');
  expect(s.applyEntry(entry('gw-b', T0 + 4), undefined, T0)).toBe('stale_revision');
  expect(s.applyAnnounce(announce('gw-a', T0 + 20), undefined, T0).result).toBe('applied');
  expect(s.applyAnnounce(announce('gw-b', T0 + 15), undefined, T0).result).toBe('applied');
  expect(s.size).toBe(1);
});

test('a gateway silent for staleAfter is not listed while its cluster is heard, and is again when it speaks', () => {
  const s = store();
  s.applyEntry(entry('gw-a', T0), undefined, T0);
  s.applyEntry(entry('gw-b', T0), undefined, T0);
  const later = T0 + STALE_AFTER + 500;
  s.applyAnnounce(announce('gw-b', later), undefined, later);
  s.tick(later, true);
  expect(listed(s)).toEqual(['gw-b']);
  expect(s.clusters()[0]).toMatchObject({ stale: false, gateways: [gw('gw-b')] });
  s.applyAnnounce(announce('gw-a', later + 100), undefined, later + 100);
  expect(listed(s)).toEqual(['gw-a', 'gw-b']);
  // past its expiry (and the clock-skew allowance) a silent gateway is dropped with its offers: a heartbeat
  // then lists it nowhere (a gateway only silent for staleAfter would be listed again)
  const expired = later + 100 + 10_000 + 1_000 + 1;
  s.applyAnnounce(announce('gw-b', expired), undefined, expired);
  s.applyEntry(entry('gw-b', expired), undefined, expired);
  s.tick(expired + 1, true);
  expect(listed(s)).toEqual(['gw-b']);
  s.applyAnnounce(announce('gw-a', expired + 2), undefined, expired + 2);
  expect(listed(s)).toEqual(['gw-b']);
  expect(s.clusters()[0]?.gateways.map((g) => g.name)).toEqual(['gw-a', 'gw-b']);
});

test.each([
  { name: 'between the two offers: the older goes, the newer stays', at: T0 + 5, left: ['gw-b'] },
  { name: 'newer than both: the service goes', at: T0 + 20, left: undefined },
])('a tombstone $name', ({ at, left }) => {
  const s = store();
  s.applyEntry(entry('gw-a', T0), undefined, T0);
  s.applyEntry(entry('gw-b', T0 + 10), undefined, T0);
  expect(s.applyTombstone(tombstone(at), undefined, T0)).toBe('applied');
  expect(listed(s)).toEqual(left);
});

test('a tombstone older than every offer is refused', () => {
  const s = store();
  s.applyEntry(entry('gw-a', T0 + 10), undefined, T0);
  s.applyEntry(entry('gw-b', T0 + 10), undefined, T0);
  expect(s.applyTombstone(tombstone(T0 + 5), undefined, T0)).toBe('stale_revision');
  expect(listed(s)).toEqual(['gw-a', 'gw-b']);
});

test('a withdrawal drops one gateway by name, refuses its older messages, and yields to a restart', () => {
  const s = store();
  s.applyEntry(entry('gw-a', T0), undefined, T0);
  s.applyEntry(entry('gw-b', T0), undefined, T0);
  s.applyAnnounce(announce('gw-a', T0), undefined, T0);
  expect(s.applyWithdraw(withdraw('gw-a', T0 + 1))).toBe('applied');
  expect(listed(s)).toEqual(['gw-b']);
  expect(s.applyWithdraw(withdraw('gw-a', T0 + 1))).toBe('duplicate');
  // still in flight from before the withdrawal: dropped, but not counted as replays
  expect(s.applyEntry(entry('gw-a', T0 + 1), undefined, T0)).toBe('duplicate');
  expect(s.applyAnnounce(announce('gw-a', T0), undefined, T0).result).toBe('duplicate');
  expect(listed(s)).toEqual(['gw-b']);
  // started again: newer revisions
  expect(s.applyAnnounce(announce('gw-a', T0 + 50), undefined, T0 + 50).result).toBe('applied');
  expect(s.applyEntry(entry('gw-a', T0 + 50), undefined, T0 + 50)).toBe('applied');
  expect(listed(s)).toEqual(['gw-a', 'gw-b']);
  // a withdrawal older than its latest announcement is old news
  expect(s.applyWithdraw(withdraw('gw-a', T0 + 10))).toBe('stale_revision');
  // nothing of an unknown cluster is made up
  expect(s.applyWithdraw({ ...withdraw('gw-a', T0 + 60), cluster: 'north' })).toBe('unchanged');
  expect(s.clusters().map((c) => c.cluster)).toEqual(['west']);
});

test('a snapshot prunes every gateway’s older offers of the services it does not list', () => {
  const s = store();
  s.applyEntry(entry('gw-a', T0), undefined, T0);
  s.applyEntry(entry('gw-b', T0 + 10), undefined, T0);
  s.applyEntry(entry('gw-a', T0, { name: 'carts' }), undefined, T0);
  expect(s.prune('west', new Set(['west/shop/carts']), (T0 + 5) * 1000, T0)).toBe(0);
  expect(listed(s)).toEqual(['gw-b']);
  expect(s.prune('west', new Set(['west/shop/carts']), (T0 + 10) * 1000, T0)).toBe(1);
  expect(listed(s)).toBeUndefined();
  expect(s.instances('shop', 'carts')).toHaveLength(1);
});

test('the export holds one row per gateway’s offer and announcement', () => {
  const s = store();
  const proofs = new ProofMaker();
  const proof = (m: object) => proofs.make(`h.${Buffer.from(JSON.stringify(m)).toString('base64url')}.sig`);
  const messages = [entry('gw-a', T0), entry('gw-b', T0 + 3)];
  for (const m of messages) s.applyEntry(m, proof(m), T0);
  for (const m of [announce('gw-a', T0), announce('gw-b', T0)]) s.applyAnnounce(m, proof(m), T0);
  const state = s.exportState();
  const rows = [...state.entries].map((e) => [e.key, e.revision]);
  expect(rows).toEqual([
    ['west/shop/orders', T0 * 1000],
    ['west/shop/orders', (T0 + 3) * 1000],
  ]);
  // two gateways may announce within one millisecond (equal revisions): still two announcements
  expect([...state.announces]).toHaveLength(2);
  // one announcement listing both gateways is one row
  const shared = { ...announce('gw-a', T0 + 9), gateways: [gw('gw-a'), gw('gw-b')] };
  s.applyAnnounce(shared, proof(shared), T0 + 9);
  expect([...state.announces].map((a) => a.revision)).toEqual([(T0 + 9) * 1000 + 1]);
});

describe('silence is measured on the steady clock, expiry on the wall clock', () => {
  // `seen` stands for the monotonic clock a gateway passes (federation-parts' `steady`); the wall clock is
  // stepped by 50 minutes either way between two ticks, as NTP or an operator may do
  const SEEN0 = 5_000;
  const STEP = 50 * 60_000;

  test('a wall clock stepped forward does not make a cluster heard a second ago stale', () => {
    const s = store();
    s.applyEntry(entry('gw-a', T0, { expiresAt: T0 + 2 * STEP }), undefined, SEEN0);
    s.applyAnnounce(announce('gw-a', T0), undefined, SEEN0);
    s.tick(T0 + STEP, true, SEEN0 + 1_000);
    expect(s.clusters()[0]).toMatchObject({ stale: false });
    expect(listed(s)).toEqual(['gw-a']);
    // the same step measured on the clock silence is counted on: stale
    s.tick(T0 + STEP, true, SEEN0 + STALE_AFTER + 1);
    expect(s.clusters()[0]).toMatchObject({ stale: true });
  });

  test('a wall clock stepped back does not keep a silent cluster fresh', () => {
    const s = store();
    s.applyEntry(entry('gw-a', T0), undefined, SEEN0);
    s.applyAnnounce(announce('gw-a', T0), undefined, SEEN0);
    s.tick(T0 - STEP, true, SEEN0 + STALE_AFTER + 1);
    expect(s.clusters()[0]).toMatchObject({ stale: true });
  });

  test('a gateway silent on the steady clock is unlisted while its cluster is heard, whatever the wall clock says', () => {
    const s = store();
    s.applyEntry(entry('gw-a', T0), undefined, SEEN0);
    s.applyEntry(entry('gw-b', T0), undefined, SEEN0);
    const later = SEEN0 + STALE_AFTER + 500;
    s.applyAnnounce(announce('gw-b', T0 + 4_000), undefined, later);
    s.tick(T0 - STEP, true, later);
    expect(listed(s)).toEqual(['gw-b']);
  });

  test('expiries stamped by the other cluster still follow the wall clock', () => {
    const s = store();
    s.applyEntry(entry('gw-a', T0), undefined, SEEN0);
    s.applyAnnounce(announce('gw-a', T0), undefined, SEEN0);
    // heard a moment ago on the steady clock, but the wall clock is past the offer's expiry (+ skew allowance)
    s.tick(T0 + 10_000 + 1_000 + 1, true, SEEN0 + 100);
    expect(listed(s)).toBeUndefined();
  });
});
