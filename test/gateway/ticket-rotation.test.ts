import { once } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { createRoot, issueIntermediate, issueLeaf, TrustBundle, verify } from '../../ca/index.ts';
import { waitFor } from '../../core/index.ts';
import { ROTATION_SPREAD_MS } from '../../gateway/h1/pool.ts';
import { chainHeaderOf } from '../../gateway/identity.ts';
import { westAndPool } from './h1/west-gateway.ts';

// What the root-rotation chaos scenario found (bench/chaos/scenarios/root-rotation.ts): when a gateway's leaf
// rotated, a TLS 1.3 ticket from a connection made just before (tickets arrive after the handshake) was kept
// and offered on the next dial. The resumed session presented the old leaf while the requests carried the
// new leaf's chain, so the remote gateway refused them: requests failed with 502 while intermediates were
// re-issued under a new root.

/**
 * East's fast-path pool dialling a remote gateway of west, with two leaves of east: it presents `before` until
 * `rotate()` makes `after` current and tells the pool, as the gateway does when its leaf rotates.
 * `reissued`: `after` comes from a new intermediate (root rotation step 2), so the two chains differ.
 */
async function rotatingEast(o: { reissued?: boolean } = {}) {
  const root = await createRoot({ trustDomain: 'meshfed.test' });
  const bundle = TrustBundle.fromPem(root.certPem);
  const eastCa = await issueIntermediate(root, { cluster: 'east' });
  const before = await issueLeaf(eastCa, { kind: 'gateway', name: 'east-gw' });
  const afterCa = o.reissued ? await issueIntermediate(root, { cluster: 'east' }) : eastCa;
  const after = await issueLeaf(afterCa, { kind: 'gateway', name: 'east-gw' });
  let ours = before;
  const w = await westAndPool(() => ours, bundle, root);
  const rotate = () => {
    ours = after;
    w.pool.rotate();
  };
  return { w, bundle, before, after, rotate };
}

test('regression: a TLS ticket that arrives after our leaf rotated is not offered again (the resumed session would present the old leaf)', async () => {
  const { w, before, after, rotate } = await rotatingEast();
  try {
    const first = await w.pool.acquire(w.address, 'west');
    w.hold(first.socket);
    const ticket = once(first.socket, 'session');
    // our leaf rotates between the handshake and the ticket, which TLS 1.3 sends after it
    rotate();
    await ticket;
    first.socket.destroy();
    const second = await w.pool.acquire(w.address, 'west');
    w.hold(second.socket);
    expect((second.socket as TLSSocket).isSessionReused()).toBe(false);
    await waitFor(() => w.seen.length === 2, { timeoutMs: 5_000, what: 'the server to accept both' });
    expect(w.seen.map((c) => c.serialNumber.toLowerCase())).toEqual([before.serial, after.serial]);
  } finally {
    w.close();
  }
}, 30_000);

test('regression: a connection dialled as our leaf rotated carries the chain of the leaf it presented, not the new one (the peer refused such requests as peer-identity, 403), and closes after that request', async () => {
  // a rotation re-issues the intermediate too (root rotation step 2): the two leaves have different chains
  const { w, bundle, before, after, rotate } = await rotatingEast({ reissued: true });
  try {
    const dialling = w.pool.acquire(w.address, 'west');
    // the leaf rotates while the handshake is under way
    rotate();
    const c = await dialling;
    w.hold(c.socket);
    expect(w.pool.leafOf(c.socket)).toBe(before);
    await waitFor(() => w.seen.length === 1, { timeoutMs: 5_000, what: 'the server to accept' });
    // what the peer gets: the leaf it saw and the chain in x-meshfed-chain, which must verify together
    const header = chainHeaderOf(w.pool.leafOf(c.socket)!);
    const chain = [w.seen[0]!.raw, ...header.split(',').map((b) => Buffer.from(b, 'base64'))];
    expect(verify(chain, bundle, { kinds: ['gateway'] }).serial).toBe(before.serial);
    expect(header).not.toBe(chainHeaderOf(after));
    // it serves the request it was dialled for, then closes: it stayed pooled with the old leaf for good
    w.pool.release(c);
    expect(c.socket.writableEnded).toBe(true);
    expect(w.pool.takeIdle(w.address, 'west')).toBeUndefined();
  } finally {
    w.close();
  }
}, 30_000);

// The same scenario at 1,000 req/s: when a gateway's leaf rotated, every pooled fast-path connection it held
// was retired at once (idle ones closed there and then), so every request after it needed a new connection:
// a burst of TLS handshakes on both gateways, and requests waiting for them past their per-try timeout.

test('regression: when our leaf rotates, the pooled connections that present the old one retire over a few seconds, not all at once', async () => {
  const { w, before, after, rotate } = await rotatingEast();
  try {
    const held = await Promise.all([1, 2, 3, 4].map(() => w.pool.acquire(w.address, 'west')));
    for (const c of held) {
      w.hold(c.socket);
      w.pool.release(c);
    }
    await waitFor(() => w.seen.length === 4, {
      timeoutMs: 5_000,
      what: 'the server to accept the four dials',
    });
    expect(w.seen.map((x) => x.serialNumber.toLowerCase())).toEqual(Array(4).fill(before.serial));
    const t0 = performance.now();
    rotate();
    // they keep serving meanwhile: the next request takes one of them instead of dialling
    expect(held.filter((c) => c.socket.destroyed).length).toBeLessThan(held.length);
    const next = w.pool.takeIdle(w.address, 'west');
    expect(held).toContain(next);
    w.pool.release(next!);
    // and all of them are gone within the spread, so no connection presents the old leaf for long
    await waitFor(() => held.every((c) => c.socket.destroyed), {
      timeoutMs: ROTATION_SPREAD_MS + 5_000,
      what: 'every connection of the old leaf to close',
    });
    expect(performance.now() - t0).toBeLessThan(ROTATION_SPREAD_MS + 5_000);
    // the next dial presents the new leaf
    const fresh = await w.pool.acquire(w.address, 'west');
    w.hold(fresh.socket);
    await waitFor(() => w.seen.length === 5, { timeoutMs: 5_000, what: 'the server to accept the new dial' });
    expect(w.seen[4]!.serialNumber.toLowerCase()).toBe(after.serial);
  } finally {
    w.close();
  }
}, 30_000);
