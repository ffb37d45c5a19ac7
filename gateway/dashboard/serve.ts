import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DashboardFeed } from './feed.ts';
import type { DashboardSources } from './state.ts';

/** The page and its two files: plain HTML, CSS and JavaScript, no build step, nothing fetched elsewhere. */
const FILES: Record<string, { file: string; type: string }> = {
  '/ui': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/ui/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/ui/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

const HEADERS = {
  // everything the page loads comes from this listener; no inline script, no framing by another site
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** 127.0.0.0/8 and ::1, also as IPv4-mapped IPv6 */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || a.startsWith('127.');
}

/**
 * The dashboard on the admin listener: /ui (the page), /ui/state (JSON), /ui/events (server-sent events).
 * The admin listener speaks plain HTTP without client certificates, so the dashboard is served only on
 * a connection that arrived at a loopback address; bound elsewhere, /ui answers 403 and says so (reach
 * it through an SSH tunnel, or use the mTLS gRPC admin API with `meshfed stat`/`top`).
 */
export function dashboardRoutes(
  src: DashboardSources,
): (req: IncomingMessage, res: ServerResponse, path: string) => Promise<void> {
  const feed = new DashboardFeed(src);
  const cache = new Map<string, Buffer>();
  const file = (name: string) => {
    let b = cache.get(name);
    if (!b) {
      b = readFileSync(new URL(`./ui/${name}`, import.meta.url));
      cache.set(name, b);
    }
    return b;
  };
  return async (req, res, path) => {
    if (!isLoopback(req.socket.localAddress)) {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(
        `${JSON.stringify({
          error: 'dashboard-not-on-loopback',
          message:
            'the dashboard is served only when the admin listener is bound to a loopback address (it has no client certificates); bind gateway.listeners.admin to 127.0.0.1 and tunnel to it, or use meshfed stat/top over the mTLS admin API',
        })}\n`,
      );
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' });
      res.end();
      return;
    }
    const f = FILES[path];
    if (f) {
      const body = file(f.file);
      res.writeHead(200, { ...HEADERS, 'content-type': f.type, 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/ui/state') {
      const body = JSON.stringify(await feed.snapshot());
      res.writeHead(200, { ...HEADERS, 'content-type': 'application/json' });
      res.end(body);
      return;
    }
    if (path === '/ui/events') {
      if (!feed.subscribe(res)) {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '5' });
        res.end('{"error":"too many dashboards are open on this gateway"}\n');
      }
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not found"}\n');
  };
}
