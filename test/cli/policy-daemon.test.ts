import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { runCli } from '../../cli/main.ts';
import { waitFor } from '../../core/index.ts';
import type { GatewayProcess } from '../gateway/daemon-process.ts';
import { io } from '../helpers/cli-io.ts';
import { applyArgs, startPolicyGateway } from './policy-apply-fixture.ts';

// A real `meshfed gateway` process and real `meshfed policy` / `meshfed status` commands: the policy
// reaches the daemon, its admin API shows the revision in force, and a restart while NATS is down
// still enforces it (from the persisted file).

let nats: NatsServerProcess;
let gw: GatewayProcess;
let second: ReturnType<typeof spawn> | undefined;

const POLICY = `apiVersion: meshfed.io/v1alpha1
kind: TrafficSplit
metadata: { name: orders-routes }
spec:
  service: shop/orders
  routes: [{ name: all, backends: [{ service: shop/orders, weight: 1 }] }]
---
apiVersion: meshfed.io/v1alpha1
kind: RateLimit
metadata: { name: orders }
spec: { target: { service: shop/orders }, requests: 100 }
`;

async function cli(args: string[]) {
  const s = io();
  const code = await runCli([...args, '--json'], s);
  return { code, out: s.out() ? JSON.parse(s.out()) : undefined, err: s.err() };
}

beforeAll(async () => {
  ({ nats, gw } = await startPolicyGateway('policy-daemon', POLICY));
}, 90_000);

afterAll(async () => {
  if (second && second.exitCode === null) {
    const exited = once(second, 'exit');
    second.kill('SIGTERM');
    await exited;
  }
  await gw?.stop();
  await nats?.stop();
  if (gw) rmSync(gw.dir, { recursive: true, force: true });
});

describe('policy and a real gateway process', () => {
  let revision = 0;

  test('apply --config reaches the gateway (catalog checked through its admin API); status shows the revision', async () => {
    const applied = await cli(applyArgs(gw));
    expect(applied.err).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.out.catalogChecked).toBe(true);
    expect(applied.out.gateways.reached).toEqual(['east/east-gw']);
    revision = applied.out.revision;
    const status = await cli(['status', '--config', gw.config]);
    expect(status.out.policy_revisions).toEqual({ admin: revision });
    expect(status.out.policy_documents).toBe(2);
  });

  test('NATS down, gateway restarted: the policy is in force from disk', async () => {
    expect(revision).toBeGreaterThan(0);
    await gw.stop();
    await nats.stop();
    second = spawn(
      process.execPath,
      [join(process.cwd(), 'bin/meshfed.js'), 'gateway', '--config', gw.config],
      {
        cwd: gw.dir,
        stdio: ['ignore', 'ignore', 'ignore'],
      },
    );
    const status = await waitFor(
      async () => {
        if (second?.exitCode !== null) throw new Error(`the gateway exited with ${second?.exitCode}`);
        const s = await cli(['status', '--config', gw.config]);
        return s.code === 0 ? s.out : undefined;
      },
      { what: 'the restarted gateway to answer status', timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(status.nats_connected).toBe(false);
    expect(status.policy_revisions).toEqual({ admin: revision });
    expect(status.policy_documents).toBe(2);
  });
});
