import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { createRoot, issueIntermediate, issueLeaf, TrustBundle } from '../../../ca/index.ts';
import { waitFor } from '../../../core/index.ts';
import { westAndPool } from './west-gateway.ts';

// A plain connection of the pool (to a local endpoint) reads into one buffer of the pool's own (plainReads) rather
// than a fresh 64 KiB allocation per read (docs/performance.md, "Sixth round"). What reaches the exchange must
// still be its own bytes: kept past the next read, paused for a slow client, and the end of the stream seen.

/** 300 KiB that differ from one read to the next */
const BODY = Buffer.from(Array.from({ length: 300 * 1024 }, (_, i) => (i * 7 + (i >> 10)) & 0xff));

test('the bytes of a local endpoint reach the exchange whole, each piece its own, through pauses and the end', async () => {
  const root = await createRoot({ trustDomain: 'meshfed.test' });
  const east = await issueLeaf(await issueIntermediate(root, { cluster: 'east' }), {
    kind: 'gateway',
    name: 'east-gw',
  });
  const w = await westAndPool(() => east, TrustBundle.fromPem(root.certPem), root);
  const endpoint = net.createServer((s) => {
    s.on('error', () => undefined);
    s.end(BODY);
  });
  endpoint.listen(0, '127.0.0.1');
  await once(endpoint, 'listening');
  try {
    const c = await w.pool.acquire(`127.0.0.1:${(endpoint.address() as AddressInfo).port}`);
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
    await waitFor(() => closed, { timeoutMs: 10_000, what: 'the endpoint to end the connection' });
    expect(pieces.length).toBeGreaterThan(2);
    expect(Math.max(...pieces.map((p) => p.length))).toBeLessThan(64 * 1024);
    expect(Buffer.concat(pieces).equals(BODY)).toBe(true);
  } finally {
    w.close();
    endpoint.close();
  }
}, 30_000);
