import { readFileSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { waitFor } from '../../core/index.ts';
import { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import type { FederationNode } from '../../federation/index.ts';
import { ListSource, makePki, service, startNode } from '../federation/helpers.ts';

// deploy/nats/*.conf restrict each cluster's user to its own subjects. This runs a real
// nats-server with exactly those users and checks that federation works under them and that
// east cannot publish west's catalog.
function userBlock(cluster: string): string {
  const text = readFileSync(new URL(`../../deploy/nats/${cluster}.conf`, import.meta.url), 'utf8');
  const start = text.indexOf('users: [');
  const end = text.lastIndexOf(']', text.lastIndexOf('}'));
  return text.slice(start + 'users: ['.length, end).trim();
}

let server: NatsServerProcess;
let url: string;
const nodes: FederationNode[] = [];

beforeAll(async () => {
  server = new NatsServerProcess({
    name: 'perm',
    extraConfig: `authorization {\n  users: [\n${userBlock('east')}\n${userBlock('west')}\n  ]\n}`,
    env: {
      ...process.env,
      MESHFED_EAST_NATS_PASSWORD: 'east-secret',
      MESHFED_WEST_NATS_PASSWORD: 'west-secret',
    },
  });
  await server.start();
  url = server.url;
  await waitFor(
    async () => {
      const nc = await connect({
        servers: url,
        user: 'meshfed-east',
        pass: 'east-secret',
        reconnect: false,
        timeout: 500,
      });
      await nc.close();
      return true;
    },
    { what: 'nats-server with the deploy/nats users', timeoutMs: 15_000 },
  );
});

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await server.stop();
  server.cleanup();
});

test('federation works under the deploy/nats permissions, and east cannot publish west subjects', async () => {
  const pki = await makePki(['east', 'west']);
  const src = new ListSource([service('shop', 'orders', 2)]);
  const creds = (c: string) => ({
    nats: { servers: [url], user: `meshfed-${c}`, pass: `${c}-secret`, reconnectWait: '200ms' },
  });
  nodes.push(await startNode({ pki, cluster: 'east', servers: [url], source: src, config: creds('east') }));
  const west = await startNode({ pki, cluster: 'west', servers: [url], config: creds('west') });
  nodes.push(west);
  await waitFor(() => west.instances('shop', 'orders')[0]?.weight === 2, {
    what: 'orders in west under the permissions',
  });

  const eastConn = await connect({ servers: url, user: 'meshfed-east', pass: 'east-secret' });
  const westConn = await connect({ servers: url, user: 'meshfed-west', pass: 'west-secret' });
  try {
    const got: string[] = [];
    const sub = westConn.subscribe('meshfed.catalog.*');
    void (async () => {
      for await (const m of sub) got.push(m.subject);
    })();
    await westConn.flush();
    eastConn.publish('meshfed.catalog.west', 'forged'); // refused by the server
    eastConn.publish('meshfed.catalog.east', 'own');
    await eastConn.flush().catch(() => undefined);
    await waitFor(() => got.includes('meshfed.catalog.east'), { what: 'east publishing its own subject' });
    expect(got).not.toContain('meshfed.catalog.west');
  } finally {
    await eastConn.close().catch(() => undefined);
    await westConn.close();
  }
});
