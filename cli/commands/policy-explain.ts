import { parseSpiffeId } from '../../ca/index.ts';
import {
  buildPolicySet,
  MeshfedError,
  type PolicySet,
  parseServiceKey,
  serviceKey,
} from '../../core/index.ts';
import type { Command, CommandContext } from '../command.ts';
import { parseFlags, requireFlag, writeJson } from '../command.ts';
import { parseServiceArg } from './admin-verbs.ts';
import {
  openPolicyClient,
  POLICY_FLAGS,
  POLICY_FLAGS_HELP,
  type PolicyFlagValues,
  policyEnvironment,
  readPolicyFiles,
} from './policy-connection.ts';
import {
  type ExplainCaller,
  type Explanation,
  type PolicyEvaluation,
  gatewayEvaluation,
} from './policy-evaluation.ts';
import { fetchAllScopes, scopeSummary } from './policy-plan.ts';

const CLUSTER = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** `spiffe://<td>/cluster/<c>/ns/<ns>/sa/<sa>` (a workload), any other meshfed SPIFFE ID, or a bare cluster name. */
export function parseCaller(from: string): ExplainCaller {
  if (from.startsWith('spiffe://')) {
    const id = parseSpiffeId(from);
    if (!id.cluster)
      throw new MeshfedError('MESHFED_USAGE', `policy explain: --from ${from} names no cluster`);
    return {
      cluster: id.cluster,
      spiffeId: id.spiffeId,
      ...(id.namespace ? { namespace: id.namespace } : {}),
      ...(id.serviceAccount ? { serviceAccount: id.serviceAccount } : {}),
    };
  }
  if (!CLUSTER.test(from)) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `policy explain: --from "${from}" is neither a SPIFFE ID nor a cluster name`,
    );
  }
  return { cluster: from };
}

function parseHeaders(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list) {
    const eq = h.indexOf('=');
    if (eq <= 0) throw new MeshfedError('MESHFED_USAGE', `policy explain: --header "${h}" is not name=value`);
    out[h.slice(0, eq).trim().toLowerCase()] = h.slice(eq + 1);
  }
  return out;
}

function render(ctx: CommandContext, head: string, e: Explanation): void {
  const w = (s: string) => ctx.stdout.write(`${s}\n`);
  w(head);
  w(`authorization (at the destination gateway): ${e.authorization.decision} — ${e.authorization.decidedBy}`);
  for (const r of e.authorization.rules) {
    w(`  ${r.matched ? '✓' : '·'} ${r.policy}#${r.rule} ${r.action}: ${r.why}`);
  }
  if (e.route) {
    w(`route (at the source gateway): ${e.route.policy} route "${e.route.route}" — ${e.route.why}`);
    for (const b of e.route.backends)
      w(`  ${b.percent}% → ${b.service}${b.cluster ? ` (pinned to ${b.cluster})` : ''}`);
  } else
    w(
      'route (at the source gateway): no TrafficSplit route applies; locality-aware balancing over every cluster',
    );
  if (e.fault) {
    const parts = [
      e.fault.delay ? `delay ${e.fault.delay.fixed} ms on ${e.fault.delay.percentage}%` : '',
      e.fault.abort
        ? `abort ${e.fault.abort.httpStatus !== undefined ? `HTTP ${e.fault.abort.httpStatus}` : `gRPC ${e.fault.abort.grpcStatus}`} on ${e.fault.abort.percentage}%`
        : '',
    ].filter(Boolean);
    w(`faults (at the source gateway): ${e.fault.policy}#${e.fault.rule}: ${parts.join(', ')}`);
  } else w('faults (at the source gateway): none');
  for (const l of e.rateLimits) {
    w(
      `rate limit (at the destination gateway): RateLimit/${l.metadata.name}: ${l.spec.requests} per ${l.spec.interval} ms, burst ${l.spec.burst}, one bucket per ${l.spec.bucketPer} in each gateway process`,
    );
  }
  if (e.resilience)
    w(`resilience: ResilienceOverride/${e.resilience.metadata.name}: ${JSON.stringify(e.resilience.spec)}`);
}

/** The policy in force (over NATS), or the documents of -f FILE (offline, as if they were all in force). */
async function policySet(
  values: PolicyFlagValues & { file?: string },
): Promise<{ set: PolicySet; source: string }> {
  if (values.file) {
    const { documents, files } = readPolicyFiles(values.file);
    return { set: buildPolicySet(documents, { revision: 1, scopes: [] }), source: files.join(', ') };
  }
  const pe = policyEnvironment(values, 'policy explain');
  const { client, close } = await openPolicyClient(pe);
  try {
    const bundles = await fetchAllScopes(
      client,
      await client.discover(pe.discoverMs, pe.timeoutMs),
      pe.timeoutMs,
    );
    const set = buildPolicySet(
      bundles.flatMap((b) => b.documents),
      { revision: 1, scopes: bundles.map(scopeSummary) },
    );
    return { set, source: bundles.map((b) => `${b.scope}@${b.revision}`).join(', ') || 'no policy in force' };
  } finally {
    await close();
  }
}

export function explainCommandWith(evaluation: PolicyEvaluation): Command {
  return {
    path: ['policy', 'explain'],
    summary: 'which rules match a call, which decides, what split, faults and limits apply, and why',
    usage: `meshfed policy explain --from <spiffe id|cluster> --to <service> [--method M] [--path P]
                      [--header k=v]… [--port N] [--at CLUSTER] [-f FILE|DIR] [flags]

  --from   the caller: a workload SPIFFE ID, or a cluster (then only cluster-level rules can match it)
  --method CONNECT explains a TCP connection: only routes and fault rules without an HTTP match apply
  --to     the destination service: name.namespace, namespace/name or name.namespace.svc.clusterset.local
  --at     the destination cluster (for policy pinned to one cluster)
  -f       explain against these documents instead of the policy in force

${POLICY_FLAGS_HELP}`,
    async run(ctx) {
      const { values } = parseFlags(
        ctx,
        {
          ...POLICY_FLAGS,
          from: { type: 'string' },
          to: { type: 'string' },
          method: { type: 'string' },
          path: { type: 'string' },
          header: { type: 'string', multiple: true },
          port: { type: 'string' },
          at: { type: 'string' },
          file: { type: 'string', short: 'f' },
        },
        'policy explain',
      );
      const caller = parseCaller(requireFlag(values, 'from', 'policy explain'));
      const to = requireFlag(values, 'to', 'policy explain');
      const service = parseServiceKey(to) ?? parseServiceArg(to);
      const port = values.port === undefined ? undefined : Number(values.port);
      if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
        throw new MeshfedError(
          'MESHFED_USAGE',
          `policy explain: --port "${values.port}" is not a port number`,
        );
      }
      const { set, source } = await policySet(values as PolicyFlagValues & { file?: string });
      const req = {
        caller,
        service: serviceKey(service),
        headers: parseHeaders((values.header as string[] | undefined) ?? []),
        ...(values.method ? { method: values.method.toUpperCase() } : {}),
        ...(values.path ? { path: values.path } : {}),
        ...(port ? { port } : {}),
        ...(values.at ? { destinationCluster: values.at } : {}),
      };
      const e = evaluation.explain(set, req);
      if (ctx.json) writeJson(ctx, { request: req, policy: source, ...e });
      else
        render(
          ctx,
          `${caller.spiffeId ?? `any caller of cluster ${caller.cluster}`} → ${req.service}${req.method ? ` ${req.method}` : ''}${req.path ? ` ${req.path}` : ''} (policy: ${source})`,
          e,
        );
      return 0;
    },
  };
}

export const policyExplainCommand = explainCommandWith(gatewayEvaluation);
