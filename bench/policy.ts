// Policy evaluation cost per request (issue 13): what the destination gateway's authorization layer does for
// one request — find the service's compiled rules, derive the call's facts (normalised path, gRPC method) and
// evaluate them — with 1, 100 and 10,000 rules in force, and the same 10,000 rules spread over 10,000
// services (the cost must not grow with the number of services). A last row shows the worst case the index
// cannot help: 10,000 rules on one service that all use patterns, so every rule is tested. The source
// gateway's split and fault draw is measured too. Each evaluation is timed on its own (process.hrtime, so the
// figures include ~30-60 ns of timer overhead); half the calls match a rule, half match none (default-deny).
//   npm run bench:policy
//   npm run bench:policy -- --samples 500000
// Figures only, never pass/fail; writes bench/results/policy.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { buildPolicySet, type PolicyDocument } from '../core/index.ts';
import {
  chooseRoute,
  compilePolicy,
  evaluateAuthorization,
  faultsFor,
  policyPath,
  requestCall,
} from '../gateway/policy/index.ts';
import { percentile, round } from './figures.ts';

const { values: args } = parseArgs({ options: { samples: { type: 'string', default: '200000' } } });
const SAMPLES = Number(args.samples);
const TD = 'meshfed.test';
const workload = (cluster: string, ns: string, sa: string) =>
  `spiffe://${TD}/cluster/${cluster}/ns/${ns}/sa/${sa}`;

type Shape = 'exact-ids' | 'patterns';

/** `rules` ALLOW rules over `services` services (round robin), each naming one caller exactly or by pattern. */
function authorizationDocs(rules: number, services: number, shape: Shape): PolicyDocument[] {
  const perService = new Map<number, { name: string; action: 'ALLOW'; from: object[]; to?: object[] }[]>();
  for (let i = 0; i < rules; i++) {
    const s = i % services;
    const list = perService.get(s) ?? [];
    const from =
      shape === 'exact-ids'
        ? [{ spiffeId: workload(`c${i % 3}`, `ns${i}`, `sa${i}`) }]
        : [{ cluster: `c${i % 3}`, namespace: `ns${i}*`, serviceAccount: `*sa${i}` }];
    list.push({
      name: `r${i}`,
      action: 'ALLOW',
      from,
      ...(i % 2 ? { to: [{ methods: ['GET', 'POST'] }] } : {}),
    });
    perService.set(s, list);
  }
  const out: PolicyDocument[] = [];
  for (const [s, list] of perService) {
    out.push({
      apiVersion: 'meshfed.io/v1alpha1',
      kind: 'AuthorizationPolicy',
      metadata: { name: `svc${s}-access` },
      spec: { target: { service: `shop/svc${s}` }, rules: list },
    } as PolicyDocument);
  }
  return out;
}

function measure(label: string, docs: PolicyDocument[], rules: number, services: number) {
  const compiled = compilePolicy(buildPolicySet(docs, { revision: 1, scopes: [] }), 'dest');
  // a fixed sequence of calls, built before timing: half name a caller some rule allows, half nobody
  const calls = Array.from({ length: 4096 }, (_, k) => {
    const i = (k * 7919) % rules;
    const matching = k % 2 === 0;
    const cluster = `c${i % 3}`;
    return {
      key: `shop/svc${i % services}`,
      caller: matching ? workload(cluster, `ns${i}`, `sa${i}`) : workload(cluster, 'other', 'nobody'),
      sourceCluster: cluster,
      method: 'GET',
      target: `/orders/${k}?page=2`,
    };
  });
  let allowed = 0;
  const one = (c: (typeof calls)[number]) => {
    const authorization = compiled.services.get(c.key)?.authorization;
    const d = evaluateAuthorization(
      authorization,
      requestCall({
        caller: c.caller,
        sourceCluster: c.sourceCluster,
        method: c.method,
        path: policyPath(c.target),
        port: 8080,
        grpc: false,
      }),
    );
    if (d.allowed) allowed++;
  };
  for (let i = 0; i < 50_000; i++) one(calls[i % calls.length]!);
  allowed = 0;
  const ns = new Float64Array(SAMPLES);
  for (let i = 0; i < SAMPLES; i++) {
    const c = calls[i % calls.length]!;
    const t0 = process.hrtime.bigint();
    one(c);
    ns[i] = Number(process.hrtime.bigint() - t0);
  }
  const sorted = Array.from(ns).sort((a, b) => a - b);
  const row = {
    scenario: label,
    rules,
    services,
    p50_us: round(percentile(sorted, 50) / 1000),
    p99_us: round(percentile(sorted, 99) / 1000),
    p999_us: round(percentile(sorted, 99.9) / 1000),
    allowed_share: round(allowed / SAMPLES),
  };
  console.log(
    `${label.padEnd(44)} rules ${String(rules).padStart(6)}  services ${String(services).padStart(6)}  p50 ${row.p50_us.toFixed(2).padStart(6)} µs  p99 ${row.p99_us.toFixed(2).padStart(6)} µs  p99.9 ${row.p999_us.toFixed(2).padStart(6)} µs`,
  );
  return row;
}

function measureSource() {
  const docs = [
    {
      apiVersion: 'meshfed.io/v1alpha1',
      kind: 'TrafficSplit',
      metadata: { name: 'orders-split' },
      spec: {
        service: 'shop/orders',
        routes: [
          {
            name: 'beta',
            match: { headers: [{ name: 'x-user-group', exact: 'beta' }] },
            backends: [{ service: 'shop/orders-v2', weight: 1 }],
          },
          {
            name: 'canary',
            backends: [
              { service: 'shop/orders', weight: 90 },
              { service: 'shop/orders-v2', weight: 10 },
            ],
          },
        ],
      },
    },
    {
      apiVersion: 'meshfed.io/v1alpha1',
      kind: 'FaultInjection',
      metadata: { name: 'orders-faults' },
      spec: {
        service: 'shop/orders',
        rules: [
          {
            name: 'test',
            match: { headers: [{ name: 'x-fault', exact: 'on' }] },
            delay: { fixed: 100, percentage: 50 },
          },
        ],
      },
    },
  ] as unknown as PolicyDocument[];
  const compiled = compilePolicy(buildPolicySet(docs, { revision: 1, scopes: [] }), 'src');
  const headers = [{ 'x-user-group': 'beta' }, { 'x-user-group': 'alpha', 'x-fault': 'on' }, {}];
  const one = (i: number) => {
    const svc = compiled.services.get('shop/orders')!;
    const req = { method: 'GET', path: policyPath('/orders/1'), headers: headers[i % 3]! };
    faultsFor(svc.faults, req, Math.random);
    chooseRoute(svc.split, req, Math.random);
  };
  for (let i = 0; i < 50_000; i++) one(i);
  const ns = new Float64Array(SAMPLES);
  for (let i = 0; i < SAMPLES; i++) {
    const t0 = process.hrtime.bigint();
    one(i);
    ns[i] = Number(process.hrtime.bigint() - t0);
  }
  const sorted = Array.from(ns).sort((a, b) => a - b);
  const row = {
    scenario: 'source: fault draw + split choice (2 routes)',
    p50_us: round(percentile(sorted, 50) / 1000),
    p99_us: round(percentile(sorted, 99) / 1000),
  };
  console.log(`${row.scenario.padEnd(44)} p50 ${row.p50_us.toFixed(2)} µs  p99 ${row.p99_us.toFixed(2)} µs`);
  return row;
}

console.log(
  `policy evaluation per request, ${SAMPLES} samples each; ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
const rows = [
  measure('authorization, exact SPIFFE IDs, one service', authorizationDocs(1, 1, 'exact-ids'), 1, 1),
  measure('authorization, exact SPIFFE IDs, one service', authorizationDocs(100, 1, 'exact-ids'), 100, 1),
  measure(
    'authorization, exact SPIFFE IDs, one service',
    authorizationDocs(10_000, 1, 'exact-ids'),
    10_000,
    1,
  ),
  measure(
    'authorization, exact SPIFFE IDs, 100 services',
    authorizationDocs(10_000, 100, 'exact-ids'),
    10_000,
    100,
  ),
  measure(
    'authorization, exact SPIFFE IDs, 10,000 svcs',
    authorizationDocs(10_000, 10_000, 'exact-ids'),
    10_000,
    10_000,
  ),
  measure('authorization, patterns, 100 services', authorizationDocs(10_000, 100, 'patterns'), 10_000, 100),
  measure('authorization, patterns (scan), one service', authorizationDocs(10_000, 1, 'patterns'), 10_000, 1),
];
const source = measureSource();
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/policy.json',
  `${JSON.stringify({ samples: SAMPLES, loadavg: loadavg(), authorization: rows, source }, null, 2)}\n`,
);
