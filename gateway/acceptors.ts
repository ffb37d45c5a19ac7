import type http from 'node:http';
import type { Http2SecureServer, Http2Server } from 'node:http2';
import type { Socket } from 'node:net';
import type tls from 'node:tls';
import type { Counter } from '../core/index.ts';
import { type HelloResult, parseClientHello } from './client-hello.ts';
import { FAST_ALPN, type GatewayConfig } from './config.ts';
import type { Drain } from './drain.ts';
import type { H1Entry } from './h1/entry.ts';
import { ticketIssuedBy } from './handshake-admission.ts';
import { passthroughDecision } from './layers/authorization.ts';
import type { PolicyMetrics } from './layers/policy-facts.ts';
import type { Listeners } from './listeners.ts';
import type { LocalServices } from './local-services.ts';
import type { PolicyIndex } from './policy/index.ts';
import { readClientHello, routeHello, sniffEgress } from './protocol-entry.ts';
import type { TcpPorts } from './tcp-port.ts';
import type { TcpRelay } from './tcp-relay.ts';

/** The servers a listener hands its connections to, made at the gateway's start (see Acceptors.serveWith). */
export interface AcceptServers {
  egressH1: http.Server;
  egressH2: Http2Server;
  egressTls: Http2SecureServer | undefined;
  fastEgress: H1Entry | undefined;
  tls: Http2SecureServer;
  fastTls: tls.Server | undefined;
}

export interface AcceptContext {
  config: GatewayConfig;
  listeners: Listeners;
  refused: Counter;
  drain: Drain;
  local: LocalServices;
  relay: TcpRelay;
  ports: TcpPorts;
  policy: { index: PolicyIndex; metrics: PolicyMetrics } | undefined;
}

/**
 * What the gateway's listeners do with a new connection before any server sees it: the connection limits
 * and trusted networks, refusals while draining, the egress protocol sniff (TLS, h2c, HTTP/1.1), the
 * east-west ClientHello route (terminate, passthrough or refuse) with handshake admission, and the
 * per-service TCP ports.
 */
export class Acceptors {
  readonly #c: AcceptContext;
  #s: AcceptServers | undefined;

  constructor(c: AcceptContext) {
    this.#c = c;
  }

  /** the servers, once made: the listeners bind only after this */
  serveWith(servers: AcceptServers): void {
    this.#s = servers;
  }

  /** An HTTP/1.1 CONNECT: meshfed tunnels TCP only as HTTP/2 CONNECT streams between gateways. */
  refuseHttp1Connect(socket: Socket, listener: 'egress' | 'eastWest' = 'eastWest'): void {
    const c = this.#c;
    c.refused.inc({ listener, reason: 'connect-over-http1' });
    socket.on('error', () => undefined);
    socket.end(
      'HTTP/1.1 405 Method Not Allowed\r\nconnection: close\r\ncontent-length: 0\r\nx-meshfed-error: connect-over-http1\r\n\r\n',
    );
  }

  egress(socket: Socket): void {
    const c = this.#c;
    const s = this.#s!;
    if (!c.listeners.admit(socket, 'egress')) return;
    if (c.drain.closing || !c.listeners.trusted(socket)) {
      c.refused.inc({
        listener: 'egress',
        reason: c.drain.closing ? 'draining' : 'untrusted-network',
      });
      socket.destroy();
      return;
    }
    sniffEgress(
      socket,
      { tls: s.egressTls !== undefined, timeoutMs: c.config.limits.headersTimeout },
      (kind, first) => {
        // the servers take the unshifted bytes over themselves; resuming here would lose them to nobody
        if (kind === 'tls') {
          // the first bytes read nearly always hold the whole ClientHello: a ticket of ours costs less
          const hello = parseClientHello(first);
          const ours = hello.ok && ticketIssuedBy(s.egressTls!, hello.ticket);
          if (c.listeners.handshakes.egress.admit(socket, ours)) s.egressTls!.emit('connection', socket);
        } else if (kind === 'h2') s.egressH2.emit('connection', socket);
        else if (s.fastEgress) s.fastEgress.accept(socket);
        else {
          s.egressH1.emit('connection', socket);
          socket.resume();
        }
      },
    );
  }

  eastWest(socket: Socket): void {
    const c = this.#c;
    if (!c.listeners.admit(socket, 'eastWest')) return;
    if (c.drain.closing) {
      c.refused.inc({ listener: 'eastWest', reason: 'draining' });
      socket.destroy();
      return;
    }
    readClientHello(
      socket,
      {
        timeoutMs: c.config.limits.helloTimeout,
        onTimeout: () => c.refused.inc({ listener: 'eastWest', reason: 'hello-timeout' }),
      },
      (buf, hello) => this.#routeHello(socket, buf, hello),
    );
  }

  #routeHello(socket: Socket, buf: Buffer, hello: HelloResult): void {
    const c = this.#c;
    const s = this.#s!;
    const route = routeHello(hello, c.local);
    switch (route.kind) {
      case 'refuse':
        c.refused.inc({ listener: 'eastWest', reason: route.reason });
        socket.destroy();
        return;
      case 'terminate': {
        // the ClientHello was cheap to read; the handshake after it is not (handshake-admission.ts)
        const server = s.fastTls && hello.ok && hello.alpn.includes(FAST_ALPN) ? s.fastTls : s.tls;
        const ours = hello.ok && ticketIssuedBy(server, hello.ticket);
        if (!c.listeners.handshakes.eastWest.admit(socket, ours)) return;
        socket.unshift(buf);
        // TLSSocket reads the unshifted ClientHello and then the handle itself: no resume() here
        server.emit('connection', socket);
        return;
      }
      case 'passthrough': {
        // no caller can be known without terminating TLS: see passthroughDecision
        const p = c.policy;
        if (p && passthroughDecision(p.index, route.service, route.portName, p.metrics)) {
          c.refused.inc({ listener: 'eastWest', reason: 'policy-denied' });
          socket.destroy();
          return;
        }
        c.relay.passthrough(socket, buf, route.service, route.portName);
      }
    }
  }

  /** A per-service TCP port: egress.trustedNetworks and clientAuth apply as on the egress listener. */
  tcp(socket: Socket, listener: string, service: string, portName: string | undefined): void {
    const c = this.#c;
    if (!c.listeners.admit(socket, listener)) return;
    if (c.drain.closing || !c.listeners.trusted(socket)) {
      c.refused.inc({ listener, reason: c.drain.closing ? 'draining' : 'untrusted-network' });
      socket.destroy();
      return;
    }
    c.ports.tcpPort(socket, listener, service, portName);
  }
}
