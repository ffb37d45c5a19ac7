import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import { makePki, type Pki } from '../federation/helpers.ts';
import { issueAdmin } from '../federation/policy-helpers.ts';
import { type GatewayFiles, type GatewayProcess, startGatewayProcess } from '../gateway/daemon-process.ts';

/**
 * A nats-server, a PKI of cluster east and a real `meshfed gateway` process of east serving shop/orders
 * (nothing listens behind it), with an admin certificate and `policy` written beside its config.
 */
export async function startPolicyGateway(
  name: string,
  policy: string,
  args: string[] = [],
): Promise<{ nats: NatsServerProcess; pki: Pki; gw: GatewayProcess }> {
  const [nats, pki] = await Promise.all([startNatsServer({ name }), makePki(['east'])]);
  const gw = await startGatewayProcess({
    natsUrl: nats.url,
    services: { orders: '127.0.0.1:9' },
    root: pki.root,
    intermediate: pki.intermediates.get('east')!,
    args,
  });
  await writeAdminPolicy(gw, pki, policy);
  return { nats, pki, gw };
}

/** Writes an admin certificate and key of `pki` and `policy` (as policy.yaml) into a gateway's directory. */
export async function writeAdminPolicy(gw: GatewayFiles, pki: Pki, policy: string): Promise<void> {
  const admin = await issueAdmin(pki);
  writeFileSync(join(gw.dir, 'admin.crt'), admin.chainPem);
  writeFileSync(join(gw.dir, 'admin.key'), admin.keyPem, { mode: 0o600 });
  writeFileSync(join(gw.dir, 'policy.yaml'), policy);
}

/** `meshfed policy apply` of that policy.yaml through the gateway's config, signed by that admin. */
export function applyArgs(gw: GatewayFiles): string[] {
  return [
    'policy',
    'apply',
    '-f',
    join(gw.dir, 'policy.yaml'),
    '--config',
    gw.config,
    '--cert',
    join(gw.dir, 'admin.crt'),
    '--key',
    join(gw.dir, 'admin.key'),
    // every gateway's answer must arrive in the window, on a loaded host too
    '--discover',
    '1500ms',
  ];
}
