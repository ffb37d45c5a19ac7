import { MeshfedError } from '../../core/index.ts';
import type { CallContext, Layer } from './dispatch.ts';

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
  const now = o.clock?.now ?? Date.now;
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

/**
 * Aborts each try after `ms` (or at the call's deadline, whichever comes first). The abort reason
 * is a MESHFED_GATEWAY_TIMEOUT error tagged with TIMEOUT_REASON, so the balanced dispatch below
 * records a 'timeout' against the target and the retry layer above may try elsewhere.
 *
 * The abort waits for one more turn of the event loop (setImmediate runs after the I/O poll phase):
 * after a stall (GC, a busy loop, a starved CPU) the timer phase runs before the poll phase, so an
 * answer that arrived in time but was not yet read would otherwise be thrown away as a timeout and
 * counted against a healthy target.
 */
export function perTryTimeout<R, P = undefined>(o: {
  ms: number | ((ctx: CallContext<P>) => number);
  clock?: Clock;
}): Layer<R, P> {
  const now = o.clock?.now ?? Date.now;
  return (next) => async (ctx) => {
    const ms = typeof o.ms === 'number' ? o.ms : o.ms(ctx);
    const left = ctx.deadline === undefined ? ms : Math.min(ms, ctx.deadline - now());
    if (left <= 0) {
      throw new MeshfedError(
        'MESHFED_GATEWAY_TIMEOUT',
        `${ctx.name}.${ctx.namespace}: the call's deadline passed before a try could start`,
      );
    }
    const ac = new AbortController();
    let immediate: NodeJS.Immediate | undefined;
    const timer = setTimeout(() => {
      immediate = setImmediate(() => {
        const reason = new MeshfedError(
          'MESHFED_GATEWAY_TIMEOUT',
          `${ctx.name}.${ctx.namespace}: no answer within ${Math.round(left)} ms (timeouts.request)`,
          { retryable: true },
        );
        ac.abort(Object.assign(reason, { [TIMEOUT_REASON]: true }));
      });
    }, left);
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, ac.signal]) : ac.signal;
    try {
      return await next({ ...ctx, signal });
    } finally {
      clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
    }
  };
}

export function isTimeoutReason(reason: unknown): boolean {
  return typeof reason === 'object' && reason !== null && TIMEOUT_REASON in reason;
}
