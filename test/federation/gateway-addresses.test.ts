import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createRegistry, isMeshfedError, parseConfig, type Registry, waitFor } from '../../core/index.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { type FederationNode, federationConfigSchema } from '../../federation/index.ts';
import {
  announceMessage,
  counterValue,
  entryMessage,
  ListSource,
  makePki,
  type Pki,
  service,
  signerOf,
  startNode,
} from './helpers.ts';

/**
 * Issue 11 finding 8: a member cluster's entry or announcement named any address as its gateway, and every other
 * gateway would dial it (a blind port scan run by the mesh). With federation.gatewayAddresses the view accepts
 * only addresses inside the ranges allowed for that cluster.
 */
let nats: NatsServerProcess;
let pki: Pki;
let east: FederationNode;
let north: FederationNode;
let view: FederationNode;
let registry: Registry;
let attacker: NatsConnection;

beforeAll(async () => {
  [nats, pki] = await Promise.all([startNatsServer({ name: 'gw-addr' }), makePki(['east', 'north', 'view'])]);
  east = await startNode({
    pki,
    cluster: 'east',
    servers: [nats.url],
    source: new ListSource([service('shop', 'orders', 2)]),
  });
  north = await startNode({
    pki,
    cluster: 'north',
    servers: [nats.url],
    source: new ListSource([service('shop', 'carts', 2)]),
  });
  registry = createRegistry();
  // every node of the helpers advertises 127.0.0.1:15443; north's own range excludes it
  view = await startNode({
    pki,
    cluster: 'view',
    servers: [nats.url],
    registry,
    config: { gatewayAddresses: { allow: ['127.0.0.0/8'], clusters: { north: ['192.0.2.0/24'] } } },
  });
  attacker = await connect({ servers: nats.url });
});

afterAll(async () => {
  await attacker.close();
  await Promise.all([east.stop(), north.stop(), view.stop()]);
  await nats.stop();
  nats.cleanup();
});

test('entries and announcements whose gateways fall outside the allowed ranges are refused', async () => {
  await waitFor(() => view.instances('shop', 'orders').length === 1, { what: 'east’s orders in the view' });
  await waitFor(async () => (await counterValue(registry, 'gateway_not_allowed')) > 0, {
    what: 'north’s entries to be refused',
  });
  expect(view.instances('shop', 'carts')).toHaveLength(0);

  // east's key, a gateway that is some other host's SSH port
  const now = Date.now();
  const probe = entryMessage({
    name: 'probe',
    ports: [{ name: 'tcp', port: 22, protocol: 'tcp' }],
    gateways: [{ name: 'gw', address: '10.9.9.9:22' }],
  });
  const announce = announceMessage({
    revision: now * 1000 + 1,
    gateways: [{ name: 'gw', address: 'redis.internal:6379' }],
    services: 1,
  });
  const before = await counterValue(registry, 'gateway_not_allowed');
  attacker.publish('meshfed.catalog.east', signerOf(pki, 'east').sign(probe));
  attacker.publish('meshfed.announce.east', signerOf(pki, 'east').sign(announce));
  await attacker.flush();
  await waitFor(
    async () =>
      (await counterValue(registry, 'gateway_not_allowed')) >= before + 2 ||
      view.instances('shop', 'probe').length > 0,
    { what: 'the probing entry and announcement to be handled' },
  );
  expect(view.instances('shop', 'probe')).toHaveLength(0);
  expect(
    view
      .clusters()
      .find((c) => c.cluster === 'east')
      ?.gateways.map((g) => g.address),
  ).not.toContain('redis.internal:6379');
});

test('a range that is not a CIDR fails the config, naming the field', () => {
  let err: unknown;
  try {
    parseConfig(
      federationConfigSchema,
      {
        nats: { servers: ['nats://127.0.0.1:4222'] },
        gatewayAddresses: { allow: ['10.0.0.0/33'], clusters: { east: ['10.1.0.0/8/8'] } },
      },
      { source: 'gw.yaml' },
    );
  } catch (e) {
    err = e;
  }
  expect(isMeshfedError(err, 'MESHFED_CONFIG_INVALID')).toBe(true);
  const paths = (err as { details: { problems: { path: string }[] } }).details.problems.map((p) => p.path);
  expect(paths).toEqual(
    expect.arrayContaining(['gatewayAddresses.allow[0]', 'gatewayAddresses.clusters.east[0]']),
  );
});
