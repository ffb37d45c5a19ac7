import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { freePort, waitFor } from '../../core/index.ts';
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

let server: ChildProcess;
let url: string;
const nodes: FederationNode[] = [];

beforeAll(async () => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'meshfed-nats-perm-'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(
    conf,
    `listen: 127.0.0.1:${port}\nauthorization {\n  users: [\n${userBlock('east')}\n${userBlock('west')}\n  ]\n}\n`,
  );
  server = spawn('nats-server', ['-c', conf], {
    env: {
      ...process.env,
      MESHFED_EAST_NATS_PASSWORD: 'east-secret',
      MESHFED_WEST_NATS_PASSWORD: 'west-secret',
    },
    stdio: 'ignore',
  });
  url = `nats://127.0.0.1:${port}`;
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
  if (server.exitCode === null) {
    const exited = once(server, 'exit');
    server.kill('SIGTERM');
    await exited;
  }
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
