import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { Gauge, type Registry } from '../core/index.ts';

/** a reading of /proc this young answers the next scrape too (the dashboard and worker stats ask each second) */
const READING_TTL_MS = 1_000;

/**
 * Connections the kernel has completed and queued for a listener that the gateway has not accepted yet. A
 * client sees them connected, so a gateway that falls behind on accepting (its loop accepts one connection
 * per listening socket per turn) leaves them waiting unanswered until they give up, and counts nothing:
 * the chaos flood's TCP port had hundreds queued and none refused. Linux writes each listening socket's
 * queue as the rx_queue of its LISTEN line in /proc/net/tcp and /proc/net/tcp6; elsewhere the gauge is empty.
 * Every worker of a multi-process gateway sees the whole queue of a shared port: workers report the largest.
 */
export function acceptQueueGauge(registry: Registry, bound: () => Readonly<Record<string, string>>): Gauge {
  let reading: { at: number; queues: Promise<Map<string, number>> } | undefined;
  const read = async (): Promise<Map<string, number>> => {
    const byAddress = new Map<string, string>();
    for (const [listener, address] of Object.entries(bound())) {
      const a = procAddress(address);
      if (a) byAddress.set(a, listener);
    }
    if (byAddress.size === 0) return new Map();
    const v6 = [...byAddress.keys()].some((a) => a.indexOf(':') > 8);
    const v4 = [...byAddress.keys()].some((a) => a.indexOf(':') === 8);
    const text = (v4 ? await readProc('/proc/net/tcp') : '') + (v6 ? await readProc('/proc/net/tcp6') : '');
    return acceptQueues(text, byAddress);
  };
  return new Gauge({
    name: 'meshfed_listener_accept_queue',
    help: 'connections the kernel queued for a listener (over all its sockets) that the gateway has not accepted yet (Linux)',
    labelNames: ['listener'],
    registers: [registry],
    aggregator: 'max',
    async collect() {
      const now = performance.now();
      if (!reading || now - reading.at > READING_TTL_MS) reading = { at: now, queues: read() };
      const queues = await reading.queues;
      this.reset();
      for (const [listener, queued] of queues) this.set({ listener }, queued);
    },
  });
}

/** a LISTEN line of /proc/net/tcp{,6}: its local address, and its rx_queue (the accept queue) */
const LISTEN_LINE = /^\s*\d+: ([0-9A-F]+:[0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} 0A [0-9A-F]+:([0-9A-F]+) /gm;

/**
 * Per listener, the connections queued on its LISTEN sockets in the text of /proc/net/tcp{,6}; `byAddress`
 * maps a local address as procAddress() writes it to its listener. A listener whose sockets are all found
 * gets 0 when nothing waits; one not found at all (another network namespace) gets no value.
 */
export function acceptQueues(text: string, byAddress: ReadonlyMap<string, string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(LISTEN_LINE)) {
    const listener = byAddress.get(m[1]!);
    if (listener !== undefined) out.set(listener, (out.get(listener) ?? 0) + Number.parseInt(m[2]!, 16));
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

/** a socket line of /proc/net/tcp{,6} in any state but LISTEN */
const NOT_LISTEN = /^\s*\d+: \S+ \S+ (?!0A )/m;

/**
 * The LISTEN lines of /proc/net/tcp or tcp6 ('' where there is none). The kernel lists listening sockets
 * before all others and writes the file as it is read: reading stops at the first other line, so a host
 * with many thousand connections costs no more than one with none.
 */
async function readProc(path: string): Promise<string> {
  let f: Awaited<ReturnType<typeof open>> | undefined;
  try {
    f = await open(path, 'r');
    let text = '';
    for (;;) {
      const { bytesRead, buffer } = await f.read(Buffer.allocUnsafe(1 << 16), 0, 1 << 16);
      if (bytesRead === 0) return text;
      const chunk = buffer.toString('latin1', 0, bytesRead);
      // a line cut at the chunk's end is tested again whole with the next chunk
      const from = text.lastIndexOf('\n') + 1;
      text += chunk;
      const rest = text.slice(from);
      const other = NOT_LISTEN.exec(rest);
      if (other) return text.slice(0, from + other.index);
    }
  } catch {
    return '';
  } finally {
    await f?.close();
  }
}
