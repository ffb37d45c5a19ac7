import { ADMIN_FLAGS, adminClientFrom } from '../admin/find-gateway.ts';
import type { Command, CommandContext } from '../command.ts';
import { parseFlags, renderTable, writeJson } from '../command.ts';
import { withProgress } from '../progress.ts';
import { MeshfedError, parseClustersetHost } from '../../core/index.ts';

const WHICH =
  "  --config FILE   the gateway's config file (finds its admin socket)\n  --admin ADDR    unix:/path/admin.sock, or host:port with --cert/--key/--ca (admin identity)\n  --json          machine-readable output";

function ago(ms: number): string {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

function until(ms: number): string {
  const s = Math.round((ms - Date.now()) / 1000);
  if (s < 0) return `EXPIRED ${-s}s ago`;
  if (s < 7200) return `in ${Math.round(s / 60)}m`;
  return `in ${(s / 3600).toFixed(1)}h`;
}

async function withAdmin<T>(
  ctx: CommandContext,
  command: string,
  label: string,
  fn: (c: ReturnType<typeof adminClientFrom>) => Promise<T>,
  positionals = false,
) {
  const { values, positionals: pos } = parseFlags(ctx, ADMIN_FLAGS, command, positionals);
  const client = adminClientFrom(values, command);
  try {
    return { result: await withProgress(ctx.stderr, label, !ctx.json, () => fn(client)), positionals: pos };
  } finally {
    client.close();
  }
}

export const statusCommand: Command = {
  path: ['status'],
  summary: 'this gateway: identity, certificate expiry, NATS link, clusters seen',
  usage: `meshfed status (--config FILE | --admin ADDR) [--json]\n\n${WHICH}`,
  async run(ctx) {
    const { result: s } = await withAdmin(ctx, 'status', 'asking the gateway', (c) => c.status());
    if (ctx.json) return writeJson(ctx, s);
    const rows: [string, string][] = [
      ['cluster', `${s.cluster} (${s.region}/${s.zone})`],
      ['gateway', s.gateway],
      ['identity', s.spiffe_id],
      ['certificate', `serial ${s.cert_serial}, expires ${until(Number(s.cert_not_after_ms))}`],
      [
        'NATS',
        s.nats_connected
          ? `connected to ${s.nats_server}`
          : `DISCONNECTED${s.nats_last_error ? `: ${s.nats_last_error}` : ''}`,
      ],
      ['clusters seen', (s.clusters_seen as string[]).join(', ') || 'none'],
      ['local services', `${s.local_services} (${s.exported_services} exported)`],
      [
        'policy',
        Object.keys(s.policy_revisions ?? {}).length === 0
          ? 'none'
          : `${s.policy_documents} documents; ${Object.entries(s.policy_revisions as Record<string, number>)
              .map(([scope, rev]) => `${scope}@${rev}`)
              .join(', ')}`,
      ],
      ['uptime', `${Math.round(Number(s.uptime_ms) / 1000)}s`],
      ...Object.entries(s.addresses as Record<string, string>).map(
        ([k, v]) => [`listener ${k}`, v] as [string, string],
      ),
    ];
    ctx.stdout.write(renderTable(['FIELD', 'VALUE'], rows));
  },
};

export const clustersCommand: Command = {
  path: ['clusters'],
  summary: 'every cluster: locality, gateways, last heartbeat, stale or not, services exported',
  usage: `meshfed clusters (--config FILE | --admin ADDR) [--json]\n\n${WHICH}`,
  async run(ctx) {
    const { result } = await withAdmin(ctx, 'clusters', 'asking the gateway', (c) => c.clusters());
    if (ctx.json) return writeJson(ctx, result);
    ctx.stdout.write(
      renderTable(
        ['CLUSTER', 'REGION', 'ZONE', 'GATEWAYS', 'HEARTBEAT', 'STATE', 'SERVICES'],
        result.map((c) => [
          c.self ? `${c.name} (self)` : c.name,
          c.region,
          c.zone,
          (c.gateways as { name: string; address: string }[]).map((g) => `${g.name}@${g.address}`).join(','),
          c.self ? '-' : ago(Number(c.last_heartbeat_ms)),
          c.stale ? 'STALE' : 'live',
          c.services,
        ]),
      ),
    );
  },
};

export const servicesCommand: Command = {
  path: ['services'],
  summary: 'the federated catalog: which clusters serve what, with weights',
  usage: `meshfed services (--config FILE | --admin ADDR) [--json]\n\n${WHICH}`,
  async run(ctx) {
    const { result } = await withAdmin(ctx, 'services', 'asking the gateway', (c) => c.services());
    if (ctx.json) return writeJson(ctx, result);
    const rows = result.flatMap((s) =>
      (
        s.offers as {
          cluster: string;
          region: string;
          zone: string;
          weight: number;
          stale: boolean;
          local: boolean;
        }[]
      ).map((o, i) => [
        i === 0 ? `${s.name}.${s.namespace}` : '',
        i === 0
          ? (s.ports as { name: string; port: number; protocol: string }[])
              .map((p) => `${p.port}/${p.protocol}`)
              .join(',')
          : '',
        o.cluster + (o.local ? ' (local)' : ''),
        `${o.region}/${o.zone}`,
        o.weight,
        o.local ? (s.exported ? 'exported' : 'not exported') : o.stale ? 'STALE' : 'live',
      ]),
    );
    ctx.stdout.write(renderTable(['SERVICE', 'PORTS', 'CLUSTER', 'LOCALITY', 'WEIGHT', 'STATE'], rows));
  },
};

export const routesCommand: Command = {
  path: ['routes'],
  summary: 'the priority-ordered targets the load balancer would use for a service, and why',
  usage: `meshfed routes <service> (--config FILE | --admin ADDR) [--json]\n\n  <service>       name.namespace, namespace/name or name.namespace.svc.clusterset.local\n${WHICH}`,
  async run(ctx) {
    const { result, positionals } = await withAdmin(
      ctx,
      'routes',
      'asking the gateway',
      async (c) => {
        const ref = parseServiceArg(ctx.argv.find((a) => !a.startsWith('-') && !isFlagValue(ctx.argv, a)));
        return c.routes(ref.namespace, ref.name);
      },
      true,
    );
    void positionals;
    if (ctx.json) return writeJson(ctx, result);
    ctx.stdout.write(renderRoutes(result));
  },
};

function isFlagValue(argv: string[], word: string): boolean {
  const i = argv.indexOf(word);
  return i > 0 && ['--config', '-c', '--admin', '--cert', '--key', '--ca'].includes(argv[i - 1]!);
}

export function parseServiceArg(arg: string | undefined): { namespace: string; name: string } {
  if (!arg)
    throw new MeshfedError(
      'MESHFED_USAGE',
      'routes: name the service, e.g. meshfed routes hello.demo --config gateway.yaml',
    );
  const fq = parseClustersetHost(arg);
  if (fq) return fq;
  if (arg.includes('/')) {
    const [namespace, name] = arg.split('/');
    if (namespace && name) return { namespace, name };
  }
  const parts = arg.split('.');
  if (parts.length === 2 && parts[0] && parts[1]) return { name: parts[0], namespace: parts[1] };
  throw new MeshfedError(
    'MESHFED_USAGE',
    `routes: cannot read service "${arg}"; use name.namespace (e.g. hello.demo)`,
  );
}

// biome-ignore lint/suspicious/noExplicitAny: the explanation is the balancer's JSON
function renderRoutes(ex: any): string {
  const lines: string[] = [];
  if (ex && typeof ex === 'object') {
    const head = Object.entries(ex).filter(([, v]) => v === null || typeof v !== 'object');
    for (const [k, v] of head) lines.push(`${k}: ${String(v)}`);
    const levels = (ex.levels ?? ex.priorities) as unknown[] | undefined;
    const targets = (ex.targets ?? []) as Record<string, unknown>[];
    if (Array.isArray(levels)) {
      for (const lvl of levels as Record<string, unknown>[]) {
        const lt = (lvl.targets ?? []) as Record<string, unknown>[];
        const meta = Object.entries(lvl).filter(
          ([k, v]) => k !== 'targets' && (v === null || typeof v !== 'object'),
        );
        lines.push('', meta.map(([k, v]) => `${k}=${String(v)}`).join('  '));
        if (lt.length > 0) lines.push(tableOf(lt));
      }
    } else if (targets.length > 0) {
      lines.push('', tableOf(targets));
    }
  }
  return `${lines.join('\n')}\n`;
}

function tableOf(rows: Record<string, unknown>[]): string {
  const keys = [
    ...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => r[k] === null || typeof r[k] !== 'object'))),
  ];
  return renderTable(
    keys.map((k) => k.toUpperCase()),
    rows.map((r) => keys.map((k) => (r[k] === null || r[k] === undefined ? '-' : (r[k] as string)))),
  ).trimEnd();
}
