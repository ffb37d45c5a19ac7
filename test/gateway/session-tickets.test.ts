import { jest } from '@jest/globals';
import { createRoot, type IssuedLeaf, issueIntermediate, issueLeaf } from '../../ca/index.ts';
import type { VerifiedPeer } from '../../gateway/peer-dial.ts';
import { SessionTickets } from '../../gateway/session-tickets.ts';

// The rules both pools that dial remote gateways (the tunnel's and the fast path's) keep TLS session tickets
// by. A resumed handshake shows us no certificate: accepting one is safe only because of these rules.

let before: IssuedLeaf;
let after: IssuedLeaf;

beforeAll(async () => {
  const root = await createRoot({ trustDomain: 'meshfed.test' });
  const ca = await issueIntermediate(root, { cluster: 'east' });
  before = await issueLeaf(ca, { kind: 'gateway', name: 'east-gw' });
  after = await issueLeaf(ca, { kind: 'gateway', name: 'east-gw' });
});

const WEST = 'spiffe://meshfed.test/cluster/west/gateway/west-gw';
const ADDRESS = '127.0.0.1:15443';
const FULL = { isSessionReused: () => false };
const RESUMED = { isSessionReused: () => true };

function peer(o: { notAfter?: number; spiffeId?: string } = {}): VerifiedPeer {
  return {
    notAfter: o.notAfter ?? Date.now() + 3_600_000,
    chain: [Buffer.from('leaf')],
    spiffeId: o.spiffeId ?? WEST,
  };
}

/** Tickets whose current leaf is `before` until `rotate()` makes it `after`. */
function rotating() {
  let ours = before;
  const tickets = new SessionTickets(() => ours);
  return {
    tickets,
    rotate: () => {
      ours = after;
      tickets.clear();
    },
    /** our leaf changes, and the pool has not been told yet */
    swapLeaf: () => {
      ours = after;
    },
  };
}

/** a full dial to west presenting `leaf`: verified by `p`, then given `ticket` */
function fullDial(tickets: SessionTickets, leaf: IssuedLeaf, ticket: Buffer, p = peer()): void {
  const d = tickets.dial('west', ADDRESS, leaf);
  d.verify(FULL, () => p);
  d.received(ticket);
}

test('a ticket from a verified connection is offered on the next dial to the same upstream with the same leaf, and a session resumed from it stands on that check', () => {
  const { tickets } = rotating();
  const p = peer();
  fullDial(tickets, before, Buffer.from('t1'), p);
  const next = tickets.dial('west', ADDRESS, before);
  expect(next.ticket).toEqual(Buffer.from('t1'));
  const check = jest.fn(() => peer({ spiffeId: 'not this one' }));
  expect(next.verify(RESUMED, check)).toEqual(p);
  expect(check).not.toHaveBeenCalled();
  // a handshake that was not resumed is checked in full even though a ticket was offered
  const full = tickets.dial('west', ADDRESS, before);
  expect(full.verify(FULL, check).spiffeId).toBe('not this one');
  expect(check).toHaveBeenCalledTimes(1);
});

test('a ticket is offered only to the upstream it came from (cluster and address)', () => {
  const { tickets } = rotating();
  fullDial(tickets, before, Buffer.from('t1'));
  expect(tickets.dial('west', '127.0.0.1:15444', before).ticket).toBeUndefined();
  expect(tickets.dial('north', ADDRESS, before).ticket).toBeUndefined();
  expect(tickets.dial('west', ADDRESS, before).ticket).toBeDefined();
});

test('a ticket is offered only for the leaf we presented on its connection', () => {
  const { tickets } = rotating();
  fullDial(tickets, before, Buffer.from('t1'));
  expect(tickets.dial('west', ADDRESS, after).ticket).toBeUndefined();
  expect(tickets.dial('west', ADDRESS, before).ticket).toBeDefined();
});

test('a ticket is not offered once the peer certificate it was verified with has expired', () => {
  const { tickets } = rotating();
  fullDial(tickets, before, Buffer.from('t1'), peer({ notAfter: Date.now() - 1 }));
  expect(tickets.dial('west', ADDRESS, before).ticket).toBeUndefined();
});

test('a session resumed after the peer certificate expired (it was offered while valid) is checked in full', () => {
  const { tickets } = rotating();
  const notAfter = Date.now() + 60_000;
  fullDial(tickets, before, Buffer.from('t1'), peer({ notAfter }));
  const d = tickets.dial('west', ADDRESS, before);
  expect(d.ticket).toBeDefined();
  const now = jest.spyOn(Date, 'now').mockReturnValue(notAfter + 1);
  try {
    const check = jest.fn(() => peer({ spiffeId: 'checked' }));
    expect(d.verify(RESUMED, check).spiffeId).toBe('checked');
    expect(check).toHaveBeenCalledTimes(1);
  } finally {
    now.mockRestore();
  }
});

test('a handshake that says it resumed, on a dial that offered no ticket, is checked in full', () => {
  const { tickets } = rotating();
  const check = jest.fn(() => peer({ spiffeId: 'checked' }));
  expect(tickets.dial('west', ADDRESS, before).verify(RESUMED, check).spiffeId).toBe('checked');
  expect(check).toHaveBeenCalledTimes(1);
});

test.each([
  ['our leaf rotated', (r: ReturnType<typeof rotating>) => r.rotate()],
  ['the trust bundle changed', (r: ReturnType<typeof rotating>) => r.tickets.clear()],
])('clear() (%s) drops every ticket kept', (_why, change) => {
  const r = rotating();
  fullDial(r.tickets, before, Buffer.from('t1'));
  change(r);
  expect(r.tickets.dial('west', ADDRESS, before).ticket).toBeUndefined();
  expect(r.tickets.dial('west', ADDRESS, after).ticket).toBeUndefined();
});

test.each([
  ['the pool was told', 'rotate'],
  ['before the pool is told', 'swapLeaf'],
] as const)(
  'regression: a ticket that arrives after our leaf rotated (%s) is not kept: the resumed session would present the old leaf',
  (_when, change) => {
    const r = rotating();
    const d = r.tickets.dial('west', ADDRESS, before);
    d.verify(FULL, () => peer());
    r[change]();
    d.received(Buffer.from('late'));
    expect(r.tickets.dial('west', ADDRESS, before).ticket).toBeUndefined();
    expect(r.tickets.dial('west', ADDRESS, after).ticket).toBeUndefined();
  },
);

test('a dial begun before the trust bundle changed keeps no ticket, and a session it resumed from a ticket offered before is checked in full', () => {
  const { tickets } = rotating();
  fullDial(tickets, before, Buffer.from('t1'));
  const d = tickets.dial('west', ADDRESS, before);
  expect(d.ticket).toBeDefined();
  tickets.clear();
  const check = jest.fn(() => peer({ spiffeId: 'checked' }));
  expect(d.verify(RESUMED, check).spiffeId).toBe('checked');
  expect(check).toHaveBeenCalledTimes(1);
  d.received(Buffer.from('t2'));
  expect(tickets.dial('west', ADDRESS, before).ticket).toBeUndefined();
});

test('a ticket that arrives before the peer is verified is kept only once it is', () => {
  const { tickets } = rotating();
  const d = tickets.dial('west', ADDRESS, before);
  d.received(Buffer.from('early'));
  expect(tickets.dial('west', ADDRESS, before).ticket).toBeUndefined();
  d.verify(FULL, () => peer());
  expect(tickets.dial('west', ADDRESS, before).ticket).toEqual(Buffer.from('early'));
});

test('a ticket that arrives before a check that fails is never kept', () => {
  const { tickets } = rotating();
  const d = tickets.dial('west', ADDRESS, before);
  d.received(Buffer.from('early'));
  const refused = new Error('not a gateway of west');
  expect(() =>
    d.verify(FULL, () => {
      throw refused;
    }),
  ).toThrow(refused);
  d.received(Buffer.from('later'));
  expect(tickets.dial('west', ADDRESS, before).ticket).toBeUndefined();
});

test('a ticket that arrives before verification, when our leaf rotated before the check, is not kept', () => {
  const r = rotating();
  const d = r.tickets.dial('west', ADDRESS, before);
  d.received(Buffer.from('early'));
  r.swapLeaf();
  d.verify(FULL, () => peer());
  expect(r.tickets.dial('west', ADDRESS, before).ticket).toBeUndefined();
});

test('the last ticket from a verified connection replaces the one before', () => {
  const { tickets } = rotating();
  fullDial(tickets, before, Buffer.from('t1'));
  fullDial(tickets, before, Buffer.from('t2'));
  expect(tickets.dial('west', ADDRESS, before).ticket).toEqual(Buffer.from('t2'));
});
