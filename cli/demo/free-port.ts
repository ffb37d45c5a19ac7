import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { MeshfedError } from '../../core/index.ts';

/** the lowest port of a random pick: above every well-known and registered service a host is likely to run */
const LOWEST = 10_000;

/**
 * The first port the kernel hands out to bind(0) and to outgoing connections (Linux), or undefined where
 * that cannot be read.
 */
function ephemeralLow(): number | undefined {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) ? low : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Binds `port` (0: the kernel picks) on 127.0.0.1 for a moment; the port bound, or undefined if taken.
 * `once(srv, 'listening')` rejects with the listen error (events.once does that for 'error'): a taken port is
 * that rejection, turned into undefined here.
 */
export async function tryBind(port: number): Promise<number | undefined> {
  const srv = createServer();
  srv.listen(port, '127.0.0.1');
  const ok = await once(srv, 'listening').then(
    () => true,
    () => false,
  );
  if (!ok) return undefined;
  const addr = srv.address();
  const bound = typeof addr === 'object' && addr ? addr.port : undefined;
  srv.close();
  await once(srv, 'close');
  return bound;
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. Only for listeners whose address must be written into
 * a config before the process that binds it starts (the demo's gateways); anything that can report its own
 * port should bind port 0 instead. The port is picked at random below the kernel's ephemeral range: a port
 * of that range can be taken by any outgoing connection before the gateway binds it (a busy host opens
 * thousands, and a gateway then fails with EADDRINUSE), a port below it only by another listener, and a
 * random pick makes two demos started at once on one host unlikely to choose the same.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  if (low !== undefined && low > LOWEST + 1_000) {
    for (let tries = 0; tries < 32; tries++) {
      const port = await tryBind(LOWEST + Math.floor(Math.random() * (low - LOWEST)));
      if (port !== undefined) return port;
    }
  }
  const port = await tryBind(0);
  if (port === undefined)
    throw new MeshfedError(
      'MESHFED_INTERNAL',
      'no free TCP port on 127.0.0.1 for a demo listener; stop processes that hold loopback ports and start again',
    );
  return port;
}
