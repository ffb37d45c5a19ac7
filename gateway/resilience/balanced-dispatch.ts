import { MeshfedError, serviceKey } from '../../core/index.ts';
import type { Balancers, BalancerTarget, Failure, PickResult } from '../balancer/index.ts';
import type { CircuitBreakers } from './circuit-breaker.ts';
import type { CallContext, Dispatch } from './dispatch.ts';
import { NOTHING_EXCLUDED, UpstreamFailure } from './dispatch.ts';
import { isTimeoutReason } from './timeouts.ts';
import { NEVER_ABORTED, type TrySignal } from './try-signal.ts';

export interface BalancedDispatchOptions<R, P = undefined> {
  balancers: Pick<Balancers, 'pick'>;
  breakers?: CircuitBreakers;
  /**
   * Sends one try to one target. Throw an UpstreamFailure (or any error: it counts as 'reset', or
   * 'connect' if the error code says the connection failed); honour `signal` to stop early.
   */
  send: (target: BalancerTarget, ctx: CallContext<P> & { signal: TrySignal }) => Promise<R>;
  /** Says whether an answer is a failure (e.g. HTTP 5xx); the default treats every answer as ok. */
  classify?: (result: R) => Failure | undefined;
  /**
   * `send` rejects with the signal's reason as soon as it aborts (as sendTry does): the dispatch then
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

/**
 * `sent`, or a rejection with the signal's reason as soon as it aborts, whether or not the send honours it
 * (one promise, where a Promise.race against an abort promise made three).
 */
function untilAborted<R>(sent: Promise<R>, signal: TrySignal): Promise<R> {
  if (signal === NEVER_ABORTED) return sent;
  if (signal.aborted) {
    sent.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<R>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    sent.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** How many other targets to look at when a picked target's breaker is full. */
const BREAKER_REPICKS = 3;

/**
 * The innermost dispatch: pick a target (locality, outlier state, P2C), take its circuit breaker,
 * send, and report the outcome back to the balancer. A try aborted by the per-try timeout counts as
 * a 'timeout' against its target; a caller that goes away counts against nobody.
 *
 * Not an async function: a call is the picking (synchronous), the send, and one `then` on it. An async
 * function with try/catch/finally cost a frame of ~1.4 KB per call (measured with the young generation's
 * used bytes), the largest single allocation of a forwarded request.
 */
export function balancedDispatch<R, P = undefined>(o: BalancedDispatchOptions<R, P>): Dispatch<R, P> {
  const now = o.now ?? (() => performance.now());
  const honoured = o.sendHonoursSignal === true;
  return (ctx) => {
    let pick: PickResult;
    let releaseBreaker: () => void;
    try {
      [pick, releaseBreaker] = pickAndAcquire(o, ctx);
    } catch (err) {
      return Promise.reject(err);
    }
    const target = pick.target;
    const signal = ctx.signal ?? NEVER_ABORTED;
    const t0 = now();
    // the context is the per-try timeout's own copy, which already carries the signal
    const tryCtx = ctx.signal ? (ctx as CallContext<P> & { signal: TrySignal }) : { ...ctx, signal };
    const observer = o.observer;
    let sent: Promise<R>;
    try {
      observer?.started(target, tryCtx);
      sent = o.send(target, tryCtx);
    } catch (err) {
      sent = Promise.reject(err);
    }
    // a send that rejects with the abort reason itself needs no race (unless already aborted: it may
    // never hear of it, as a listener added after the abort is not called)
    if (!honoured || signal.aborted) sent = untilAborted(sent, signal);
    return sent.then(
      (result) => {
        const failure = o.classify?.(result);
        pick.release({ ok: !failure, latencyMs: now() - t0, ...(failure ? { failure } : {}) });
        releaseBreaker();
        observer?.answered(target, tryCtx);
        if (failure) throw new UpstreamFailure(failure, target, { response: result });
        return result;
      },
      (err: unknown) => {
        // a try stopped by its signal counts as a timeout when the per-try timeout (or the liveness check)
        // stopped it, and against nobody when the caller left
        const timeout = signal.aborted && isTimeoutReason(signal.reason);
        // a try whose time ran out while it still waited for a connection failed to connect: the send says
        // so (nothing of the request left), and the retry layer may send it elsewhere whatever its method
        const unsent = timeout && err instanceof UpstreamFailure && err.failure === 'connect';
        const failure: Failure = unsent
          ? 'connect'
          : signal.aborted
            ? timeout
              ? 'timeout'
              : 'cancelled'
            : failureOf(err);
        try {
          pick.release({ ok: false, latencyMs: now() - t0, failure });
        } finally {
          releaseBreaker();
          observer?.failed(target, tryCtx, failure);
        }
        if (unsent) throw err;
        if (timeout) throw new UpstreamFailure('timeout', target, { cause: signal.reason });
        if (signal.aborted) throw err;
        throw err instanceof UpstreamFailure ? err : new UpstreamFailure(failure, target, { cause: err });
      },
    );
  };
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
