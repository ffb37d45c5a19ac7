import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMatch, HttpMatch, IdentityPattern, PathMatch } from '../../core/index.ts';

/**
 * Policy matchers compiled once per policy change: each is a closure (or a set) that the request path
 * calls without parsing, allocating or looking anything up by name.
 */

export type StringTest = (value: string) => boolean;

/** An identity pattern: exact, `*` (anything), `prefix*` or `*suffix` (the schema allows nothing else). */
export function compilePattern(p: IdentityPattern): StringTest {
  if (p === '*') return () => true;
  if (p.endsWith('*')) {
    const prefix = p.slice(0, -1);
    return (v) => v.startsWith(prefix);
  }
  if (p.startsWith('*')) {
    const suffix = p.slice(1);
    return (v) => v.endsWith(suffix);
  }
  return (v) => v === p;
}

export function compilePath(m: PathMatch): StringTest {
  if (m.exact !== undefined) {
    const exact = m.exact;
    return (p) => p === exact;
  }
  const prefix = m.prefix ?? '/';
  return (p) => p.startsWith(prefix);
}

/** A request as the policy matchers see it (what `policy explain` also builds from its flags). */
export interface PolicyRequest {
  /** upper-case; 'CONNECT' for a TCP stream */
  method: string;
  /** the normalised path without the query (see policyPath); '' when the request has none (CONNECT) */
  path: string;
  /** lower-case names */
  headers: IncomingHttpHeaders;
}

/** A header's value as one string: repeated values joined by ',' (RFC 9110 5.3). */
function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(',');
}

export function compileHeader(m: HeaderMatch): (h: IncomingHttpHeaders) => boolean {
  const name = m.name;
  if (m.exact !== undefined) {
    const exact = m.exact;
    return (h) => headerValue(h, name) === exact;
  }
  if (m.prefix !== undefined) {
    const prefix = m.prefix;
    return (h) => headerValue(h, name)?.startsWith(prefix) === true;
  }
  const present = m.present !== false;
  return (h) => (h[name] !== undefined) === present;
}

/** An HTTP match of a route or fault rule; absent matches every request. */
export function compileHttpMatch(m: HttpMatch | undefined): (r: PolicyRequest) => boolean {
  if (!m) return () => true;
  const methods = m.methods ? new Set(m.methods) : undefined;
  const path = m.path ? compilePath(m.path) : undefined;
  const headers = (m.headers ?? []).map(compileHeader);
  return (r) => {
    if (methods && !methods.has(r.method)) return false;
    if (path && !path(r.path)) return false;
    for (const h of headers) if (!h(r.headers)) return false;
    return true;
  };
}

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;

/**
 * The path policy matches on: the request target without its query, with percent-encoded unreserved
 * characters decoded, repeated slashes merged and dot segments removed (RFC 3986 6.2.2, 5.2.4), so
 * `/./admin`, `//admin` and `/%61dmin` cannot slip past a rule on `/admin`. Encoded slashes (`%2F`) stay
 * encoded. The request is forwarded as the caller sent it.
 */
export function policyPath(target: string): string {
  const q = target.indexOf('?');
  const raw = q === -1 ? target : target.slice(0, q);
  if (!raw.startsWith('/')) return raw === '*' ? '*' : '';
  // the common case: nothing to normalise
  if (!raw.includes('%') && !raw.includes('//') && !raw.includes('/.')) return raw;
  const decoded = raw.replace(/%([0-9A-Fa-f]{2})/g, (all, hex: string) => {
    const c = String.fromCharCode(Number.parseInt(hex, 16));
    return UNRESERVED.test(c) ? c : all.toUpperCase();
  });
  const out: string[] = [];
  const segments = decoded.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    const last = i === segments.length - 1;
    if (s === '.' || (s === '' && !last)) {
      if (last) out.push('');
      continue;
    }
    if (s === '..') {
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return `/${out.join('/')}`;
}

/** `/pkg.Service/Method` of a gRPC request; undefined when the path is not that shape. */
export function grpcCall(path: string): { service: string; method: string } | undefined {
  const slash = path.indexOf('/', 1);
  if (slash <= 1 || slash === path.length - 1 || path.indexOf('/', slash + 1) !== -1) return undefined;
  return { service: path.slice(1, slash), method: path.slice(slash + 1) };
}
