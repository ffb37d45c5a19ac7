import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { CatalogView, EndpointSource } from '../core/index.ts';
import type { Balancers } from './balancer/index.ts';
import { dashboardRoutes } from './dashboard/serve.ts';
import type { GatewayOptions } from './gateway-options.ts';
import { http } from './node-http.ts';
import type { PolicySummary } from './policy/index.ts';
import type { DashboardSources } from './dashboard/state.ts';
import { type TrafficSnapshot, windowMsOf } from './traffic-window.ts';

export interface AdminEndpointOptions {
  state: () => 'starting' | 'ready' | 'draining';
  /** the Prometheus exposition (one process's registry, or several processes' aggregated) */
  metrics: () => Promise<{ contentType: string; text: string }>;
  balancers: Balancers;
  catalog: CatalogView;
  local: EndpointSource;
  config: () => unknown;
  /** names besides localhost and IP literals that Host may carry (gateway.adminAllowedHosts) */
  allowedHosts?: readonly string[];
  /** the golden metrics' recent window (one process's, or every worker's merged) */
  traffic: (windowMs: number) => Promise<TrafficSnapshot>;
  /** who this gateway is, for the dashboard at /ui (and the policy hook); no dashboard without it */
  dashboard?: Pick<DashboardSources, 'self' | 'policy' | 'links'>;
  /** more JSON views, by path (e.g. /debug/workers) */
  views?: Record<string, () => unknown>;
}

/**
 * The admin listener's HTTP handler: /healthz, /readyz, /metrics and the /debug JSON views. Shared by a
 * single-process gateway and by the supervisor of a multi-process one, which serves every worker's
 * metrics summed.
 */
export function adminHandler(o: AdminEndpointOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const json = (res: ServerResponse, status: number, v: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(v, null, 2)}\n`);
  };
  const paths = [
    '/healthz',
    '/readyz',
    '/metrics',
    '/stats',
    '/debug/routes',
    '/debug/catalog',
    '/debug/config',
  ];
  paths.push(...Object.keys(o.views ?? {}));
  const ui = o.dashboard
    ? dashboardRoutes({
        ...o.dashboard,
        catalog: o.catalog,
        local: o.local,
        traffic: o.traffic,
        metrics: o.metrics,
      })
    : undefined;
  if (ui) paths.push('/ui');
  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (ui && (url.pathname === '/ui' || url.pathname.startsWith('/ui/'))) return ui(req, res, url.pathname);
    const view = o.views?.[url.pathname];
    if (view) return json(res, 200, await view());
    switch (url.pathname) {
      // the pid says which process answered: a supervisor's, with workers (and tells a port that another
      // process took from the one the config names)
      case '/healthz':
        return json(res, 200, { status: 'ok', pid: process.pid });
      case '/readyz': {
        const state = o.state();
        return json(res, state === 'ready' ? 200 : 503, { status: state, pid: process.pid });
      }
      case '/metrics': {
        const m = await o.metrics();
        res.writeHead(200, { 'content-type': m.contentType });
        res.end(m.text);
        return;
      }
      case '/stats':
        return json(res, 200, await o.traffic(windowMsOf(url.searchParams.get('window'))));
      case '/debug/routes': {
        const [ns, name] = (url.searchParams.get('service') ?? '').split('/');
        if (!ns || !name) return json(res, 400, { error: 'use /debug/routes?service=<namespace>/<name>' });
        return json(res, 200, o.balancers.explain(ns, name));
      }
      case '/debug/catalog':
        return json(res, 200, {
          clusters: o.catalog.clusters(),
          services: o.catalog
            .services()
            .map((s) => ({ ...s, instances: o.catalog.instances(s.namespace, s.name) })),
          local: o.local.current(),
        });
      case '/debug/config':
        return json(res, 200, o.config());
      default:
        return json(res, 404, { error: 'not found', paths });
    }
  };
  const allowed = new Set((o.allowedHosts ?? []).map((h) => h.toLowerCase()));
  return (req, res) => {
    if (!hostAllowed(req.headers.host, allowed)) {
      return json(res, 421, {
        error: 'misdirected',
        message:
          'the admin listener answers only localhost, IP addresses and gateway.adminAllowedHosts in Host',
      });
    }
    serve(req, res).catch((err: unknown) => {
      if (!res.headersSent) json(res, 500, { error: (err as Error).message });
      else res.destroy();
    });
  };
}

/**
 * DNS rebinding guard: a page on another origin reaches the admin listener only under a name of its own
 * choosing, so Host must be localhost, an IP literal (no page can own one), or a name the operator listed.
 */
export function hostAllowed(host: string | undefined, allowed: ReadonlySet<string>): boolean {
  if (!host) return true;
  const h = host.toLowerCase();
  const name = h.startsWith('[') ? h.slice(1, h.indexOf(']')) : h.replace(/:\d+$/, '');
  if (isIP(name) !== 0) return true;
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  return allowed.has(name);
}

/** The admin listener's server, for a single-process gateway and for a multi-process one's supervisor. */
export function adminServer(options: AdminEndpointOptions): Server {
  return http.createServer(adminHandler(options));
}

/** The admin listener of a gateway: its parts' views, and what only the running gateway knows (`live`). */
export function gatewayAdminServer(
  options: GatewayOptions,
  live: {
    state: AdminEndpointOptions['state'];
    traffic: (windowMs: number) => TrafficSnapshot;
    /** /debug/policy, when the gateway enforces policy */
    policySummary?: () => PolicySummary | undefined;
  },
): Server {
  return adminServer({
    state: live.state,
    metrics: async () => ({
      contentType: options.registry.contentType,
      text: await options.registry.metrics(),
    }),
    balancers: options.balancers,
    catalog: options.catalog,
    local: options.local,
    allowedHosts: options.config.adminAllowedHosts,
    traffic: async (windowMs) => live.traffic(windowMs),
    dashboard: {
      self: {
        cluster: options.cluster,
        gateway: options.name,
        locality: options.locality,
      },
      ...(options.linkReports ? { links: () => options.linkReports!.linkReports() } : {}),
    },
    config: () => ({
      cluster: options.cluster,
      locality: options.locality,
      gateway: options.config,
      balancer: options.balancerConfig,
    }),
    ...(live.policySummary ? { views: { '/debug/policy': live.policySummary } } : {}),
  });
}
