import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Connection-specific headers never cross a proxy (RFC 9110 7.6.1) and are illegal in HTTP/2. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'host',
  'http2-settings',
]);

/** Headers meshfed itself sets between gateways and towards backends; a client can never supply them. */
export const MESHFED_INTERNAL_HEADERS = new Set([
  'x-meshfed-service',
  'x-meshfed-caller',
  'x-meshfed-chain',
  'x-meshfed-peer-identity',
]);

/**
 * Whether a header name is one of meshfed's internal headers as a backend would read it: names are
 * case-insensitive, and CGI/WSGI-style servers read `_` as `-` (`x_meshfed_caller` is
 * HTTP_X_MESHFED_CALLER to them). The one test of "is this an internal header".
 */
export function isInternalHeader(name: string): boolean {
  return MESHFED_INTERNAL_HEADERS.has(name.toLowerCase().replaceAll('_', '-'));
}

/**
 * The request headers an upstream gets: no hop-by-hop header, no pseudo-header, and none that a backend
 * could read as an internal header unless `keepInternal`.
 */
export function requestHeadersForUpstream(
  incoming: IncomingHttpHeaders,
  keepInternal = false,
): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const connectionTokens = String(incoming.connection ?? '')
    .toLowerCase()
    .split(',')
    .map((t) => t.trim());
  for (const [k, v] of Object.entries(incoming)) {
    if (v === undefined || k.startsWith(':')) continue;
    if (HOP_BY_HOP.has(k) || connectionTokens.includes(k)) {
      // gRPC needs `te: trailers`; it is the one TE value HTTP/2 allows
      if (k === 'te' && String(v).toLowerCase() === 'trailers') out.te = 'trailers';
      continue;
    }
    if (!keepInternal && isInternalHeader(k)) continue;
    out[k] = v;
  }
  return out;
}

export function responseHeadersForClient(incoming: Record<string, unknown>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(incoming)) {
    if (v === undefined || k.startsWith(':') || HOP_BY_HOP.has(k)) continue;
    out[k] = v as string | string[];
  }
  return out;
}
