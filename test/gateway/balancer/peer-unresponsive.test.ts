import { FixedCatalog, FixedSource, makeBalancers, SELF } from './fixtures.ts';

// A remote gateway that left a PING unanswered (gateway/peer-liveness.ts) gets no new request until a health
// check is answered there or outlier.baseEjection passes; but never the last healthy one: on an overloaded
// host every peer is slow to answer, and taking them all out of rotation turned slowness into an outage
// (gateway-kill at load average 18, 2026-12-06).

/** offers of `clusters`, one gateway each at an address of its own, all in our locality */
function federation(clusters: string[], config: Record<string, unknown> = {}) {
  const catalog = new FixedCatalog();
  for (const [i, c] of clusters.entries()) {
    catalog.offer(c, SELF, { gateways: 1 });
    catalog.offers.at(-1)!.gateways = [{ name: `${c}-gw`, address: `127.0.1.${i + 1}:15443` }];
  }
  return {
    catalog,
    ...makeBalancers(catalog, new FixedSource(), { outlier: { baseEjection: '10s' }, ...config }),
  };
}

const picked = (b: ReturnType<typeof federation>['balancers']) =>
  new Set(Array.from({ length: 50 }, () => b.pick('shop', 'orders')!.target.cluster));

test('an unresponsive gateway gets no new request until baseEjection passes', () => {
  const { balancers, clock } = federation(['a', 'b']);
  expect(picked(balancers)).toEqual(new Set(['a', 'b']));
  expect(balancers.peerUnresponsive('127.0.1.1:15443')).toBe('ejected');
  expect(balancers.peerUnresponsive('127.0.1.1:15443')).toBe('already');
  expect(picked(balancers)).toEqual(new Set(['b']));
  clock.t += 10_001;
  // back in rotation (and, with nothing outstanding, the better of the two)
  expect(picked(balancers)).toContain('a');
});

test('the last healthy remote gateway is never marked unresponsive', () => {
  // no panic: a level keeps to its healthy targets however few
  const { balancers } = federation(['a', 'b', 'c'], { panicThreshold: 0 });
  expect(balancers.peerUnresponsive('127.0.1.1:15443')).toBe('ejected');
  expect(balancers.peerUnresponsive('127.0.1.2:15443')).toBe('ejected');
  expect(balancers.peerUnresponsive('127.0.1.3:15443')).toBe('last');
  expect(picked(balancers)).toEqual(new Set(['c']));
});
