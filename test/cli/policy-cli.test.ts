import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { AdminServer } from '../../cli/admin/admin-server.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { runCli } from '../../cli/main.ts';
import { ADMIN_POLICY_SCOPE, createRegistry, silentLogger, waitFor } from '../../core/index.ts';
import type { FederationNode } from '../../federation/index.ts';
import { makePki, type Pki, startNode, tempDir } from '../federation/helpers.ts';
import { issueAdmin } from '../federation/policy-helpers.ts';
import { io } from '../helpers/cli-io.ts';

const dir = tempDir('meshfed-policy-cli-');
let nats: NatsServerProcess;
let pki: Pki;
const nodes: FederationNode[] = [];
let admin: AdminServer;
const f = (name: string) => join(dir.dir, name);

/** Runs `meshfed policy …` in this process against the test's NATS, trust bundle and admin identity. */
async function policy(args: string[], o: { signer?: 'admin' | 'east' | 'none' } = {}) {
  const s = io();
  const signer = o.signer ?? 'admin';
  const who = signer === 'none' ? [] : ['--cert', f(`${signer}.crt`), '--key', f(`${signer}.key`)];
  const code = await runCli(
    [
      'policy',
      ...args,
      '--nats',
      nats.url,
      '--ca',
      f('bundle.crt'),
      '--trust-domain',
      'mesh.example',
      // long enough for every gateway's answer on a loaded host (300 ms missed them at load 27)
      '--discover',
      '1500ms',
      '--timeout',
      '10s',
      ...who,
      '--json',
    ],
    { stdout: s.stdout, stderr: s.stderr },
  );
  const parse = (t: string) => {
    try {
      return t.trim() ? JSON.parse(t) : undefined;
    } catch {
      throw new Error(`not JSON: ${t}`);
    }
  };
  return { code, out: parse(s.out()), err: parse(s.err())?.error };
}

function adminRevision(n: FederationNode): number | undefined {
  return n.policy.current().scopes.find((x) => x.scope === ADMIN_POLICY_SCOPE)?.revision;
}

const CANARY = `apiVersion: meshfed.io/v1alpha1
kind: TrafficSplit
metadata: { name: greeter-canary }
spec:
  service: demo/greeter
  routes:
    - name: all
      backends: [{ service: demo/greeter, weight: 90 }, { service: demo/greeter-v2, weight: 10 }]
---
apiVersion: meshfed.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: orders }
spec:
  target: { service: shop/orders }
  rules:
    - { name: no-legacy, action: DENY, from: [{ namespace: legacy }] }
    - { name: web-reads, action: ALLOW, from: [{ cluster: west, serviceAccount: web }], to: [{ methods: [GET] }] }
`;

beforeAll(async () => {
  [nats, pki] = await Promise.all([startNatsServer(), makePki(['east', 'west'])]);
  const adminLeaf = await issueAdmin(pki);
  writeFileSync(f('bundle.crt'), pki.root.certPem);
  writeFileSync(f('admin.crt'), adminLeaf.chainPem);
  writeFileSync(f('admin.key'), adminLeaf.keyPem, { mode: 0o600 });
  writeFileSync(f('east.crt'), pki.leaves.get('east')!.chainPem);
  writeFileSync(f('east.key'), pki.leaves.get('east')!.keyPem, { mode: 0o600 });
  writeFileSync(f('canary.yaml'), CANARY);
  writeFileSync(
    f('canary-50.yaml'),
    CANARY.replace('weight: 90', 'weight: 50').replace('weight: 10', 'weight: 50'),
  );
  writeFileSync(
    f('bad.yaml'),
    `${CANARY.replace('weight: 90', 'weight: 0').replace('weight: 10', 'weight: 0')}---
apiVersion: meshfed.io/v1alpha1
kind: RateLimit
metadata: { name: r }
spec: { target: { service: shop/orders }, requests: 10, perSecond: true }
`,
  );
  writeFileSync(f('unknown.yaml'), CANARY.replace('demo/greeter-v2', 'demo/greeter-v9'));
  writeFileSync(
    f('other-cluster.yaml'),
    `apiVersion: meshfed.io/v1alpha1
kind: AuthorizationPolicy
metadata: { name: steal }
spec:
  target: { service: shop/orders, cluster: west }
  rules: [{ name: all, action: DENY, from: [{ cluster: north }] }]
`,
  );
  for (const c of ['east', 'west']) {
    nodes.push(await startNode({ pki, cluster: c, servers: [nats.url], registry: createRegistry() }));
  }
  // a gateway's admin API that knows demo/greeter in east and demo/greeter-v2 in west
  admin = new AdminServer({
    socketPath: f('admin.sock'),
    logger: silentLogger(),
    backend: {
      status: () => ({}),
      clusters: () => [],
      routes: () => ({}),
      stats: async () => ({}),
      services: () =>
        [
          ['greeter', 'east'],
          ['greeter-v2', 'west'],
        ].map(([name, cluster]) => ({
          namespace: 'demo',
          name,
          ports: [],
          exported: false,
          offers: [{ cluster, region: 'r', zone: 'z', weight: 1, stale: false, revision: 1, local: false }],
        })),
    },
  });
  await admin.start();
}, 60_000);

afterAll(async () => {
  await admin?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
  await nats?.stop();
  nats?.cleanup();
  dir.cleanup();
});

describe('meshfed policy', () => {
  test('apply --dry-run validates offline and reports every problem with its field; nothing is published', async () => {
    const s = io();
    const ok = await runCli(['policy', 'apply', '-f', f('canary.yaml'), '--dry-run', '--json'], s);
    expect(ok).toBe(0);
    expect(
      JSON.parse(s.out()).changes.map((c: { id: string; change: string }) => `${c.change} ${c.id}`),
    ).toEqual(['added TrafficSplit/greeter-canary', 'added AuthorizationPolicy/orders']);
    const bad = io();
    expect(await runCli(['policy', 'apply', '-f', f('bad.yaml'), '--dry-run', '--json'], bad)).toBe(1);
    const error = JSON.parse(bad.err()).error;
    expect(error.code).toBe('MESHFED_POLICY_INVALID');
    expect(
      error.details.problems.map((p: { document: string; path: string }) => `${p.document} ${p.path}`),
    ).toEqual([
      'bad.yaml#3 (RateLimit/r) spec.perSecond',
      'bad.yaml#1 (TrafficSplit/greeter-canary) spec.routes[0].backends',
    ]);
    expect(nodes.every((n) => n.policy.current().documents.length === 0)).toBe(true);
  });

  test('apply refuses a split to a service no cluster exports (against the catalog) and publishes nothing', async () => {
    const r = await policy(['apply', '-f', f('unknown.yaml'), '--admin', `unix:${f('admin.sock')}`]);
    expect(r.code).toBe(1);
    expect(r.err.code).toBe('MESHFED_POLICY_UNKNOWN_SERVICE');
    expect(r.err.details.problems[0].path).toBe('spec.routes[0].backends[1].service');
    expect(nodes.every((n) => adminRevision(n) === undefined)).toBe(true);
  });

  test('apply with no gateway answering a ping stops with MESHFED_POLICY_NO_GATEWAYS and publishes nothing', async () => {
    // a subject prefix no gateway listens on: nobody answers, and a revision built on nothing would have
    // replaced every document of the scope
    const published: string[] = [];
    const watch = await connect({ servers: nats.url });
    const sub = watch.subscribe('nobody.>', { callback: (_e, m) => void published.push(m.subject) });
    await watch.flush();
    try {
      const r = await policy([
        'apply',
        '-f',
        f('canary.yaml'),
        '--subject-prefix',
        'nobody',
        '--timeout',
        '400ms',
      ]);
      expect(r.code).toBe(1);
      expect(r.err.code).toBe('MESHFED_POLICY_NO_GATEWAYS');
      expect(r.err.message).toContain('nothing was published');
      await watch.flush();
      expect(published.filter((s) => s !== 'nobody.policy-ping')).toEqual([]);
      expect(published).toContain('nobody.policy-ping');
      expect(nodes.every((n) => adminRevision(n) === undefined)).toBe(true);
    } finally {
      sub.unsubscribe();
      await watch.close();
    }
  });

  test('apply signs, publishes and waits until every live gateway reports the revision', async () => {
    const r = await policy(['apply', '-f', f('canary.yaml'), '--admin', `unix:${f('admin.sock')}`]);
    expect(r.err).toBeUndefined();
    expect(r.code).toBe(0);
    expect(r.out.scope).toBe('admin');
    expect(r.out.gateways.missing).toEqual([]);
    expect(r.out.gateways.reached.sort()).toEqual(['east/gw-1', 'west/gw-1']);
    for (const n of nodes) expect(adminRevision(n)).toBe(r.out.revision);
    // applying the same again publishes nothing
    const again = await policy(['apply', '-f', f('canary.yaml')]);
    expect(again.code).toBe(0);
    expect(again.out.changes.every((c: { change: string }) => c.change === 'unchanged')).toBe(true);
    expect(adminRevision(nodes[0]!)).toBe(r.out.revision);
    // --resign publishes the same documents as a new revision (before the signing certificate expires)
    const resigned = await policy(['apply', '--resign']);
    expect(resigned.code).toBe(0);
    expect(resigned.out.revision).toBeGreaterThan(r.out.revision);
    expect(resigned.out.documents).toBe(2);
    for (const n of nodes) expect(adminRevision(n)).toBe(resigned.out.revision);
  });

  test('list --json and get show what is in force; diff names the changed fields (exit 3)', async () => {
    const list = await policy(['list'], { signer: 'none' });
    expect(list.code).toBe(0);
    expect(list.out.gateways).toHaveLength(2);
    expect(list.out.scopes).toHaveLength(1);
    expect(list.out.scopes[0].documents.map((d: { metadata: { name: string } }) => d.metadata.name)).toEqual([
      'greeter-canary',
      'orders',
    ]);
    const get = await policy(['get', 'TrafficSplit/greeter-canary'], { signer: 'none' });
    expect(get.out[0].document.spec.service).toBe('demo/greeter');
    const diff = await policy(['diff', '-f', f('canary-50.yaml')]);
    expect(diff.code).toBe(3);
    const changed = diff.out.changes.find((c: { id: string }) => c.id === 'TrafficSplit/greeter-canary');
    expect(changed.fields).toEqual([
      { path: 'spec.routes[0].backends[0].weight', before: 90, after: 50 },
      { path: 'spec.routes[0].backends[1].weight', before: 10, after: 50 },
    ]);
    expect((await policy(['diff', '-f', f('canary.yaml')])).code).toBe(0);
  });

  test('a cluster identity cannot sign policy for another cluster: refused before anything is published', async () => {
    const before = adminRevision(nodes[0]!);
    const r = await policy(['apply', '-f', f('other-cluster.yaml')], { signer: 'east' });
    expect(r.code).toBe(1);
    expect(r.err.code).toBe('MESHFED_POLICY_REJECTED');
    expect(r.err.details.reason).toBe('wrong_cluster');
    expect(nodes.every((n) => n.policy.current().scopes.length === 1 && adminRevision(n) === before)).toBe(
      true,
    );
  });

  test('explain: which rule decides, what split applies, and why', async () => {
    const allowed = await policy(
      [
        'explain',
        '--from',
        'spiffe://mesh.example/cluster/west/ns/shop/sa/web',
        '--to',
        'orders.shop',
        '--method',
        'GET',
      ],
      { signer: 'none' },
    );
    expect(allowed.code).toBe(0);
    expect(allowed.out.authorization.decision).toBe('ALLOW');
    expect(allowed.out.authorization.decidedBy).toBe('AuthorizationPolicy/orders#web-reads');
    // the reference reading and the gateway's own evaluation agree on every rule (a rule named differently
    // by the two once showed as "does not match as the gateway evaluates it (matches)")
    const deciding = allowed.out.authorization.rules.find((r: { rule: string }) => r.rule === 'web-reads');
    expect(deciding.matched).toBe(true);
    for (const r of allowed.out.authorization.rules) expect(r.why).not.toMatch(/as the gateway evaluates it/);
    const clusterOnly = await policy(
      ['explain', '--from', 'west', '--to', 'shop/orders', '--method', 'GET'],
      {
        signer: 'none',
      },
    );
    expect(clusterOnly.out.authorization.decision).toBe('DENY');
    expect(
      clusterOnly.out.authorization.rules.find((r: { rule: string }) => r.rule === 'web-reads').why,
    ).toMatch(/only its cluster is known/);
    const split = await policy(['explain', '--from', 'east', '--to', 'greeter.demo'], { signer: 'none' });
    expect(
      split.out.route.backends.map((b: { service: string; percent: number }) => [b.service, b.percent]),
    ).toEqual([
      ['demo/greeter', 90],
      ['demo/greeter-v2', 10],
    ]);
  });

  test('explain --method CONNECT: a TCP connection gets only the route and fault rule without an HTTP match', async () => {
    writeFileSync(
      f('tcp.yaml'),
      `apiVersion: meshfed.io/v1alpha1
kind: TrafficSplit
metadata: { name: db-canary }
spec:
  service: data/db
  routes:
    - name: no-header
      match: { headers: [{ name: x-v, present: false }] }
      backends: [{ service: data/db-v3, weight: 1 }]
    - name: canary
      backends: [{ service: data/db, weight: 9 }, { service: data/db-v2, weight: 1 }]
---
apiVersion: meshfed.io/v1alpha1
kind: FaultInjection
metadata: { name: db-faults }
spec:
  service: data/db
  rules:
    - name: no-header
      match: { headers: [{ name: x-chaos, present: false }] }
      abort: { httpStatus: 503, percentage: 100 }
    - name: slow
      delay: { fixed: 100ms, percentage: 50 }
`,
    );
    const explain = (method: string) =>
      policy(['explain', '--from', 'east', '--to', 'db.data', '--method', method, '-f', f('tcp.yaml')], {
        signer: 'none',
      });
    const http = await explain('GET');
    expect([http.out.route.route, http.out.fault.rule]).toEqual(['db-canary/no-header', 'no-header']);
    const tcp = await explain('CONNECT');
    expect([tcp.out.route.route, tcp.out.fault.rule]).toEqual(['db-canary/canary', 'slow']);
    expect(tcp.out.route.why).toMatch(/without an HTTP match/);
  });

  test('delete removes a document everywhere (as a real meshfed process)', async () => {
    const child = spawn(
      process.execPath,
      [
        'bin/meshfed.js',
        'policy',
        'delete',
        'TrafficSplit/greeter-canary',
        '--nats',
        nats.url,
        '--ca',
        f('bundle.crt'),
        '--cert',
        f('admin.crt'),
        '--key',
        f('admin.key'),
        '--discover',
        '1500ms',
        '--json',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(
      JSON.parse(out).changes.find((c: { id: string }) => c.id === 'TrafficSplit/greeter-canary').change,
    ).toBe('removed');
    await waitFor(() => nodes.every((n) => n.policy.current().byKind.TrafficSplit.length === 0), {
      what: 'the split to be gone everywhere',
    });
    expect(nodes.every((n) => n.policy.current().byKind.AuthorizationPolicy.length === 1)).toBe(true);
  });
});
