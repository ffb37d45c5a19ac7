import { connect } from '@nats-io/transport-node';
import { once } from 'node:events';
import { createServer } from 'node:net';
import {
  NatsServerProcess,
  startNatsCluster,
  startNatsServer,
  startNatsSupercluster,
} from '../../core/index.ts';

describe('nats-server helper (real processes)', () => {
  test('a monitoring port taken by another process before nats-server binds it is picked again', async () => {
    const squatter = createServer().listen(0, '127.0.0.1');
    await once(squatter, 'listening');
    const taken = (squatter.address() as { port: number }).port;
    const server = await NatsServerProcess.create({ name: 'squatted' });
    server.monitorPort = taken;
    try {
      await server.start();
      expect(server.monitorPort).not.toBe(taken);
      expect(await server.healthy()).toBe(true);
    } finally {
      await server.stop();
      server.cleanup();
      squatter.close();
    }
  });

  test('one server accepts clients and stops by PID', async () => {
    const server = await startNatsServer({ name: 'solo' });
    try {
      expect(server.pid).toBeGreaterThan(0);
      const nc = await connect({ servers: server.url });
      const sub = nc.subscribe('hello', { max: 1 });
      nc.publish('hello', 'world');
      for await (const m of sub) expect(m.string()).toBe('world');
      await nc.close();
    } finally {
      await server.stop();
      server.cleanup();
    }
    expect(server.running).toBe(false);
    await expect(connect({ servers: server.url, reconnect: false, timeout: 500 })).rejects.toThrow();
  });

  test('a 3-node cluster forms and a message crosses it', async () => {
    const cluster = await startNatsCluster({ name: 'c3', size: 3 });
    try {
      expect(cluster.servers).toHaveLength(3);
      expect(await cluster.meshed()).toBe(true);
      const a = await connect({ servers: cluster.servers[0]!.url });
      const c = await connect({ servers: cluster.servers[2]!.url });
      const sub = c.subscribe('across', { max: 1 });
      await c.flush();
      // interest propagates over routes asynchronously: republish until it arrives
      const got = (async () => {
        for await (const m of sub) return m.string();
      })();
      const timer = setInterval(() => a.publish('across', 'via-routes'), 20);
      await expect(got).resolves.toBe('via-routes');
      clearInterval(timer);
      await a.close();
      await c.close();
    } finally {
      await cluster.stop();
      cluster.cleanup();
    }
  });

  test('a 2-cluster supercluster forms over gateways and a message crosses it', async () => {
    const sc = await startNatsSupercluster({
      clusters: [
        { name: 'east', size: 1 },
        { name: 'west', size: 2 },
      ],
    });
    try {
      expect(await sc.meshed()).toBe(true);
      const east = await connect({ servers: sc.cluster('east').urls });
      const west = await connect({ servers: sc.cluster('west').servers[1]!.url });
      const sub = west.subscribe('catalog.test', { max: 1 });
      await west.flush();
      const got = (async () => {
        for await (const m of sub) return m.string();
      })();
      const timer = setInterval(() => east.publish('catalog.test', 'via-gateway'), 20);
      await expect(got).resolves.toBe('via-gateway');
      clearInterval(timer);
      await east.close();
      await west.close();
    } finally {
      await sc.stop();
      sc.cleanup();
    }
  });

  test('a stopped server can be started again on the same port', async () => {
    const server = await startNatsServer({ name: 'restart', jetstream: true });
    try {
      const port = server.port;
      await server.kill();
      expect(server.running).toBe(false);
      await server.start();
      expect(server.port).toBe(port);
      const nc = await connect({ servers: server.url });
      await nc.close();
    } finally {
      await server.stop();
      server.cleanup();
    }
  });
});
