import { connect } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsCluster, startNatsServer, startNatsSupercluster } from '../../cli/demo/nats-topology.ts';

describe('nats-server helper (real processes)', () => {
  test('every port is the one nats-server bound and reported; nothing is picked beforehand', async () => {
    const server = await startNatsServer({ name: 'reported' });
    try {
      const { client, monitor } = server.ports;
      expect(client).toBeGreaterThan(0);
      expect(monitor).toBeGreaterThan(0);
      expect(server.url).toBe(`nats://127.0.0.1:${client}`);
      expect(await server.healthy()).toBe(true);
      // the config asked for -1 (let the server choose) for both
      expect(readFileSync(join(server.workDir, 'nats.conf'), 'utf8')).toMatch(/^port: -1$/m);
    } finally {
      await server.stop();
      server.cleanup();
    }
  });

  test('with host and wrap, every listener binds that address and the server runs under the wrapping command', async () => {
    // 127.0.0.2 is loopback too, but nothing listens there unless asked; `env` stands in for `ip netns exec NS`
    const server = new NatsServerProcess({
      name: 'wrapped',
      host: '127.0.0.2',
      wrap: ['env', 'MESHFED_WRAPPED=1'],
    });
    try {
      await server.start();
      expect(server.url).toBe(`nats://127.0.0.2:${server.ports.client}`);
      expect(await server.healthy()).toBe(true);
      expect(readFileSync(join(server.workDir, 'nats.conf'), 'utf8')).toMatch(/^http: "127\.0\.0\.2:-1"$/m);
      expect(readFileSync(`/proc/${server.pid}/environ`, 'utf8').split('\0')).toContain('MESHFED_WRAPPED=1');
      await expect(
        connect({ servers: `nats://127.0.0.1:${server.ports.client}`, reconnect: false, timeout: 500 }),
      ).rejects.toThrow();
      const nc = await connect({ servers: server.url });
      await nc.close();
    } finally {
      await server.stop();
      server.cleanup();
    }
  });

  test('a server that exits during start fails at once with MESHFED_NATS_START_FAILED, not at the deadline', async () => {
    const server = new NatsServerProcess({ name: 'broken', extraConfig: 'no_such_option { x: 1 }' });
    const t0 = Date.now();
    try {
      await expect(server.start(60_000)).rejects.toMatchObject({ code: 'MESHFED_NATS_START_FAILED' });
      expect(Date.now() - t0).toBeLessThan(30_000);
      expect(server.running).toBe(false);
    } finally {
      server.cleanup();
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
