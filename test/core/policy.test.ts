import {
  buildPolicySet,
  type CatalogView,
  checkPolicyAgainstCatalog,
  tcpPolicyNotes,
  httpMatchCovers,
  isMeshfedError,
  MAX_POLICY_DOCUMENT_BYTES,
  type PolicyProblem,
  parsePolicyDocuments,
  patternCovers,
  type RemoteServiceInstance,
} from '../../core/index.ts';

const HEAD = 'apiVersion: meshfed.io/v1alpha1';

/** The problems of a refused text; fails the test when the text is accepted or refused with another code. */
function problemsOf(text: string, code = 'MESHFED_POLICY_INVALID'): PolicyProblem[] {
  try {
    parsePolicyDocuments(text, 'p.yaml');
  } catch (err) {
    expect(isMeshfedError(err) && err.code).toBe(code);
    return ((err as { details?: { problems?: PolicyProblem[] } }).details?.problems ?? []) as PolicyProblem[];
  }
  throw new Error('expected the policy to be refused');
}

const ALL_KINDS = `${HEAD}
kind: AuthorizationPolicy
metadata: { name: orders-authz }
spec:
  target: { service: shop/orders, cluster: west }
  rules:
    - name: deny-legacy
      action: DENY
      from: [{ namespace: legacy }]
    - name: web-reads
      action: ALLOW
      from: [{ cluster: east, namespace: shop, serviceAccount: "web-*" }]
      to: [{ methods: [get, HEAD], paths: [{ prefix: /orders }] }]
    - name: payments-grpc
      action: ALLOW
      from: [{ spiffeId: spiffe://mesh.example/cluster/north/ns/pay/sa/payments }]
      to: [{ grpc: { service: shop.Orders, method: Get } }]
---
${HEAD}
kind: TrafficSplit
metadata: { name: greeter }
spec:
  service: demo/greeter
  routes:
    - name: beta
      match: { headers: [{ name: X-User-Group, exact: beta }] }
      backends: [{ service: demo/greeter-v2, weight: 1 }]
    - name: canary
      backends:
        - { service: demo/greeter, weight: 90 }
        - { service: demo/greeter-v2, weight: 10, cluster: west }
---
${HEAD}
kind: FaultInjection
metadata: { name: greeter-chaos }
spec:
  service: demo/greeter
  rules:
    - name: testers
      match: { headers: [{ name: x-chaos, present: true }] }
      delay: { fixed: 100ms, percentage: 50 }
      abort: { grpcStatus: 14, percentage: 10 }
---
${HEAD}
kind: RateLimit
metadata: { name: orders-limit }
spec: { target: { service: shop/orders }, requests: 100, bucketPer: sourceCluster }
---
${HEAD}
kind: ResilienceOverride
metadata: { name: orders-resilience }
spec:
  service: shop/orders
  timeouts: { request: 2s }
  retry: { attempts: 3, retryOn: [5xx, reset], perTryTimeout: 500ms }
  outlier: { consecutiveFailures: 3 }
`;

describe('parsePolicyDocuments', () => {
  test('all five kinds parse, normalised (ms, lowercase headers, uppercase methods, defaults) and frozen', () => {
    const docs = parsePolicyDocuments(ALL_KINDS, 'all.yaml');
    expect(docs.map((d) => d.kind)).toEqual([
      'AuthorizationPolicy',
      'TrafficSplit',
      'FaultInjection',
      'RateLimit',
      'ResilienceOverride',
    ]);
    const [authz, split, fault, limit, resilience] = docs;
    expect(authz?.kind === 'AuthorizationPolicy' && authz.spec.rules[1]?.to?.[0]?.methods).toEqual([
      'GET',
      'HEAD',
    ]);
    expect(split?.kind === 'TrafficSplit' && split.spec.routes[0]?.match?.headers?.[0]?.name).toBe(
      'x-user-group',
    );
    expect(fault?.kind === 'FaultInjection' && fault.spec.rules[0]?.delay).toEqual({
      fixed: 100,
      percentage: 50,
    });
    expect(limit?.kind === 'RateLimit' && limit.spec).toEqual({
      target: { service: 'shop/orders' },
      requests: 100,
      interval: 1000,
      burst: 100,
      bucketPer: 'sourceCluster',
    });
    expect(resilience?.kind === 'ResilienceOverride' && resilience.spec.retry?.perTryTimeout).toBe(500);
    expect(Object.isFrozen(docs[0]?.spec)).toBe(true);
  });

  test('every problem of every document at once, each naming the document and the field', () => {
    const problems = problemsOf(`${HEAD}
kind: TrafficSplit
metadata: { name: a }
spec:
  service: demo/greeter
  weights: 3
  routes: [{ name: all, backends: [{ service: demo/greeter, weight: 1 }] }]
---
${HEAD}
kind: Canary
metadata: { name: b }
spec: {}
---
${HEAD}
kind: RateLimit
metadata: { name: c }
spec: { target: { service: orders }, requests: 0 }
`);
    expect(problems.map((p) => [p.document, p.path])).toEqual([
      ['p.yaml#1 (TrafficSplit/a)', 'spec.weights'],
      ['p.yaml#2 (Canary/b)', 'kind'],
      ['p.yaml#3 (RateLimit/c)', 'spec.target.service'],
      ['p.yaml#3 (RateLimit/c)', 'spec.requests'],
    ]);
    expect(problems[0]?.message).toMatch(/unknown field/);
  });

  test.each([
    [
      'a weight sum of 0',
      `kind: TrafficSplit
metadata: { name: s }
spec:
  service: demo/greeter
  routes: [{ name: all, backends: [{ service: demo/greeter, weight: 0 }, { service: demo/v2, weight: 0 }] }]`,
      'spec.routes[0].backends',
      'weight',
    ],
    [
      'a route after a catch-all',
      `kind: TrafficSplit
metadata: { name: s }
spec:
  service: demo/greeter
  routes:
    - { name: all, backends: [{ service: demo/greeter, weight: 1 }] }
    - { name: beta, match: { headers: [{ name: x-group, exact: beta }] }, backends: [{ service: demo/v2, weight: 1 }] }`,
      'spec.routes[1]',
      'unreachable',
    ],
    [
      'a route shadowed by a broader earlier match',
      `kind: TrafficSplit
metadata: { name: s }
spec:
  service: demo/greeter
  routes:
    - { name: api, match: { path: { prefix: /api } }, backends: [{ service: demo/v2, weight: 1 }] }
    - { name: api-v1, match: { path: { prefix: /api/v1 }, methods: [GET] }, backends: [{ service: demo/v1, weight: 1 }] }
    - { name: rest, backends: [{ service: demo/greeter, weight: 1 }] }`,
      'spec.routes[1]',
      'unreachable',
    ],
    [
      'an ALLOW that a DENY always beats',
      `kind: AuthorizationPolicy
metadata: { name: a }
spec:
  target: { service: shop/orders }
  rules:
    - { name: no-west, action: DENY, from: [{ cluster: west }] }
    - { name: west-web, action: ALLOW, from: [{ cluster: west, serviceAccount: web }] }`,
      'spec.rules[1]',
      'unreachable',
    ],
    [
      'two ALLOW rules where one contains the other',
      `kind: AuthorizationPolicy
metadata: { name: a }
spec:
  target: { service: shop/orders }
  rules:
    - { name: east-get, action: ALLOW, from: [{ cluster: east }], to: [{ methods: [GET] }] }
    - { name: east, action: ALLOW, from: [{ cluster: east }] }`,
      'spec.rules[0]',
      'overlap',
    ],
    [
      'an unreachable fault rule',
      `kind: FaultInjection
metadata: { name: f }
spec:
  service: demo/greeter
  rules:
    - { name: all, abort: { httpStatus: 503, percentage: 5 } }
    - { name: testers, match: { headers: [{ name: x-test, present: true }] }, delay: { fixed: 1s, percentage: 100 } }`,
      'spec.rules[1]',
      'unreachable',
    ],
    [
      'an abort with both statuses',
      `kind: FaultInjection
metadata: { name: f }
spec:
  service: demo/greeter
  rules: [{ name: all, abort: { httpStatus: 503, grpcStatus: 14, percentage: 5 } }]`,
      'spec.rules[0].abort',
      'schema',
    ],
    [
      'an unknown retry condition',
      `kind: ResilienceOverride
metadata: { name: r }
spec: { service: shop/orders, retry: { retryOn: [sometimes] } }`,
      'spec.retry.retryOn[0]',
      'schema',
    ],
  ])('refuses %s, naming the field', (_what, body, path, reason) => {
    const problems = problemsOf(`${HEAD}\n${body}\n`);
    expect(problems).toContainEqual(expect.objectContaining({ path, reason }));
  });

  test('two documents of one name, and two TrafficSplits for one service', () => {
    const doc = (name: string) => `${HEAD}
kind: TrafficSplit
metadata: { name: ${name} }
spec: { service: demo/greeter, routes: [{ name: all, backends: [{ service: demo/greeter, weight: 1 }] }] }`;
    const problems = problemsOf([doc('a'), doc('a'), doc('b')].join('\n---\n'));
    expect(problems.map((p) => [p.document, p.path, p.reason])).toEqual([
      ['p.yaml#2 (TrafficSplit/a)', 'metadata.name', 'duplicate'],
      ['p.yaml#2 (TrafficSplit/a)', 'spec.service', 'conflict'],
      ['p.yaml#3 (TrafficSplit/b)', 'spec.service', 'conflict'],
    ]);
  });

  test('a 10 MB text is refused unread; a document over the per-document limit is named', () => {
    const huge = `${HEAD}\nkind: RateLimit\nmetadata: { name: x, labels: { a: "${'x'.repeat(10 * 1024 * 1024)}" } }\n`;
    expect(problemsOf(huge, 'MESHFED_POLICY_TOO_LARGE')).toEqual([]);
    const big = `${HEAD}
kind: RateLimit
metadata: { name: ok }
spec: { target: { service: shop/orders }, requests: 1 }
---
# ${'x'.repeat(MAX_POLICY_DOCUMENT_BYTES)}
${HEAD}
kind: RateLimit
metadata: { name: big }
spec: { target: { service: shop/orders }, requests: 1 }
`;
    expect(problemsOf(big)).toEqual([expect.objectContaining({ document: 'p.yaml#2', reason: 'too-large' })]);
  });

  test('YAML errors and an empty text are problems too', () => {
    expect(problemsOf('kind: [')[0]?.reason).toBe('yaml');
    expect(problemsOf('')[0]?.message).toMatch(/no policy document/);
    expect(problemsOf(`${HEAD}\nkind: RateLimit\nkind: RateLimit\n`)[0]?.reason).toBe('yaml');
  });
});

describe('apply-time check against the catalog', () => {
  const catalog: Pick<CatalogView, 'instances'> = {
    instances: (namespace, name) =>
      namespace === 'demo' && name === 'greeter'
        ? [{ cluster: 'east' } as RemoteServiceInstance, { cluster: 'west' } as RemoteServiceInstance]
        : [],
  };
  test('a split to a service nobody exports, or to a cluster that does not export it', () => {
    const docs = parsePolicyDocuments(
      `${HEAD}
kind: TrafficSplit
metadata: { name: s }
spec:
  service: demo/greeter
  routes:
    - name: all
      backends:
        - { service: demo/greeter, weight: 1, cluster: east }
        - { service: demo/greeter-v9, weight: 1 }
        - { service: demo/greeter, weight: 1, cluster: north }
`,
      's.yaml',
    );
    expect(checkPolicyAgainstCatalog(docs, catalog, 's.yaml').map((p) => [p.path, p.reason])).toEqual([
      ['spec.routes[0].backends[1].service', 'unknown-service'],
      ['spec.routes[0].backends[2].cluster', 'unknown-service'],
    ]);
  });
});

describe('coverage (what makes a rule unreachable)', () => {
  test.each([
    ['*', 'web', true],
    ['web-*', 'web-1', true],
    ['web-*', 'web*', false],
    ['web-*', 'web-a*', true],
    ['*-prod', 'db-prod', true],
    ['web', 'web-*', false],
    ['web', undefined, false],
    [undefined, 'web', true],
  ] as const)('pattern %s covers %s: %s', (a, b, expected) => {
    expect(patternCovers(a, b)).toBe(expected);
  });

  test('a header present-condition covers an exact one, not the other way round', () => {
    const present = { headers: [{ name: 'x', present: true }] };
    const exact = { headers: [{ name: 'x', exact: 'beta' }] };
    expect(httpMatchCovers(present, exact)).toBe(true);
    expect(httpMatchCovers(exact, present)).toBe(false);
    expect(httpMatchCovers(undefined, exact)).toBe(true);
    expect(httpMatchCovers(exact, undefined)).toBe(false);
  });
});

describe('buildPolicySet', () => {
  test('indexes by destination service and kind; multi-valued kinds keep every document', () => {
    const docs = parsePolicyDocuments(ALL_KINDS, 'all.yaml');
    const set = buildPolicySet(docs, {
      revision: 3,
      scopes: [{ scope: 'admin', revision: 7, signer: 'spiffe://mesh.example/admin/alice', issuedAt: 1 }],
    });
    expect(set.revision).toBe(3);
    expect([...set.byService.keys()].sort()).toEqual(['demo/greeter', 'shop/orders']);
    const orders = set.byService.get('shop/orders')!;
    expect(orders.authorization.map((d) => d.metadata.name)).toEqual(['orders-authz']);
    expect(orders.rateLimits.map((d) => d.metadata.name)).toEqual(['orders-limit']);
    expect(orders.resilience?.metadata.name).toBe('orders-resilience');
    expect(set.byService.get('demo/greeter')?.faultInjection?.metadata.name).toBe('greeter-chaos');
    expect(set.byKind.TrafficSplit).toHaveLength(1);
    expect(Object.isFrozen(set)).toBe(true);
  });
});

describe('apply-time notes on TCP services', () => {
  const tcp = { name: 'db', port: 5432, protocol: 'tcp' } as const;
  const catalog: Pick<CatalogView, 'instances'> = {
    instances: (namespace, name) =>
      namespace === 'data' && name === 'db'
        ? [{ cluster: 'east', ports: [tcp] } as RemoteServiceInstance]
        : [],
  };
  const faults = (name: string, service: string) => `${HEAD}
kind: FaultInjection
metadata: { name: ${name} }
spec:
  service: ${service}
  rules:
    - name: by-header
      match: { headers: [{ name: x-chaos, present: true }] }
      abort: { httpStatus: 503, percentage: 100 }`;
  const docs = parsePolicyDocuments(
    `${HEAD}
kind: TrafficSplit
metadata: { name: db-split }
spec:
  service: data/db
  routes:
    - name: by-header
      match: { headers: [{ name: x-v, exact: "2" }] }
      backends: [{ service: data/db-v2, weight: 1 }]
    - name: canary
      backends: [{ service: data/db, weight: 9 }, { service: data/db-v2, weight: 1 }]
---
${faults('db-faults', 'data/db')}
---
${faults('web-faults', 'shop/web')}
`,
    'db.yaml',
  );

  test('routes and fault rules with an HTTP match are named for a service with a TCP port, with what TCP connections get instead', () => {
    const notes = tcpPolicyNotes(docs, catalog, 'db.yaml');
    expect(notes).toHaveLength(2);
    expect(notes[0]).toContain('TrafficSplit/db-split');
    expect(notes[0]).toContain('route by-header has an HTTP match');
    expect(notes[0]).toContain('take route canary');
    expect(notes[1]).toContain('FaultInjection/db-faults');
    expect(notes[1]).toContain('add a last fault rule without a match');
  });
});
