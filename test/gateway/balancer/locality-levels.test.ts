import { levelLoads, levelPlan } from '../../../gateway/balancer/index.ts';
import { drive, FixedCatalog, FixedSource, failTimes, makeBalancers } from './fixtures.ts';

// Which priority level a pick goes to: our zone, then our region, then anywhere; the spill-over maths between
// them, failover when a level is ejected, and panic when a level has too little healthy capacity.

/** Three levels: 2 endpoints in our zone, 2 in another zone of our region, a remote region with 2 gateways. */
function threeLevels(config: Record<string, unknown> = {}) {
  const catalog = new FixedCatalog();
  catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 2 });
  const local = new FixedSource();
  local.endpoints(['eu-a', 'eu-a', 'eu-b', 'eu-b']);
  return { catalog, local, ...makeBalancers(catalog, local, config) };
}

describe('levelLoads (spill-over maths, see docs/load-balancing.md)', () => {
  test.each([
    {
      name: 'all healthy: P0 takes everything',
      levels: [
        [4, 4],
        [4, 4],
        [4, 4],
      ],
      loads: [1, 0, 0],
    },
    {
      name: '3/4 healthy × 1.4 = 1.05 ≥ 1: still everything',
      levels: [
        [3, 4],
        [4, 4],
        [4, 4],
      ],
      loads: [1, 0, 0],
    },
    {
      name: '1/2 healthy: P0 70 %, P1 30 %',
      levels: [
        [1, 2],
        [2, 2],
        [4, 4],
      ],
      loads: [0.7, 0.3, 0],
    },
    {
      name: '1/4 + 1/4: 35 % + 35 % + rest to P2',
      levels: [
        [1, 4],
        [1, 4],
        [4, 4],
      ],
      loads: [0.35, 0.35, 0.3],
    },
    {
      name: 'health sums below 100 %: normalised',
      levels: [
        [1, 4],
        [1, 4],
        [0, 4],
      ],
      loads: [0.5, 0.5, 0],
    },
    {
      name: 'an empty level is skipped',
      levels: [
        [0, 0],
        [1, 2],
        [2, 2],
      ],
      loads: [0, 0.7, 0.3],
    },
    {
      name: 'nothing healthy: all zero (panic)',
      levels: [
        [0, 2],
        [0, 2],
        [0, 0],
      ],
      loads: [0, 0, 0],
    },
  ])('$name', ({ levels, loads }) => {
    const got = levelLoads(
      levels.map(([healthy, total]) => ({ healthy: healthy!, total: total! })),
      1.4,
    );
    got.forEach((g, i) => {
      expect(g).toBeCloseTo(loads[i]!, 6);
    });
  });

  test('the overprovisioning factor is configurable', () => {
    expect(
      levelLoads(
        [
          { healthy: 1, total: 2 },
          { healthy: 2, total: 2 },
        ],
        1,
      ),
    ).toEqual([0.5, 0.5]);
  });
});

describe('locality preference and failover', () => {
  test('≥ 99 % of 1,000 picks go to our zone while it is healthy', () => {
    const { balancers } = threeLevels();
    const { levels } = drive(balancers, 1000);
    expect(levels[0]).toBeGreaterThanOrEqual(990);
    balancers.close();
  });

  test('after ejecting our zone all picks go to the next level; back when the ejection ends', () => {
    const { balancers, clock } = threeLevels({ outlier: { maxEjectionPercent: 100 } });
    for (const id of ['local|home|10.0.0.1:8080', 'local|home|10.0.0.2:8080']) failTimes(balancers, id, 5);
    const after = drive(balancers, 1000);
    expect(after.levels).toEqual([0, 1000, 0]);
    clock.t += 30_001; // baseEjection 30 s
    const back = drive(balancers, 1000);
    expect(back.levels[0]).toBeGreaterThanOrEqual(990);
    balancers.close();
  });

  test.each([
    {
      name: 'half our zone ejected: 70 % stay, 30 % spill to the region',
      eject: ['local|home|10.0.0.1:8080'],
      shares: [0.7, 0.3, 0],
    },
    {
      name: 'our zone and half the region ejected: 70 % region, 30 % remote',
      eject: ['local|home|10.0.0.1:8080', 'local|home|10.0.0.2:8080', 'local|home|10.0.0.3:8080'],
      shares: [0, 0.7, 0.3],
    },
  ])('spill-over shares match the maths: $name', ({ eject, shares }) => {
    const { balancers } = threeLevels({ outlier: { maxEjectionPercent: 100 } });
    for (const id of eject) failTimes(balancers, id, 5);
    const n = 4000;
    const { levels } = drive(balancers, n);
    levels.forEach((count, i) => {
      expect(Math.abs(count / n - shares[i]!)).toBeLessThan(0.03);
    });
    const ex = balancers.explain('shop', 'orders');
    expect(ex.levels.map((l) => l.load)).toEqual(
      shares.map((s) => s * 100).filter((_, i) => ex.levels.some((l) => l.level === i)),
    );
    balancers.close();
  });

  test('panic: when nothing is healthy, traffic still goes to the nearest level and explain says so', () => {
    const catalog = new FixedCatalog();
    const local = new FixedSource();
    local.endpoints(['eu-a', 'eu-a']);
    const { balancers } = makeBalancers(catalog, local, { outlier: { maxEjectionPercent: 100 } });
    for (const id of ['local|home|10.0.0.1:8080', 'local|home|10.0.0.2:8080']) failTimes(balancers, id, 5);
    expect(balancers.pick('shop', 'orders')?.level).toBe(0);
    expect(balancers.explain('shop', 'orders').panic).toBe(true);
    balancers.close();
  });

  test('regression: an offer past its expiresAt still gets traffic while the catalog view keeps it (NATS down); its removal is the view’s to tell', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' });
    const { balancers, clock } = makeBalancers(catalog, new FixedSource(), {});
    // the view stopped hearing west (its NATS is down) and keeps the last verified offer past its expiry
    catalog.offers[0]!.expiresAt = clock.t - 60_000;
    catalog.changed();
    clock.t += 120_000;
    const p = balancers.pick('shop', 'orders');
    expect(p?.target.cluster).toBe('west');
    p?.release({ ok: true, latencyMs: 1 });
    // once the view removes it, the balancer has nothing left for the service
    catalog.offers = [];
    catalog.changed();
    expect(balancers.pick('shop', 'orders')).toBeUndefined();
    balancers.close();
  });

  test('stale clusters get no traffic but show in explain; scope local uses only local endpoints', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { stale: true });
    catalog.offer('north', { region: 'no', zone: 'no-a' }, { weight: 2, gateways: 2 });
    const local = new FixedSource();
    local.endpoints(['eu-b']);
    const { balancers } = makeBalancers(catalog, local, {});
    const { byTarget } = drive(balancers, 500);
    expect([...byTarget.keys()].some((id) => id.includes('|west|'))).toBe(false);
    const ex = balancers.explain('shop', 'orders');
    const states = ex.levels.flatMap((l) => l.targets.map((t) => `${t.cluster}:${t.state}`));
    expect(states).toContain('west:stale (cluster heartbeats stopped)');
    for (let i = 0; i < 100; i++) {
      const p = balancers.pick('shop', 'orders', { scope: 'local' });
      expect(p?.target.local).toBe(true);
      p?.release({ ok: true, latencyMs: 1 });
    }
    expect(JSON.parse(JSON.stringify(ex))).toEqual(ex);
    balancers.close();
  });

  test('a remote cluster weight is split across its gateways', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 6, gateways: 3 });
    const { balancers } = makeBalancers(catalog, new FixedSource(), {});
    const ex = balancers.explain('shop', 'orders');
    expect(ex.levels[0]!.targets.map((t) => t.weight)).toEqual([2, 2, 2]);
    expect(ex.levels[0]!.targets.map((t) => t.share)).toEqual([33.3, 33.3, 33.3]);
    balancers.close();
  });
});

describe('per-priority panic threshold (per level)', () => {
  const F = false;
  const T = true;
  test.each([
    {
      name: 'all healthy',
      levels: [
        [4, 4],
        [4, 4],
        [4, 4],
      ],
      threshold: 50,
      loads: [1, 0, 0],
      panic: [F, F, F],
    },
    {
      name: 'a weak P0 but enough capacity below: spill-over, no panic',
      levels: [
        [1, 4],
        [4, 4],
        [0, 0],
      ],
      threshold: 50,
      loads: [0.35, 0.65, 0],
      panic: [F, F, F],
    },
    {
      name: 'one level at 25 %: not enough capacity anywhere, the level is in panic',
      levels: [
        [1, 4],
        [0, 0],
        [0, 0],
      ],
      threshold: 50,
      loads: [1, 0, 0],
      panic: [T, F, F],
    },
    {
      name: 'exactly at the threshold is not panic',
      levels: [
        [2, 4],
        [0, 0],
        [0, 0],
      ],
      threshold: 50,
      loads: [1, 0, 0],
      panic: [F, F, F],
    },
    {
      name: 'two weak levels: each below the threshold is in panic, loads normalised',
      levels: [
        [1, 4],
        [1, 4],
        [0, 4],
      ],
      threshold: 50,
      loads: [0.5, 0.5, 0],
      panic: [T, T, T],
    },
    {
      name: 'a higher threshold puts a 60 % level in panic',
      levels: [
        [3, 5],
        [0, 0],
        [0, 0],
      ],
      threshold: 80,
      loads: [1, 0, 0],
      panic: [T, F, F],
    },
    {
      name: 'nothing healthy: the nearest non-empty level takes everything, in panic',
      levels: [
        [0, 0],
        [0, 2],
        [0, 2],
      ],
      threshold: 50,
      loads: [0, 1, 0],
      panic: [F, T, F],
    },
    {
      name: 'threshold 0 turns panic off: the survivors take the load',
      levels: [
        [1, 4],
        [0, 0],
        [0, 0],
      ],
      threshold: 0,
      loads: [1, 0, 0],
      panic: [F, F, F],
    },
    {
      name: 'threshold 0 and nothing healthy: nothing can be picked',
      levels: [
        [0, 2],
        [0, 0],
        [0, 0],
      ],
      threshold: 0,
      loads: [0, 0, 0],
      panic: [F, F, F],
    },
  ])('$name', ({ levels, threshold, loads, panic }) => {
    const plan = levelPlan(
      levels.map(([healthy, total]) => ({ healthy: healthy!, total: total! })),
      1.4,
      threshold,
    );
    expect(plan.loads.map((l) => Math.round(l * 1000) / 1000)).toEqual(loads);
    expect(plan.panic).toEqual(panic);
  });

  /** one level of four remote gateways, three of them ejected */
  function threeOfFourEjected(panicThreshold: number) {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 4 });
    const made = makeBalancers(catalog, new FixedSource(), {
      panicThreshold,
      outlier: { maxEjectionPercent: 100 },
    });
    for (let i = 1; i < 4; i++) failTimes(made.balancers, `remote|west|gw${i}|127.0.0.${10 + i}:15443`, 5);
    return made;
  }

  test.each([
    { threshold: 50, panic: true, targets: 4 },
    { threshold: 20, panic: false, targets: 1 },
    { threshold: 0, panic: false, targets: 1 },
  ])(
    'with 1 of 4 targets healthy and threshold $threshold: panic $panic, picks reach $targets targets',
    ({ threshold, panic, targets }) => {
      const { balancers } = threeOfFourEjected(threshold);
      const { byTarget } = drive(balancers, 400);
      expect(byTarget.size).toBe(targets);
      if (panic) for (const n of byTarget.values()) expect(n).toBeGreaterThan(40);
      const ex = balancers.explain('shop', 'orders');
      expect(ex.panic).toBe(panic);
      expect(ex.levels[0]!.panic).toBe(panic);
      expect(ex.levels[0]!.targets.map((t) => t.share)).toEqual(panic ? [25, 25, 25, 25] : [100, 0, 0, 0]);
      balancers.close();
    },
  );
});
