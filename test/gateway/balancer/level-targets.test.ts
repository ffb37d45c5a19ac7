import { drive, FixedCatalog, FixedSource, failTimes, makeBalancers } from './fixtures.ts';

// Which target of a level a pick goes to: power of two choices on latency and requests in flight, and outlier
// detection (ejection with back-off, probation after it, state kept per gateway and service).

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
