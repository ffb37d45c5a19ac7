import { Counter, MeshfedError, stallSafeTimeout } from '../core/index.ts';
import type { BalancerTarget } from './balancer/index.ts';
import type { GatewayOptions } from './gateway-options.ts';
import type { H1Pool } from './h1/pool.ts';
import type { H2Pool } from './h2-pool.ts';
import {
  type CallContext,
  isTimeoutReason,
  TryAbort,
  type TrySignal,
  UpstreamFailure,
} from './resilience/index.ts';

/** What the liveness check reads from the gateway's options: the balancer, its configuration, metrics, log. */
export type PeerLivenessOptions = Pick<
  GatewayOptions,
  'balancers' | 'balancerConfig' | 'cluster' | 'registry' | 'logger'
>;

/** A try in flight to a remote gateway: whether it would be retried, and how to stop it. */
interface Watched {
  retryable: () => boolean;
  stop: TryAbort;
}

/**
 * A shared "peer unresponsive" signal. A remote gateway behind a partition neither answers nor errors: what
 * is in flight to it waits for its per-try timeout, and its idle connections keep being handed to new
 * requests until outlier detection or the health checks eject it. At the first per-try or connect timeout
 * towards a gateway this PINGs it on its tunnel session (the fast path goes to the same address); with no
 * answer within afterMs the gateway gets no new request, its idle connections close, and its in-flight
 * tries that the retry conditions would retry are stopped now and retried elsewhere (a try that would not
 * be retried, a POST that may have reached the application, runs on as before). An answered PING changes
 * nothing: a slow backend behind a live gateway is not a dead gateway.
 */
export class PeerLiveness {
  readonly #o: PeerLivenessOptions;
  /** balancer.unresponsiveAfter: how long a PING may go unanswered; 0 sends none */
  readonly #afterMs: number;
  /** the pools that hold connections to remote gateways: tunnel sessions, and fast-path connections */
  readonly #tunnel: Pick<H2Pool, 'session' | 'forget' | 'rttOf'>;
  readonly #fast: Pick<H1Pool, 'dropIdle'>;
  /** tries in flight, by remote gateway address */
  readonly #inFlight = new Map<string, Set<Watched>>();
  /** addresses with a PING under way, and whether a try to them was answered meanwhile */
  readonly #pinging = new Map<string, boolean>();
  readonly #unresponsive: Counter;
  readonly #pings: Counter;

  constructor(
    o: PeerLivenessOptions,
    tunnel: Pick<H2Pool, 'session' | 'forget' | 'rttOf'>,
    fast: Pick<H1Pool, 'dropIdle'>,
  ) {
    this.#o = o;
    this.#afterMs = o.balancerConfig.unresponsiveAfter;
    this.#tunnel = tunnel;
    this.#fast = fast;
    this.#unresponsive = new Counter({
      name: 'meshfed_peer_unresponsive_total',
      help: 'remote gateways ejected because a PING sent at a per-try or connect timeout went unanswered (balancer.unresponsiveAfter)',
      labelNames: ['source_cluster', 'destination_cluster'],
      registers: [o.registry],
    });
    this.#pings = new Counter({
      name: 'meshfed_peer_liveness_pings_total',
      help: 'PINGs sent to remote gateways at a per-try or connect timeout, by whether they were answered in time',
      labelNames: ['source_cluster', 'destination_cluster', 'result'],
      registers: [o.registry],
    });
  }

  /**
   * Sends one try to `t` through `send`, watched: a per-try or connect timeout has the gateway PINGed, and an
   * unanswered PING stops the try (an UpstreamFailure 'timeout', retried by the layer above) when
   * `retryable` says a try that timed out would be retried. Local endpoints are sent to as they are.
   */
  async watch<R, P>(
    t: BalancerTarget,
    ctx: CallContext<P> & { signal: TrySignal },
    send: (ctx: CallContext<P> & { signal: TrySignal }) => Promise<R>,
    retryable: () => boolean,
  ): Promise<R> {
    if (t.local || this.#afterMs <= 0) return send(ctx);
    const w: Watched = { retryable, stop: new TryAbort() };
    w.stop.follow(ctx.signal);
    let set = this.#inFlight.get(t.address);
    if (!set) {
      set = new Set();
      this.#inFlight.set(t.address, set);
    }
    set.add(w);
    try {
      const answered = await send({ ...ctx, signal: w.stop });
      // an answer on any connection to it while it is PINGed: alive, whatever its tunnel session says
      if (this.#pinging.has(t.address)) this.#pinging.set(t.address, true);
      return answered;
    } catch (err) {
      if (w.stop.aborted && w.stop.reason instanceof UnresponsivePeer)
        throw new UpstreamFailure('timeout', t, { cause: w.stop.reason });
      const timedOut = ctx.signal.aborted && isTimeoutReason(ctx.signal.reason);
      if (timedOut || (err instanceof UpstreamFailure && err.failure === 'connect')) this.suspect(t);
      throw err;
    } finally {
      set.delete(w);
      if (set.size === 0 && this.#inFlight.get(t.address) === set) this.#inFlight.delete(t.address);
      w.stop.release();
    }
  }

  /**
   * PINGs the remote gateway of `t` (one PING at a time per address); no answer within afterMs, nothing else
   * arriving on the tunnel session, and no try to it answered on any connection meanwhile, eject it.
   */
  suspect(t: BalancerTarget): void {
    if (t.local || this.#afterMs <= 0 || this.#pinging.has(t.address)) return;
    this.#pinging.set(t.address, false);
    // a peer on a loaded host answers as slowly as its event loop lags: the health checks' PINGs say how slowly
    const within = Math.max(this.#afterMs, 4 * this.#tunnel.rttOf(t.address));
    void answers(this.#tunnel, t, within).then((pong) => {
      const ok = pong || this.#pinging.get(t.address) === true;
      this.#pinging.delete(t.address);
      this.#pings.inc({
        source_cluster: this.#o.cluster,
        destination_cluster: t.cluster,
        result: ok ? 'answered' : 'unanswered',
      });
      if (!ok) this.#unresponsivePeer(t, within);
    });
  }

  #unresponsivePeer(t: BalancerTarget, within: number): void {
    const marked = this.#o.balancers.peerUnresponsive(t.address);
    // the last healthy remote gateway keeps its traffic and its connections
    if (marked === 'last') return;
    if (marked === 'ejected') {
      this.#unresponsive.inc({ source_cluster: this.#o.cluster, destination_cluster: t.cluster });
      this.#o.logger.warn(
        { gateway: t.gatewayName ?? t.address, address: t.address, cluster: t.cluster },
        'remote gateway ejected: a PING went unanswered (balancer.unresponsiveAfter)',
      );
    }
    this.#tunnel.forget(t.address);
    this.#fast.dropIdle(t.address);
    const reason = new UnresponsivePeer(t, within);
    // copied: a stopped try leaves the set as its promise settles
    for (const w of [...(this.#inFlight.get(t.address) ?? [])]) if (w.retryable()) w.stop.abort(reason);
  }
}

/**
 * Whether the remote gateway of `t` shows it is alive within `ms`: a PING on a tunnel session to it is
 * answered, or anything at all arrives on that session meanwhile (a busy gateway is not a silent one;
 * draining or not). No session within `ms`, or a dial that fails, is no answer.
 */
function answers(tunnel: Pick<H2Pool, 'session'>, t: BalancerTarget, ms: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    let heard = () => false;
    // an answer that arrived during a stall of the loop is read before this gives up on it
    const timer = stallSafeTimeout(() => resolve(heard()), ms, { unref: true });
    tunnel.session(t.address, t.cluster).then(
      (s) => {
        const before = s.socket?.bytesRead ?? 0;
        heard = () => !s.destroyed && (s.socket?.bytesRead ?? 0) > before;
        s.ping((err) => {
          if (err) return;
          timer.cancel();
          resolve(true);
        });
      },
      () => {
        timer.cancel();
        resolve(false);
      },
    );
  });
}

/** Why a try to a gateway that left a PING unanswered was stopped before its per-try timeout. */
class UnresponsivePeer extends MeshfedError {
  constructor(t: BalancerTarget, withinMs: number) {
    super(
      'MESHFED_GATEWAY_TIMEOUT',
      `gateway ${t.gatewayName ?? t.address} of cluster ${t.cluster} did not answer a PING within ${Math.round(withinMs)} ms (balancer.unresponsiveAfter); its tries are retried elsewhere when safe`,
      { retryable: true },
    );
  }
}
