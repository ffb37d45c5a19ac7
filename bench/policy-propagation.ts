/**
 * Time from `policy apply` (the signed bundle published on one NATS cluster) to enforcement at every gateway of a
 * 3-cluster NATS supercluster (issue 13's goal: p99 ≤ 1 s), and to the moment the applying side has seen every
 * gateway's signed state report (what `meshfed policy apply` waits for). Real nats-server processes, real
 * certificates; the gateways are federation nodes in this process, each verifying every bundle itself.
 *
 *   npm run bench:policy-propagation
 *   npm run bench:policy-propagation -- --applies 100 --per-cluster 3 --documents 500
 *
 * Prints figures (median, p99, max); never pass/fail.
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { startNatsSupercluster } from '../cli/demo/nats-topology.ts';
import { ADMIN_POLICY_SCOPE, createRegistry, type PolicySet } from '../core/index.ts';
import { type FederationNode, PolicyClient, PolicyVerifier, subjects } from '../federation/index.ts';
import { makePki, startNode, TD } from '../test/federation/helpers.ts';
import { allowFrom, bundle, issueAdmin, jwsOf, split } from '../test/federation/policy-helpers.ts';
import { median, percentile, round } from './figures.ts';

const { values: args } = parseArgs({
  options: {
    applies: { type: 'string', default: '50' },
    'per-cluster': { type: 'string', default: '2' },
    documents: { type: 'string', default: '100' },
  },
});
const APPLIES = Number(args.applies);
const PER_CLUSTER = Number(args['per-cluster']);
const DOCUMENTS = Number(args.documents);
const CLUSTERS = ['east', 'west', 'north'];

function adminRevision(set: PolicySet): number {
  return set.scopes.find((s) => s.scope === ADMIN_POLICY_SCOPE)?.revision ?? 0;
}

async function main(): Promise<void> {
  const [sc, pki] = await Promise.all([
    startNatsSupercluster({ clusters: CLUSTERS.map((name) => ({ name })) }),
    makePki(CLUSTERS),
  ]);
  const nodes: FederationNode[] = [];
  const nc = await connect({ servers: sc.cluster('east').urls });
  try {
    for (const c of CLUSTERS) {
      for (let i = 0; i < PER_CLUSTER; i++) {
        nodes.push(
          await startNode({ pki, cluster: c, servers: sc.cluster(c).urls, registry: createRegistry() }),
        );
      }
    }
    const admin = jwsOf(await issueAdmin(pki));
    const client = new PolicyClient({
      nc,
      subjects: subjects('meshfed'),
      verifier: new PolicyVerifier({
        trustDomain: TD,
        bundle: () => pki.bundle,
        maxClockSkew: 30_000,
        now: Date.now,
      }),
    });
    let gateways = await client.discover(500);
    for (let tries = 0; gateways.length < nodes.length && tries < 40; tries++)
      gateways = await client.discover(500);
    // the documents that stay the same on every apply: the bundle carries them all, as a real scope does
    const fixed = Array.from({ length: Math.max(0, DOCUMENTS - 1) }, (_, i) =>
      allowFrom(`svc-${i}`, `shop/svc-${i}`, CLUSTERS[i % 3]!),
    );
    const enforced: number[] = [];
    const reported: number[] = [];
    let bytes = 0;
    for (let i = 1; i <= APPLIES; i++) {
      const canary = i % 100;
      const b = bundle(admin, [
        split('greeter-canary', 'demo/greeter', [
          ['demo/greeter', 100 - canary],
          ['demo/greeter-v2', Math.max(1, canary)],
        ]),
        ...fixed,
      ]);
      bytes = b.raw.length;
      const seen = nodes.map(
        (n) =>
          new Promise<number>((resolve) => {
            if (adminRevision(n.policy.current()) >= b.revision) return resolve(performance.now());
            const off = n.policy.onChange((set) => {
              if (adminRevision(set) < b.revision) return;
              off();
              resolve(performance.now());
            });
          }),
      );
      const t0 = performance.now();
      const wait = await client.waitForRevision({
        scope: ADMIN_POLICY_SCOPE,
        revision: b.revision,
        publish: b.raw,
        gateways,
        timeoutMs: 10_000,
        repingMs: 1_000,
      });
      const t1 = performance.now();
      const last = Math.max(...(await Promise.all(seen)));
      if (wait.missing.length > 0) console.warn(`apply ${i}: ${wait.missing.length} gateways did not report`);
      enforced.push(last - t0);
      reported.push(t1 - t0);
    }
    const line = (what: string, xs: number[]) => {
      const sorted = [...xs].sort((a, b) => a - b);
      console.log(
        `${what.padEnd(44)} median ${round(median(xs))} ms   p99 ${round(percentile(sorted, 99))} ms   max ${round(sorted[sorted.length - 1]!)} ms`,
      );
    };
    console.log(
      `policy propagation: ${APPLIES} applies, ${nodes.length} gateways (${PER_CLUSTER} per cluster) on a 3-cluster NATS supercluster, ${DOCUMENTS} documents per revision (${Math.round(bytes / 1024)} KiB signed), ${cpus().length} CPUs`,
    );
    line('publish → enforced at every gateway', enforced);
    line('publish → every gateway reported (CLI sees it)', reported);
  } finally {
    await nc.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await sc.stop();
    sc.cleanup();
  }
}

await main();
