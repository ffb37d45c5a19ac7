import { MeshfedError } from '../../core/index.ts';
import type { BalancerTarget, Failure } from '../balancer/index.ts';
import type { TrySignal } from './try-signal.ts';

/**
 * The resilience layers are promise-based middleware around one dispatch function:
 * `Layer = (next) => (ctx) => Promise<result>`. Each layer does one job (deadline, retry, per-try
 * timeout) and is testable alone; `compose` stacks them, the first layer outermost. The
 * innermost dispatch is `balancedDispatch`, which picks a target and calls the data plane's `send`.
 */
export interface CallContext<P = undefined> {
  namespace: string;
  name: string;
  /** safe to send twice: an idempotent method (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) with no body */
  idempotent: boolean;
  scope?: 'any' | 'local';
  portName?: string;
  port?: number;
  /** only this cluster's targets (a traffic split backend pinned to a cluster) */
  cluster?: string;
  /** ms on the layers' clock after which no new try starts and the running try is aborted */
  deadline?: number;
  /** aborted when the running try must stop: per-try timeout, deadline, or the caller went away */
  signal?: TrySignal;
  /** 0 for the first try */
  attempt: number;
  /** target ids already tried by this call; retries prefer others (NOTHING_EXCLUDED until a retry) */
  exclude: ReadonlySet<string>;
  /** what the innermost send needs and the layers never look at (the gateway's request and response) */
  payload: P;
}

export type Dispatch<R, P = undefined> = (ctx: CallContext<P>) => Promise<R>;
export type Layer<R, P = undefined> = (next: Dispatch<R, P>) => Dispatch<R, P>;

/** `compose(terminal, a, b, c)` = `a(b(c(terminal)))`: a sees the call first. */
export function compose<R, P = undefined>(
  terminal: Dispatch<R, P>,
  ...layers: readonly Layer<R, P>[]
): Dispatch<R, P> {
  let d = terminal;
  for (let i = layers.length - 1; i >= 0; i--) d = layers[i]!(d);
  return d;
}

/**
 * The exclude set of a call that has excluded nothing: shared, never added to (the retry layer gives a call
 * a set of its own at its first retry), so a call that needs no retry allocates none.
 */
export const NOTHING_EXCLUDED: ReadonlySet<string> = new Set<string>();

/** Builds the context for a new call; `exclude` starts empty. */
export function callContext<P = undefined>(
  c: Omit<CallContext<P>, 'attempt' | 'exclude' | 'payload'> & Partial<Pick<CallContext<P>, 'exclude'>>,
  payload?: P,
): CallContext<P> {
  return { ...c, attempt: 0, exclude: c.exclude ?? NOTHING_EXCLUDED, payload: payload as P };
}

/**
 * One try failed at a known target. `failure` says how, which decides whether a retry is safe:
 * connect/refused never reached the application, the others may have.
 */
export class UpstreamFailure extends MeshfedError {
  readonly failure: Failure;
  readonly target: BalancerTarget;
  /** the upstream's answer when it was a 5xx, so the last one can still be passed through */
  readonly response: unknown;

  constructor(failure: Failure, target: BalancerTarget, o: { cause?: unknown; response?: unknown } = {}) {
    const code = failure === 'timeout' ? 'MESHFED_GATEWAY_TIMEOUT' : 'MESHFED_GATEWAY_UPSTREAM';
    const where = target.local
      ? `local endpoint ${target.address}`
      : `gateway ${target.gatewayName ?? target.address} of cluster ${target.cluster}`;
    super(
      code,
      `${failure} from ${where}; it is retried elsewhere when safe, and ejected after repeated failures`,
      {
        cause: o.cause,
        retryable: true,
        details: { failure, target: target.id, cluster: target.cluster },
      },
    );
    this.failure = failure;
    this.target = target;
    this.response = o.response;
  }
}

/**
 * Connect failures and circuit-breaker overflows never reached the application, so they are safe to
 * retry for any method; a try the caller cancelled is never retried (nobody is waiting for it).
 */
export function isRetryable(err: unknown, idempotent: boolean): err is UpstreamFailure {
  if (!(err instanceof UpstreamFailure)) return false;
  if (err.failure === 'cancelled') return false;
  if (err.failure === 'connect' || err.failure === 'refused' || err.failure === 'overflow') return true;
  return idempotent;
}
