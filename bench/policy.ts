// Policy evaluation cost per request (issue 13): what the destination gateway's authorization layer does for
// one request — find the service's compiled rules, derive the call's facts (normalised path, gRPC method) and
// evaluate them — with 1, 100 and 10,000 rules in force, spread over 1 or 1,000 services (the cost must not
// grow with either), for two mixes of rules:
//   exact    every rule names one caller by its SPIFFE ID;
//   patterns what operators write: caller cluster + namespace prefixes (`team-7-*`), service-account suffixes
//            with path prefixes, SPIFFE ID prefixes, DENY rules on namespace prefixes and on path prefixes
//            without a caller, exact namespaces with methods.
// A last row runs the 10,000 pattern rules through a scan of every rule (policy explain's), for the ratio.
// The source gateway's split and fault draw is measured too. Rows are sampled in interleaved rounds (the host
// is shared: its noise falls on every row alike) and each figure is the median of the rounds'. Each evaluation is timed on its own
// (process.hrtime, so the figures include ~30-60 ns of timer overhead); half the calls match a rule, half
// match none (default-deny).
//   npm run bench:policy
//   npm run bench:policy -- --samples 500000 --rounds 10
// Figures only, never pass/fail; writes bench/results/policy.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { buildPolicySet, type PolicyDocument } from '../core/index.ts';
import {
  chooseRoute,
  compilePolicy,
  evaluateAuthorization,
  explainAuthorization,
  faultsFor,
  policyPath,
  requestCall,
} from '../gateway/policy/index.ts';
import { median, percentile, round } from './figures.ts';

const { values: args } = parseArgs({
  options: { samples: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '5' } },
});
const SAMPLES = Number(args.samples);
const ROUNDS = Math.max(1, Number(args.rounds));
const TD = 'meshfed.test';
const workload = (cluster: string, ns: string, sa: string) =>
  `spiffe://${TD}/cluster/${cluster}/ns/${ns}/sa/${sa}`;

type Mix = 'exact' | 'patterns';
type RawRule = { name: string; action: 'ALLOW' | 'DENY'; from?: object[]; to?: object[] };

/** Rule `i` of a mix (`c` is its caller's cluster). */
function rule(mix: Mix, i: number): RawRule {
  const c = `c${i % 3}`;
  if (mix === 'exact') {
    return {
      name: `r${i}`,
      action: 'ALLOW',
      from: [{ spiffeId: workload(c, `ns${i}`, `sa${i}`) }],
      ...(i % 2 ? { to: [{ methods: ['GET', 'POST'] }] } : {}),
    };
  }
  switch (i % 10) {
    case 0:
    case 1:
    case 2:
    case 3:
      return { name: `r${i}`, action: 'ALLOW', from: [{ cluster: c, namespace: `team${i}-*` }] };
    case 4:
    case 5:
      return {
        name: `r${i}`,
        action: 'ALLOW',
        from: [{ serviceAccount: `*-sa${i}` }],
        to: [{ paths: [{ prefix: `/api/v${i}/` }], methods: ['GET', 'POST'] }],
      };
    case 6:
      return {
        name: `r${i}`,
        action: 'ALLOW',
        from: [{ spiffeId: `spiffe://${TD}/cluster/${c}/ns/ns${i}/*` }],
      };
    case 7:
      return { name: `r${i}`, action: 'DENY', from: [{ namespace: `legacy${i}*` }] };
    case 8:
      return { name: `r${i}`, action: 'DENY', to: [{ paths: [{ prefix: `/admin/${i}/` }] }] };
    default:
      return {
        name: `r${i}`,
        action: 'ALLOW',
        from: [{ cluster: c, namespace: `ns${i}` }],
        to: [{ methods: ['GET'] }],
      };
  }
}

/** A call rule `i` decides (allows, or denies by a DENY rule). */
function matchingCall(mix: Mix, i: number): { caller: string; target: string } {
  const c = `c${i % 3}`;
  if (mix === 'exact') return { caller: workload(c, `ns${i}`, `sa${i}`), target: `/orders/${i}?page=2` };
  switch (i % 10) {
    case 4:
    case 5:
      return { caller: workload(c, 'apps', `app-sa${i}`), target: `/api/v${i}/items?page=2` };
    case 7:
      return { caller: workload(c, `legacy${i}`, 'web'), target: '/orders' };
    case 8:
      return { caller: workload(c, 'shop', 'web'), target: `/admin/${i}/users` };
    case 6:
    case 9:
      return { caller: workload(c, `ns${i}`, 'web'), target: `/orders/${i}` };
    default:
      return { caller: workload(c, `team${i}-web`, 'web'), target: `/orders/${i}` };
  }
}

/** `rules` rules of a mix over `services` services (round robin: service `i % services` has rule i). */
function authorizationDocs(mix: Mix, rules: number, services: number): PolicyDocument[] {
  const perService = new Map<number, RawRule[]>();
  for (let i = 0; i < rules; i++) {
    const s = i % services;
    const list = perService.get(s) ?? [];
    list.push(rule(mix, i));
    perService.set(s, list);
  }
  return [...perService].map(
    ([s, list]) =>
      ({
        apiVersion: 'meshfed.io/v1alpha1',
        kind: 'AuthorizationPolicy',
        metadata: { name: `svc${s}-access` },
        spec: { target: { service: `shop/svc${s}` }, rules: list },
      }) as PolicyDocument,
  );
}

/**
 * One row of the table, compiled and warmed up once; `sample(n)` times `n` evaluations. `scan`: the same
 * calls through explainAuthorization, which also tests every rule of the service (what `policy explain`
 * prints): the cost without the index, measured in the same run, on fewer samples.
 */
function prepare(mix: Mix, rules: number, services: number, scan = false) {
  const evaluate = scan ? explainAuthorization : evaluateAuthorization;
  const docs = authorizationDocs(mix, rules, services);
  const compiled = compilePolicy(buildPolicySet(docs, { revision: 1, scopes: [] }), 'dest');
  // a fixed sequence of calls, built before timing: half name a caller some rule allows, half nobody
  const calls = Array.from({ length: 4096 }, (_, k) => {
    const i = (k * 7919) % rules;
    const cluster = `c${i % 3}`;
    const call =
      k % 2 === 0
        ? matchingCall(mix, i)
        : { caller: workload(cluster, 'other', 'nobody'), target: `/orders/${k}` };
    return { key: `shop/svc${i % services}`, sourceCluster: cluster, method: 'GET', ...call };
  });
  let allowed = 0;
  let done = 0;
  const one = (c: (typeof calls)[number]) => {
    const authorization = compiled.services.get(c.key)?.authorization;
    const d = evaluate(
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
  for (let i = 0; i < (scan ? 500 : 50_000); i++) one(calls[i % calls.length]!);
  allowed = 0;
  return {
    mix,
    how: scan ? 'scan' : 'index',
    rules,
    services: Math.min(rules, services),
    /** a round's samples: `n` on the index, a fiftieth as many on the scan */
    sample(n: number): number[] {
      const count = scan ? Math.max(100, Math.floor(n / 50)) : n;
      const ns = new Float64Array(count);
      for (let i = 0; i < count; i++) {
        const c = calls[done++ % calls.length]!;
        const t0 = process.hrtime.bigint();
        one(c);
        ns[i] = Number(process.hrtime.bigint() - t0);
      }
      return Array.from(ns).sort((a, b) => a - b);
    },
    allowedShare: () => round(allowed / Math.max(1, done)),
  };
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
  `policy evaluation per request, ${SAMPLES} samples a row in ${ROUNDS} interleaved rounds (the scan a fiftieth); ${cpus()[0]?.model ?? 'cpu'} × ${cpus().length}, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
);
// every row sampled in each round, rows interleaved, so the host's noise falls on all of them alike; a row's
// figure is the median of its rounds' percentiles (the spread of its p99 is printed beside it)
const table: ReturnType<typeof prepare>[] = [];
for (const mix of ['exact', 'patterns'] as const)
  for (const services of [1, 1000])
    for (const rules of [1, 100, 10_000]) table.push(prepare(mix, rules, services));
// the same 10,000 pattern rules on one service, every rule tested: what the index saves
table.push(prepare('patterns', 10_000, 1, true));
const rounds = table.map(() => [] as { p50: number; p99: number; p999: number }[]);
for (let r = 0; r < ROUNDS; r++) {
  table.forEach((t, i) => {
    const sorted = t.sample(Math.ceil(SAMPLES / ROUNDS));
    rounds[i]!.push({
      p50: percentile(sorted, 50) / 1000,
      p99: percentile(sorted, 99) / 1000,
      p999: percentile(sorted, 99.9) / 1000,
    });
  });
}
const rows = table.map((t, i) => {
  const of = (k: 'p50' | 'p99' | 'p999') => rounds[i]!.map((x) => x[k]);
  const row = {
    mix: t.mix,
    how: t.how,
    rules: t.rules,
    services: t.services,
    rounds: ROUNDS,
    p50_us: round(median(of('p50'))),
    p99_us: round(median(of('p99'))),
    p99_min_us: round(Math.min(...of('p99'))),
    p99_max_us: round(Math.max(...of('p99'))),
    p999_us: round(median(of('p999'))),
    allowed_share: t.allowedShare(),
  };
  console.log(
    `authorization, ${t.mix.padEnd(8)} ${t.how.padEnd(5)}  rules ${String(t.rules).padStart(6)}  services ${String(t.services).padStart(5)}  p50 ${row.p50_us.toFixed(2).padStart(7)} µs  p99 ${row.p99_us.toFixed(2).padStart(7)} µs (${row.p99_min_us.toFixed(2)}–${row.p99_max_us.toFixed(2)})  p99.9 ${row.p999_us.toFixed(2).padStart(8)} µs`,
  );
  return row;
});
const source = measureSource();
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/policy.json',
  `${JSON.stringify({ samples: SAMPLES, rounds: ROUNDS, loadavg: loadavg(), authorization: rows, source }, null, 2)}\n`,
);
