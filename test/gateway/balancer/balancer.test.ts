import { type CatalogChange, createLogger, Registry, waitFor } from '../../../core/index.ts';
import {
  type BalancerTarget,
  Balancers,
  balancerConfigSchema,
  IDLE_STATE_MS,
  levelLoads,
  levelPlan,
} from '../../../gateway/balancer/index.ts';
import { FixedCatalog, FixedSource, makeBalancers, SELF } from './fixtures.ts';

/** Picks n times, releasing each at once with the latency/outcome `outcome` gives; returns counts. */
function drive(
  b: Balancers,
  n: number,
  outcome: (id: string) => { ok: boolean; latencyMs: number } = () => ({ ok: true, latencyMs: 2 }),
): { levels: number[]; byTarget: Map<string, number> } {
  const levels = [0, 0, 0];
  const byTarget = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const p = b.pick('shop', 'orders');
    if (!p) throw new Error('no pick');
    levels[p.level]!++;
    byTarget.set(p.target.id, (byTarget.get(p.target.id) ?? 0) + 1);
    const o = outcome(p.target.id);
    p.release(o.ok ? o : { ...o, failure: '5xx' });
  }
  return { levels, byTarget };
}

function failTimes(b: Balancers, targetId: string, times: number): void {
  let done = 0;
  for (let guard = 0; done < times && guard < 10_000; guard++) {
    const p = b.pick('shop', 'orders');
    if (!p) return;
    if (p.target.id === targetId) {
      p.release({ ok: false, latencyMs: 1, failure: 'connect' });
      done++;
    } else p.release({ ok: true, latencyMs: 1 });
  }
}

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

describe('power of two choices', () => {
  test('a slow target gets less traffic than a fast one', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 2, gateways: 2 });
    const { balancers, clock } = makeBalancers(catalog, new FixedSource(), {});
    const slow = 'remote|west|gw0|127.0.0.10:15443';
    const { byTarget } = drive(balancers, 1000, (id) => {
      clock.t += 1;
      return { ok: true, latencyMs: id === slow ? 200 : 5 };
    });
    expect(byTarget.get(slow) ?? 0).toBeLessThan(200);
    expect(byTarget.get(slow) ?? 0).toBeGreaterThan(0);
    balancers.close();
  });

  test('requests still waiting count as latency: a target that stopped answering loses traffic before its first timeout', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 2, gateways: 2 });
    const { balancers, clock } = makeBalancers(catalog, new FixedSource(), {});
    const stuck = 'remote|west|gw0|127.0.0.10:15443';
    drive(balancers, 100, () => {
      clock.t += 1;
      return { ok: true, latencyMs: 5 };
    });
    /** picks until `id` is picked once more and keeps that pick open */
    const hold = (id: string) => {
      for (let i = 0; i < 100; i++) {
        const p = balancers.pick('shop', 'orders')!;
        if (p.target.id === id) return p;
        p.release({ ok: true, latencyMs: 5 });
      }
      throw new Error(`${id} never picked`);
    };
    hold(stuck);
    clock.t += 500;
    // the fast gateway now has three requests in flight, the stuck one a single one: by counts alone
    // (2 × 6 against 4 × 6) the stuck gateway would win; its 500 ms wait says otherwise
    const other = 'remote|west|gw1|127.0.0.11:15443';
    for (let i = 0; i < 3; i++) hold(other);
    const next = balancers.pick('shop', 'orders')!;
    expect(next.target.id).toBe(other);
    balancers.close();
  });

  test('with equal latency weights are honoured', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 6, gateways: 1 });
    catalog.offer('east', { region: 'us', zone: 'us-b' }, { weight: 2, gateways: 1 });
    const { balancers } = makeBalancers(catalog, new FixedSource(), {});
    const { byTarget } = drive(balancers, 2000);
    const west = byTarget.get('remote|west|gw0|127.0.0.10:15443') ?? 0;
    expect(west / 2000).toBeGreaterThan(0.6);
    balancers.close();
  });
});

describe('outlier detection', () => {
  test('ejection back-off grows (base × n) and is capped at maxEjection', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 4 });
    const { balancers, clock } = makeBalancers(catalog, new FixedSource(), {
      outlier: { baseEjection: '30s', maxEjection: '75s' },
    });
    const id = 'remote|west|gw0|127.0.0.10:15443';
    const durations: number[] = [];
    for (let round = 0; round < 4; round++) {
      failTimes(balancers, id, 5);
      const t = balancers
        .explain('shop', 'orders')
        .levels[0]!.targets.find((x) => x.target.endsWith('127.0.0.10:15443'))!;
      expect(t.ejectedUntil).toBeDefined();
      const until = Date.parse(t.ejectedUntil!);
      durations.push(until - clock.t);
      clock.t = until + 1;
    }
    expect(durations).toEqual([30_000, 60_000, 75_000, 75_000]);
    balancers.close();
  });

  test('never ejects more than maxEjectionPercent of the targets', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 4 });
    const { balancers, registry } = makeBalancers(catalog, new FixedSource(), {});
    for (let i = 0; i < 4; i++) failTimes(balancers, `remote|west|gw${i}|127.0.0.${10 + i}:15443`, 5);
    const states = balancers.explain('shop', 'orders').levels[0]!.targets.map((t) => t.state);
    expect(states.filter((s) => s.startsWith('ejected'))).toHaveLength(2);
    return registry.getSingleMetricAsString('meshfed_outlier_ejections_total').then((text) => {
      expect(text).toContain(
        'meshfed_outlier_ejections_total{source_cluster="home",destination_cluster="west",service="orders.shop"} 2',
      );
      balancers.close();
    });
  });
});

/** balancers that probe the catalog's gateways every 10 ms with `probe` */
function probingBalancers(catalog: FixedCatalog, probe: (t: BalancerTarget) => Promise<boolean>): Balancers {
  return new Balancers({
    cluster: 'home',
    locality: SELF,
    catalog,
    local: new FixedSource(),
    config: balancerConfigSchema.parse({ healthCheck: { interval: '10ms', timeout: '500ms' } }),
    registry: new Registry(),
    logger: createLogger({ level: 'silent' }),
    probe,
  });
}

describe('active health checks', () => {
  test('a gateway failing its probes leaves the rotation and comes back after healthy probes', async () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 2, gateways: 2 });
    let down = true;
    const probed: string[] = [];
    const balancers = probingBalancers(catalog, async (t) => {
      probed.push(t.address);
      return !(down && t.address === '127.0.0.10:15443');
    });
    const stateOf = () =>
      balancers
        .explain('shop', 'orders')
        .levels[0]!.targets.find((t) => t.target.endsWith('127.0.0.10:15443'))!.state;
    await waitFor(() => stateOf() === 'failing health checks', {
      timeoutMs: 10_000,
      what: 'gw0 marked unhealthy',
    });
    for (let i = 0; i < 200; i++) {
      const p = balancers.pick('shop', 'orders')!;
      expect(p.target.address).toBe('127.0.0.11:15443');
      p.release({ ok: true, latencyMs: 1 });
    }
    down = false;
    await waitFor(() => stateOf() === 'healthy', { timeoutMs: 10_000, what: 'gw0 healthy again' });
    expect(probed.filter((a) => a === '127.0.0.10:15443').length).toBeGreaterThanOrEqual(4);
    balancers.close();
  });
});

describe('panic with a cluster cut off (network-partition)', () => {
  /** ejects every gateway of `cluster` for shop/orders: five failed picks pinned to it */
  function eject(b: Balancers, cluster: string): void {
    for (let i = 0; i < 5; i++)
      b.pick('shop', 'orders', { cluster })?.release({ ok: false, latencyMs: 1, failure: 'connect' });
  }

  test('regression: with every target ejected, panic sends the load to the cluster whose gateway answers health checks, not to the nearer one that does not', async () => {
    const catalog = new FixedCatalog();
    // near shares our zone (P0), far is another region (P2); one gateway each, at addresses of their own
    catalog.offer('near', SELF, { gateways: 1 });
    catalog.offer('far', { region: 'us', zone: 'us-a' }, { gateways: 1 });
    catalog.offers[1]!.gateways[0]!.address = '127.0.0.20:15443';
    let cut = false;
    let nearProbesFailed = 0;
    const balancers = new Balancers({
      cluster: 'home',
      locality: SELF,
      catalog,
      local: new FixedSource(),
      config: balancerConfigSchema.parse({
        healthCheck: { interval: '10ms', timeout: '500ms' },
        outlier: { maxEjectionPercent: 100 },
      }),
      registry: new Registry(),
      logger: createLogger({ level: 'silent' }),
      probe: async (t) => {
        if (!cut || t.cluster !== 'near') return true;
        nearProbesFailed++;
        return false;
      },
    });
    const clusters = () => {
      const seen = new Map<string, number>();
      for (let i = 0; i < 200; i++) {
        const p = balancers.pick('shop', 'orders')!;
        seen.set(p.target.cluster, (seen.get(p.target.cluster) ?? 0) + 1);
        // a cancelled try counts against nobody: the ejections stay as they are
        p.release({ ok: false, latencyMs: 1, failure: 'cancelled' });
      }
      return Object.fromEntries(seen);
    };
    eject(balancers, 'near');
    eject(balancers, 'far');
    const states = () =>
      balancers.explain('shop', 'orders').levels.flatMap((l) => l.targets.map((t) => t.state));
    expect(states().every((s) => s.startsWith('ejected'))).toBe(true);
    // both merely ejected: the nearest level takes the panic load
    expect(clusters()).toEqual({ near: 200 });
    cut = true;
    // unhealthy after two failed probes in a row (healthCheck.unhealthyThreshold), applied before the third
    await waitFor(() => nearProbesFailed >= 3, { timeoutMs: 10_000, what: 'near to fail its health checks' });
    expect(clusters()).toEqual({ far: 200 });
    // and the explanation says so (meshfed routes)
    const shares = Object.fromEntries(
      balancers
        .explain('shop', 'orders')
        .levels.flatMap((l) => l.targets)
        .map((t) => [t.cluster, t.share]),
    );
    expect(shares).toEqual({ near: 0, far: 100 });
    balancers.close();
  });
});

describe('probation after an ejection (regression: a burst queued during the ejection all hit a still-dead endpoint)', () => {
  test('a target back from ejection gets one trial request at a time; a failed trial re-ejects, a success ends probation', () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 2 });
    const local = new FixedSource();
    local.endpoints(['eu-a']);
    const { balancers, clock } = makeBalancers(catalog, local, {
      outlier: { consecutiveFailures: 2, baseEjection: '3s', maxEjectionPercent: 100 },
    });
    const first = balancers.pick('shop', 'orders')!;
    first.release({ ok: true, latencyMs: 1 });
    const localId = first.target.id;
    expect(localId.startsWith('local|')).toBe(true);
    failTimes(balancers, localId, 2);
    clock.t += 3_001;
    // ten concurrent picks after the ejection ended: exactly one goes to the local endpoint
    const burst = Array.from({ length: 10 }, () => balancers.pick('shop', 'orders')!);
    expect(burst.filter((p) => p.target.id === localId)).toHaveLength(1);
    const trial = burst.find((p) => p.target.id === localId)!;
    trial.release({ ok: false, latencyMs: 1, failure: 'connect' });
    for (const p of burst) if (p !== trial) p.release({ ok: true, latencyMs: 1 });
    // one failed trial is enough to eject it again
    expect(
      Array.from({ length: 20 }, () => balancers.pick('shop', 'orders')!).every(
        (p) => p.target.id !== localId,
      ),
    ).toBe(true);
    clock.t += 6_001;
    const again = balancers.pick('shop', 'orders')!;
    expect(again.target.id).toBe(localId);
    again.release({ ok: true, latencyMs: 1 });
    // proven healthy: it takes concurrent requests again
    const after = Array.from({ length: 10 }, () => balancers.pick('shop', 'orders')!);
    expect(after.filter((p) => p.target.id === localId).length).toBeGreaterThan(1);
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

describe('outlier state per (gateway, service)', () => {
  test('a gateway failing for one service is ejected for that service only', async () => {
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 2 });
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { weight: 4, gateways: 2, name: 'payments' });
    const { balancers, registry } = makeBalancers(catalog, new FixedSource(), {});
    const gw0 = 'remote|west|gw0|127.0.0.10:15443';
    failTimes(balancers, gw0, 5);
    const stateOf = (name: string) =>
      balancers.explain('shop', name).levels[0]!.targets.find((t) => t.target.includes('gw0'))!.state;
    expect(stateOf('orders')).toMatch(/^ejected/);
    expect(stateOf('payments')).toBe('healthy');
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const p = balancers.pick('shop', 'payments')!;
      seen.add(p.target.id);
      p.release({ ok: true, latencyMs: 1 });
    }
    expect(seen.has(gw0)).toBe(true);
    const text = await registry.getSingleMetricAsString('meshfed_upstream_healthy');
    expect(text).toContain(`service="orders.shop",target="${gw0}"} 0`);
    expect(text).toContain(`service="payments.shop",target="${gw0}"} 1`);
    balancers.close();
  });
});

describe('state of targets that go away', () => {
  test('idle targets are forgotten after a catalog change; one with a request in flight is kept', async () => {
    let now = 1_000_000;
    const catalog = new FixedCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { gateways: 2 });
    const registry = new Registry();
    const balancers = new Balancers({
      cluster: 'home',
      locality: SELF,
      catalog,
      local: new FixedSource(),
      config: balancerConfigSchema.parse({}),
      registry,
      logger: createLogger({ level: 'silent' }),
      now: () => now,
    });
    const tracked = async () =>
      ((await registry.getSingleMetric('meshfed_upstream_healthy')?.get())?.values ?? []).length;
    // both gateways carry a request; one finishes, the other stays in flight
    const done = balancers.pick('shop', 'orders')!;
    const busy = balancers.pick('shop', 'orders', { exclude: new Set([done.target.id]) })!;
    done.release({ ok: true, latencyMs: 5 });
    expect(await tracked()).toBe(2);
    // west withdraws the service; time passes
    catalog.offers = [];
    now += IDLE_STATE_MS + 61_000;
    catalog.changed();
    expect(await tracked()).toBe(1);
    busy.release({ ok: true, latencyMs: 5 });
    now += IDLE_STATE_MS + 61_000;
    catalog.changed();
    expect(await tracked()).toBe(0);
    balancers.close();
  });
});

describe('catalog changes (a large catalog under a steady change stream)', () => {
  /** a FixedCatalog that counts how often the balancer reads it, and tells changes as the federated view does */
  class CountingCatalog extends FixedCatalog {
    reads = { services: 0, instances: new Map<string, number>() };
    override services() {
      this.reads.services++;
      return super.services();
    }
    override instances(namespace: string, name: string) {
      this.reads.instances.set(name, (this.reads.instances.get(name) ?? 0) + 1);
      return super.instances(namespace, name);
    }
    readonly #subscribers = new Set<(c: readonly CatalogChange[]) => void>();
    override onChange(l: (c: readonly CatalogChange[]) => void): () => void {
      this.#subscribers.add(l);
      return () => this.#subscribers.delete(l);
    }
    tell(changes: CatalogChange[]): void {
      for (const l of this.#subscribers) l(changes);
    }
  }

  test('a weight change re-resolves only its own service', () => {
    const catalog = new CountingCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { name: 'orders' });
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { name: 'carts' });
    const { balancers } = makeBalancers(catalog, new FixedSource());
    const before = balancers.resolve('shop', 'orders')?.targets[0]?.weight;
    balancers.resolve('shop', 'carts');
    catalog.offers[0] = { ...catalog.offers[0]!, weight: 9 };
    catalog.tell([{ type: 'upsert', instance: catalog.offers[0]! }]);
    expect(balancers.resolve('shop', 'orders')?.targets[0]?.weight).toBeGreaterThan(before!);
    balancers.resolve('shop', 'carts');
    expect(catalog.reads.instances.get('orders')).toBe(2);
    expect(catalog.reads.instances.get('carts')).toBe(1);
    // a cluster's change (staleness, gateways) may concern every service
    catalog.tell([{ type: 'cluster', state: { cluster: 'west', gateways: [], stale: false, services: 2 } }]);
    balancers.resolve('shop', 'carts');
    expect(catalog.reads.instances.get('carts')).toBe(2);
  });

  test('the probed gateways are listed again only when a change may add or remove one', async () => {
    const catalog = new CountingCatalog();
    catalog.offer('west', { region: 'us', zone: 'us-a' }, { gateways: 1 });
    const probed: string[] = [];
    const balancers = probingBalancers(catalog, async (t) => {
      probed.push(t.address);
      return true;
    });
    try {
      await waitFor(() => probed.length >= 1, { what: 'a first probe' });
      const listed = catalog.reads.services;
      catalog.offers[0] = { ...catalog.offers[0]!, weight: 7 };
      catalog.tell([{ type: 'upsert', instance: catalog.offers[0]! }]);
      const after = probed.length;
      await waitFor(() => probed.length >= after + 2, { what: 'two more probe rounds' });
      expect(catalog.reads.services).toBe(listed);
      // a new gateway address is probed
      catalog.offers[0] = {
        ...catalog.offers[0]!,
        gateways: [...catalog.offers[0]!.gateways, { name: 'gw9', address: '127.0.0.99:15443' }],
      };
      catalog.tell([{ type: 'upsert', instance: catalog.offers[0]! }]);
      await waitFor(() => probed.includes('127.0.0.99:15443'), { what: 'the new gateway to be probed' });
    } finally {
      balancers.close();
    }
  });
});
