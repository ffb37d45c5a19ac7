import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** Faults an API double can inject, applied to every request whose path starts with `pathPrefix`. */
export type Fault =
  | { kind: 'none' }
  /** answer 500 with an error body */
  | { kind: 'status'; status: number; pathPrefix?: string }
  /** answer 200 with a body that is not what the API documents */
  | { kind: 'garbage'; pathPrefix?: string }
  /** accept the request and never answer */
  | { kind: 'hang'; pathPrefix?: string }
  /** answer, but only after `ms` */
  | { kind: 'slow'; ms: number; pathPrefix?: string }
  /** end streaming responses (watches) abruptly mid-stream */
  | { kind: 'drop-streams'; pathPrefix?: string };

/**
 * The part every API double shares: a real HTTP server on 127.0.0.1, port 0 the first time and
 * the same port after `restart()`, a fault switch, and a request log for assertions.
 */
export abstract class HttpDouble {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private portNumber = 0;
  fault: Fault = { kind: 'none' };
  /** method + path + query of every request, in order */
  readonly requests: string[] = [];
  /** the most connections that were open at once */
  peakConnections = 0;

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `http://127.0.0.1:${this.portNumber}`;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => this.dispatch(req, res));
    server.keepAliveTimeout = 60_000;
    server.on('connection', (s) => {
      this.sockets.add(s);
      this.peakConnections = Math.max(this.peakConnections, this.sockets.size);
      s.on('close', () => this.sockets.delete(s));
    });
    server.listen(this.portNumber, '127.0.0.1');
    await once(server, 'listening');
    this.portNumber = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops answering: the listener closes and every open connection is cut (like a crash). */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.onStop();
    const closed = once(server, 'close');
    server.close();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Subclasses end their pending long polls and streams here. */
  protected onStop(): void {}

  protected abstract handle(req: IncomingMessage, res: ServerResponse, url: URL, body: string): unknown;

  protected faultFor(path: string): Fault {
    const f = this.fault;
    if (f.kind === 'none') return f;
    if (f.pathPrefix !== undefined && !path.startsWith(f.pathPrefix)) return { kind: 'none' };
    return f;
  }

  private dispatch(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const fault = this.faultFor(url.pathname);
      const go = () => {
        try {
          this.handle(req, res, url, Buffer.concat(chunks).toString('utf8'));
        } catch (err) {
          sendJson(res, 500, { message: String(err) });
        }
      };
      switch (fault.kind) {
        case 'status':
          res.writeHead(fault.status, { 'content-type': 'text/plain' });
          res.end('injected failure');
          return;
        case 'garbage':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"this is": not json at all <html>');
          return;
        case 'hang':
          return; // never answered; stop() cuts the socket
        case 'slow':
          setTimeout(go, fault.ms);
          return;
        default:
          go();
      }
    });
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}
