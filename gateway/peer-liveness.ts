import { Counter, MeshfedError, stallSafeTimeout } from '../core/index.ts';
import type { BalancerTarget, Failure } from './balancer/index.ts';
import type { GatewayOptions } from './gateway-options.ts';
import type { H1Pool } from './h1/pool.ts';
import type { H2Pool } from './h2-pool.ts';
import {
  type CallContext,
  isTimeoutReason,
  TIMEOUT_REASON,
  TryAbort,
  type TryObserver,
  type TrySignal,
} from './resilience/index.ts';

/** What the liveness check reads from the gateway's options: the balancer, its configuration, metrics, log. */
export type PeerLivenessOptions = Pick<
  GatewayOptions,
  'balancers' | 'balancerConfig' | 'cluster' | 'registry' | 'logger'
>;

/** A try in flight to a remote gateway (its signal is what stops it), and whether it would be retried. */
type TryContext = CallContext<unknown> & { signal: TrySignal };
type Retryable = (ctx: never) => boolean;

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
  /**
   * tries in flight, by remote gateway address: each try's own context, and whether a try that timed out
   * would be retried (one predicate per dispatch, so watching a try allocates nothing of its own)
   */
  readonly #inFlight = new Map<string, Map<TryContext, Retryable>>();
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
   * What watches the tries of one balanced dispatch (`balancedDispatch`'s observer): a per-try or connect
   * timeout towards a remote gateway has it PINGed, and an unanswered PING aborts the try's own signal (the
   * per-try timeout's TryAbort) with a timeout reason, so the dispatch counts a 'timeout' and the layer above
   * retries it, when `retryable` says a try that timed out would be retried. Local endpoints are not
   * watched; nor are tries whose signal is not a TryAbort (nothing to stop them with: they only report).
   * A first try costs a map entry, not an async frame, a promise or an abort of its own.
   */
  observer<P>(retryable: (ctx: CallContext<P> & { signal: TrySignal }) => boolean): TryObserver<P> {
    const watched = (t: BalancerTarget, ctx: CallContext<P> & { signal: TrySignal }) =>
      !t.local && this.#afterMs > 0 && ctx.signal instanceof TryAbort;
    return {
      started: (t, ctx) => {
        if (!watched(t, ctx)) return;
        let tries = this.#inFlight.get(t.address);
        if (!tries) {
          tries = new Map();
          this.#inFlight.set(t.address, tries);
        }
        tries.set(ctx as TryContext, retryable as Retryable);
      },
      answered: (t, ctx) => {
        if (t.local) return;
        this.#settled(t, ctx as TryContext);
        // an answer on any connection to it while it is PINGed: alive, whatever its tunnel session says
        if (this.#pinging.has(t.address)) this.#pinging.set(t.address, true);
      },
      failed: (t, ctx, failure) => {
        if (t.local) return;
        this.#settled(t, ctx as TryContext);
        if (timedOutOrUnreachable(ctx.signal, failure)) this.suspect(t);
      },
    };
  }

  #settled(t: BalancerTarget, ctx: TryContext): void {
    const tries = this.#inFlight.get(t.address);
    if (tries?.delete(ctx) && tries.size === 0) this.#inFlight.delete(t.address);
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
    answers(this.#tunnel, t, within)
      .then((pong) => {
        const ok = pong || this.#pinging.get(t.address) === true;
        this.#pinging.delete(t.address);
        this.#pings.inc({
          source_cluster: this.#o.cluster,
          destination_cluster: t.cluster,
          result: ok ? 'answered' : 'unanswered',
        });
        if (!ok) this.#unresponsivePeer(t, within);
      })
      // stopping the tries in flight runs their codecs' cancels: a fault there is logged, never a crash
      .catch((err: unknown) => {
        this.#pinging.delete(t.address);
        this.#o.logger.error({ err, address: t.address }, 'the unresponsive-gateway check failed');
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
    // copied: a stopped try leaves the map when its dispatch hears of it
    for (const [ctx, retryable] of [...(this.#inFlight.get(t.address) ?? [])])
      if ((retryable as (c: TryContext) => boolean)(ctx)) (ctx.signal as TryAbort).abort(reason);
  }
}

/**
 * A try that calls for a PING: its per-try timeout fired (not a stop by this check: that gateway is already
 * judged), or its connection could not be made.
 */
function timedOutOrUnreachable(signal: TrySignal, failure: Failure): boolean {
  if (failure === 'connect') return true;
  return (
    failure === 'timeout' &&
    signal.aborted &&
    isTimeoutReason(signal.reason) &&
    !(signal.reason instanceof UnresponsivePeer)
  );
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
        try {
          s.ping((err) => {
            if (err) return;
            timer.cancel();
            resolve(true);
          });
        } catch {
          // destroyed since the pool handed it over (node throws): nothing will be heard on it, the bound decides
        }
      },
      () => {
        timer.cancel();
        resolve(false);
      },
    );
  });
}

/**
 * Why a try to a gateway that left a PING unanswered was stopped before its per-try timeout: a timeout
 * reason, so the dispatch counts it as a 'timeout' against the gateway and the retry layer may try elsewhere.
 */
class UnresponsivePeer extends MeshfedError {
  readonly [TIMEOUT_REASON] = true;
  constructor(t: BalancerTarget, withinMs: number) {
    super(
      'MESHFED_GATEWAY_TIMEOUT',
      `gateway ${t.gatewayName ?? t.address} of cluster ${t.cluster} did not answer a PING within ${Math.round(withinMs)} ms (balancer.unresponsiveAfter); its tries are retried elsewhere when safe`,
      { retryable: true },
    );
  }
}
