import { MeshfedError } from '../../core/index.ts';
import type { Layer } from './dispatch.ts';

export interface Clock {
  now(): number;
}

/** Sets the overall deadline of a call (all tries and back-offs together) unless one is set. */
export function deadline<R>(o: { ms: number; clock?: Clock }): Layer<R> {
  const now = o.clock?.now ?? Date.now;
  return (next) => (ctx) => next(ctx.deadline === undefined ? { ...ctx, deadline: now() + o.ms } : ctx);
}

export const TIMEOUT_REASON = Symbol('meshfed per-try timeout');

/**
 * Aborts each try after `ms` (or at the call's deadline, whichever comes first). The abort reason
 * is a MESHFED_GATEWAY_TIMEOUT error tagged with TIMEOUT_REASON, so the balanced dispatch below
 * records a 'timeout' against the target and the retry layer above may try elsewhere.
 */
export function perTryTimeout<R>(o: { ms: number; clock?: Clock }): Layer<R> {
  const now = o.clock?.now ?? Date.now;
  return (next) => async (ctx) => {
    const left = ctx.deadline === undefined ? o.ms : Math.min(o.ms, ctx.deadline - now());
    if (left <= 0) {
      throw new MeshfedError(
        'MESHFED_GATEWAY_TIMEOUT',
        `${ctx.name}.${ctx.namespace}: the call's deadline passed before a try could start`,
      );
    }
    const ac = new AbortController();
    const timer = setTimeout(() => {
      const reason = new MeshfedError(
        'MESHFED_GATEWAY_TIMEOUT',
        `${ctx.name}.${ctx.namespace}: no answer within ${Math.round(left)} ms (timeouts.request)`,
        { retryable: true },
      );
      ac.abort(Object.assign(reason, { [TIMEOUT_REASON]: true }));
    }, left);
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, ac.signal]) : ac.signal;
    try {
      return await next({ ...ctx, signal });
    } finally {
      clearTimeout(timer);
    }
  };
}

export function isTimeoutReason(reason: unknown): boolean {
  return typeof reason === 'object' && reason !== null && TIMEOUT_REASON in reason;
}
