import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LocalService, waitFor, silentLogger } from '../../core/index.ts';
import { consulSinkSchema, consulSourceSchema } from '../../discovery/index.ts';
import { nextBlockingIndex } from '../../discovery/consul-client.ts';
import { ConsulSink } from '../../discovery/consul-sink.ts';
import { CONSUL_META, ConsulSource } from '../../discovery/consul-source.ts';
import { ConsulDouble } from '../doubles/consul-double.ts';
import { captureLogger } from '../doubles/log-capture.ts';

function sourceConfig(double: ConsulDouble, extra: Record<string, unknown> = {}) {
  return consulSourceSchema.parse({
    type: 'consul',
    address: `127.0.0.1:${double.port}`,
    wait: '1s',
    timeout: '1s',
    backoff: { min: '20ms', max: '200ms' },
    ...extra,
  });
}

function find(src: ConsulSource, name: string): LocalService | undefined {
  return src.current().find((s) => s.name === name);
}

describe('nextBlockingIndex (Consul blocking-query rules)', () => {
  test.each([
    { previous: 0, received: 15, want: 15 },
    { previous: 15, received: 15, want: 15 },
    { previous: 15, received: 20, want: 20 },
    { previous: 20, received: 3, want: 0 }, // went backwards: reset
    { previous: 0, received: 0, want: 1 }, // never below 1: no busy loop
  ])('$previous → $received gives $want', ({ previous, received, want }) => {
    expect(nextBlockingIndex(previous, received)).toBe(want);
  });
});

describe('ConsulSource against the Consul double', () => {
  let consul: ConsulDouble;
  beforeEach(async () => {
    consul = new ConsulDouble();
    await consul.start();
  });
  afterEach(async () => {
    await consul.stop();
  });

  test('opt-in by tag or meta, namespace from meta, passing instances only, withdrawal on deregister', async () => {
    consul.register({
      id: 'orders-1',
      service: 'orders',
      port: 8080,
      tags: ['meshfed-export'],
      address: '10.0.0.1',
    });
    consul.register({
      id: 'orders-2',
      service: 'orders',
      port: 8080,
      address: '10.0.0.2',
      nodeMeta: { zone: 'east-1b' },
    });
    consul.register({
      id: 'pay-1',
      service: 'payments',
      port: 9090,
      meta: { 'meshfed-export': 'true', [CONSUL_META.namespace]: 'shop', [CONSUL_META.protocol]: 'grpc' },
    });
    consul.register({ id: 'internal-1', service: 'internal', port: 7000 });
    // an import registered by some meshfed sink must never be re-exported
    consul.register({ id: 'imp', service: 'remote', port: 15001, meta: { [CONSUL_META.managed]: 'true' } });
    const src = new ConsulSource({ log: silentLogger(), config: sourceConfig(consul) });
    await src.start();
    try {
      await waitFor(() => src.synced && find(src, 'payments'), { what: 'the first sync' });
      expect(find(src, 'orders')).toMatchObject({ namespace: 'default', exported: true, source: 'consul' });
      expect(find(src, 'orders')!.endpoints).toEqual([
        { host: '10.0.0.1', ports: { tcp: 8080 }, healthy: true },
        { host: '10.0.0.2', ports: { tcp: 8080 }, healthy: true, zone: 'east-1b' },
      ]);
      expect(find(src, 'payments')).toMatchObject({
        namespace: 'shop',
        exported: true,
        ports: [{ name: 'grpc', port: 9090, protocol: 'grpc' }],
      });
      expect(find(src, 'internal')?.exported).toBe(false);
      expect(find(src, 'remote')).toBeUndefined();

      consul.setStatus('orders-2', 'critical');
      await waitFor(() => find(src, 'orders')?.endpoints.length === 1, {
        what: 'the critical instance to drop',
      });
      consul.deregister('pay-1');
      await waitFor(() => find(src, 'payments') === undefined, { what: 'payments to be withdrawn' });
    } finally {
      await src.stop();
    }
  });

  test('300 services use a bounded number of connections (Consul allows 200 per client)', async () => {
    for (let i = 0; i < 300; i++)
      consul.register({ id: `s-${i}`, service: `s-${i}`, port: 1000, tags: ['meshfed-export'] });
    const src = new ConsulSource({ log: silentLogger(), config: sourceConfig(consul, { concurrency: 4 }) });
    await src.start();
    try {
      await waitFor(() => src.synced && src.current().length === 300, {
        timeoutMs: 30_000,
        what: '300 services',
      });
      // two long polls plus the read pool, whatever the number of services
      expect(consul.peakConnections).toBeLessThanOrEqual(2 + 4);
      const reads = src.stats.serviceReads;
      consul.setStatus('s-42', 'critical');
      await waitFor(() => find(src, 's-42')?.endpoints.length === 0, { what: 's-42 to lose its endpoint' });
      // a health change re-reads the service it touched, not all 300
      expect(src.stats.serviceReads - reads).toBeLessThanOrEqual(2);
    } finally {
      await src.stop();
    }
  });

  test('an instance registered without checks is seen at once (no wait for the periodic resync)', async () => {
    consul.register({
      id: 'a-1',
      service: 'alpha',
      port: 1000,
      tags: ['meshfed-export'],
      address: '10.0.0.1',
    });
    const src = new ConsulSource({ log: silentLogger(), config: sourceConfig(consul, { resync: '1h' }) });
    await src.start();
    try {
      await waitFor(() => src.synced && find(src, 'alpha'));
      const reads = src.stats.fullReads;
      consul.register({ id: 'a-2', service: 'alpha', port: 1000, address: '10.0.0.2', checks: false });
      await waitFor(() => find(src, 'alpha')?.endpoints.length === 2, { what: 'the check-less instance' });
      expect(src.stats.fullReads).toBeGreaterThanOrEqual(reads + 1);
      // an instance with checks is named by the checks loop (a full re-read only if that loop is
      // slower than the grace period, which a loaded CI machine can make happen)
      consul.register({ id: 'a-3', service: 'alpha', port: 1000, address: '10.0.0.3' });
      await waitFor(() => find(src, 'alpha')?.endpoints.length === 3);
      consul.deregister('a-2');
      await waitFor(() => find(src, 'alpha')?.endpoints.length === 2, {
        what: 'the check-less instance to go',
      });
      expect(src.stats.fullReads).toBeGreaterThanOrEqual(reads + 2);
    } finally {
      await src.stop();
    }
  });

  test('an index that goes backwards (snapshot restore) is reset and changes keep flowing', async () => {
    consul.register({ id: 'a-1', service: 'alpha', port: 1000, tags: ['meshfed-export'] });
    const src = new ConsulSource({ log: silentLogger(), config: sourceConfig(consul) });
    await src.start();
    try {
      await waitFor(() => find(src, 'alpha'));
      consul.resetIndexes(2);
      consul.register({ id: 'b-1', service: 'beta', port: 2000, tags: ['meshfed-export'] });
      // the double now reports index 3 while the source holds a higher one; without the reset
      // the source would block until the index passes its old value and never see beta
      await waitFor(() => find(src, 'beta'), { timeoutMs: 8000, what: 'beta after the index reset' });
      const afterReset = consul.requests.filter((r) => r.startsWith('GET /v1/catalog/services'));
      expect(afterReset.some((r) => !r.includes('index='))).toBe(true);
    } finally {
      await src.stop();
    }
  });

  test('ACL: an unknown token gets 403 (one FORBIDDEN line), a rotated token file recovers', async () => {
    consul.aclTokens = new Set(['good-token']);
    consul.register({ id: 'a-1', service: 'alpha', port: 1000, tags: ['meshfed-export'] });
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-consul-'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'stale-token\n');
    const { log, lines } = captureLogger();
    const src = new ConsulSource({ config: sourceConfig(consul, { tokenFile }), log });
    await src.start();
    try {
      await waitFor(() => consul.requests.length >= 4, { what: 'a few refused attempts' });
      expect(src.current()).toEqual([]);
      const warns = lines.filter((l) => l.level === 'warn');
      expect(warns).toHaveLength(1);
      expect((warns[0]!.err as { code: string }).code).toBe('MESHFED_DISCOVERY_FORBIDDEN');
      writeFileSync(tokenFile, 'good-token\n');
      await waitFor(() => find(src, 'alpha'), { what: 'recovery with the rotated token' });
      expect(JSON.stringify(lines)).not.toContain('good-token');
    } finally {
      await src.stop();
    }
  });

  test.each([
    { fault: { kind: 'status', status: 500 } as const },
    { fault: { kind: 'garbage' } as const },
    { fault: { kind: 'hang' } as const },
  ])('fault $fault.kind: the last known set is kept, logging is bounded, it recovers', async ({ fault }) => {
    consul.register({ id: 'a-1', service: 'alpha', port: 1000, tags: ['meshfed-export'] });
    const { log, lines } = captureLogger();
    const src = new ConsulSource({ config: sourceConfig(consul), log });
    await src.start();
    try {
      await waitFor(() => find(src, 'alpha'));
      const before = consul.requests.length;
      consul.fault = fault;
      consul.register({ id: 'b-1', service: 'beta', port: 2000, tags: ['meshfed-export'] });
      if (fault.kind === 'hang') {
        await waitFor(() => lines.some((l) => l.level === 'warn'), {
          timeoutMs: 10_000,
          what: 'the hang to be detected',
        });
      } else {
        await waitFor(() => consul.requests.length >= before + 8, { what: 'several failed attempts' });
      }
      expect(find(src, 'alpha')).toBeDefined();
      expect(find(src, 'beta')).toBeUndefined();
      const attempts = consul.requests.length - before;
      consul.fault = { kind: 'none' };
      await waitFor(() => find(src, 'beta'), { timeoutMs: 10_000, what: 'recovery' });
      await waitFor(() => lines.some((l) => l.level === 'info' && String(l.msg).includes('recovered')), {
        what: 'one "recovered" line once every loop works again',
      });
      const warns = lines.filter((l) => l.level === 'warn').length;
      // one line per failing episode per minute, however many attempts failed
      expect(warns).toBeLessThanOrEqual(2);
      expect(attempts).toBeLessThan(200); // back-off, not a hot loop
    } finally {
      await src.stop();
    }
  });

  test('the agent restarted on the same port: last set kept while down, changes seen after', async () => {
    consul.register({ id: 'a-1', service: 'alpha', port: 1000, tags: ['meshfed-export'] });
    const src = new ConsulSource({ log: silentLogger(), config: sourceConfig(consul) });
    await src.start();
    try {
      await waitFor(() => find(src, 'alpha'));
      await consul.stop();
      consul.deregister('a-1');
      consul.register({ id: 'g-1', service: 'gamma', port: 3000, tags: ['meshfed-export'] });
      expect(find(src, 'alpha')).toBeDefined();
      await consul.start();
      await waitFor(() => find(src, 'gamma') && !find(src, 'alpha'), { what: 'the state after the restart' });
    } finally {
      await src.stop();
    }
  });
});

describe('ConsulSink against the Consul double', () => {
  let consul: ConsulDouble;
  beforeEach(async () => {
    consul = new ConsulDouble({ aclTokens: ['sink-token'] });
    await consul.start();
  });
  afterEach(async () => {
    await consul.stop();
  });

  function sink(gatewayId = 'east-gw-1') {
    return new ConsulSink({
      log: silentLogger(),
      config: consulSinkSchema.parse({
        type: 'consul',
        address: `127.0.0.1:${consul.port}`,
        token: 'sink-token',
      }),
      gatewayId,
      egress: { host: '127.0.0.1', port: 15001 },
    });
  }

  const orders = {
    namespace: 'shop',
    name: 'orders',
    ports: [{ name: 'http', port: 8080, protocol: 'http' as const }],
    clusters: ['central', 'west'],
  };

  test('registers imports at the egress listener with ownership meta and deregisters withdrawn ones', async () => {
    const s = sink();
    await s.start();
    try {
      await s.apply([orders]);
      const reg = consul.get('meshfed-east-gw-1-shop-orders');
      expect(reg).toMatchObject({
        service: 'orders',
        address: '127.0.0.1',
        port: 15001,
        node: consul.agentNode,
      });
      expect(reg!.meta).toMatchObject({
        'meshfed-managed': 'true',
        'meshfed-owner': 'east-gw-1',
        'meshfed-clusters': 'central,west',
        'meshfed-namespace': 'shop',
      });
      const writes = consul.requests.filter((r) => r.startsWith('PUT')).length;
      await s.apply([orders]); // nothing changed: no write
      expect(consul.requests.filter((r) => r.startsWith('PUT')).length).toBe(writes);
      await s.apply([{ ...orders, clusters: ['west'] }]);
      expect(consul.get('meshfed-east-gw-1-shop-orders')!.meta['meshfed-clusters']).toBe('west');
      await s.apply([]);
      expect(consul.get('meshfed-east-gw-1-shop-orders')).toBeUndefined();
    } finally {
      await s.stop();
    }
  });

  test('never touches what it did not create; cleans up its own stale registrations after a crash', async () => {
    // a user's service, another gateway's import, a user service squatting on our ID, and our own
    // registration left behind by a crashed run
    consul.register({ id: 'orders', service: 'orders', port: 8080, node: consul.agentNode });
    consul.register({
      id: 'meshfed-west-gw-1-shop-orders',
      service: 'orders',
      port: 15001,
      node: consul.agentNode,
      meta: { 'meshfed-managed': 'true', 'meshfed-owner': 'west-gw-1' },
    });
    consul.register({
      id: 'meshfed-east-gw-1-shop-billing',
      service: 'billing',
      port: 1,
      node: consul.agentNode,
    });
    consul.register({
      id: 'meshfed-east-gw-1-shop-stale',
      service: 'stale',
      port: 15001,
      node: consul.agentNode,
      meta: { 'meshfed-managed': 'true', 'meshfed-owner': 'east-gw-1' },
    });
    const before = JSON.stringify([
      consul.get('orders'),
      consul.get('meshfed-west-gw-1-shop-orders'),
      consul.get('meshfed-east-gw-1-shop-billing'),
    ]);
    const s = sink();
    await s.start();
    try {
      await s.apply([orders, { ...orders, name: 'billing' }]);
      expect(consul.get('meshfed-east-gw-1-shop-stale')).toBeUndefined();
      expect(consul.get('meshfed-east-gw-1-shop-orders')?.meta['meshfed-owner']).toBe('east-gw-1');
      await s.apply([]);
      expect(
        JSON.stringify([
          consul.get('orders'),
          consul.get('meshfed-west-gw-1-shop-orders'),
          consul.get('meshfed-east-gw-1-shop-billing'),
        ]),
      ).toBe(before);
      const deregs = consul.requests.filter((r) => r.includes('/deregister/'));
      expect(deregs.sort()).toEqual([
        'PUT /v1/agent/service/deregister/meshfed-east-gw-1-shop-orders',
        'PUT /v1/agent/service/deregister/meshfed-east-gw-1-shop-stale',
      ]);
    } finally {
      await s.stop();
    }
  });

  test('a refused token is a FORBIDDEN, non-retryable error; an unreachable agent is retryable', async () => {
    const bad = new ConsulSink({
      log: silentLogger(),
      config: consulSinkSchema.parse({ type: 'consul', address: `127.0.0.1:${consul.port}`, token: 'nope' }),
      gatewayId: 'g',
      egress: { host: '127.0.0.1', port: 15001 },
    });
    await bad.start();
    await expect(bad.apply([orders])).rejects.toMatchObject({
      code: 'MESHFED_DISCOVERY_FORBIDDEN',
      retryable: false,
    });
    await bad.stop();
    const s = sink();
    await s.start();
    await consul.stop();
    await expect(s.apply([orders])).rejects.toMatchObject({
      code: 'MESHFED_DISCOVERY_UNAVAILABLE',
      retryable: true,
    });
    await s.stop();
  });
});
