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

/** Headers meshfed itself sets between gateways; a client can never supply them. */
export const MESHFED_INTERNAL_HEADERS = new Set([
  'x-meshfed-service',
  'x-meshfed-caller',
  'x-meshfed-chain',
  'x-meshfed-peer-identity',
]);

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
    if (!keepInternal && MESHFED_INTERNAL_HEADERS.has(k)) continue;
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
