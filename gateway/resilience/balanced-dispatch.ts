import { MeshfedError, serviceKey } from '../../core/index.ts';
import type { Balancers, BalancerTarget, Failure, PickResult } from '../balancer/index.ts';
import type { CircuitBreakers } from './circuit-breaker.ts';
import type { CallContext, Dispatch, Done } from './dispatch.ts';
import { NOTHING_EXCLUDED, UpstreamFailure } from './dispatch.ts';
import { isTimeoutReason } from './timeouts.ts';
import { NEVER_ABORTED, type TrySignal } from './try-signal.ts';

export interface BalancedDispatchOptions<R, P = undefined> {
  balancers: Pick<Balancers, 'pick'>;
  breakers?: CircuitBreakers;
  /**
   * Sends one try to one target and reports its outcome through `done`, once: an UpstreamFailure (or any
   * error: it counts as 'reset', or 'connect' if the error code says the connection failed); honour `signal`
   * to stop early. (`fromPromise` makes one of a function that returns a promise.)
   */
  send: (target: BalancerTarget, ctx: CallContext<P> & { signal: TrySignal }, done: Done<R>) => void;
  /** Says whether an answer is a failure (e.g. HTTP 5xx); the default treats every answer as ok. */
  classify?: (result: R) => Failure | undefined;
  /**
   * `send` fails with the signal's reason as soon as it aborts (as sendTry does): the dispatch then
   * races nothing against the abort itself
   */
  sendHonoursSignal?: boolean;
  /** told of each try as it starts and as it ends, with no promise or closure of its own */
  observer?: TryObserver<P>;
  now?: () => number;
}

/**
 * What watches the tries of a balanced dispatch (the peer liveness check): called synchronously, with the
 * try's own context, whose `signal` is the one that stops the try (the per-try timeout's TryAbort when that
 * layer is below this one). `failed` runs after the balancer heard the outcome.
 */
export interface TryObserver<P = undefined> {
  started(target: BalancerTarget, ctx: CallContext<P> & { signal: TrySignal }): void;
  /** the send resolved: an answer arrived, whatever its status */
  answered(target: BalancerTarget, ctx: CallContext<P> & { signal: TrySignal }): void;
  /** the send failed: how, as counted against the target ('timeout' or 'cancelled' when the signal aborted) */
  failed(target: BalancerTarget, ctx: CallContext<P> & { signal: TrySignal }, failure: Failure): void;
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET_BEFORE_CONNECT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET_CONNECT',
]);

function failureOf(err: unknown): Failure {
  if (err instanceof UpstreamFailure) return err.failure;
  const code = (err as { code?: string } | null)?.code ?? '';
  if (code === 'ECONNREFUSED') return 'refused';
  if (CONNECT_CODES.has(code)) return 'connect';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'ETIMEDOUT')
    return 'timeout';
  return 'reset';
}

/** How many other targets to look at when a picked target's breaker is full. */
const BREAKER_REPICKS = 3;

/**
 * The innermost dispatch: pick a target (locality, outlier state, P2C), take its circuit breaker,
 * send, and report the outcome back to the balancer. A try aborted by the per-try timeout counts as
 * a 'timeout' against its target; a caller that goes away counts against nobody.
 *
 * A call is the picking (synchronous), the send, and one object that hears how it went (BalancedTry): no
 * promise, no async frame (an async function with try/catch/finally cost ~1.4 KB per call, measured with the
 * young generation's used bytes, the largest single allocation of a forwarded request before it went).
 */
export function balancedDispatch<R, P = undefined>(o: BalancedDispatchOptions<R, P>): Dispatch<R, P> {
  const now = o.now ?? (() => performance.now());
  const honoured = o.sendHonoursSignal === true;
  return (ctx, done) => {
    let pick: PickResult;
    let releaseBreaker: () => void;
    try {
      [pick, releaseBreaker] = pickAndAcquire(o, ctx);
    } catch (err) {
      done(err);
      return;
    }
    const signal = ctx.signal ?? NEVER_ABORTED;
    // the context is the per-try timeout's own copy, which already carries the signal
    const tryCtx = ctx.signal ? (ctx as CallContext<P> & { signal: TrySignal }) : { ...ctx, signal };
    const t = new BalancedTry(o, now, pick, releaseBreaker, tryCtx, done);
    // a send that fails with the abort reason itself needs no race (unless already aborted: it may never
    // hear of it, as a listener added after the abort is not called)
    const aborted = signal.aborted;
    if (!honoured && !aborted && signal !== NEVER_ABORTED) t.raceAbort();
    try {
      o.observer?.started(pick.target, tryCtx);
      o.send(pick.target, tryCtx, aborted ? IGNORED : t.settle);
    } catch (err) {
      if (!aborted) t.settle(err);
    }
    if (aborted) t.settle(signal.reason);
  };
}

const IGNORED: Done<unknown> = () => undefined;

/** One try of a balanced dispatch, from its send to its report: what the balancer and the breaker hear of it. */
class BalancedTry<R, P> {
  readonly #o: BalancedDispatchOptions<R, P>;
  readonly #now: () => number;
  readonly #pick: PickResult;
  readonly #releaseBreaker: () => void;
  readonly #ctx: CallContext<P> & { signal: TrySignal };
  readonly #done: Done<R>;
  readonly #t0: number;
  #settled = false;
  #race: (() => void) | undefined;

  constructor(
    o: BalancedDispatchOptions<R, P>,
    now: () => number,
    pick: PickResult,
    releaseBreaker: () => void,
    ctx: CallContext<P> & { signal: TrySignal },
    done: Done<R>,
  ) {
    this.#o = o;
    this.#now = now;
    this.#pick = pick;
    this.#releaseBreaker = releaseBreaker;
    this.#ctx = ctx;
    this.#done = done;
    this.#t0 = now();
  }

  /** the send does not stop at its signal: the try ends at the abort whatever the send does */
  raceAbort(): void {
    const signal = this.#ctx.signal;
    this.#race = () => this.settle(signal.reason);
    signal.addEventListener('abort', this.#race, { once: true });
  }

  /** the send's report (the first one counts) */
  readonly settle: Done<R> = (sendErr, result) => {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#race) this.#ctx.signal.removeEventListener('abort', this.#race);
    let err: unknown;
    try {
      err = sendErr === undefined ? this.#answered(result as R) : this.#failed(sendErr);
    } catch (e) {
      err = e;
    }
    if (err === undefined) this.#done(undefined, result);
    else this.#done(err);
  };

  /** Returns the error of a failed answer (a 5xx), which fails the try, else undefined. */
  #answered(result: R): UpstreamFailure | undefined {
    const failure = this.#o.classify?.(result);
    const target = this.#pick.target;
    this.#pick.release({ ok: !failure, latencyMs: this.#now() - this.#t0, ...(failure ? { failure } : {}) });
    this.#releaseBreaker();
    this.#o.observer?.answered(target, this.#ctx);
    return failure ? new UpstreamFailure(failure, target, { response: result }) : undefined;
  }

  /**
   * How a failed try counts against its target, and the error it fails with. A try stopped by its signal counts
   * as a timeout when the per-try timeout (or the liveness check) stopped it, and against nobody when the
   * caller left.
   */
  #failed(err: unknown): unknown {
    const signal = this.#ctx.signal;
    const target = this.#pick.target;
    const timeout = signal.aborted && isTimeoutReason(signal.reason);
    // a try whose time ran out while it still waited for a connection failed to connect: the send says so
    // (nothing of the request left), and the retry layer may send it elsewhere whatever its method
    const unsent = timeout && err instanceof UpstreamFailure && err.failure === 'connect';
    const failure: Failure = unsent
      ? 'connect'
      : signal.aborted
        ? timeout
          ? 'timeout'
          : 'cancelled'
        : failureOf(err);
    try {
      this.#pick.release({ ok: false, latencyMs: this.#now() - this.#t0, failure });
    } finally {
      this.#releaseBreaker();
      this.#o.observer?.failed(target, this.#ctx, failure);
    }
    if (unsent) return err;
    if (timeout) return new UpstreamFailure('timeout', target, { cause: signal.reason });
    if (signal.aborted) return err;
    return err instanceof UpstreamFailure ? err : new UpstreamFailure(failure, target, { cause: err });
  }
}

/** A target and its circuit breaker's release, or the error that says why there is none. */
function pickAndAcquire<R, P>(
  o: BalancedDispatchOptions<R, P>,
  ctx: CallContext<P>,
): [PickResult, () => void] {
  // copied only when a full breaker adds to it: the call's own set is for the retry layer
  let exclude = ctx.exclude;
  const service = o.breakers ? serviceKey(ctx) : '';
  for (let i = 0; i <= BREAKER_REPICKS; i++) {
    const opts = {
      exclude,
      scope: ctx.scope,
      portName: ctx.portName,
      port: ctx.port,
      cluster: ctx.cluster,
    };
    // retries prefer untried targets, but a used one beats none (the preference is best effort)
    const pick =
      o.balancers.pick(ctx.namespace, ctx.name, opts) ??
      (i === 0 && exclude.size > 0
        ? o.balancers.pick(ctx.namespace, ctx.name, { ...opts, exclude: NOTHING_EXCLUDED })
        : undefined);
    if (!pick) break;
    if (!o.breakers) return [pick, NO_BREAKER];
    const release = o.breakers.acquireRequest(pick.target, service);
    if (release) return [pick, release];
    pick.release({ ok: true, latencyMs: 0, failure: 'cancelled' });
    const more = new Set(exclude);
    more.add(pick.target.id);
    exclude = more;
  }
  if (o.breakers && exclude.size > ctx.exclude.size) {
    throw new MeshfedError(
      'MESHFED_GATEWAY_OVERLOADED',
      `${ctx.name}.${ctx.namespace}: every target tried is at its circuit-breaker limit (circuitBreaker.*)`,
      { retryable: true },
    );
  }
  throw new MeshfedError(
    'MESHFED_GATEWAY_NO_HEALTHY_UPSTREAM',
    `${ctx.name}.${ctx.namespace}: no target is available (none known, or all excluded); check 'meshfed routes ${ctx.name}.${ctx.namespace}'`,
  );
}

const NO_BREAKER = (): void => undefined;
