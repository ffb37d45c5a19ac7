import { MeshfedError, parseDuration } from '../../core/index.ts';
import {
  summarize,
  type TrafficRow,
  type TrafficSnapshot,
  type TrafficSummary,
  WINDOW_SECONDS,
} from '../../gateway/index.ts';
import type { AdminClient } from '../admin/admin-client.ts';
import { ADMIN_FLAGS, adminClientFrom } from '../admin/find-gateway.ts';
import type { Command } from '../command.ts';
import { parseFlags, renderTable, writeJson } from '../command.ts';
import { parseServiceArg } from './admin-verbs.ts';

const WHICH =
  "  --config FILE   the gateway's config file (finds its admin socket)\n  --admin ADDR    unix:/path/admin.sock, or host:port with --cert/--key/--ca (admin identity)\n  --json          machine-readable output";

/** One line of `stat` or `top`: a service as one gateway sees it, on one side, from one cluster to one. */
export interface TrafficLine extends TrafficSummary {
  service: string;
  direction: string;
  sourceCluster: string;
  destinationCluster: string;
  successRate: number;
}

/**
 * Groups a window's rows by service, side and cluster pair (workloads and protocols added up), busiest
 * first. `service` (name.namespace) keeps only that service.
 */
export function trafficLines(snap: TrafficSnapshot, service?: string): TrafficLine[] {
  const groups = new Map<string, TrafficRow[]>();
  for (const r of snap.rows) {
    if (service && r.destination_service !== service) continue;
    const key = `${r.destination_service}|${r.direction}|${r.source_cluster}|${r.destination_cluster}`;
    const list = groups.get(key) ?? [];
    list.push(r);
    groups.set(key, list);
  }
  return [...groups.values()]
    .map((rows) => {
      const r = rows[0]!;
      return {
        service: r.destination_service,
        direction: r.direction,
        sourceCluster: r.source_cluster,
        destinationCluster: r.destination_cluster,
        ...summarize(rows, snap.windowMs),
      };
    })
    .sort(
      (a, b) =>
        b.requests - a.requests ||
        a.service.localeCompare(b.service) ||
        a.destinationCluster.localeCompare(b.destinationCluster),
    );
}

function percent(rate: number): string {
  return `${(rate * 100).toFixed(2)}%`;
}

function ms(v: number): string {
  return v >= 100 ? `${Math.round(v)}ms` : `${v.toFixed(1)}ms`;
}

export function renderTraffic(lines: readonly TrafficLine[]): string {
  if (lines.length === 0) return 'no calls in this window\n';
  return renderTable(
    ['SERVICE', 'SIDE', 'FROM', 'TO', 'SUCCESS', 'RPS', 'REQUESTS', 'P50', 'P95', 'P99'],
    lines.map((l) => [
      l.service,
      l.direction,
      l.sourceCluster,
      l.destinationCluster,
      percent(l.successRate),
      l.rps.toFixed(2),
      l.requests,
      ms(l.p50Ms),
      ms(l.p95Ms),
      ms(l.p99Ms),
    ]),
  );
}

function windowSecondsOf(v: unknown, fallback: number, command: string): number {
  if (v === undefined) return fallback;
  const text = String(v);
  const msValue = /^\d+$/.test(text) ? Number(text) * 1000 : parseDuration(text);
  if (msValue === undefined || msValue < 1000 || msValue > WINDOW_SECONDS * 1000) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: --window ${text} is not a window between 1s and ${WINDOW_SECONDS}s (e.g. 30s, 5m)`,
    );
  }
  return Math.round(msValue / 1000);
}

async function withClient<T>(
  values: Record<string, unknown>,
  command: string,
  fn: (c: AdminClient) => Promise<T>,
) {
  const client = adminClientFrom(values, command);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export const statCommand: Command = {
  path: ['stat'],
  summary: 'per service: success rate, req/s, p50/p95/p99 by cluster over a window',
  usage: `meshfed stat [<service>] (--config FILE | --admin ADDR) [--window 60s] [--json]\n\n  <service>       name.namespace (default: every service)\n  --window D      how far back: 1s to ${WINDOW_SECONDS}s (default 60s)\n${WHICH}\n\nSIDE outbound: calls this gateway sent (its cluster's callers); inbound: calls it received from\nother clusters' gateways. FROM/TO are clusters; 'unknown' where no one can tell (SNI passthrough).`,
  async run(ctx) {
    const { values, positionals } = parseFlags(
      ctx,
      { ...ADMIN_FLAGS, window: { type: 'string' } },
      'stat',
      true,
    );
    const ref = positionals[0] ? parseServiceArg(positionals[0]) : undefined;
    const service = ref ? `${ref.name}.${ref.namespace}` : undefined;
    const seconds = windowSecondsOf(values.window, 60, 'stat');
    const snap = await withClient(values, 'stat', (c) => c.stats(seconds));
    const lines = trafficLines(snap, service);
    if (ctx.json) return writeJson(ctx, { windowSeconds: seconds, atMs: snap.atMs, lines });
    ctx.stdout.write(renderTraffic(lines));
  },
};

function waitAbort(signal: AbortSignal, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

export const topCommand: Command = {
  path: ['top'],
  summary: 'live view of the busiest service × cluster pairs, refreshing',
  usage: `meshfed top (--config FILE | --admin ADDR) [--window 10s] [--interval 1s] [--iterations N] [--limit 20] [--json]\n\n  --window D       the window each refresh covers (default 10s)\n  --interval D     time between refreshes (default 1s)\n  --iterations N   stop after N refreshes (default: until Ctrl-C)\n  --limit N        rows shown (default 20)\n${WHICH}\n\nWith --json, one JSON object per refresh, one per line.`,
  async run(ctx) {
    const { values } = parseFlags(
      ctx,
      {
        ...ADMIN_FLAGS,
        window: { type: 'string' },
        interval: { type: 'string' },
        iterations: { type: 'string' },
        limit: { type: 'string' },
      },
      'top',
    );
    const seconds = windowSecondsOf(values.window, 10, 'top');
    const intervalMs = values.interval ? parseDuration(values.interval) : 1000;
    const iterations = values.iterations === undefined ? Infinity : Number(values.iterations);
    const limit = values.limit === undefined ? 20 : Number(values.limit);
    if (intervalMs === undefined || intervalMs < 100)
      throw new MeshfedError('MESHFED_USAGE', `top: --interval ${values.interval} must be at least 100ms`);
    if (!(iterations >= 1) || !(limit >= 1))
      throw new MeshfedError('MESHFED_USAGE', 'top: --iterations and --limit must be positive numbers');
    const tty = (ctx.stdout as NodeJS.WriteStream).isTTY === true && !ctx.json;
    await withClient(values, 'top', async (client) => {
      for (let i = 0; i < iterations && !ctx.signal.aborted; i++) {
        if (i > 0) await waitAbort(ctx.signal, intervalMs);
        if (ctx.signal.aborted) break;
        const snap = await client.stats(seconds);
        const lines = trafficLines(snap).slice(0, limit);
        if (ctx.json) {
          ctx.stdout.write(`${JSON.stringify({ windowSeconds: seconds, atMs: snap.atMs, lines })}\n`);
          continue;
        }
        const head = `meshfed top — ${client.address} — ${new Date(snap.atMs).toISOString()} — last ${seconds}s, busiest first (Ctrl-C stops)\n\n`;
        ctx.stdout.write(`${tty ? '\x1b[2J\x1b[H' : i > 0 ? '\n' : ''}${head}${renderTraffic(lines)}`);
      }
    });
  },
};
