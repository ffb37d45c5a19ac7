import type { ServerResponse } from 'node:http';
import { EventEmitter } from 'node:events';
import http2, { type ClientHttp2Stream, type Http2ServerResponse } from 'node:http2';
import net, { type Socket } from 'node:net';
import type { Counter, LocalService, Logger } from '../core/index.ts';
import { refuse } from './answers.ts';
import type { BalancerConfig, Balancers, Failure, PickResult } from './balancer/index.ts';
import type { H2Pool } from './h2-pool.ts';
import type { Identities } from './identity.ts';
import { type Handler, routeOf } from './pipeline.ts';
import type { GoldenMetrics } from './golden-metrics.ts';
import type { CircuitBreakers } from './resilience/index.ts';

export interface TcpRelayOptions {
  balancers: Balancers;
  breakers: CircuitBreakers;
  pool: H2Pool;
  identities: Identities;
  config: BalancerConfig;
  refused: Counter;
  log: Logger;
  /** this gateway's cluster: the source of its TCP ports' calls, the destination of passthrough */
  cluster: string;
  golden: GoldenMetrics;
}

/**
 * Records a relayed connection in the golden metrics once it closes: 200 when it reached a backend (503
 * when not), the seconds it took to get there, and every byte each way.
 */
function recordConnection(
  options: TcpRelayOptions,
  client: Socket,
  t0: number,
  call: {
    direction: 'outbound' | 'inbound';
    protocol: 'tcp' | 'tls';
    source: string;
    destination: () => string;
    service: string;
  },
): { connected(): void } {
  let connectedAfter = -1;
  client.once('close', () => {
    const ok = connectedAfter >= 0;
    options.golden
      .series(call.direction, call.protocol, call.source, undefined, call.destination(), call.service)
      .record(
        ok ? 200 : 503,
        '',
        ok ? connectedAfter : (performance.now() - t0) / 1000,
        client.bytesRead,
        client.bytesWritten,
      );
  });
  return {
    connected: () => {
      if (connectedAfter < 0) connectedAfter = (performance.now() - t0) / 1000;
    },
  };
}

function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/**
 * Byte relays: SNI passthrough to a local TLS endpoint, a per-service TCP port (to a local endpoint, or
 * over a CONNECT stream of the tunnel), and the terminal of the east-west CONNECT pipeline.
 */
export class TcpRelay {
  readonly #options: TcpRelayOptions;
  constructor(options: TcpRelayOptions) {
    this.#options = options;
  }

  /**
   * A TCP connection to the picked local endpoint, given up after timeouts.connect. It settles the pick
   * once: ok when connected, a 'connect' failure when it cannot connect, and without blame when it is
   * destroyed first (the client left meanwhile).
   */
  dialEndpoint(pick: PickResult): Socket {
    const { host, port } = splitHostPort(pick.target.address);
    const t0 = performance.now();
    const up = net.connect({ host, port, noDelay: true });
    const ms = this.#options.config.timeouts.connect;
    const timer = setTimeout(() => up.destroy(new Error(`no connection within ${ms} ms`)), ms);
    up.once('connect', () => {
      clearTimeout(timer);
      pick.release({ ok: true, latencyMs: performance.now() - t0 });
    });
    // after a release these are no-ops
    up.once('error', () =>
      pick.release({ ok: false, latencyMs: performance.now() - t0, failure: 'connect' }),
    );
    up.once('close', () => {
      clearTimeout(timer);
      pick.release({ ok: true, latencyMs: 0, failure: 'cancelled' });
    });
    return up;
  }

  /**
   * A TCP connection (or CONNECT stream) to the picked target holds one circuitBreaker.maxConnections
   * slot until `holder` closes; when the target has none left it is refused (the pick released without
   * blaming the target).
   */
  #slot(pick: PickResult, holder: { once(e: 'close', f: () => void): unknown }): boolean {
    const release = this.#options.breakers.acquireConnection(pick.target);
    if (!release) {
      pick.release({ ok: false, latencyMs: 0, failure: 'overflow' });
      return false;
    }
    holder.once('close', release);
    return true;
  }

  /** SNI passthrough: the ClientHello and everything after it, unterminated, to a local TLS endpoint. */
  passthrough(
    client: Socket,
    hello: Buffer,
    svc: LocalService,
    portName: string,
    attempt = 0,
    exclude = new Set<string>(),
    call = recordConnection(this.#options, client, performance.now(), {
      direction: 'inbound',
      protocol: 'tls',
      // the TLS is not terminated here: nothing says which cluster or workload is calling
      source: '',
      destination: () => this.#options.cluster,
      service: `${svc.name}.${svc.namespace}`,
    }),
  ): void {
    const pick = this.#options.balancers.pick(svc.namespace, svc.name, { scope: 'local', portName, exclude });
    if (!pick) {
      this.#options.refused.inc({ listener: 'eastWest', reason: 'no-healthy-upstream' });
      client.destroy();
      return;
    }
    const upstream = this.dialEndpoint(pick);
    // node clears `connecting` before it reports a failed connect: this flag is what says it failed
    let connected = false;
    upstream.once('error', (err) => {
      if (!connected) {
        exclude.add(pick.target.id);
        if (attempt < this.#options.config.retry.attempts && !client.destroyed) {
          this.passthrough(client, hello, svc, portName, attempt + 1, exclude, call);
          return;
        }
      }
      this.#options.log.debug({ err }, 'passthrough upstream error');
      client.destroy();
    });
    upstream.once('connect', () => {
      connected = true;
      call.connected();
      upstream.write(hello);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
  }

  /**
   * A per-service TCP port: to a local endpoint, or as a CONNECT stream through a remote gateway. A remote
   * try that fails before its CONNECT is answered is a connect failure (#throughTunnel): nothing of the
   * client's has been relayed yet, so the connection is tried on another target, up to retry.attempts.
   */
  tcpPort(socket: Socket, listener: string, service: string, portName: string | undefined): void {
    const refusedHere = (reason: string) => {
      this.#options.refused.inc({ listener, reason });
      socket.destroy();
    };
    let caller: string;
    try {
      caller = this.#options.identities.tcpCaller();
    } catch {
      refusedHere('client-cert-required');
      return;
    }
    const [name, namespace] = service.split('.') as [string, string];
    const exclude = new Set<string>();
    const pickNext = () =>
      this.#options.balancers.pick(namespace, name, {
        scope: 'any',
        ...(portName ? { portName } : {}),
        ...(exclude.size > 0 ? { exclude } : {}),
      });
    let pick = pickNext();
    const call = recordConnection(this.#options, socket, performance.now(), {
      direction: 'outbound',
      protocol: 'tcp',
      source: this.#options.cluster,
      destination: () => pick?.target.cluster ?? '',
      service,
    });
    if (!pick) {
      refusedHere('no-healthy-upstream');
      return;
    }
    let retries = 0;
    const tryTarget = (p: PickResult): void => {
      // this try's circuit-breaker slot: given back when the try fails, or when the client leaves
      const held = new EventEmitter();
      socket.once('close', () => held.emit('close'));
      if (!this.#slot(p, held)) {
        refusedHere('circuit-breaker');
        return;
      }
      if (p.target.local) {
        const up = this.dialEndpoint(p);
        up.once('connect', () => {
          call.connected();
          socket.pipe(up);
          up.pipe(socket);
        });
        up.once('error', () => socket.destroy());
        socket.once('close', () => up.destroy());
        up.once('close', () => socket.destroy());
        return;
      }
      this.#throughTunnel(socket, p, { name, namespace, caller, call }, () => {
        held.emit('close');
        exclude.add(p.target.id);
        const again = retries++ < this.#options.config.retry.attempts && !socket.destroyed;
        pick = again ? pickNext() : undefined;
        if (pick) tryTarget(pick);
        else socket.destroy();
      });
    };
    tryTarget(pick);
  }

  /**
   * One try of a TCP port's connection as a CONNECT stream through the remote gateway `pick` names.
   * `failed` runs (once) when the try ends before the CONNECT is answered with 200: no tunnel, a reset, a
   * 5xx, or no answer within timeouts.request (a session whose network went silent answers nothing, and
   * would otherwise hold the client until it gave up). The pick is settled in every case.
   */
  #throughTunnel(
    socket: Socket,
    pick: PickResult,
    o: { name: string; namespace: string; caller: string; call: { connected(): void } },
    failed: () => void,
  ): void {
    const t = pick.target;
    const t0 = performance.now();
    let over = false;
    const fail = (failure: Failure) => {
      if (over) return;
      over = true;
      // the client may have left meanwhile: then nobody is to blame and there is nothing to retry
      if (socket.destroyed) pick.release({ ok: true, latencyMs: 0, failure: 'cancelled' });
      else pick.release({ ok: false, latencyMs: performance.now() - t0, failure });
      failed();
    };
    this.#options.pool.session(t.address, t.cluster).then(
      (session) => {
        // the client may have left while the tunnel was dialled: its 'close' is past, open nothing
        if (socket.destroyed) return fail('cancelled');
        let stream: ClientHttp2Stream;
        try {
          stream = session.request({
            ':method': 'CONNECT',
            ':authority': `${o.name}.${o.namespace}.svc.clusterset.local:${t.port.port}`,
            'x-meshfed-chain': this.#options.identities.localChain().b64,
            'x-meshfed-caller': o.caller,
          });
        } catch {
          // a session closing meanwhile (GOAWAY) refuses new streams; a throw here would be unhandled
          return fail('reset');
        }
        // the CONNECT's answer is the answer to a request: the per-try timeout applies to it
        const ms = this.#options.config.timeouts.request;
        const timer = setTimeout(() => {
          fail('timeout');
          stream.close(http2.constants.NGHTTP2_CANCEL);
        }, ms);
        stream.once('response', (h) => {
          if (over) return;
          clearTimeout(timer);
          const status = Number(h[':status']);
          if (status >= 500) {
            fail('5xx');
            stream.close(http2.constants.NGHTTP2_CANCEL);
            return;
          }
          over = true;
          const ok = status === 200;
          pick.release({ ok, latencyMs: performance.now() - t0, ...(ok ? {} : { failure: '5xx' as const }) });
          if (!ok) return socket.destroy();
          o.call.connected();
          socket.pipe(stream);
          stream.pipe(socket);
          stream.once('close', () => socket.destroy());
        });
        stream.once('error', () => undefined);
        stream.once('close', () => {
          clearTimeout(timer);
          // closed before any answer: a reset of this try (a no-op once it is settled)
          fail('reset');
        });
        socket.once('close', () => stream.close());
      },
      () => fail('connect'),
    );
  }

  /**
   * The terminal of the east-west CONNECT pipeline (identity, caller rule, route to a declared tcp port
   * and authorization are behind it): a raw TCP stream to a local endpoint of that port.
   */
  readonly connect: Handler = async (r) => {
    const route = routeOf(r);
    const res = r.io.res as Http2ServerResponse;
    const pick = this.#options.balancers.pick(route.namespace, route.name, {
      scope: 'local',
      ...(route.portName ? { portName: route.portName } : {}),
    });
    const service = `${route.name}.${route.namespace}`;
    if (!pick) refuse('no-healthy-upstream', `${service} has no healthy local endpoint`);
    if (!this.#slot(pick, res))
      refuse('circuit-breaker', `${service}: every endpoint is at circuitBreaker.maxConnections`);
    r.destination = pick.target.cluster;
    const up = this.dialEndpoint(pick);
    // settles once the stream is relayed or refused, so the layers around it see how it began
    await new Promise<void>((settle) => {
      up.once('connect', () => {
        r.status = 200;
        res.writeHead(200);
        r.io.req.on('data', (d: Buffer) => {
          r.bytesIn += d.length;
        });
        up.on('data', (d: Buffer) => {
          r.bytesOut += d.length;
        });
        r.io.req.pipe(up);
        up.pipe(res as unknown as NodeJS.WritableStream);
        this.#options.log.debug({ peer: r.peer?.spiffeId, caller: r.caller, service }, 'tcp tunnel opened');
        settle();
      });
      up.once('error', () => {
        if (!res.headersSent) {
          r.status = 503;
          (res as unknown as ServerResponse).writeHead(503, { 'x-meshfed-error': 'connect-failed' });
          res.end();
        } else res.destroy();
        settle();
      });
      res.once('close', () => {
        up.destroy();
        settle();
      });
    });
  };
}
