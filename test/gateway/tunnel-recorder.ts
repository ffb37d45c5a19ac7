import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { waitFor } from '../../core/index.ts';
import type { Headers } from '../../gateway/h1/field-lines.ts';
import { record } from './h1/node-strict.ts';
import { splitAddr } from './h1/raw-client.ts';
import type { ClientRequest } from './tunnel-heads-inputs.ts';

/**
 * A backend for tunnel-heads.test.ts: node's strict HTTP server behind a TCP relay that records the bytes
 * of every connection as the gateway sent them. Each request is answered with `reply(method)`'s bytes, after
 * which the backend closes the connection: a connection then carries one exchange, and every byte the
 * gateway wrote on it is the request (or what it smuggled behind it).
 */
export async function recordingRelay(reply: (method: string) => Buffer): Promise<{
  address: string;
  connections: { bytes: Buffer[]; closed: boolean }[];
  close(): Promise<void>;
}> {
  const backend = http.createServer({ insecureHTTPParser: false, requestTimeout: 0 }, (req, res) => {
    req.on('data', () => undefined);
    req.on('end', () => res.socket?.end(reply(req.method ?? '')));
    req.on('error', () => undefined);
  });
  // what it would have to refuse is judged from the recorded bytes: here it only ends the connection
  backend.on('upgrade', (_req, socket: net.Socket) => socket.destroy());
  backend.on('clientError', (_err, socket: net.Socket) => socket.destroy());
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const port = (backend.address() as AddressInfo).port;
  const connections: { bytes: Buffer[]; closed: boolean }[] = [];
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((s) => {
    const c = { bytes: [] as Buffer[], closed: false };
    connections.push(c);
    const up = net.connect({ port, host: '127.0.0.1' });
    for (const x of [s, up]) {
      sockets.add(x);
      x.on('error', () => undefined);
      x.on('close', () => {
        sockets.delete(x);
        s.destroy();
        up.destroy();
        c.closed = true;
      });
    }
    s.on('data', (d: Buffer) => {
      c.bytes.push(d);
      up.write(d);
    });
    s.on('end', () => up.end());
    up.on('data', (d: Buffer) => s.write(d));
    up.on('end', () => s.end());
  });
  relay.listen(0, '127.0.0.1');
  await once(relay, 'listening');
  return {
    address: `127.0.0.1:${(relay.address() as AddressInfo).port}`,
    connections,
    close: async () => {
      for (const s of sockets) s.destroy();
      backend.closeAllConnections();
      await Promise.all([new Promise((r) => relay.close(r)), new Promise((r) => backend.close(r))]);
    },
  };
}

/** What an HTTP/1.x client received on its connection: the bytes of its response, and of the sentinel's. */
export interface H1Received {
  response: Buffer;
  /** the answer to the request pipelined behind it (to a host no cluster offers), when the connection stayed open */
  sentinel: string | undefined;
}

/** a request no gateway forwards: its answer shows the connection was still in step after the first */
const SENTINEL = 'GET /sentinel HTTP/1.1\r\nHost: sentinel.invalid\r\nConnection: close\r\n\r\n';
const SENTINEL_STATUS = 'HTTP/1.1 503 Service Unavailable\r\n';

/** Writes the request's bytes (and the sentinel behind them when it keeps the connection), reads until close. */
export async function h1Exchange(address: string, bytes: Buffer, keepAlive: boolean): Promise<H1Received> {
  const socket = net.connect(splitAddr(address));
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  const parts: Buffer[] = [];
  socket.on('data', (d: Buffer) => parts.push(d));
  socket.write(keepAlive ? Buffer.concat([bytes, Buffer.from(SENTINEL)]) : bytes);
  const timer = setTimeout(() => socket.destroy(), 5_000);
  await once(socket, 'close');
  clearTimeout(timer);
  const all = Buffer.concat(parts);
  const at = all.lastIndexOf(SENTINEL_STATUS, undefined, 'latin1');
  if (at <= 0) return { response: all, sentinel: undefined };
  return { response: all.subarray(0, at), sentinel: all.subarray(at).toString('latin1') };
}

/** What an HTTP/2 client made of its response. */
export interface H2Received {
  status: number;
  headers: Headers;
  body: string;
  error: string | undefined;
}

/** One request on a new h2c session to `address`: the fields as node's client sends them (arrays repeat). */
export async function h2Exchange(address: string, host: string, r: ClientRequest): Promise<H2Received> {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => undefined);
  try {
    const headers: Record<string, string | string[]> = {
      ':method': r.method,
      ':path': r.target,
      ':authority': host,
    };
    for (const [n, v] of r.fields) {
      const prev = headers[n];
      headers[n] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    const stream = session.request(headers, { endStream: r.framing === 'none' });
    const parts: Buffer[] = [];
    let error: string | undefined;
    let head: http2.IncomingHttpHeaders = {};
    let raw: string[] = [];
    stream.on('response', (h, _flags, rawHeaders) => {
      head = h;
      raw = rawHeaders as unknown as string[];
    });
    stream.on('data', (d: Buffer) => parts.push(d));
    stream.on('error', (err: Error & { code?: string }) => {
      error = err.code ?? err.message;
    });
    if (r.framing !== 'none') {
      let at = 0;
      for (const n of r.chunks.length > 0 ? r.chunks : [r.body.length]) {
        stream.write(Buffer.from(r.body.slice(at, at + n), 'latin1'));
        at += n;
      }
      stream.end();
    }
    const timer = setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 5_000);
    await once(stream, 'close');
    clearTimeout(timer);
    const headers2 = record(raw.filter((_v, i) => !raw[i - (i % 2)]!.startsWith(':')));
    return {
      status: Number(head[':status'] ?? 0),
      headers: headers2,
      body: Buffer.concat(parts).toString('latin1'),
      error,
    };
  } finally {
    session.close();
  }
}

/** Every connection the relay accepted from `from` on is closed (the backend ends each after its answer). */
export async function settled(connections: { closed: boolean }[], from: number): Promise<void> {
  await waitFor(() => connections.slice(from).every((c) => c.closed) || undefined, {
    timeoutMs: 5_000,
    intervalMs: 2,
    what: 'the backend connections of the case to close',
  });
}
