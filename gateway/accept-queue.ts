import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { Gauge, type Registry } from '../core/index.ts';

/**
 * Connections the kernel has completed and queued for a listener that the gateway has not accepted yet. A
 * client sees them connected, so a gateway that falls behind on accepting (its loop accepts one connection
 * per listening socket per turn) leaves them waiting unanswered until they give up, and counts nothing:
 * the chaos flood's TCP port had hundreds queued and none refused. Linux writes each listening socket's
 * queue as the rx_queue of its LISTEN line in /proc/net/tcp and /proc/net/tcp6; elsewhere the gauge is empty.
 */
export function acceptQueueGauge(registry: Registry, bound: () => Readonly<Record<string, string>>): Gauge {
  return new Gauge({
    name: 'meshfed_listener_accept_queue',
    help: 'connections the kernel queued for a listener (over all its sockets) that the gateway has not accepted yet (Linux)',
    labelNames: ['listener'],
    registers: [registry],
    async collect() {
      this.reset();
      const byAddress = new Map<string, string>();
      for (const [listener, address] of Object.entries(bound())) {
        const a = procAddress(address);
        if (a) byAddress.set(a, listener);
      }
      if (byAddress.size === 0) return;
      const text = (await readProc('/proc/net/tcp')) + (await readProc('/proc/net/tcp6'));
      for (const [listener, queued] of acceptQueues(text, byAddress)) this.set({ listener }, queued);
    },
  });
}

/**
 * Per listener, the connections queued on its LISTEN sockets in the text of /proc/net/tcp{,6}; `byAddress`
 * maps a local address as procAddress() writes it to its listener. A listener whose sockets are all found
 * gets 0 when nothing waits; one not found at all (another network namespace) gets no value.
 */
export function acceptQueues(text: string, byAddress: ReadonlyMap<string, string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    // "  0: 0100007F:6F9C 00000000:0000 0A 00000000:00000003 ..." — sl, local, remote, state, tx:rx queue
    const f = line.trim().split(/\s+/);
    if (f[3] !== '0A') continue;
    const listener = byAddress.get(f[1] ?? '');
    if (listener === undefined) continue;
    const rx = Number.parseInt(f[4]?.split(':')[1] ?? '', 16);
    if (Number.isFinite(rx)) out.set(listener, (out.get(listener) ?? 0) + rx);
  }
  return out;
}

/**
 * `host:port` (`[v6]:port`) as /proc/net/tcp{,6} writes a local address: the address as 32-bit words in host
 * byte order, hex, then the port in hex. An IPv4 address listened on by an IPv6 socket is not matched.
 */
export function procAddress(address: string): string | undefined {
  const i = address.lastIndexOf(':');
  const host = address.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port)) return undefined;
  const bytes = host.includes(':') ? ipv6Bytes(host) : ipv4Bytes(host);
  if (!bytes) return undefined;
  const little = endianness() === 'LE';
  let hex = '';
  for (let w = 0; w < bytes.length; w += 4) {
    const word = bytes.slice(w, w + 4);
    for (const b of little ? word.reverse() : word) hex += b.toString(16).padStart(2, '0');
  }
  return `${hex.toUpperCase()}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

function ipv4Bytes(host: string): number[] | undefined {
  const parts = host.split('.').map(Number);
  return parts.length === 4 && parts.every((p) => Number.isInteger(p) && p >= 0 && p <= 255)
    ? parts
    : undefined;
}

function ipv6Bytes(host: string): number[] | undefined {
  const [head, tail] = host.split('::') as [string, string | undefined];
  const words = (s: string | undefined) =>
    s ? s.split(':').map((w) => (/^[0-9a-f]{1,4}$/i.test(w) ? Number.parseInt(w, 16) : Number.NaN)) : [];
  const a = words(head);
  const b = words(tail);
  const all = tail === undefined ? a : [...a, ...new Array<number>(8 - a.length - b.length).fill(0), ...b];
  if (all.length !== 8 || all.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) return undefined;
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

/** the whole of a /proc file ('' where there is none): large reads, so a host with many sockets costs a few */
async function readProc(path: string): Promise<string> {
  let f: Awaited<ReturnType<typeof open>> | undefined;
  try {
    f = await open(path, 'r');
    const chunks: Buffer[] = [];
    for (;;) {
      const { bytesRead, buffer } = await f.read(Buffer.allocUnsafe(1 << 20), 0, 1 << 20);
      if (bytesRead === 0) break;
      chunks.push(buffer.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks).toString('latin1');
  } catch {
    return '';
  } finally {
    await f?.close();
  }
}
