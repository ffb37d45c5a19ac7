import type { ServerResponse } from 'node:http';
import { type ClientHttp2Stream, constants as h2constants, type Http2ServerResponse } from 'node:http2';
import net, { type Socket } from 'node:net';
import type { Counter, LocalService, Logger } from '../core/index.ts';
import { refuse } from './answers.ts';
import type { BalancerConfig, Balancers, Failure, PickResult } from './balancer/index.ts';
import { type H2Pool, refusedUnread } from './h2-pool.ts';
import { chainHeaderOf, type Identities } from './identity.ts';
import { type Handler, routeOf } from './pipeline.ts';
import type { GoldenMetrics } from './golden-metrics.ts';
import {
  backoffMs,
  type CircuitBreakers,
  type ResilienceMetrics,
  type RetryBudget,
} from './resilience/index.ts';
import { sharedReads } from './socket-reads.ts';
import { type TcpDecision, type TcpSourcePolicy, tcpSourceDecision } from './tcp-source-policy.ts';

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
  /** the retry budget of a service, shared with its HTTP requests */
  budgetFor: (service: { namespace: string; name: string }) => RetryBudget;
  metrics: ResilienceMetrics;
  /** TrafficSplit and FaultInjection on the TCP ports; undefined: no policy */
  policy: TcpSourcePolicy | undefined;
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

/** Where a relay writes a local endpoint's bytes: the client's socket, or a CONNECT stream's response. */
interface ByteSink {
  write(d: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

/**
 * The `reads` (dialEndpoint's) of a relay from a local endpoint to `client`: the endpoint's bytes go to the
 * client from the shared read buffer (socket-reads.ts), not through a stream pipe, so no 64 KiB allocation per
 * read (mapped and unmapped by malloc each time: a TCP port relayed 64 KiB responses at a third of the rate
 * through a pipe, docs/performance.md, "Twelfth round") and no stream machinery on their way; a client that
 * cannot take them pauses the endpoint (`endpoint()`, the socket these reads are for) until it drains.
 * `counted` hears each piece's size. The endpoint's end is the caller's to pass on.
 */
function readsToClient(
  client: ByteSink,
  endpoint: () => Socket,
  counted?: (bytes: number) => void,
): ReturnType<typeof sharedReads> {
  const resume = () => endpoint().resume();
  return sharedReads((d) => {
    counted?.(d.length);
    if (client.write(d)) return true;
    client.once('drain', resume);
    return false;
  });
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
   * destroyed first (the client left meanwhile). With `reads`, the socket reads through that `onread`
   * option (socket-reads.ts) and emits no 'data'.
   */
  dialEndpoint(pick: PickResult, reads?: ReturnType<typeof sharedReads>): Socket {
    const { host, port } = splitHostPort(pick.target.address);
    const t0 = performance.now();
    const up = net.connect({ host, port, noDelay: true, ...(reads ? { onread: reads } : {}) });
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
    const upstream = this.dialEndpoint(
      pick,
      readsToClient(client, () => upstream),
    );
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
      upstream.once('end', () => client.end());
      client.resume();
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
  }

  /**
   * A per-service TCP port: to a local endpoint, or as a CONNECT stream through a remote gateway. Until
   * the target accepts (the local connect, or a 200 to the CONNECT) the client's bytes wait unread in its
   * socket and nothing has been relayed either way, so a try that fails then — connect failure, refused,
   * a tunnel session gone, the stream reset, a 5xx to the CONNECT — is retried on another target, within
   * retry.attempts and the service's retry budget; the failed target is blamed and outlier detection
   * ejects it. Once bytes flow, a failure ends the connection.
   *
   * The source gateway's TrafficSplit and FaultInjection apply once per connection, before any of that
   * (tcp-source-policy.ts): a split chooses the service connected to, a delay holds the connection before it
   * is connected onward (what the client sends meanwhile waits in the socket), an abort refuses it with a
   * TCP reset.
   */
  tcpPort(socket: Socket, listener: string, service: string, portName: string | undefined): void {
    let caller: string;
    try {
      caller = this.#options.identities.tcpCaller();
    } catch {
      this.#options.refused.inc({ listener, reason: 'client-cert-required' });
      socket.destroy();
      return;
    }
    const [name, namespace] = service.split('.') as [string, string];
    const policy = this.#options.policy;
    const d: TcpDecision = policy
      ? tcpSourceDecision(policy, { namespace, name })
      : { backend: { namespace, name } };
    const onward = () => {
      if (d.abort === undefined) {
        this.#tcpOnward(socket, listener, service, portName, caller, d.backend);
        return;
      }
      this.#options.refused.inc({ listener, reason: 'fault-injected' });
      socket.resetAndDestroy();
    };
    if (d.delayMs === undefined) {
      onward();
      return;
    }
    // a client that leaves during the delay gets nothing opened on its behalf
    const gone = () => clearTimeout(timer);
    const timer = setTimeout(() => {
      socket.off('close', gone);
      if (!socket.destroyed) onward();
    }, d.delayMs);
    socket.once('close', gone);
  }

  /**
   * A per-service TCP port's connection, to `backend` (the service as addressed, or a split's backend,
   * pinned to its cluster when it names one), with the retries described at tcpPort.
   */
  #tcpOnward(
    socket: Socket,
    listener: string,
    service: string,
    portName: string | undefined,
    caller: string,
    backend: TcpDecision['backend'],
  ): void {
    const refusedHere = (reason: string) => {
      this.#options.refused.inc({ listener, reason });
      socket.destroy();
    };
    const { namespace, name } = backend;
    let destination = '';
    const call = recordConnection(this.#options, socket, performance.now(), {
      direction: 'outbound',
      protocol: 'tcp',
      source: this.#options.cluster,
      destination: () => destination,
      service,
    });
    const budget = this.#options.budgetFor({ namespace, name });
    budget.recordCall();
    const exclude = new Set<string>();
    const tryTarget = (attempt: number): void => {
      const opts = {
        scope: 'any' as const,
        exclude,
        ...(portName ? { portName } : {}),
        ...(backend.cluster ? { cluster: backend.cluster } : {}),
      };
      // a retry prefers an untried target, but a tried one beats none (as for HTTP: balanced-dispatch.ts)
      const pick =
        this.#options.balancers.pick(namespace, name, opts) ??
        (attempt > 0
          ? this.#options.balancers.pick(namespace, name, { ...opts, exclude: new Set() })
          : undefined);
      if (!pick) {
        // only a first try counts as a refusal
        if (attempt === 0) refusedHere('no-healthy-upstream');
        else socket.destroy();
        return;
      }
      const releaseSlot = this.#options.breakers.acquireConnection(pick.target);
      if (!releaseSlot) {
        pick.release({ ok: false, latencyMs: 0, failure: 'overflow' });
        refusedHere('circuit-breaker');
        return;
      }
      destination = pick.target.cluster;
      let settled = false;
      const onClientGone = () => releaseSlot();
      socket.once('close', onClientGone);
      // `up`'s bytes reach the client through its own reads (`viaReads`: a local endpoint, #dialLocal) or
      // through a pipe (a CONNECT stream)
      const relay = (up: NodeJS.ReadWriteStream, viaReads = false) => {
        settled = true;
        call.connected();
        socket.pipe(up);
        if (viaReads) up.once('end', () => socket.end());
        else up.pipe(socket);
      };
      // before any byte was relayed: another target, when the budget allows
      const retry = (failure: Failure) => {
        if (settled) return;
        settled = true;
        socket.off('close', onClientGone);
        releaseSlot();
        if (socket.destroyed) return;
        exclude.add(pick.target.id);
        const labels = { source_cluster: this.#options.cluster, destination_cluster: pick.target.cluster };
        if (attempt >= this.#options.config.retry.attempts) return void socket.destroy();
        if (!budget.tryAcquire()) {
          this.#options.metrics.budgetExhausted.inc(labels);
          socket.destroy();
          return;
        }
        this.#options.metrics.retries.inc({ ...labels, failure });
        // the same full-jitter back-off as the HTTP retries
        const { backoffBase, backoffMax } = this.#options.config.retry;
        setTimeout(
          () => {
            if (!socket.destroyed) tryTarget(attempt + 1);
          },
          backoffMs(attempt, backoffBase, backoffMax, Math.random),
        );
      };
      if (pick.target.local) this.#dialLocal(pick, socket, relay, retry);
      else
        this.#openConnect(
          pick,
          socket,
          { caller, host: `${name}.${namespace}.svc.clusterset.local` },
          relay,
          retry,
        );
    };
    tryTarget(0);
  }

  /** A per-service TCP port's try at a local endpoint: dialEndpoint settles the pick itself. */
  #dialLocal(
    pick: PickResult,
    socket: Socket,
    relay: (up: NodeJS.ReadWriteStream, viaReads: boolean) => void,
    retry: (failure: Failure) => void,
  ): void {
    const up = this.dialEndpoint(
      pick,
      readsToClient(socket, () => up),
    );
    let connected = false;
    up.once('connect', () => {
      connected = true;
      relay(up, true);
    });
    up.once('error', () => {
      if (!connected) retry('connect');
    });
    socket.once('close', () => up.destroy());
    up.once('close', () => {
      if (connected) socket.destroy();
    });
  }

  /**
   * A per-service TCP port's try at a remote gateway: a CONNECT stream on the tunnel session, answered
   * within the per-try timeout (timeouts.request) or failed as a 'timeout'.
   */
  #openConnect(
    pick: PickResult,
    socket: Socket,
    call: { caller: string; host: string },
    relay: (up: NodeJS.ReadWriteStream) => void,
    retry: (failure: Failure) => void,
  ): void {
    const t = pick.target;
    const t0 = performance.now();
    const failed = (failure: Failure) => {
      pick.release({ ok: false, latencyMs: performance.now() - t0, failure });
      retry(failure);
    };
    this.#options.pool.session(t.address, t.cluster).then(
      (session) => {
        // the client may have left while the tunnel was dialled: its 'close' is past, open nothing
        if (socket.destroyed) return pick.release({ ok: true, latencyMs: 0, failure: 'cancelled' });
        // the chain of the leaf this session presented, which may be the one before a rotation
        const leaf = this.#options.pool.leafOf(session);
        let stream: ClientHttp2Stream;
        try {
          stream = session.request({
            ':method': 'CONNECT',
            ':authority': `${call.host}:${t.port.port}`,
            'x-meshfed-chain': leaf ? chainHeaderOf(leaf) : this.#options.identities.localChain().b64,
            'x-meshfed-caller': call.caller,
          });
        } catch {
          // a session closed or going away since the pool handed it out: the stream never left
          return failed('refused');
        }
        let answered = false;
        let relaying = false;
        // a session whose network went silent (a partition) answers nothing and errs nothing: the answer is
        // awaited for the per-try timeout, then the try fails like any other before bytes flowed
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          stream.close(h2constants.NGHTTP2_CANCEL);
          failed('timeout');
        }, this.#options.config.timeouts.request);
        stream.once('response', (h) => {
          if (timedOut) return;
          clearTimeout(timer);
          answered = true;
          const status = Number(h[':status']);
          if (status >= 500) {
            // the remote gateway could not reach an endpoint (503 connect-failed): nothing was relayed
            stream.close();
            failed('5xx');
            return;
          }
          if (status !== 200) {
            // refused by the destination's policy: the caller's fault, never retried nor blamed
            pick.release({ ok: true, latencyMs: performance.now() - t0 });
            socket.destroy();
            return;
          }
          pick.release({ ok: true, latencyMs: performance.now() - t0 });
          relaying = true;
          relay(stream);
        });
        // an error is followed by 'close', which decides
        stream.on('error', () => {});
        stream.once('close', () => {
          clearTimeout(timer);
          if (relaying) socket.destroy();
          if (answered || timedOut) return;
          // closed before any answer: the client leaving blames nobody; anything else is the target's
          if (socket.destroyed) {
            pick.release({ ok: false, latencyMs: performance.now() - t0, failure: 'cancelled' });
            return;
          }
          failed(refusedUnread(stream, session, answered) ? 'refused' : 'reset');
        });
        socket.once('close', () => stream.close());
      },
      () => failed('connect'),
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
    const up = this.dialEndpoint(
      pick,
      readsToClient(
        res,
        () => up,
        (n) => {
          r.bytesOut += n;
        },
      ),
    );
    // settles once the stream is relayed or refused, so the layers around it see how it began
    await new Promise<void>((settle) => {
      up.once('connect', () => {
        r.status = 200;
        res.writeHead(200);
        r.io.req.on('data', (d: Buffer) => {
          r.bytesIn += d.length;
        });
        r.io.req.pipe(up);
        up.once('end', () => res.end());
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
