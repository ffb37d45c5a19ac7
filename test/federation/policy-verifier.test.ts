import { X509Certificate } from 'node:crypto';
import { createRoot, issueIntermediate, issueLeaf, TrustBundle } from '../../ca/index.ts';
import { createRegistry, type PolicySet } from '../../core/index.ts';
import {
  type JwsSigner,
  PolicyAgent,
  PolicyStore,
  POLICY_SCHEMA_VERSION,
  PolicyVerifier,
  subjects,
  type VerifiedBundle,
} from '../../federation/index.ts';
import { captureLogger } from '../doubles/log-capture.ts';
import { makePki, type Pki, signerOf, TD } from './helpers.ts';
import { allowFrom, bundle, issueAdmin, jwsOf, policyRejected, split } from './policy-helpers.ts';

let pki: Pki;
let admin: JwsSigner;
let verifier: PolicyVerifier;

beforeAll(async () => {
  pki = await makePki(['east', 'west']);
  admin = jwsOf(await issueAdmin(pki));
  verifier = new PolicyVerifier({
    trustDomain: TD,
    bundle: () => pki.bundle,
    maxClockSkew: 30_000,
    now: Date.now,
  });
});

const mine = (name: string) => allowFrom(name, 'shop/orders', 'north', 'east');

describe('PolicyVerifier: who may sign what', () => {
  test.each<[string, () => Promise<{ raw: string; subjectScope?: string }>, string]>([
    [
      'an admin, federation-wide',
      async () => bundle(admin, [split('s', 'shop/orders', [['shop/orders', 1]])]),
      'ok',
    ],
    [
      'a cluster, its own pinned service',
      async () => bundle(signerOf(pki, 'east'), [mine('a')], { scope: 'cluster:east' }),
      'ok',
    ],
    [
      'a gateway identity',
      async () =>
        bundle(jwsOf(await issueLeaf(pki.intermediates.get('east')!, { kind: 'gateway', name: 'gw' })), [
          mine('a'),
        ]),
      'wrong_identity',
    ],
    [
      'a workload identity',
      async () =>
        bundle(
          jwsOf(
            await issueLeaf(pki.intermediates.get('east')!, {
              kind: 'workload',
              namespace: 'shop',
              serviceAccount: 'web',
            }),
          ),
          [mine('a')],
        ),
      'wrong_identity',
    ],
    ['a cluster, federation-wide', async () => bundle(signerOf(pki, 'east'), [mine('a')]), 'wrong_scope'],
    [
      'an admin, in a cluster scope',
      async () => bundle(admin, [mine('a')], { scope: 'cluster:east' }),
      'wrong_scope',
    ],
    [
      'a cluster, in another cluster scope',
      async () => bundle(signerOf(pki, 'east'), [mine('a')], { scope: 'cluster:west' }),
      'wrong_scope',
    ],
    [
      'a cluster, for another cluster service',
      async () =>
        bundle(signerOf(pki, 'east'), [allowFrom('x', 'shop/orders', 'north', 'west')], {
          scope: 'cluster:east',
        }),
      'wrong_cluster',
    ],
    [
      'a cluster, for a service not pinned to it',
      async () =>
        bundle(signerOf(pki, 'east'), [allowFrom('x', 'shop/orders', 'north')], { scope: 'cluster:east' }),
      'wrong_cluster',
    ],
    [
      'a cluster, a kind only an admin may sign',
      async () =>
        bundle(signerOf(pki, 'east'), [split('s', 'shop/orders', [['shop/orders', 1]])], {
          scope: 'cluster:east',
        }),
      'kind_not_allowed',
    ],
    [
      'on the subject of another scope',
      async () => ({ ...bundle(admin, [mine('a')]), subjectScope: 'cluster:east' }),
      'wrong_scope',
    ],
    [
      'a root outside the bundle',
      async () => {
        const root = await createRoot({ trustDomain: TD });
        const inter = await issueIntermediate(root, { cluster: 'east' });
        return bundle(jwsOf(await issueLeaf(inter, { kind: 'federation' })), [mine('a')], {
          scope: 'cluster:east',
        });
      },
      'untrusted_chain',
    ],
  ])('%s', async (_what, make, expected) => {
    const { raw, subjectScope } = await make();
    const v = verifier.bundle(raw, subjectScope === undefined ? {} : { subjectScope });
    expect(v.ok ? 'ok' : v.reason).toBe(expected);
  });
});

describe('PolicyVerifier: what a bundle may hold', () => {
  test.each<[string, () => string, string]>([
    [
      'one valid and one invalid document: the whole revision is refused',
      () =>
        bundle(admin, [mine('good'), split('zero', 'demo/greeter', [['demo/greeter', 0]])], { raw: true })
          .raw,
      'invalid_policy',
    ],
    [
      'an unknown kind',
      () => bundle(admin, [{ apiVersion: 'meshfed.io/v1alpha1', kind: 'Nope' }], { raw: true }).raw,
      'invalid_policy',
    ],
    [
      'a revision far in the future',
      () => bundle(admin, [mine('a')], { revision: (Date.now() + 3_600_000) * 1000 }).raw,
      'revision_in_future',
    ],
    [
      'issued in the future',
      () => bundle(admin, [mine('a')], { issuedAt: Date.now() + 3_600_000 }).raw,
      'issued_in_future',
    ],
    ['schema version 2', () => admin.sign({ v: 2, type: 'policy' }), 'unsupported_version'],
    [
      'an unknown payload field',
      () =>
        admin.sign({ v: 1, type: 'policy', scope: 'admin', revision: 1, issuedAt: 1, documents: [], x: 1 }),
      'bad_payload',
    ],
    ['not a JWS', () => 'hello', 'not_jws'],
    [
      'a tampered payload',
      () => {
        const [h, , s] = bundle(admin, [mine('a')]).raw.split('.');
        return `${h}.${Buffer.from(JSON.stringify({ v: 1 })).toString('base64url')}.${s}`;
      },
      'bad_signature',
    ],
    ['over 1 MiB', () => 'x'.repeat(1024 * 1024 + 1), 'oversized'],
  ])('%s', (_what, make, expected) => {
    const v = verifier.bundle(make());
    expect(v.ok ? 'ok' : v.reason).toBe(expected);
  });

  test('once the admin certificate has expired, a bundle is refused over NATS but still loads from the file', () => {
    // signed now by a 24-hour admin certificate; received two days later
    const b = bundle(admin, [mine('a')]);
    const later = new PolicyVerifier({
      trustDomain: TD,
      bundle: () => pki.bundle,
      maxClockSkew: 30_000,
      now: () => Date.now() + 2 * 86_400_000,
    });
    const live = later.bundle(b.raw);
    expect(live.ok ? 'ok' : live.reason).toBe('certificate_expired');
    expect(later.bundle(b.raw, { chainAt: 'issuedAt' }).ok).toBe(true);
  });
});

describe('PolicyVerifier: state reports and the signers it remembers', () => {
  const report = (issuedAt: number) =>
    signerOf(pki, 'east').sign({
      v: POLICY_SCHEMA_VERSION,
      type: 'policy-state',
      cluster: 'east',
      gateway: 'east-gw',
      instance: 'i1',
      scopes: [],
      issuedAt,
    });

  test('a remembered signer is checked again once its certificate expires or the trust bundle changes', () => {
    const trust = TrustBundle.fromPem(pki.root.certPem);
    let now = Date.now();
    const v = new PolicyVerifier({
      trustDomain: TD,
      bundle: () => trust,
      maxClockSkew: 30_000,
      now: () => now,
    });
    const outcome = () => {
      const r = v.state(report(now), { subjectCluster: 'east' });
      return r.ok ? 'ok' : r.reason;
    };
    expect(outcome()).toBe('ok');
    // the second from the same signer: its chain is remembered
    expect(outcome()).toBe('ok');
    // past the signer's notAfter (and ca/'s allowance): refused, not answered from memory
    now = pki.leaves.get('east')!.notAfter.getTime() + 10 * 60_000;
    expect(outcome()).toBe('certificate_expired');
    now = Date.now();
    expect(outcome()).toBe('ok');
    // the root leaves the bundle: the next report is refused at once
    expect(trust.remove(new X509Certificate(pki.root.certPem).fingerprint256)).toBe(true);
    expect(outcome()).toBe('untrusted_chain');
  });
});

describe('PolicyStore: a revision applies whole, forward only', () => {
  function verified(o: { scope?: string; revision: number; name: string }): VerifiedBundle {
    const v = verifier.bundle(
      bundle(
        o.scope === undefined ? admin : signerOf(pki, 'east'),
        [o.scope ? mine(o.name) : allowFrom(o.name, 'shop/orders', 'west')],
        {
          revision: o.revision,
          ...(o.scope ? { scope: o.scope } : {}),
        },
      ).raw,
    );
    if (!v.ok) throw new Error(v.detail);
    return v;
  }

  test.each<[string, [number, string][], string[], number]>([
    [
      'newer replaces',
      [
        [10, 'a'],
        [11, 'b'],
      ],
      ['applied', 'applied'],
      11,
    ],
    [
      'older is a rollback',
      [
        [10, 'a'],
        [9, 'b'],
      ],
      ['applied', 'stale_revision'],
      10,
    ],
    [
      'the same revision, other bytes',
      [
        [10, 'a'],
        [10, 'b'],
      ],
      ['applied', 'conflicting_revision'],
      10,
    ],
  ])('%s', (_what, offers, results, inForce) => {
    const store = new PolicyStore({ log: captureLogger().log });
    const seen: PolicySet[] = [];
    store.onChange((s) => seen.push(s));
    expect(offers.map(([revision, name]) => store.offer(verified({ revision, name })))).toEqual(results);
    expect(store.current().scopes[0]?.revision).toBe(inForce);
    expect(seen).toHaveLength(results.filter((r) => r === 'applied').length);
  });

  test('the same bytes again is a duplicate; scopes combine', () => {
    const store = new PolicyStore({ log: captureLogger().log });
    const a = verified({ revision: 10, name: 'a' });
    expect(store.offer(a)).toBe('applied');
    const before = store.current();
    expect(store.offer(a)).toBe('duplicate');
    expect(store.current()).toBe(before);
    expect(store.offer(verified({ scope: 'cluster:east', revision: 5, name: 'e' }))).toBe('applied');
    expect(store.current().scopes.map((s) => `${s.scope}@${s.revision}`)).toEqual([
      'admin@10',
      'cluster:east@5',
    ]);
    expect(store.current().byService.get('shop/orders')?.authorization).toHaveLength(2);
    expect(store.current().revision).toBe(2);
  });
});

test('PolicyAgent: a refused bundle is counted every time, logged once, and changes nothing', async () => {
  const { log, lines } = captureLogger();
  const registry = createRegistry();
  const agent = new PolicyAgent({
    cluster: 'east',
    gateway: 'gw-1',
    instance: 'i1',
    subjects: subjects('meshfed'),
    verifier,
    stateDir: undefined,
    heartbeatInterval: 1000,
    signer: () => signerOf(pki, 'east'),
    send: () => false,
    emit: (e) => agent.handle(e as Parameters<PolicyAgent['handle']>[0]),
    log,
    registry,
    now: Date.now,
  });
  const message = (raw: string) => ({ subject: 'meshfed.policy.admin', data: Buffer.from(raw) }) as never;
  agent.bundleMessage(message(bundle(admin, [mine('a')], { revision: 100 }).raw));
  const inForce = agent.current();
  for (let i = 0; i < 3; i++)
    agent.bundleMessage(message(bundle(admin, [mine('b')], { revision: 50 + i }).raw));
  expect(await policyRejected(registry, 'stale_revision')).toBe(3);
  expect(lines.filter((l) => l.reason === 'stale_revision')).toHaveLength(1);
  expect(agent.current()).toBe(inForce);
});
