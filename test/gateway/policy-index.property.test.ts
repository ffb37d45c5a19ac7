import fc from 'fast-check';
import { parseSpiffeId } from '../../ca/index.ts';
import type { AuthorizationPolicy, AuthorizationRule, CallerMatch, RequestMatch } from '../../core/index.ts';
import {
  type AuthorizationCall,
  compileAuthorization,
  evaluateAuthorization,
  explainAuthorization,
  grpcCall,
} from '../../gateway/policy/index.ts';
import { DIMENSIONS, type IndexKey, RuleIndex } from '../../gateway/policy/rule-index.ts';

// The indexed evaluation (rules found by caller part, path and gRPC name) must decide exactly like a plain
// scan of every rule, for any policy and any call, including calls whose facts are partly unknown.

const TD = 'meshfed.test';
const CLUSTERS = ['a', 'ab', 'b'];
const NAMESPACES = ['shop', 'shop-dev', 'pay', 'payments'];
const ACCOUNTS = ['web', 'web-1', 'api', 'batch-api'];
const PATHS = ['/', '/orders', '/orders/7', '/ordersx', '/pkg.Svc/Get', '/pkg.Svc/Put', '/admin/x', ''];
const PORTS = [80, 8080, 9000];
const wl = (c: string, ns: string, sa: string) => `spiffe://${TD}/cluster/${c}/ns/${ns}/sa/${sa}`;
const SPIFFE_IDS = [
  wl('a', 'shop', 'web'),
  wl('ab', 'pay', 'api'),
  wl('b', 'shop-dev', 'web-1'),
  `spiffe://${TD}/cluster/a/gateway/gw-1`,
];

/** Every pattern the schema allows over these values: exact, `*`, each prefix* and each *suffix. */
function patterns(values: readonly string[]): string[] {
  const out = new Set<string>(['*']);
  for (const v of values) {
    out.add(v);
    for (let i = 1; i < v.length; i++) {
      out.add(`${v.slice(0, i)}*`);
      out.add(`*${v.slice(i)}`);
    }
  }
  return [...out];
}

const pattern = (values: readonly string[]) => fc.constantFrom(...patterns(values));
const callerArb: fc.Arbitrary<CallerMatch> = fc
  .record(
    {
      spiffeId: pattern(SPIFFE_IDS),
      cluster: pattern(CLUSTERS),
      namespace: pattern(NAMESPACES),
      serviceAccount: pattern(ACCOUNTS),
    },
    { requiredKeys: [] },
  )
  .filter((c) => Object.keys(c).length > 0);
const pathArb = fc.oneof(
  fc.constantFrom(...PATHS.filter((p) => p !== '')).map((exact) => ({ exact })),
  fc.constantFrom('/', '/o', '/orders', '/orders/', '/pkg.Svc/', '/admin').map((prefix) => ({ prefix })),
);
const requestArb: fc.Arbitrary<RequestMatch> = fc
  .record(
    {
      methods: fc.subarray(['GET', 'POST', 'CONNECT'], { minLength: 1 }),
      paths: fc.array(pathArb, { minLength: 1, maxLength: 3 }),
      ports: fc.subarray(PORTS, { minLength: 1 }),
      grpc: fc
        .record(
          { service: fc.constantFrom('pkg.Svc', 'pkg.Other'), method: fc.constantFrom('Get', 'Put') },
          {
            requiredKeys: [],
          },
        )
        .filter((g) => Object.keys(g).length > 0),
    },
    { requiredKeys: [] },
  )
  .filter((t) => Object.keys(t).length > 0);
const ruleArb = (i: number): fc.Arbitrary<AuthorizationRule> =>
  fc
    .record(
      {
        action: fc.constantFrom<'ALLOW' | 'DENY'>('ALLOW', 'ALLOW', 'DENY'),
        from: fc.array(callerArb, { minLength: 1, maxLength: 3 }),
        to: fc.array(requestArb, { minLength: 1, maxLength: 2 }),
      },
      { requiredKeys: ['action'] },
    )
    .map((r) => ({ name: `r${i}`, ...r }));
const rulesArb = fc
  .integer({ min: 1, max: 12 })
  .chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => ruleArb(i))));

const callArb: fc.Arbitrary<AuthorizationCall> = fc
  .record(
    {
      caller: fc.constantFrom(
        ...SPIFFE_IDS,
        wl('a', 'payments', 'batch-api'),
        wl('b', 'shop', 'api'),
        `spiffe://${TD}/cluster/b/anonymous`,
        '',
      ),
      sourceCluster: fc.constantFrom(...CLUSTERS),
      method: fc.constantFrom('GET', 'POST', 'CONNECT'),
      path: fc.constantFrom(...PATHS),
      port: fc.constantFrom(...PORTS),
      grpc: fc.boolean(),
    },
    { requiredKeys: [] },
  )
  .map(({ grpc, ...call }) => {
    const g = grpc && call.path !== undefined ? grpcCall(call.path) : undefined;
    return { ...call, ...(g ? { grpc: g } : {}) };
  });

type Tri = 'no' | 'yes' | 'unknown';
const and = (a: Tri, b: Tri): Tri =>
  a === 'no' || b === 'no' ? 'no' : a === 'yes' && b === 'yes' ? 'yes' : 'unknown';
const any = (xs: Tri[]): Tri => (xs.includes('yes') ? 'yes' : xs.includes('unknown') ? 'unknown' : 'no');

/** Plain reading of docs/policy.md, rule by rule in order; an unknown fact is neither a match nor a miss. */
function reference(rules: readonly AuthorizationRule[], call: AuthorizationCall) {
  const known = call.caller !== undefined || call.sourceCluster !== undefined;
  let id: ReturnType<typeof parseSpiffeId> | undefined;
  try {
    id = call.caller ? parseSpiffeId(call.caller) : undefined;
  } catch {
    id = undefined;
  }
  const facts: Record<keyof CallerMatch, string | undefined> = {
    spiffeId: id?.kind === 'workload' || id?.kind === 'gateway' ? call.caller : undefined,
    cluster: call.sourceCluster,
    namespace: id?.kind === 'workload' ? id.namespace : undefined,
    serviceAccount: id?.kind === 'workload' ? id.serviceAccount : undefined,
  };
  const pat = (p: string, v: string | undefined): Tri => {
    if (!known) return 'unknown';
    if (v === undefined) return 'no';
    const ok =
      p === '*' ||
      (p.endsWith('*') ? v.startsWith(p.slice(0, -1)) : p.startsWith('*') ? v.endsWith(p.slice(1)) : v === p);
    return ok ? 'yes' : 'no';
  };
  const fact = <T>(v: T | undefined, ok: (v: T) => boolean): Tri =>
    v === undefined ? 'unknown' : ok(v) ? 'yes' : 'no';
  const from = (c: CallerMatch): Tri =>
    (Object.keys(c) as (keyof CallerMatch)[]).reduce<Tri>((m, k) => and(m, pat(c[k]!, facts[k])), 'yes');
  const to = (t: RequestMatch): Tri => {
    let m: Tri = 'yes';
    if (t.methods)
      m = and(
        m,
        fact(call.method, (v) => t.methods!.includes(v)),
      );
    if (t.ports)
      m = and(
        m,
        fact(call.port, (v) => t.ports!.includes(v)),
      );
    if (t.paths)
      m = and(
        m,
        fact(call.path, (v) =>
          t.paths!.some((p) => (p.exact !== undefined ? v === p.exact : v.startsWith(p.prefix!))),
        ),
      );
    if (t.grpc)
      m = and(
        m,
        fact(
          call.method,
          () =>
            call.grpc !== undefined &&
            (t.grpc!.service === undefined || t.grpc!.service === call.grpc.service) &&
            (t.grpc!.method === undefined || t.grpc!.method === call.grpc.method),
        ),
      );
    return m;
  };
  const results = rules.map((r) => ({
    rule: r,
    m: and(r.from ? any(r.from.map(from)) : 'yes', r.to ? any(r.to.map(to)) : 'yes'),
  }));
  const matched = results.filter((x) => x.m === 'yes').map((x) => `p/${x.rule.name}`);
  const undecided = results.filter((x) => x.m === 'unknown').map((x) => `p/${x.rule.name}`);
  // fail closed: a DENY that might match denies; only an ALLOW that surely matches admits
  const deny = results.find((x) => x.rule.action === 'DENY' && x.m !== 'no');
  if (deny) return { allowed: false, rule: `p/${deny.rule.name}`, matched, undecided };
  if (!rules.some((r) => r.action === 'ALLOW')) return { allowed: true, rule: undefined, matched, undecided };
  const allow = results.find((x) => x.rule.action === 'ALLOW' && x.m === 'yes');
  return {
    allowed: allow !== undefined,
    rule: allow ? `p/${allow.rule.name}` : 'default-deny',
    matched,
    undecided,
  };
}

function compile(rules: readonly AuthorizationRule[]) {
  const doc: AuthorizationPolicy = {
    apiVersion: 'meshfed.io/v1alpha1',
    kind: 'AuthorizationPolicy',
    metadata: { name: 'p' },
    spec: { target: { service: 'shop/api' }, rules },
  };
  return compileAuthorization([doc]);
}

/** Evaluates every call with the compiled rules and with the reference; `explain` also compares its lists. */
function decideAlike(
  rules: readonly AuthorizationRule[],
  calls: readonly AuthorizationCall[],
  explain: boolean,
) {
  const compiled = compile(rules);
  for (const call of calls) {
    const want = reference(rules, call);
    const d = evaluateAuthorization(compiled, call);
    expect({ call, allowed: d.allowed, rule: d.rule }).toEqual({
      call,
      allowed: want.allowed,
      rule: want.rule,
    });
    if (!explain) continue;
    const e = explainAuthorization(compiled, call);
    expect(e.matched.map((m) => m.rule)).toEqual(want.matched);
    expect(e.undecided.map((m) => m.rule)).toEqual(want.undecided);
  }
}

test('the indexed evaluation decides like a scan of every rule, and explain lists every rule that matches', () => {
  fc.assert(
    fc.property(rulesArb, fc.array(callArb, { minLength: 1, maxLength: 20 }), (rules, calls) =>
      decideAlike(rules, calls, true),
    ),
    { numRuns: 1000, seed: 13 },
  );
});

test('hundreds of rules sharing keys: the index still finds the first matching rule of each action', () => {
  // drawn from a small universe, so many rules share a key and the index's lists hold many rules
  fc.assert(
    fc.property(
      fc.array(ruleArb(0), { minLength: 200, maxLength: 400 }),
      fc.array(callArb, { minLength: 50, maxLength: 50 }),
      (raw, calls) =>
        decideAlike(
          raw.map((r, i) => ({ ...r, name: `r${i}` })),
          calls,
          false,
        ),
    ),
    { numRuns: 25, seed: 7 },
  );
});

test('the index returns exactly the rules whose key a value equals, starts with or ends with (radix trees, edges split)', () => {
  const text = fc.string({ unit: fc.constantFrom('a', 'b', 'c'), minLength: 1, maxLength: 6 });
  const keyArb = fc.record({
    kind: fc.constantFrom<IndexKey['kind']>('exact', 'prefix', 'suffix'),
    key: text,
  });
  fc.assert(
    fc.property(
      fc.array(keyArb, { minLength: 1, maxLength: 30 }),
      fc.array(text, { maxLength: 10 }),
      (keys, values) => {
        // one rule per key, one entry per rule: each rule is filed under its key alone
        const index = new RuleIndex(
          keys.map((k, rule) => ({ rule, keys: [[[[{ dim: 'namespace' as const, ...k }]]]] })),
        );
        for (const value of values) {
          const facts = DIMENSIONS.map((d) => (d === 'namespace' ? value : undefined));
          const found = new Set(index.candidates(facts).flat());
          const want = keys.flatMap((k, rule) =>
            (
              k.kind === 'exact'
                ? value === k.key
                : k.kind === 'prefix'
                  ? value.startsWith(k.key)
                  : value.endsWith(k.key)
            )
              ? [rule]
              : [],
          );
          expect({ value, found: [...found].sort((a, b) => a - b) }).toEqual({ value, found: want });
        }
      },
    ),
    { numRuns: 2000, seed: 5 },
  );
});
