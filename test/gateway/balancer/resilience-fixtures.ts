import { isMeshfedError } from '../../../core/index.ts';
import { type CallContext, callContext } from '../../../gateway/resilience/index.ts';
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
