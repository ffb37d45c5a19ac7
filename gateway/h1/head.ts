import { CR, HEX, HOST_CHAR, LF, TARGET_CHAR, TCHAR } from './char-classes.ts';
import { type Headers, parseFieldLines } from './field-lines.ts';
import { HeadParseError } from './head-error.ts';

/**
 * meshfed's HTTP/1.1 head parser, strict per RFC 9112. It refuses, rather than repairs, everything a proxy
 * could read differently from the server behind it: a refusal here is a 400 (or 431/501/505/417) and a
 * closed connection, never a guess. What it accepts it hands over as a compact head (method, target,
 * version, lower-case headers) plus the body's framing, decided once, here.
 */

/** How a message's body is delimited (RFC 9112 6.3). */
export type Framing =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** a response body that ends when the connection closes (never a request's) */
  | { kind: 'close' };

interface Common {
  /** lower-case names; repeated fields joined with ", " (cookie with "; "), set-cookie kept as a list */
  headers: Headers;
  /** HTTP/1.x minor version: 1, or 0 for HTTP/1.0 */
  minor: 0 | 1;
  framing: Framing;
  /** the connection may carry another message after this one */
  keepAlive: boolean;
  /** bytes of the head, CRLFCRLF included */
  size: number;
}

export interface RequestHead extends Common {
  method: string;
  target: string;
  /** `Expect: 100-continue` */
  expectContinue: boolean;
  /** `Connection: upgrade` with an `Upgrade` header: not the fast path's to carry */
  upgrade: boolean;
}

export interface ResponseHead extends Common {
  status: number;
}

export interface HeadLimits {
  maxHeadBytes: number;
  maxHeaders: number;
}

/**
 * What a gateway may add to a head it forwards to another gateway: the identity headers (our chain on a
 * connection's first request, about 1 KiB; the caller; the service), the trace context, a `transfer-encoding`
 * or `connection` of its own. A head a gateway accepted within its limits would otherwise be refused by a
 * peer running the same ones (431, or 502 for a response), and only on the first request of each connection.
 */
export const PEER_HEAD_ALLOWANCE = { bytes: 8 * 1024, fields: 16 } as const;

/** `limits` with the allowance for what a peer gateway added (PEER_HEAD_ALLOWANCE) */
export function peerHeadLimits(limits: HeadLimits): HeadLimits {
  return {
    maxHeadBytes: limits.maxHeadBytes + PEER_HEAD_ALLOWANCE.bytes,
    maxHeaders: limits.maxHeaders + PEER_HEAD_ALLOWANCE.fields,
  };
}

/**
 * Sets the fields that state `framing` on the fields of a head the codec writes: the body leaves as it was
 * framed when it arrived, whatever the fields say (a Content-Length the sender named in its Connection field is
 * gone from them, while its body still follows: sent without it, the next hop read the body as a message of its
 * own, emitted-heads.test.ts). A message without a body, or delimited by its connection's close, gets none.
 */
export function stateFraming(fields: Record<string, unknown>, framing: Framing): void {
  if (framing.kind === 'length') fields['content-length'] = String(framing.length);
  else if (framing.kind === 'chunked') fields['transfer-encoding'] = 'chunked';
}

/**
 * Methods the fast path forwards. CONNECT is parsed (its authority-form target is refused by the caller
 * or handed to the tunnel path); anything else is 501: an unknown method is a parser disagreement waiting
 * to happen.
 */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT']);

/**
 * Where the head in `buf` ends (the index after its CRLFCRLF), -1 while it is incomplete. Throws on a head
 * longer than the limit, then on a bare LF (an LF not after a CR), so a client cannot hold a buffer open
 * with a head that will never parse. One pass of JavaScript over the bytes: a head is short, and a native
 * indexOf per line cost more in calls than the scan itself.
 */
export function headEnd(buf: Buffer, maxHeadBytes: number): number {
  const n = Math.min(buf.length, maxHeadBytes);
  let bare = -1;
  let end = -1;
  for (let i = 0; i < n; i++) {
    if (buf[i] !== LF) continue;
    if (i === 0 || buf[i - 1] !== CR) {
      if (bare === -1) bare = i;
    } else if (i >= 3 && buf[i - 2] === LF && buf[i - 3] === CR) {
      end = i + 1;
      break;
    }
  }
  // not within the limit: the head ends past it, or has not ended in more bytes than it allows
  if (end === -1 && buf.length > maxHeadBytes)
    throw new HeadParseError('head-too-large', `more than ${maxHeadBytes} bytes`);
  if (bare !== -1) throw new HeadParseError('bare-cr-or-lf', `LF without CR at ${bare}`);
  return end;
}

/**
 * The lines of a complete head (`buf` ends in CRLFCRLF; headEnd refused any LF without its CR): how many
 * there are, and where the first one ends. Refuses a CR that no LF follows. Every later scan of the head
 * can then take a CR for the end of its line.
 */
function lineCount(buf: Buffer): { lines: number; firstEnd: number } {
  const last = buf.length - 4;
  let lines = 0;
  let firstEnd = -1;
  for (let i = 0; i < last; i++) {
    if (buf[i] !== CR) continue;
    if (buf[i + 1] !== LF) throw new HeadParseError('bare-cr-or-lf', 'CR without LF');
    if (firstEnd === -1) firstEnd = i;
    lines++;
  }
  return { lines: lines + 1, firstEnd: firstEnd === -1 ? last : firstEnd };
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/** origin-form (`/path?query`) with valid pct-encodings, or `*` for OPTIONS; nothing else is forwarded */
function isOriginFormTarget(method: string, t: string): boolean {
  if (t === '*') return method === 'OPTIONS';
  if (t.charCodeAt(0) !== 0x2f) return false;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c > 0xff || TARGET_CHAR[c] !== 1) return false;
    if (c === 0x25 && (HEX[t.charCodeAt(i + 1)] !== 1 || HEX[t.charCodeAt(i + 2)] !== 1)) return false;
  }
  return true;
}

function isAuthority(s: string): boolean {
  if (s.length === 0 || s.length > 255) return false;
  for (let i = 0; i < s.length; i++) if (HOST_CHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/** Whether a comma-separated header value lists `token` (case-insensitive, OWS around each element). */
function hasToken(v: string | string[] | undefined, token: string): boolean {
  if (v === undefined) return false;
  const s = String(v).toLowerCase();
  // most values are one token ("keep-alive"): no list to split
  if (s.indexOf(',') === -1) return s.trim() === token;
  return s.split(',').some((t) => t.trim() === token);
}

/** Content-Length: digits only, one value (a list, even of equal values, is refused), at most 2^53. */
function contentLength(v: string): number {
  // a loop, not /^[0-9]{1,15}$/: every response with a body has one, at each gateway
  let digits = v.length > 0 && v.length <= 15;
  for (let i = 0; digits && i < v.length; i++) {
    const c = v.charCodeAt(i);
    digits = c >= 0x30 && c <= 0x39;
  }
  if (!digits) throw new HeadParseError('invalid-content-length', JSON.stringify(v.slice(0, 40)));
  return Number(v);
}

/**
 * The framing of a message per RFC 9112 6.3. Transfer-Encoding must be exactly `chunked` (no other
 * coding: meshfed forwards bytes and decodes none) and never beside Content-Length.
 */
function framingOf(headers: Headers, minor: 0 | 1): Framing {
  const te = headers['transfer-encoding'];
  const length = lengthOf(headers);
  if (te !== undefined) {
    if (minor === 0)
      throw new HeadParseError('unsupported-transfer-encoding', 'Transfer-Encoding in HTTP/1.0');
    if (String(te).toLowerCase() !== 'chunked')
      throw new HeadParseError('unsupported-transfer-encoding', JSON.stringify(String(te).slice(0, 40)));
    return { kind: 'chunked' };
  }
  if (length === undefined || length === 0) return { kind: 'none' };
  return { kind: 'length', length };
}

/** The Content-Length of a message, undefined without one; refused beside Transfer-Encoding. */
function lengthOf(headers: Headers): number | undefined {
  const cl = headers['content-length'];
  if (cl === undefined) return undefined;
  if (headers['transfer-encoding'] !== undefined)
    throw new HeadParseError('content-length-with-transfer-encoding', 'both framings given');
  return contentLength(String(cl));
}

function keepAliveOf(headers: Headers, minor: 0 | 1): boolean {
  if (minor === 0) return false;
  return !hasToken(headers.connection, 'close');
}

/** Parses a complete request head (`buf` ends at its CRLFCRLF, see headEnd). Throws HeadParseError. */
export function parseRequestHead(buf: Buffer, limits: HeadLimits): RequestHead {
  const ls = lineCount(buf);
  const text = buf.toString('latin1');
  const start = text.slice(0, ls.firstEnd);
  const sp1 = start.indexOf(' ');
  const sp2 = start.indexOf(' ', sp1 + 1);
  if (sp1 <= 0 || sp2 === -1 || start.indexOf(' ', sp2 + 1) !== -1) {
    throw new HeadParseError('invalid-request-line', JSON.stringify(start.slice(0, 60)));
  }
  const method = start.slice(0, sp1);
  const target = start.slice(sp1 + 1, sp2);
  const version = start.slice(sp2 + 1);
  if (!isToken(method)) throw new HeadParseError('invalid-request-line', 'method is not a token');
  if (!METHODS.has(method)) throw new HeadParseError('unsupported-method', method.slice(0, 20));
  let minor: 0 | 1;
  if (version === 'HTTP/1.1') minor = 1;
  else if (version === 'HTTP/1.0') minor = 0;
  else if (/^HTTP\/[0-9]\.[0-9]$/.test(version)) throw new HeadParseError('unsupported-version', version);
  else throw new HeadParseError('invalid-request-line', 'no HTTP version');
  if (method !== 'CONNECT' && !isOriginFormTarget(method, target)) {
    throw new HeadParseError('invalid-request-target', JSON.stringify(target.slice(0, 60)));
  }
  const headers = parseFieldLines(buf, text, ls.firstEnd + 2, ls.lines - 1, limits.maxHeaders);
  const host = headers.host;
  if (minor === 1 && host === undefined) throw new HeadParseError('missing-host', 'HTTP/1.1 needs Host');
  if (host !== undefined && !isAuthority(String(host)))
    throw new HeadParseError('invalid-header-value', 'Host');
  const framing = framingOf(headers, minor);
  let expectContinue = false;
  const expect = headers.expect;
  if (expect !== undefined) {
    if (String(expect).toLowerCase() !== '100-continue')
      throw new HeadParseError('expectation-failed', String(expect).slice(0, 40));
    expectContinue = minor === 1;
  }
  const upgrade = headers.upgrade !== undefined && hasToken(headers.connection, 'upgrade');
  return {
    method,
    target,
    minor,
    headers,
    framing,
    keepAlive: keepAliveOf(headers, minor),
    expectContinue,
    upgrade,
    size: buf.length,
  };
}

const STATUS_PREFIX = Buffer.from('HTTP/1.');

/**
 * The status of a status line `HTTP/1.x NNN[ reason]` in buf[0, end), read from the bytes: x is 0 or 1, NNN
 * three digits not starting with 0, the reason made of field-content (HTAB, SP, VCHAR, obs-text); -1 when
 * the line is anything else.
 */
function statusOf(buf: Buffer, end: number): number {
  if (end < 12) return -1;
  // byte by byte: Buffer#compare with ranges validated its five offsets and allocated on every response
  for (let i = 0; i < 7; i++) if (buf[i] !== STATUS_PREFIX[i]) return -1;
  if ((buf[7] !== 0x30 && buf[7] !== 0x31) || buf[8] !== 0x20) return -1;
  const a = buf[9]! - 0x30;
  const b = buf[10]! - 0x30;
  const c = buf[11]! - 0x30;
  if (a < 1 || a > 9 || b < 0 || b > 9 || c < 0 || c > 9) return -1;
  if (end > 12) {
    if (buf[12] !== 0x20) return -1;
    for (let i = 13; i < end; i++) {
      const x = buf[i]!;
      if (x !== 0x09 && (x < 0x20 || x === 0x7f)) return -1;
    }
  }
  return a * 100 + b * 10 + c;
}

/**
 * Parses a complete response head from an upstream. The framing depends on the request (HEAD) and the
 * status (1xx, 204, 304 carry no body); a body without a length ends with the connection.
 */
export function parseResponseHead(buf: Buffer, limits: HeadLimits, requestMethod: string): ResponseHead {
  const ls = lineCount(buf);
  const status = statusOf(buf, ls.firstEnd);
  if (status === -1) {
    throw new HeadParseError(
      'invalid-status-line',
      JSON.stringify(buf.toString('latin1', 0, Math.min(ls.firstEnd, 60))),
    );
  }
  const minor = buf[7] === 0x31 ? 1 : 0;
  const headers = parseFieldLines(
    buf,
    buf.toString('latin1'),
    ls.firstEnd + 2,
    ls.lines - 1,
    limits.maxHeaders,
  );
  let framing: Framing;
  if (requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304) {
    // no body, whatever the fields say (RFC 9112 6.3), but a Content-Length is still checked: it is forwarded
    // (RFC 9110 8.6: never an invalid one), and node's parser refuses an invalid one, or one beside
    // Transfer-Encoding, here too (a HEAD response with `Content-Length: abc` was passed on)
    lengthOf(headers);
    framing = { kind: 'none' };
  } else {
    framing = framingOf(headers, minor);
    if (framing.kind === 'none' && headers['content-length'] === undefined) framing = { kind: 'close' };
  }
  return {
    status,
    minor,
    headers,
    framing,
    keepAlive: framing.kind !== 'close' && keepAliveOf(headers, minor),
    size: buf.length,
  };
}
