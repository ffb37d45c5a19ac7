import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';

export function splitAddr(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** The intermediates of a leaf's chain as the `x-meshfed-chain` header carries them. */
export function intermediates(chainPem: string): string {
  const blocks = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks
    .slice(1)
    .map((b) => new X509Certificate(b).raw.toString('base64'))
    .join(',');
}

/** Counts the responses (status lines) in what a connection received. */
export function statuses(received: string): number[] {
  return [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/**
 * Writes `bytes` on a new connection (TLS when `tls` is given) and collects what comes back until
 * `until` holds for it, the peer closes, or the deadline passes (then it resolves with what it has).
 */
export async function rawExchange(
  address: string,
  bytes: Buffer | string,
  o: {
    tls?: tls.ConnectionOptions;
    until?: (received: string) => boolean;
    timeoutMs?: number;
    /** half-close after writing: the peer closes once it has answered what it read */
    end?: boolean;
  } = {},
): Promise<{ received: string; closed: boolean; alpn: string | false | null | undefined }> {
  const { host, port } = splitAddr(address);
  const socket = o.tls
    ? tls.connect({ host, port, checkServerIdentity: () => undefined, ...o.tls })
    : net.connect({ host, port });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once(o.tls ? 'secureConnect' : 'connect', () => resolve());
    socket.once('close', () => reject(new Error('closed before connecting')));
  });
  let received = '';
  let closed = false;
  const alpn = o.tls ? (socket as tls.TLSSocket).alpnProtocol : undefined;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, o.timeoutMs ?? 3_000);
    socket.on('data', (d: Buffer) => {
      received += d.toString('latin1');
      if (o.until?.(received)) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.once('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve();
    });
    if (o.end) socket.end(bytes);
    else socket.write(bytes);
  });
  socket.destroy();
  return { received, closed, alpn };
}

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

/**
 * A backend that records every request it receives and answers by path: `/status/<n>`, `/head-length`
 * (content-length on HEAD), `/close` (a body delimited by the connection's close), else 200 echoing size.
 */
/**
 * The most payload one loopback connection's kernel buffers can hold: the send buffer and the receive buffer at
 * the largest sizes autotuning may grow them to (tcp_wmem and tcp_rmem's third fields; Linux's defaults, 4 and
 * 6 MiB, where they cannot be read). A gateway that reads fast makes its receive buffer grow, and a loaded host
 * (long measured round trips) grows it further: a host with tcp_rmem up to 32 MiB held a whole 32 MiB flood.
 */
function kernelBytesPerConnection(): number {
  const max = (name: string, fallback: number): number => {
    try {
      const n = Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'latin1').trim().split(/\s+/)[2]);
      return Number.isSafeInteger(n) && n > 0 ? n : fallback;
    } catch {
      return fallback;
    }
  };
  return max('tcp_wmem', 4 << 20) + max('tcp_rmem', 6 << 20);
}

/**
 * How many 64 KiB chunks the flood writes: more than the three connections between the backend and a paused
 * client (backend → beta, beta → alpha, alpha → client) can hold in kernel buffers, and 16 MiB more for what the
 * streams in each process may queue; so only backpressure through both gateways can stop the backend short.
 */
export const FLOOD_CHUNKS = Math.ceil((3 * kernelBytesPerConnection() + (16 << 20)) / 65536);

/** The flood's body: FLOOD_CHUNKS × 64 KiB to `out`, each write after 'drain' when the last one filled it. */
function pumpFlood(
  out: { write(b: Buffer): boolean; once(e: 'drain', f: () => void): unknown; end(): unknown },
  flood: { written: number; blocked: boolean },
): void {
  const chunk = Buffer.alloc(65536, 97);
  const pump = (): void => {
    while (flood.written < FLOOD_CHUNKS) {
      flood.written++;
      if (!out.write(chunk)) {
        flood.blocked = true;
        out.once('drain', () => {
          flood.blocked = false;
          pump();
        });
        return;
      }
    }
    out.end();
  };
  pump();
}

export async function recordingBackend(): Promise<{
  address: string;
  seen: Seen[];
  flood: { written: number; blocked: boolean };
  close(): void;
}> {
  const seen: Seen[] = [];
  const flood = { written: 0, blocked: false };
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString('latin1');
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body,
      });
      if (req.url?.startsWith('/status/')) {
        res.writeHead(Number(req.url.slice(8)));
        res.end();
      } else if (req.url === '/close') {
        // no length, no chunking: HTTP/1.0 style, the body ends with the connection
        res.socket?.write('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nclose-delimited body');
        res.socket?.end();
      } else if (req.url === '/flood-close') {
        // the flood with no length and no chunking: the body ends with the connection
        const socket = res.socket!;
        socket.write('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n');
        pumpFlood(socket, flood);
      } else if (req.url === '/flood') {
        // FLOOD_CHUNKS × 64 KiB writes that wait for 'drain': how far it gets shows the backpressure
        res.writeHead(200, { 'content-length': FLOOD_CHUNKS * 65536 });
        pumpFlood(res, flood);
      } else if (req.url === '/obs-text') {
        // a field value with a byte past 0x7f (obs-text), which node writes as that one byte
        res.writeHead(200, { 'x-obs': 'caf\u00e9', 'content-length': 0 });
        res.end();
      } else if (req.url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first,');
        res.end('second');
      } else {
        const out = JSON.stringify({ size: body.length, body });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
        res.end(req.method === 'HEAD' ? undefined : out);
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    flood,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}
