import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Headers } from '../../../gateway/h1/field-lines.ts';
import { LIMITS } from './frame-all.ts';

/** What node's own server (llhttp, strict: insecureHTTPParser false) made of one connection's bytes. */
export type NodeEvent =
  | { kind: 'request'; method: string; target: string; headers: Headers; body: string; complete: boolean }
  | { kind: 'error'; code: string }
  | { kind: 'expectation' };

/** Joins repeated fields the way meshfed's head parser does, so both sides compare as one record. */
export function record(raw: string[]): Headers {
  const h: Headers = Object.create(null);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    const value = raw[i + 1]!;
    const prev = h[name];
    if (prev === undefined) h[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(prev)) prev.push(value);
    else h[name] = `${prev}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return h;
}

/**
 * A node HTTP server on loopback that records, per connection, every request its parser delivered (with
 * the body it framed) and the parse error that ended the connection, if any.
 */
export async function nodeStrictServer(): Promise<{
  run(bytes: Buffer): Promise<NodeEvent[]>;
  close(): Promise<void>;
}> {
  const byPort = new Map<number, { events: NodeEvent[]; closed: Promise<unknown> }>();
  const server = http.createServer({
    insecureHTTPParser: false,
    maxHeaderSize: LIMITS.maxHeadBytes,
    requestTimeout: 0,
    headersTimeout: 5_000,
    keepAliveTimeout: 5_000,
  });
  const eventsOf = (s: net.Socket) => byPort.get(s.remotePort ?? 0)?.events ?? [];
  server.on('connection', (s: net.Socket) => {
    byPort.set(s.remotePort ?? 0, { events: [], closed: once(s, 'close') });
  });
  server.on('request', (req, res) => {
    const events = eventsOf(req.socket);
    const parts: Buffer[] = [];
    const ev: NodeEvent = {
      kind: 'request',
      method: req.method ?? '',
      target: req.url ?? '',
      headers: record(req.rawHeaders),
      body: '',
      complete: false,
    };
    events.push(ev);
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      ev.body = Buffer.concat(parts).toString('latin1');
      ev.complete = true;
      res.writeHead(204);
      res.end();
    });
    req.on('error', () => undefined);
  });
  server.on('checkExpectation', (req, res) => {
    eventsOf(req.socket).push({ kind: 'expectation' });
    res.writeHead(417, { connection: 'close' });
    res.end();
  });
  server.on('clientError', (err: Error & { code?: string }, socket: net.Socket) => {
    eventsOf(socket).push({ kind: 'error', code: err.code ?? 'unknown' });
    socket.destroy();
  });
  server.on('connect', (req, socket: net.Socket) => {
    eventsOf(req.socket).push({ kind: 'error', code: 'CONNECT' });
    socket.destroy();
  });
  server.on('upgrade', (req, socket: net.Socket) => {
    eventsOf(req.socket).push({ kind: 'error', code: 'UPGRADE' });
    socket.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;

  return {
    async run(bytes) {
      const c = net.connect({ port, host: '127.0.0.1' });
      c.on('error', () => undefined);
      c.resume();
      await once(c, 'connect');
      const local = c.localPort ?? 0;
      c.end(bytes);
      // the server side closes after an error, after a `Connection: close` answer, or on our FIN
      const deadline = AbortSignal.timeout(5_000);
      for (let i = 0; i < 500 && !byPort.has(local); i++) await new Promise((r) => setImmediate(r));
      const entry = byPort.get(local);
      if (!entry) throw new Error('node never saw the connection');
      await Promise.race([
        entry.closed,
        once(deadline, 'abort').then(() => {
          throw new Error('node kept the connection open past the deadline');
        }),
      ]);
      c.destroy();
      byPort.delete(local);
      return entry.events;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
