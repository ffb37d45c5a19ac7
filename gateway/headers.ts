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
  // a draining gateway's word to the peer gateway it answers (gateway/drain.ts), never passed on
  'x-meshfed-draining',
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
  // every internal name starts with x-meshfed (x_meshfed…): anything shorter or not starting with x is not one
  if (name.length < 9 || (name.charCodeAt(0) | 0x20) !== 0x78) return false;
  return MESHFED_INTERNAL_HEADERS.has(name.toLowerCase().replaceAll('_', '-'));
}

const KEEP_ALIVE: readonly string[] = ['keep-alive'];
const CLOSE: readonly string[] = ['close'];

/** The lower-case tokens of a Connection header (the extra hop-by-hop names it lists); none when absent. */
function connectionTokens(connection: string | string[] | undefined): readonly string[] | undefined {
  if (connection === undefined || connection === '') return undefined;
  // most messages carry one of these: their tokens without a split and an array a message
  if (connection === 'keep-alive') return KEEP_ALIVE;
  if (connection === 'close') return CLOSE;
  return String(connection)
    .toLowerCase()
    .split(',')
    .map((t) => t.trim());
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
  const listed = connectionTokens(incoming.connection);
  for (const k in incoming) {
    const v = incoming[k];
    if (v === undefined || k.charCodeAt(0) === 0x3a) continue;
    if (HOP_BY_HOP.has(k) || listed?.includes(k)) {
      // gRPC needs `te: trailers`; it is the one TE value HTTP/2 allows
      if (k === 'te' && String(v).toLowerCase() === 'trailers') out.te = 'trailers';
      continue;
    }
    if (!keepInternal && isInternalHeader(k)) continue;
    out[k] = v;
  }
  return out;
}

/**
 * The response headers a client gets: no hop-by-hop header, none the upstream named in its Connection header
 * (RFC 9110 7.6.1: a backend's `Connection: x-a` keeps `x-a` to that hop), no pseudo-header. The framing is the
 * forwarding codec's to state, not these headers'.
 */
export function responseHeadersForClient(incoming: Record<string, unknown>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  const listed = connectionTokens(incoming.connection as string | string[] | undefined);
  for (const k in incoming) {
    const v = incoming[k];
    if (v === undefined || k.charCodeAt(0) === 0x3a || HOP_BY_HOP.has(k) || listed?.includes(k)) continue;
    out[k] = typeof v === 'string' ? withoutOws(v) : (v as string[]).map(withoutOws);
  }
  return out;
}

/**
 * A field value without the whitespace around it (OWS, RFC 9110 5.5: no part of the value). An HTTP/1.1 parser
 * may hand it over (undici does), and node's HTTP/2 drops a field whose value starts or ends with it (RFC 9113
 * 8.2.1): a backend's `Set-Cookie: a=" ` never reached an HTTP/2 client, nor crossed the tunnel.
 */
function withoutOws(v: string): string {
  const last = v.length - 1;
  if (last < 0) return v;
  const a = v.charCodeAt(0);
  const z = v.charCodeAt(last);
  if (a !== 0x20 && a !== 0x09 && z !== 0x20 && z !== 0x09) return v;
  let i = 0;
  let j = last;
  while (i <= j && (v.charCodeAt(i) === 0x20 || v.charCodeAt(i) === 0x09)) i++;
  while (j >= i && (v.charCodeAt(j) === 0x20 || v.charCodeAt(j) === 0x09)) j--;
  return v.slice(i, j + 1);
}
