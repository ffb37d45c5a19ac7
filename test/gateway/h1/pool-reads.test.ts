import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createRoot, issueIntermediate, issueLeaf, TrustBundle } from '../../../ca/index.ts';
import { waitFor } from '../../../core/index.ts';
import type { PooledConnection } from '../../../gateway/h1/pooled-connection.ts';
import { westAndPool } from './west-gateway.ts';

// The pool's connections, plain to a local endpoint and mTLS to a remote gateway, read into one buffer of the
// gateway's own (sharedReads) rather than a fresh allocation per read (docs/performance.md, "Sixth round" and
// "Twelfth round"). What reaches the exchange must still be its own bytes: kept past the next read, paused for a
// slow client, and the end of the stream seen.

/** 300 KiB that differ from one read to the next */
const BODY = Buffer.from(Array.from({ length: 300 * 1024 }, (_, i) => (i * 7 + (i >> 10)) & 0xff));

async function pool() {
  const root = await createRoot({ trustDomain: 'meshfed.test' });
  const east = await issueLeaf(await issueIntermediate(root, { cluster: 'east' }), {
    kind: 'gateway',
    name: 'east-gw',
  });
  // the remote gateway sends BODY once it is told to, and ends
  const accepted: TLSSocket[] = [];
  const w = await westAndPool(
    () => east,
    TrustBundle.fromPem(root.certPem),
    root,
    undefined,
    (s) => accepted.push(s),
  );
  return { w, accepted };
}

/** What `c` reads, with the reader paused for 50 ms after the second piece, until it closes. */
async function readAll(c: PooledConnection): Promise<Buffer[]> {
  const pieces: Buffer[] = [];
  let closed = false;
  c.attach({
    onData: (d) => {
      // kept as they came, without a copy of ours
      pieces.push(d);
      // a client that does not keep up: the connection stops reading for a while
      if (pieces.length === 2) {
        c.socket.pause();
        setTimeout(() => c.socket.resume(), 50);
      }
    },
    onClose: () => {
      closed = true;
    },
    onTimeout: () => undefined,
  });
  await waitFor(() => closed, { timeoutMs: 10_000, what: 'the peer to end the connection' });
  return pieces;
}

test('the bytes of a local endpoint reach the exchange whole, each piece its own, through pauses and the end', async () => {
  const { w } = await pool();
  const endpoint = net.createServer((s) => {
    s.on('error', () => undefined);
    s.end(BODY);
  });
  endpoint.listen(0, '127.0.0.1');
  await once(endpoint, 'listening');
  try {
    const c = await w.pool.acquire(`127.0.0.1:${(endpoint.address() as AddressInfo).port}`);
    const pieces = await readAll(c);
    expect(pieces.length).toBeGreaterThan(2);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThan(64 * 1024);
    expect(Buffer.concat(pieces).equals(BODY)).toBe(true);
  } finally {
    w.close();
    endpoint.close();
  }
}, 30_000);

test("the cleartext of a remote gateway's mTLS connection reaches the exchange the same way", async () => {
  const { w, accepted } = await pool();
  try {
    const c = await w.pool.acquire(w.address, 'west');
    const read = readAll(c);
    await waitFor(() => accepted.length === 1, { timeoutMs: 10_000, what: 'the remote gateway to accept' });
    accepted[0]!.end(BODY);
    const pieces = await read;
    // a TLS record carries at most 16 KiB
    expect(pieces.length).toBeGreaterThanOrEqual(BODY.length / 16_384);
    // each piece its own: the shared buffer they were decrypted into has been read into since
    expect(Buffer.concat(pieces).equals(BODY)).toBe(true);
  } finally {
    w.close();
  }
}, 30_000);
