import type { Socket } from 'node:net';
import { type LocalService, parseClustersetHost } from '../core/index.ts';
import { type HelloResult, MAX_HELLO_BYTES, parseClientHello } from './client-hello.ts';
import { TUNNEL_ALPN } from './config.ts';
import type { LocalServices } from './local-services.ts';

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export type EgressProtocol = 'h1' | 'h2' | 'tls';

/**
 * Reads the first bytes of an egress connection and says what it speaks: TLS (a handshake record, when
 * workload mTLS is on), h2c (the HTTP/2 preface) or HTTP/1.1. The bytes read are put back before `done`.
 */
export function sniffEgress(
  socket: Socket,
  options: { tls: boolean; timeoutMs: number },
  done: (kind: EgressProtocol, first: Buffer) => void,
): void {
  const timer = setTimeout(() => socket.destroy(), options.timeoutMs);
  socket.once('close', () => clearTimeout(timer));
  let buf: Buffer = Buffer.alloc(0);
  const finish = (kind: EgressProtocol) => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    socket.unshift(buf);
    done(kind, buf);
  };
  const onData = (d: Buffer) => {
    // almost always one chunk decides: copy only when the sniff needs a second
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    // a TLS record starts with content type 22 (handshake); plain HTTP never does
    if (options.tls && buf[0] === 0x16) return finish('tls');
    const n = Math.min(buf.length, H2_PREFACE.length);
    if (!buf.subarray(0, n).equals(H2_PREFACE.subarray(0, n))) return finish('h1');
    if (buf.length >= H2_PREFACE.length) finish('h2');
  };
  socket.on('data', onData);
  socket.resume();
}

/**
 * Reads a TLS ClientHello off an east-west connection without terminating it (at most MAX_HELLO_BYTES,
 * within `timeoutMs`), then hands over the bytes read and what they say.
 */
export function readClientHello(
  socket: Socket,
  options: { timeoutMs: number; onTimeout: () => void },
  done: (buf: Buffer, hello: HelloResult) => void,
): void {
  const timer = setTimeout(() => {
    options.onTimeout();
    socket.destroy();
  }, options.timeoutMs);
  // a client that leaves before its ClientHello is complete is gone, not timed out
  socket.once('close', () => clearTimeout(timer));
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (d: Buffer) => {
    chunks.push(d);
    size += d.length;
    const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const hello = parseClientHello(buf);
    if (!hello.ok && hello.reason === 'incomplete' && size < MAX_HELLO_BYTES) return;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    done(buf, hello);
  };
  socket.on('data', onData);
  socket.resume();
}

/** Where an east-west connection goes, decided from its ClientHello alone. */
export type HelloRoute =
  | { kind: 'refuse'; reason: 'not-tls' | 'malformed-hello' | 'no-sni' | 'not-exported' | 'unknown-port' }
  /** terminate TLS here: the tunnel (its ALPN), or an exported service without a TLS port */
  | { kind: 'terminate' }
  | { kind: 'passthrough'; service: LocalService; portName: string };

/**
 * Tunnel by ALPN; passthrough by SNI for exported services with a TLS port
 * (`[<port>.]<svc>.<ns>.svc.clusterset.local`); terminate for exported services without one; else refuse.
 */
export function routeHello(hello: HelloResult, local: LocalServices): HelloRoute {
  if (!hello.ok)
    return { kind: 'refuse', reason: hello.reason === 'not-tls' ? 'not-tls' : 'malformed-hello' };
  if (hello.alpn.includes(TUNNEL_ALPN)) return { kind: 'terminate' };
  const ref = hello.serverName ? parseClustersetHost(hello.serverName) : undefined;
  const svc = ref ? local.get(ref) : undefined;
  if (!ref || !svc?.exported) return { kind: 'refuse', reason: hello.serverName ? 'not-exported' : 'no-sni' };
  const tlsPorts = svc.ports.filter((p) => p.protocol === 'tls');
  const port = ref.portName
    ? tlsPorts.find((p) => p.name === ref.portName || String(p.port) === ref.portName)
    : tlsPorts[0];
  if (port) return { kind: 'passthrough', service: svc, portName: port.name };
  if (ref.portName) return { kind: 'refuse', reason: 'unknown-port' };
  return { kind: 'terminate' };
}
