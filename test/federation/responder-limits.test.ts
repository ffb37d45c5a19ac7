import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createRegistry, type Registry, waitFor } from '../../core/index.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { FederationNode } from '../../federation/index.ts';
import { RequestLimiter } from '../../federation/request-limiter.ts';
import {
  ListSource,
  makePki,
  type Pki,
  refusedValue as refused,
  service,
  signedSyncRequest as signedRequest,
  startNode,
} from './helpers.ts';

describe('RequestLimiter', () => {
  const limits = { perRequester: 2, perRequesterBurst: 3, total: 100, totalBurst: 5 };

  test('a requester gets its burst, then its rate; others are not held by it', () => {
    const l = new RequestLimiter(limits, 0);
    expect([0, 0, 0, 0].map(() => l.take('a', 0))).toEqual([
      undefined,
      undefined,
      undefined,
      'requester_rate',
    ]);
    expect(l.take('b', 0)).toBeUndefined();
    // 2 per second: after half a second one more
    expect(l.take('a', 500)).toBeUndefined();
    expect(l.take('a', 500)).toBe('requester_rate');
  });

  test('many requesters together are held by the total', () => {
    const l = new RequestLimiter(limits, 0);
    const out = Array.from({ length: 8 }, (_, i) => l.take(`r${i}`, 0));
    expect(out.filter((x) => x === undefined)).toHaveLength(5);
    expect(out.slice(5)).toEqual(['total_rate', 'total_rate', 'total_rate']);
  });
});

describe('responder rate limits on real NATS', () => {
  let nats: NatsServerProcess;
  let pki: Pki;
  let node: FederationNode;
  let registry: Registry;
  const clients: NatsConnection[] = [];

  beforeAll(async () => {
    [nats, pki] = await Promise.all([
      startNatsServer({ name: 'limits' }),
      makePki(['east', 'west', 'north']),
    ]);
    registry = createRegistry();
    node = await startNode({
      pki,
      cluster: 'east',
      servers: [nats.url],
      source: new ListSource([service('shop', 'orders'), service('shop', 'carts')]),
      registry,
      config: { responderLimits: { perRequester: 0.5, perRequesterBurst: 3, total: 0.5, totalBurst: 6 } },
    });
    await waitFor(() => node.natsStatus().connected, { what: 'the responder to connect' });
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await node.stop();
    await nats.stop();
    nats.cleanup();
  });

  /** sends `n` snapshot requests signed by `cluster` from one connection; resolves with the answered ones */
  async function flood(cluster: string, n: number): Promise<{ answered: Set<string>; nc: NatsConnection }> {
    const nc = await connect({ servers: nats.url });
    clients.push(nc);
    const inbox = `_INBOX.${clients.length}x${Date.now()}`;
    const answered = new Set<string>();
    nc.subscribe(`${inbox}.*`, {
      callback: (_e, m) => {
        answered.add(m.subject);
      },
    });
    for (let i = 0; i < n; i++) {
      const reply = `${inbox}.r${i}`;
      nc.publish('meshfed.sync.east', signedRequest(pki, cluster, `r${i}`, reply), { reply });
    }
    await nc.flush();
    return { answered, nc };
  }

  test('a cluster asking in a loop is answered at its own rate, counted, and another cluster is still answered', async () => {
    const a = await flood('west', 40);
    await waitFor(async () => a.answered.size + (await refused(registry, 'requester_rate')) >= 40, {
      what: 'every request to be answered or refused',
    });
    // the burst of 3, plus what a 0.5/s refill adds while the test runs
    expect(a.answered.size).toBeGreaterThanOrEqual(3);
    expect(a.answered.size).toBeLessThan(10);
    expect(await refused(registry, 'requester_rate')).toBe(40 - a.answered.size);

    // another cluster has its own bucket
    const b = await flood('north', 1);
    await waitFor(() => b.answered.size === 1, { what: 'the second cluster to be answered' });
  });
});
