import { isMeshfedError } from '../../../core/index.ts';
import type { BalancerTarget } from '../../../gateway/balancer/index.ts';
import { type CallContext, callContext, type Done } from '../../../gateway/resilience/index.ts';
import { FixedCatalog, FixedSource, makeBalancers } from './fixtures.ts';

// What the resilience layers' tests share: a service offered by two gateways of one cluster, a call's context,
// and the code a failed call ends with.

export const noSleep = async () => {};

export function twoGateways() {
  const catalog = new FixedCatalog();
  catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 2, gateways: 2 });
  return makeBalancers(catalog, new FixedSource(), {});
}

export function ctx(idempotent = true): CallContext {
  return callContext({ namespace: 'shop', name: 'orders', idempotent });
}

export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return isMeshfedError(err) ? err.code : `not a MeshfedError: ${String(err)}`;
  }
  return 'resolved';
}

/** A balanced dispatch's send made of a function that returns a promise, as the tests write them. */
export function sendOf<R, C>(
  fn: (t: BalancerTarget, c: C) => Promise<R>,
): (t: BalancerTarget, c: C, done: Done<R>) => void {
  return (t, c, done) => {
    fn(t, c).then(
      (v) => done(undefined, v),
      (err: unknown) => done(err),
    );
  };
}
