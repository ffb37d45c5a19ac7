import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { issueLeaf } from '../../ca/index.ts';
import { type NatsSupercluster, startNatsSupercluster } from '../../cli/demo/nats-topology.ts';
import { ADMIN_POLICY_SCOPE, createRegistry, type Registry, waitFor } from '../../core/index.ts';
import {
  type FederationNode,
  POLICY_FILE,
  PolicyClient,
  PolicyVerifier,
  subjects,
} from '../../federation/index.ts';
import { makePki, type Pki, signerOf, startNode, TD, tempDir } from './helpers.ts';
import { allowFrom, bundle, issueAdmin, jwsOf, policyRejected, split } from './policy-helpers.ts';

const CLUSTERS = ['east', 'west', 'north'];
let sc: NatsSupercluster;
let pki: Pki;
let admin: ReturnType<typeof jwsOf>;
const nodes = new Map<string, FederationNode>();
const registries = new Map<string, Registry>();
const state = tempDir('meshfed-policy-state-');
let nc: NatsConnection;
let client: PolicyClient;

function adminRevision(node: FederationNode): number | undefined {
  return node.policy.current().scopes.find((s) => s.scope === ADMIN_POLICY_SCOPE)?.revision;
}

function everyNode(check: (n: FederationNode) => boolean): boolean {
  return [...nodes.values()].every(check);
}

async function publish(raw: string, scope = ADMIN_POLICY_SCOPE): Promise<void> {
  nc.publish(subjects('meshfed').policy(scope), raw);
  await nc.flush();
}

/** Waits until every node counted one more rejection of `reason` than `before`. */
async function rejectedEverywhere(reason: string, before: Map<string, number>): Promise<void> {
  await waitFor(
    async () => {
      for (const c of CLUSTERS) {
        if ((await policyRejected(registries.get(c)!, reason)) <= (before.get(c) ?? 0)) return false;
      }
      return true;
    },
    { what: `every node to reject with ${reason}`, timeoutMs: 10_000 },
  );
}

async function counts(reason: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const c of CLUSTERS) out.set(c, await policyRejected(registries.get(c)!, reason));
  return out;
}

beforeAll(async () => {
  [sc, pki] = await Promise.all([
    startNatsSupercluster({ clusters: CLUSTERS.map((name) => ({ name })) }),
    makePki(CLUSTERS),
  ]);
  admin = jwsOf(await issueAdmin(pki));
  for (const c of CLUSTERS) {
    const registry = createRegistry();
    registries.set(c, registry);
    nodes.set(
      c,
      await startNode({
        pki,
        cluster: c,
        servers: sc.cluster(c).urls,
        stateDir: join(state.dir, c),
        registry,
      }),
    );
  }
  nc = await connect({ servers: sc.cluster('east').urls });
  client = new PolicyClient({
    nc,
    subjects: subjects('meshfed'),
    verifier: new PolicyVerifier({
      trustDomain: TD,
      bundle: () => pki.bundle,
      maxClockSkew: 30_000,
      now: Date.now,
    }),
  });
  // every node is subscribed once it has reported itself
  await waitFor(async () => (await client.discover(300)).length === CLUSTERS.length, {
    what: 'three gateways to answer a ping',
    timeoutMs: 20_000,
  });
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await Promise.all([...nodes.values()].map((n) => n.stop()));
  await sc?.stop();
  sc?.cleanup();
  state.cleanup();
});

describe('signed policy over a three-cluster NATS supercluster', () => {
  let applied = 0;

  test('an admin bundle reaches every node whole, indexed by destination service, and is persisted', async () => {
    const b = bundle(admin, [
      split('greeter-canary', 'demo/greeter', [
        ['demo/greeter', 90],
        ['demo/greeter-v2', 10],
      ]),
      allowFrom('orders-allow-east', 'shop/orders', 'east'),
    ]);
    const gateways = await client.discover(300);
    const wait = await client.waitForRevision({
      scope: ADMIN_POLICY_SCOPE,
      revision: b.revision,
      publish: b.raw,
      gateways,
      timeoutMs: 10_000,
    });
    expect(wait.missing).toEqual([]);
    expect(wait.reached).toHaveLength(3);
    for (const n of nodes.values()) {
      const set = n.policy.current();
      expect(adminRevision(n)).toBe(b.revision);
      expect(set.documents).toHaveLength(2);
      expect(set.byService.get('demo/greeter')?.trafficSplit?.metadata.name).toBe('greeter-canary');
      expect(set.byService.get('shop/orders')?.authorization).toHaveLength(1);
      expect(Object.isFrozen(set.documents)).toBe(true);
    }
    await waitFor(() => CLUSTERS.every((c) => existsSync(join(state.dir, c, POLICY_FILE))), {
      what: 'the policy file on every node',
    });
    applied = b.revision;
  });

  test('refused and counted at every node, the policy in force unchanged: non-admin signers', async () => {
    expect(applied).toBeGreaterThan(0);
    const before = nodes.get('west')!.policy.current();
    // a gateway identity is neither an admin nor a federation identity
    const gatewayLeaf = await issueLeaf(pki.intermediates.get('east')!, { kind: 'gateway', name: 'gw-1' });
    let wrong = await counts('wrong_identity');
    await publish(bundle(jwsOf(gatewayLeaf), [allowFrom('x', 'shop/orders', 'east')]).raw);
    await rejectedEverywhere('wrong_identity', wrong);
    // a cluster's federation identity may not sign federation-wide policy
    wrong = await counts('wrong_scope');
    await publish(bundle(signerOf(pki, 'east'), [allowFrom('x', 'shop/orders', 'east')]).raw);
    await rejectedEverywhere('wrong_scope', wrong);
    expect(everyNode((n) => adminRevision(n) === applied)).toBe(true);
    expect(nodes.get('west')!.policy.current()).toBe(before);
  });

  test('a cluster signs policy for its own services only', async () => {
    const east = signerOf(pki, 'east');
    // for a service pinned to another cluster
    let before = await counts('wrong_cluster');
    await publish(
      bundle(east, [allowFrom('steal', 'shop/orders', 'east', 'west')], { scope: 'cluster:east' }).raw,
      'cluster:east',
    );
    await rejectedEverywhere('wrong_cluster', before);
    // in another cluster's scope (and on its subject)
    before = await counts('wrong_scope');
    await publish(
      bundle(east, [allowFrom('steal', 'shop/orders', 'east', 'west')], { scope: 'cluster:west' }).raw,
      'cluster:west',
    );
    await rejectedEverywhere('wrong_scope', before);
    // a kind only an admin may sign
    before = await counts('kind_not_allowed');
    await publish(
      bundle(east, [split('s', 'shop/orders', [['shop/orders', 1]])], { scope: 'cluster:east' }).raw,
      'cluster:east',
    );
    await rejectedEverywhere('kind_not_allowed', before);
    expect(everyNode((n) => n.policy.current().scopes.length === 1)).toBe(true);
    // its own service, pinned to itself: accepted everywhere, beside the admin scope
    const own = bundle(east, [allowFrom('east-own', 'shop/orders', 'north', 'east')], {
      scope: 'cluster:east',
    });
    await publish(own.raw, 'cluster:east');
    await waitFor(
      () =>
        everyNode(
          (n) => n.policy.current().scopes.find((s) => s.scope === 'cluster:east')?.revision === own.revision,
        ),
      { what: "east's own policy at every node" },
    );
    for (const n of nodes.values()) {
      expect(
        n.policy
          .current()
          .byService.get('shop/orders')
          ?.authorization.map((d) => d.metadata.name),
      ).toEqual(['orders-allow-east', 'east-own']);
      expect(adminRevision(n)).toBe(applied);
    }
  });

  test('replayed, rolled back, invalid or signed by an expired admin certificate: refused, nothing changes', async () => {
    const inForce = nodes.get('north')!.policy.current();
    // a replay of an older revision (a rollback)
    let before = await counts('stale_revision');
    await publish(bundle(admin, [allowFrom('old', 'shop/orders', 'west')], { revision: applied - 1 }).raw);
    await rejectedEverywhere('stale_revision', before);
    // the same revision with other content
    before = await counts('conflicting_revision');
    await publish(bundle(admin, [allowFrom('other', 'shop/orders', 'west')], { revision: applied }).raw);
    await rejectedEverywhere('conflicting_revision', before);
    // weights summing to 0 (signed by a real admin, so only validation can refuse it)
    before = await counts('invalid_policy');
    await publish(bundle(admin, [split('zero', 'demo/greeter', [['demo/greeter', 0]])], { raw: true }).raw);
    await rejectedEverywhere('invalid_policy', before);
    // an expired admin certificate
    const expired = jwsOf(
      await issueAdmin(pki, 'bob', { notBefore: new Date(Date.now() - 3 * 3_600_000), ttlMs: 3_600_000 }),
    );
    before = await counts('certificate_expired');
    await publish(bundle(expired, [allowFrom('late', 'shop/orders', 'west')]).raw);
    await rejectedEverywhere('certificate_expired', before);
    // a revision far in the future would pin the scope forever
    before = await counts('revision_in_future');
    await publish(
      bundle(admin, [allowFrom('pin', 'shop/orders', 'west')], { revision: (Date.now() + 3_600_000) * 1000 })
        .raw,
    );
    await rejectedEverywhere('revision_in_future', before);
    expect(everyNode((n) => adminRevision(n) === applied)).toBe(true);
    expect(nodes.get('north')!.policy.current()).toBe(inForce);
  });

  test('a node that missed the apply is repaired by anti-entropy', async () => {
    const registry = createRegistry();
    const late = await startNode({
      pki,
      cluster: 'north',
      servers: sc.cluster('north').urls,
      registry,
      config: { heartbeatInterval: '200ms' },
    });
    try {
      await waitFor(() => adminRevision(late) === applied, { what: 'the late node to get the admin policy' });
      expect(late.policy.current().byService.get('demo/greeter')?.trafficSplit).toBeDefined();
      // it asked (policy-get) after a peer's report, and the answers of several holders were no rejections
      const resync = await registry.getSingleMetric('meshfed_policy_resync_requests_total')?.get();
      expect(resync?.values.find((v) => v.labels.scope === 'admin')?.value).toBeGreaterThan(0);
      const rejected = await registry.getSingleMetric('meshfed_policy_rejected_total')?.get();
      expect(rejected?.values.reduce((sum, v) => sum + v.value, 0) ?? 0).toBe(0);
    } finally {
      await late.stop();
    }
  });

  test('NATS down and a restart: the policy in force comes back from disk', async () => {
    const west = nodes.get('west')!;
    await west.stop();
    nodes.delete('west');
    // nothing listens there: the restarted node never reaches NATS
    const restarted = await startNode({
      pki,
      cluster: 'west',
      servers: ['nats://127.0.0.1:1'],
      stateDir: join(state.dir, 'west'),
      registry: createRegistry(),
    });
    try {
      expect(adminRevision(restarted)).toBe(applied);
      expect(restarted.natsStatus().connected).toBe(false);
      expect(
        restarted.policy.current().byService.get('demo/greeter')?.trafficSplit?.spec.routes[0]?.backends,
      ).toEqual([
        { service: 'demo/greeter', weight: 90 },
        { service: 'demo/greeter-v2', weight: 10 },
      ]);
      expect(restarted.policy.current().scopes.map((s) => s.scope)).toEqual(['admin', 'cluster:east']);
    } finally {
      await restarted.stop();
    }
  });
});

describe('discovery of gateways that answer late', () => {
  // Gateways that answer a ping only after the discovery window (a loaded host, a slow NATS link): two
  // recorded, signed answers of real nodes are relayed back on a subject prefix no node listens on, the first
  // 600 ms after the ping and the second 150 ms after it, while the window is 200 ms.
  async function lateGateways(): Promise<{ client: PolicyClient; close: () => void }> {
    const inbox = `_INBOX.discover-record.${Date.now()}`;
    const answers: Uint8Array[] = [];
    const rec = nc.subscribe(inbox, { callback: (err, m) => void (err || answers.push(m.data)) });
    nc.publish(subjects('meshfed').policyPing, new Uint8Array(0), { reply: inbox });
    await waitFor(() => answers.length >= 2, { what: 'two gateways to answer a ping', timeoutMs: 10_000 });
    rec.unsubscribe();
    const timers: NodeJS.Timeout[] = [];
    const relay = nc.subscribe(subjects('late').policyPing, {
      callback: (err, m) => {
        if (err || !m.reply) return;
        const reply = m.reply;
        timers.push(setTimeout(() => nc.publish(reply, answers[0]!), 600));
        timers.push(setTimeout(() => nc.publish(reply, answers[1]!), 750));
      },
    });
    await nc.flush();
    const late = new PolicyClient({
      nc,
      subjects: subjects('late'),
      verifier: new PolicyVerifier({
        trustDomain: TD,
        bundle: () => pki.bundle,
        maxClockSkew: 30_000,
        now: Date.now,
      }),
    });
    return {
      client: late,
      close: () => {
        relay.unsubscribe();
        for (const t of timers) clearTimeout(t);
      },
    };
  }

  test('with no answer within the window, the first is waited for up to maxMs, and one close behind it too', async () => {
    const { client: late, close } = await lateGateways();
    try {
      const found = await late.discover(200, 10_000);
      expect(found).toHaveLength(2);
      expect(new Set(found.map((g) => g.instance)).size).toBe(2);
    } finally {
      close();
    }
  });

  test('without maxMs the window alone decides: nobody answered in time', async () => {
    const { client: late, close } = await lateGateways();
    try {
      expect(await late.discover(200)).toEqual([]);
    } finally {
      close();
    }
  });
});
