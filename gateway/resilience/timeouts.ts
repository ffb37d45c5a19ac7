import { MeshfedError, monotonicNow } from '../../core/index.ts';
import { type DeadlineEntry, DeadlineList } from './deadline-list.ts';
import type { CallContext, Layer } from './dispatch.ts';
import { TryAbort } from './try-signal.ts';

export interface Clock {
  now(): number;
}

/**
 * Sets the overall deadline of a call (all tries and back-offs together) unless one is set: `ms`, or
 * what it returns for this call (undefined: no deadline). No try starts after it, and the running try
 * is aborted at it (perTryTimeout).
 */
export function deadline<R, P = undefined>(o: {
  ms: number | ((ctx: CallContext<P>) => number | undefined);
  clock?: Clock;
}): Layer<R, P> {
  const now = o.clock?.now ?? monotonicNow;
  return (next) => (ctx) => {
    if (ctx.deadline !== undefined) return next(ctx);
    const ms = typeof o.ms === 'number' ? o.ms : o.ms(ctx);
    return next(ms === undefined ? ctx : { ...ctx, deadline: now() + ms });
  };
}

const GRPC_TIMEOUT_UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1_000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/** A gRPC `grpc-timeout` header value (up to 8 digits and a unit) in ms; undefined when absent or malformed. */
export function grpcTimeoutMs(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m ? Number(m[1]) * GRPC_TIMEOUT_UNIT_MS[m[2]!]! : undefined;
}

export const TIMEOUT_REASON = Symbol('meshfed per-try timeout');

/** One try's abort, listed by when its time is up. */
class TryTimer extends TryAbort implements DeadlineEntry {
  due = 0;
  prev: DeadlineEntry | undefined;
  next: DeadlineEntry | undefined;
  listed = false;
  cancelled = false;
  /** the call, named in the abort reason (built only if the time is up) */
  readonly call: { name: string; namespace: string };
  readonly ms: number;
  constructor(call: { name: string; namespace: string }, ms: number) {
    super();
    this.call = call;
    this.ms = ms;
  }
}

function timeUp(t: TryTimer): void {
  const reason = new MeshfedError(
    'MESHFED_GATEWAY_TIMEOUT',
    `${t.call.name}.${t.call.namespace}: no answer within ${Math.round(t.ms)} ms (timeouts.request)`,
    { retryable: true },
  );
  t.abort(Object.assign(reason, { [TIMEOUT_REASON]: true }));
}

/**
 * Aborts each try after `ms` (or at the call's deadline, whichever comes first). The abort reason
 * is a MESHFED_GATEWAY_TIMEOUT error tagged with TIMEOUT_REASON, so the balanced dispatch below
 * records a 'timeout' against the target and the retry layer above may try elsewhere.
 *
 * The tries of one layer share one DeadlineList (one timer for all of them); a try's time being up is
 * acted on one turn of the event loop later, so an answer that arrived in time during a stall still wins.
 * Not an async function (its frame cost ~1.5 KB per try): one `then` takes the try off the list.
 */
export function perTryTimeout<R, P = undefined>(o: {
  ms: number | ((ctx: CallContext<P>) => number);
  clock?: Clock;
}): Layer<R, P> {
  const now = o.clock?.now ?? monotonicNow;
  const tries = new DeadlineList<TryTimer>(timeUp);
  return (next) => (ctx) => {
    let t: TryTimer;
    let tried: Promise<R>;
    try {
      const ms = typeof o.ms === 'number' ? o.ms : o.ms(ctx);
      const left = ctx.deadline === undefined ? ms : Math.min(ms, ctx.deadline - now());
      if (left <= 0) {
        throw new MeshfedError(
          'MESHFED_GATEWAY_TIMEOUT',
          `${ctx.name}.${ctx.namespace}: the call's deadline passed before a try could start`,
        );
      }
      t = new TryTimer(ctx, left);
      if (ctx.signal) t.follow(ctx.signal);
      // the list runs on the monotonic clock whatever clock the deadline came from
      tries.add(t, monotonicNow() + left);
    } catch (err) {
      return Promise.reject(err);
    }
    try {
      tried = next({ ...ctx, signal: t });
    } catch (err) {
      tried = Promise.reject(err);
    }
    return tried.then(
      (v) => {
        tries.remove(t);
        t.release();
        return v;
      },
      (err: unknown) => {
        tries.remove(t);
        t.release();
        throw err;
      },
    );
  };
}

export function isTimeoutReason(reason: unknown): boolean {
  return typeof reason === 'object' && reason !== null && TIMEOUT_REASON in reason;
}
