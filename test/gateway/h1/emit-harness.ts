import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import type { BalancerTarget } from '../../../gateway/balancer/index.ts';
import { bodyFramer } from '../../../gateway/h1/body.ts';
import { type ClientConnection, Exchange } from '../../../gateway/h1/exchange.ts';
import { FastRequest } from '../../../gateway/h1/fast-request.ts';
import type { RequestHead } from '../../../gateway/h1/head.ts';
import type { H1Pool } from '../../../gateway/h1/pool.ts';
import type { ConnectionUser, PooledConnection } from '../../../gateway/h1/pooled-connection.ts';
import { FastUpstream } from '../../../gateway/h1/upstream.ts';
import type { Identities } from '../../../gateway/identity.ts';
import { underscoreHeaders } from '../../../gateway/layers/request-checks.ts';
import type { CircuitBreakers } from '../../../gateway/resilience/index.ts';
import type { UpstreamAttempt, UpstreamCodec } from '../../../gateway/upstream/attempt.ts';
import { LIMITS } from './frame-all.ts';

// The fast path's production codec (gateway/h1/upstream.ts FastUpstream, its request head and body, its
// reading of the response, and gateway/h1/exchange.ts Exchange, which writes the response to the client),
// driven with recording sockets in place of its pooled upstream connection and its client connection: what
// meshfed WRITES, byte for byte, with no network in between. Only the edges are doubles (the pool hands out
// one connection, the attempt forwards to the exchange as gateway/upstream/attempt.ts does, the client
// connection feeds the request body as gateway/h1/entry.ts does); every byte written is written by meshfed.

/** the chain header a remote gateway gets on a connection's first request */
export const CHAIN = 'Y2hhaW4tb2YtdGhlLWxlYWY=';
/** the caller the identity layer established at egress */
export const CALLER = 'spiffe://mesh.example/cluster/east/ns/shop/sa/web';
export const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

export const REMOTE: BalancerTarget = {
  id: 'west/gw-b',
  local: false,
  cluster: 'west',
  locality: { region: 'us-west', zone: 'us-west-2a' },
  address: '127.0.0.1:15443',
  weight: 1,
  port: { name: 'http', port: 80, protocol: 'http' },
} as BalancerTarget;
export const LOCAL: BalancerTarget = { ...REMOTE, id: 'east/ep', local: true, address: '10.0.0.7:8080' };

export const identities = { localChain: () => ({ raw: [], b64: CHAIN }) } as unknown as Identities;

/** a socket double that keeps every byte written to it */
function recordingSocket(): { socket: Socket; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const d = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
    writev(chunks, cb) {
      for (const c of chunks) parts.push(c.chunk as Buffer);
      cb();
    },
  });
  d.on('error', () => undefined);
  return { socket: d as unknown as Socket, bytes: () => Buffer.concat(parts) };
}

export interface ClientRequest {
  head: RequestHead;
  /** the body as the client framed it (what follows the head, up to the body's end) */
  framedBody: Buffer;
}

export interface EmitOptions {
  target: BalancerTarget;
  /** the pooled connection carried an exchange before (no chain header on it) */
  reused: boolean;
  /** the trace layer ran (the codec writes our traceparent) */
  traced: boolean;
  /** sizes of the pieces the body and the response arrive in */
  splits: readonly number[];
}

export interface Emitted {
  /** the request as the codec got it (after the egress layers that edit headers) */
  request: FastRequest;
  /** what meshfed wrote on the upstream connection: the request head and body */
  upstream: Buffer;
  /** what meshfed wrote to the client: the response head and body */
  client: Buffer;
  /** the try failed instead (the codec refused to send, or the response was refused) */
  failed: { failure: string; err: unknown } | undefined;
  /** the status and the headers meshfed handed the exchange for the client (as writeHead left them) */
  sent: { status: number; headers: Record<string, unknown> } | undefined;
  /** the exchange kept the client connection open after the response */
  keepAlive: boolean;
  /** the response was written whole (not cut) */
  finished: boolean;
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/**
 * Sends `req` through FastUpstream to `o.target` and answers it with `response` (in pieces, then the
 * upstream's close when the exchange still wants bytes). Returns everything meshfed wrote.
 */
export async function emit(req: ClientRequest, response: Buffer, o: EmitOptions): Promise<Emitted> {
  const up = recordingSocket();
  const down = recordingSocket();
  const pieces = (b: Buffer): Buffer[] => {
    const out: Buffer[] = [];
    for (let at = 0, s = 0; at < b.length; s++) {
      const n = Math.max(1, o.splits[s % Math.max(1, o.splits.length)] ?? b.length);
      out.push(b.subarray(at, at + n));
      at += n;
    }
    return out;
  };

  const client: ClientConnection = {
    socket: down.socket,
    closing: false,
    tellsDrain: false,
    bodyInHand: () => true,
    startBody(sink, decoded) {
      const framer = bodyFramer(req.head.framing, {
        maxTrailerBytes: LIMITS.maxHeadBytes,
        ...(decoded ? { onData: (d: Buffer) => sink.write(d, d.length) } : {}),
      });
      for (const p of pieces(req.framedBody)) {
        const before = framer.payloadBytes;
        const used = framer.feed(p, 0);
        if (!decoded && used > 0) sink.write(p.subarray(0, used), framer.payloadBytes - before);
      }
      if (!framer.done) throw new Error('the harness was given an incomplete body');
      sink.end();
    },
    resumeBody: () => undefined,
    responseDone: () => undefined,
  };
  const ex = new Exchange(client, req.head);
  const r = new FastRequest('egress', req.head, down.socket, ex, 'east');
  r.route = { namespace: 'shop', name: 'orders', scope: 'any' };
  r.caller = CALLER;
  if (o.traced) r.injectTrace = (h) => Object.assign(h, { traceparent: TRACEPARENT });

  let user: ConnectionUser | undefined;
  const conn = {
    socket: up.socket,
    reused: o.reused,
    attach: (u: ConnectionUser) => {
      user = u;
    },
    detach: () => {
      user = undefined;
    },
  } as unknown as PooledConnection;
  const pool = {
    closed: false,
    tunnelOnly: () => false,
    takeIdle: () => conn,
    leafOf: () => undefined,
    release: () => {
      user = undefined;
    },
    draining: () => undefined,
  } as unknown as H1Pool;

  let failed: Emitted['failed'];
  let sent: Emitted['sent'];
  let open = true;
  const attempt: UpstreamAttempt = {
    get open() {
      return open;
    },
    waitsForConnection: false,
    onCancel: () => undefined,
    respond(status, headers) {
      if (!open) return false;
      open = false;
      ex.writeHead(status, headers);
      sent = { status, headers };
      return true;
    },
    fail(failure, err) {
      if (open) {
        open = false;
        failed = { failure, err };
      } else ex.destroy();
    },
  };
  const unused = {} as unknown as UpstreamCodec & CircuitBreakers;
  const codec = new FastUpstream({
    pool,
    breakers: unused,
    identities,
    tunnel: unused,
    maxHeadBytes: LIMITS.maxHeadBytes,
    maxHeaders: LIMITS.maxHeaders,
    onPeerDraining: () => undefined,
  });

  // the egress pipeline's one layer that edits request headers (headersWithUnderscores, default 'allow')
  await underscoreHeaders('allow')(async (x) => codec.send(x, o.target, attempt))(r);
  await turn();
  for (const p of pieces(response)) {
    if (!user) break;
    user.onData(p);
  }
  // the upstream closes: it ends a body delimited by the close, and cuts anything else
  user?.onClose();
  await turn();
  await turn();
  return {
    request: r,
    upstream: up.bytes(),
    client: down.bytes(),
    failed,
    sent,
    keepAlive: ex.keepAlive,
    finished: ex.finished,
  };
}
