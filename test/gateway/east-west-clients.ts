import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { IssuedLeaf } from '../../ca/index.ts';

// Clients that speak to the east-west listener the way an attacker may: raw bytes, TLS with any
// ALPN, SNI and certificate, raw HTTP/1.1, HTTP/2 sessions. Every wait has a deadline; every
// outcome the gateway may legitimately choose (refusal, reset, alert, silence until its own
// timeout) is a value, never an exception: only the gateway's process dying fails a test.

export type Outcome = 'closed' | 'reset' | 'timeout' | 'answered' | 'client-error';

function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i), port: Number(address.slice(i + 1)) };
}

/** Sends `chunks` on a plain TCP connection, optionally half-closes, and waits for the gateway to close. */
export function rawExchange(
  address: string,
  chunks: readonly Uint8Array[],
  o: { halfClose: boolean; deadlineMs: number },
): Promise<{ outcome: Outcome; received: number }> {
  return new Promise((resolve) => {
    const socket = net.connect({ ...hostPort(address), noDelay: true });
    let received = 0;
    let done = false;
    const finish = (outcome: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ outcome, received });
    };
    const timer = setTimeout(() => finish('timeout'), o.deadlineMs);
    socket.on('data', (d: Buffer) => {
      received += d.length;
    });
    socket.on('error', () => finish('reset'));
    socket.on('close', () => finish('closed'));
    socket.once('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) return;
        // one write per chunk, each flushed before the next, so chunk borders reach the gateway apart
        await new Promise<void>((r) => socket.write(c, () => r()));
      }
      if (o.halfClose && !socket.destroyed) socket.end();
    });
  });
}

export interface TlsOffer {
  /** undefined: no ALPN extension */
  alpn?: string[];
  servername?: string;
  /** undefined: no client certificate */
  identity?: IssuedLeaf;
}

/**
 * A TLS connection to the east-west listener; resolves with the socket once the handshake is done,
 * or with how it ended (the gateway may close before or during the handshake).
 */
export function tlsConnect(
  address: string,
  rootPem: string,
  offer: TlsOffer,
  deadlineMs: number,
): Promise<{ socket: tls.TLSSocket; alpn: string | false } | { outcome: Outcome }> {
  return new Promise((resolve) => {
    let done = false;
    let socket: tls.TLSSocket;
    try {
      socket = tls.connect({
        ...hostPort(address),
        ca: rootPem,
        checkServerIdentity: () => undefined,
        ...(offer.alpn ? { ALPNProtocols: offer.alpn } : {}),
        // node sends no SNI for an empty name
        servername: offer.servername ?? '',
        ...(offer.identity ? { cert: offer.identity.chainPem, key: offer.identity.keyPem } : {}),
      });
    } catch {
      resolve({ outcome: 'client-error' });
      return;
    }
    const fail = (outcome: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ outcome });
    };
    const timer = setTimeout(() => fail('timeout'), deadlineMs);
    socket.on('error', () => fail('reset'));
    socket.once('close', () => fail('closed'));
    socket.once('secureConnect', () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.removeAllListeners('close');
      resolve({ socket, alpn: socket.alpnProtocol ?? false });
    });
  });
}

/** Writes `bytes` on an open socket and waits for the first answer bytes, the close, or the deadline. */
export function exchange(
  socket: net.Socket,
  bytes: readonly Uint8Array[],
  deadlineMs: number,
): Promise<{ outcome: Outcome; head: string }> {
  return new Promise((resolve) => {
    let head = '';
    let done = false;
    const finish = (outcome: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ outcome, head });
    };
    const timer = setTimeout(() => finish(head ? 'answered' : 'timeout'), deadlineMs);
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1', 0, Math.min(d.length, 200));
      // the status line and headers are enough: the body is not what is judged
      if (head.includes('\r\n\r\n') || head.length >= 200) finish('answered');
    });
    socket.on('error', () => finish(head ? 'answered' : 'reset'));
    socket.on('close', () => finish(head ? 'answered' : 'closed'));
    (async () => {
      for (const b of bytes) {
        if (socket.destroyed) return;
        await new Promise<void>((r) => socket.write(b, () => r()));
      }
    })();
  });
}

/** An HTTP/2 client session over an already negotiated TLS socket. */
export function h2Session(socket: tls.TLSSocket): http2.ClientHttp2Session {
  const session = http2.connect('https://east-west.invalid', { createConnection: () => socket });
  session.on('error', () => undefined);
  return session;
}

/**
 * Sends one HTTP/2 request and waits for its response headers, its reset or the deadline; `rst`
 * resets the stream right after sending. Node's client refuses some header sets itself
 * (a CONNECT with :path, a missing :authority): those are 'client-error', not gateway outcomes.
 */
export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  o: { body?: Uint8Array; endStream: boolean; rst: boolean; deadlineMs: number },
): Promise<{ outcome: Outcome; status?: number }> {
  return new Promise((resolve) => {
    if (session.destroyed || session.closed) {
      resolve({ outcome: 'closed' });
      return;
    }
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: o.endStream && !o.body });
    } catch {
      resolve({ outcome: 'client-error' });
      return;
    }
    let done = false;
    const finish = (outcome: Outcome, status?: number) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
      resolve(status === undefined ? { outcome } : { outcome, status });
    };
    const timer = setTimeout(() => finish('timeout'), o.deadlineMs);
    stream.on('error', () => finish('reset'));
    stream.on('close', () => finish('closed'));
    stream.on('response', (h) => finish('answered', Number(h[':status'])));
    if (o.body && !stream.destroyed) {
      if (o.endStream) stream.end(o.body);
      else stream.write(o.body);
    }
    if (o.rst) finish('reset');
  });
}
