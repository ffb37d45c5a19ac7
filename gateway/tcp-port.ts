import type { ClientHttp2Stream } from 'node:http2';
import { constants as h2constants } from 'node:http2';
import type { Socket } from 'node:net';
import type { Failure, PickResult } from './balancer/index.ts';
import {
  closeRelayedClient,
  dialEndpoint,
  recordConnection,
  type TcpRelayOptions,
} from './endpoint-relay.ts';
import { refusedUnread } from './h2-pool.ts';
import { chainHeaderOf } from './identity.ts';
import { backoffMs } from './resilience/index.ts';
import { type TcpDecision, tcpSourceDecision } from './tcp-source-policy.ts';

/**
 * The per-service TCP ports' connections: to a local endpoint, or as a CONNECT stream of the tunnel to a
 * remote gateway, with retries before any byte is relayed and the source gateway's TCP policy.
 */
export class TcpPorts {
  readonly #options: TcpRelayOptions;
  constructor(options: TcpRelayOptions) {
    this.#options = options;
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
    const call = recordConnection(this.#options.golden, socket, performance.now(), {
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
    const up = dialEndpoint(pick, this.#options.config.timeouts.connect, socket);
    let connected = false;
    up.once('connect', () => {
      connected = true;
      relay(up, true);
    });
    up.once('error', () => {
      if (!connected) retry('connect');
    });
    socket.once('close', () => up.destroy());
    up.once('close', (hadError: boolean) => {
      if (connected)
        closeRelayedClient(socket, !hadError && up.readableEnded, this.#options.config.timeouts.idle);
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
          // a stream the remote gateway ended cleanly: the pipe passes its end on after its bytes
          if (relaying)
            closeRelayedClient(
              socket,
              stream.rstCode === h2constants.NGHTTP2_NO_ERROR,
              this.#options.config.timeouts.idle,
            );
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
}
