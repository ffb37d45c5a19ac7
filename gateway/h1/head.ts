import type { RefusalReason } from '../answers.ts';

/**
 * meshfed's HTTP/1.1 head parser, strict per RFC 9112. It refuses, rather than repairs, everything a proxy
 * could read differently from the server behind it: a refusal here is a 400 (or 431/501/505/417) and a
 * closed connection, never a guess. What it accepts it hands over as a compact head (method, target,
 * version, lower-case headers) plus the body's framing, decided once, here.
 */

/** Why a head was refused; each is answered by the entry with `status` and the connection closed. */
export type HeadError =
  | 'bare-cr-or-lf'
  | 'head-too-large'
  | 'too-many-headers'
  | 'invalid-request-line'
  | 'unsupported-method'
  | 'invalid-request-target'
  | 'unsupported-version'
  | 'invalid-header-name'
  | 'invalid-header-value'
  | 'obs-fold'
  | 'missing-host'
  | 'duplicate-header'
  | 'invalid-content-length'
  | 'content-length-with-transfer-encoding'
  | 'unsupported-transfer-encoding'
  | 'expectation-failed'
  | 'invalid-status-line'
  | 'invalid-chunk'
  | 'invalid-chunk-extension'
  | 'invalid-trailer';

/** The refusal (gateway/answers.ts) each head error is answered with; the connection is then closed. */
export const HEAD_ERROR_REFUSAL: Record<HeadError, RefusalReason> = {
  'bare-cr-or-lf': 'malformed-request',
  'head-too-large': 'head-too-large',
  'too-many-headers': 'head-too-large',
  'invalid-request-line': 'malformed-request',
  'unsupported-method': 'unsupported-method',
  'invalid-request-target': 'invalid-request-target',
  'unsupported-version': 'unsupported-version',
  'invalid-header-name': 'malformed-request',
  'invalid-header-value': 'malformed-request',
  'obs-fold': 'malformed-request',
  'missing-host': 'malformed-request',
  'duplicate-header': 'malformed-request',
  'invalid-content-length': 'malformed-request',
  'content-length-with-transfer-encoding': 'malformed-request',
  'unsupported-transfer-encoding': 'unsupported-transfer-encoding',
  'expectation-failed': 'expectation-failed',
  'invalid-status-line': 'malformed-request',
  'invalid-chunk': 'malformed-request',
  'invalid-chunk-extension': 'malformed-request',
  'invalid-trailer': 'malformed-request',
};

export class HeadParseError extends Error {
  readonly reason: HeadError;
  constructor(reason: HeadError, detail: string) {
    super(`${reason}: ${detail}`);
    this.reason = reason;
  }
}

/** How a message's body is delimited (RFC 9112 6.3). */
export type Framing =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** a response body that ends when the connection closes (never a request's) */
  | { kind: 'close' };

export type Headers = Record<string, string | string[]>;

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
 * Methods the fast path forwards. CONNECT is parsed (its authority-form target is refused by the caller
 * or handed to the tunnel path); anything else is 501: an unknown method is a parser disagreement waiting
 * to happen.
 */
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT']);

export const TCHAR = table("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
/** pchar / "/" / "?" of RFC 3986 (origin-form); '%' is checked to start a pct-encoding */
const TARGET_CHAR = table(
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%",
);
/** field-content: VCHAR, obs-text, and SP/HTAB inside a value */
export const VALUE_CHAR = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) VALUE_CHAR[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE_CHAR[c] = 1;
VALUE_CHAR[0x20] = 1;
VALUE_CHAR[0x09] = 1;
/** the authority of a Host header: reg-name / IPv4 / [IPv6] with an optional port */
const HOST_CHAR = table("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:[]%");
const HEX = table('0123456789ABCDEFabcdef');

function table(chars: string): Uint8Array {
  const t = new Uint8Array(256);
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  return t;
}

/**
 * Fields a message carries at most once: a second copy is a request the next hop may read differently
 * (which Host, which length, which credentials), so it is refused rather than merged or dropped.
 */
const SINGLETON = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'content-type',
  'authorization',
  'proxy-authorization',
  'expect',
  'upgrade',
  'max-forwards',
  'if-modified-since',
  'if-unmodified-since',
  'user-agent',
  'referer',
  'from',
]);

const CR = 0x0d;
const LF = 0x0a;

/**
 * Field names most messages carry, lower case, grouped by length. A name that matches one in any case is
 * taken from here instead of sliced from the head: a string literal is interned, so storing and looking it up
 * as a property skips V8's hashing and string-table lookup of a fresh slice, and no lower-casing is needed.
 * Only letters, digits and '-' may appear in these names (knownName relies on it).
 */
const KNOWN_NAMES: readonly (readonly string[])[] = (() => {
  const names = [
    'host',
    'date',
    'accept',
    'server',
    'cookie',
    'expect',
    'upgrade',
    'connection',
    'keep-alive',
    'user-agent',
    'set-cookie',
    'content-type',
    'content-length',
    'transfer-encoding',
    'accept-encoding',
    'accept-language',
    'authorization',
    'cache-control',
    'traceparent',
    'tracestate',
    'x-request-id',
    'x-forwarded-for',
    'x-forwarded-proto',
    'x-meshfed-caller',
    'x-meshfed-service',
  ];
  const byLength: string[][] = [];
  for (const n of names) {
    byLength[n.length] ??= [];
    byLength[n.length]!.push(n);
  }
  return byLength;
})();

/**
 * The interned lower-case name for the token `buf[start, end)` (already checked to be a token) when it is a
 * known one, else undefined. `c | 0x20` lower-cases a letter and leaves a known name's digits and '-' alone;
 * within a token no other byte maps onto one of those (0x0d and 0x10-0x19 are not token characters).
 */
function knownName(buf: Buffer, start: number, end: number): string | undefined {
  const candidates = KNOWN_NAMES[end - start];
  if (candidates === undefined) return undefined;
  next: for (let k = 0; k < candidates.length; k++) {
    const n = candidates[k]!;
    for (let j = 0; j < n.length; j++) if ((buf[start + j]! | 0x20) !== n.charCodeAt(j)) continue next;
    return n;
  }
  return undefined;
}

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

/**
 * The headers object of a parsed head: nothing on its prototype chain (a field named `constructor` or
 * `__proto__` is a field like any other, never Object.prototype's), and, unlike Object.create(null), which
 * V8 makes a hash table, an object with fast properties: adding six fields and walking them with for…in
 * took 0.2 µs against 1.6 µs.
 */
const FieldMap = function FieldMap() {} as unknown as new () => Headers;
FieldMap.prototype = Object.create(null);

/**
 * The field lines of a head, from `from` (the start of the first one) to the final CRLF, into lower-case
 * headers, in one pass over the bytes. A name is a token directly followed by ':' (no whitespace before the
 * colon, RFC 9112 5.1); the value is trimmed of OWS and made of field-content only; a line starting with
 * whitespace is obs-fold, refused (RFC 9112 5.2 lets a proxy refuse it). `fieldLines` (from lineCount) is
 * checked against the limit before any field is read. `text` is `buf` decoded as latin1 (a character per byte).
 */
function fields(buf: Buffer, text: string, from: number, fieldLines: number, limits: HeadLimits): Headers {
  if (fieldLines > limits.maxHeaders) {
    throw new HeadParseError('too-many-headers', `more than ${limits.maxHeaders} header fields`);
  }
  const headers = new FieldMap();
  const last = buf.length - 2;
  let i = from;
  while (i < last) {
    const start = i;
    const first = buf[i]!;
    if (first === 0x20 || first === 0x09)
      throw new HeadParseError('obs-fold', 'a field line continues the previous one');
    let upper = false;
    while (TCHAR[buf[i]!] === 1) {
      const c = buf[i]!;
      if (c >= 0x41 && c <= 0x5a) upper = true;
      i++;
    }
    if (i === start || buf[i] !== 0x3a) {
      throw new HeadParseError(
        'invalid-header-name',
        JSON.stringify(buf.toString('latin1', start, Math.min(buf.indexOf(CR, start), start + 40))),
      );
    }
    // names and values are slices of the head decoded once (`text`): a latin1 decode per field cost more
    // than the rest of the parse; a known name is not even sliced
    let name = knownName(buf, start, i);
    if (name === undefined) {
      const raw = text.slice(start, i);
      name = upper ? raw.toLowerCase() : raw;
    }
    i++;
    while (buf[i] === 0x20 || buf[i] === 0x09) i++;
    const a = i;
    let bad = false;
    while (buf[i] !== CR) {
      if (VALUE_CHAR[buf[i]!] !== 1) bad = true;
      i++;
    }
    let b = i;
    while (b > a && (buf[b - 1] === 0x20 || buf[b - 1] === 0x09)) b--;
    if (bad) {
      for (let j = a; j < b; j++)
        if (VALUE_CHAR[buf[j]!] !== 1) throw new HeadParseError('invalid-header-value', `in ${name}`);
    }
    // past the CRLF (lineCount made sure every CR of the head has its LF)
    i += 2;
    const value = text.slice(a, b);
    const prev = headers[name];
    if (prev === undefined) {
      headers[name] = name === 'set-cookie' ? [value] : value;
    } else if (SINGLETON.has(name)) {
      throw new HeadParseError('duplicate-header', `${name} appears more than once`);
    } else if (Array.isArray(prev)) {
      prev.push(value);
    } else {
      headers[name] = `${prev}${name === 'cookie' ? '; ' : ', '}${value}`;
    }
  }
  return headers;
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
  const cl = headers['content-length'];
  if (te !== undefined) {
    if (cl !== undefined)
      throw new HeadParseError('content-length-with-transfer-encoding', 'both framings given');
    if (minor === 0)
      throw new HeadParseError('unsupported-transfer-encoding', 'Transfer-Encoding in HTTP/1.0');
    if (String(te).toLowerCase() !== 'chunked')
      throw new HeadParseError('unsupported-transfer-encoding', JSON.stringify(String(te).slice(0, 40)));
    return { kind: 'chunked' };
  }
  if (cl !== undefined) {
    const length = contentLength(String(cl));
    return length === 0 ? { kind: 'none' } : { kind: 'length', length };
  }
  return { kind: 'none' };
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
  const headers = fields(buf, text, ls.firstEnd + 2, ls.lines - 1, limits);
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
  const headers = fields(buf, buf.toString('latin1'), ls.firstEnd + 2, ls.lines - 1, limits);
  let framing: Framing;
  if (requestMethod === 'HEAD' || status < 200 || status === 204 || status === 304) {
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
