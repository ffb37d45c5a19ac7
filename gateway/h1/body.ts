import { isInternalHeader } from '../headers.ts';
import { TCHAR, VALUE_CHAR } from './char-classes.ts';
import type { Framing } from './head.ts';
import { HeadParseError } from './head-error.ts';

/**
 * Finds where a message body ends in the bytes of a connection, without copying or re-encoding them:
 * the fast path forwards the very bytes it framed. `feed` returns how many bytes of `buf` belong to this
 * body (all of them while it continues) and reports the decoded payload to `onData` when asked (only a
 * bridge to HTTP/2 needs it). A chunked body is checked as strictly as a head: any doubt throws.
 */
export interface BodyFramer {
  /** bytes of `buf` (from `from`) that are this body's; `done` once its last byte has been seen */
  feed(buf: Buffer, from: number): number;
  readonly done: boolean;
  /**
   * the payload bytes fed so far: what the golden metrics count as the body, whatever its framing (a
   * chunked body's size lines, extensions and trailers are not the caller's bytes)
   */
  readonly payloadBytes: number;
}

/** the size and extensions of one chunk line, and the whole trailer section, are bounded */
const MAX_CHUNK_LINE = 128;
const MAX_CHUNK_SIZE = 2 ** 48;

export function bodyFramer(
  framing: Framing,
  o: { maxTrailerBytes: number; onData?: (chunk: Buffer) => void },
): BodyFramer {
  switch (framing.kind) {
    case 'none':
      return { feed: () => 0, done: true, payloadBytes: 0 };
    case 'length':
      return new LengthFramer(framing.length, o.onData);
    case 'close':
      return new CloseFramer(o.onData);
    case 'chunked':
      return new ChunkedFramer(o.maxTrailerBytes, o.onData);
  }
}

class LengthFramer implements BodyFramer {
  payloadBytes = 0;
  #left: number;
  readonly #onData: ((chunk: Buffer) => void) | undefined;
  constructor(length: number, onData?: (chunk: Buffer) => void) {
    this.#left = length;
    this.#onData = onData;
  }
  get done(): boolean {
    return this.#left === 0;
  }
  feed(buf: Buffer, from: number): number {
    const n = Math.min(this.#left, buf.length - from);
    this.#left -= n;
    this.payloadBytes += n;
    if (n > 0 && this.#onData) this.#onData(buf.subarray(from, from + n));
    return n;
  }
}

/** A response body delimited by the connection's close: every byte is the body's. */
class CloseFramer implements BodyFramer {
  readonly done = false;
  payloadBytes = 0;
  readonly #onData: ((chunk: Buffer) => void) | undefined;
  constructor(onData?: (chunk: Buffer) => void) {
    this.#onData = onData;
  }
  feed(buf: Buffer, from: number): number {
    this.payloadBytes += buf.length - from;
    if (this.#onData && buf.length > from) this.#onData(buf.subarray(from));
    return buf.length - from;
  }
}

/** the states of the chunked framer */
const S = {
  Size: 0,
  ExtName: 1,
  ExtValue: 2,
  SizeLf: 3,
  Data: 4,
  DataCr: 5,
  DataLf: 6,
  TrailerStart: 7,
  Trailer: 8,
  TrailerLf: 9,
  EndLf: 10,
  Done: 11,
} as const;
type State = (typeof S)[keyof typeof S];

/**
 * chunked = *chunk last-chunk trailer-section CRLF (RFC 9112 7.1). Chunk extensions are allowed only as
 * `;name` or `;name=value` of tokens, no whitespace, a chunk line at most 128 bytes: the extension
 * grammar is where parsers have disagreed (quoted strings, bare LF inside), so meshfed takes its narrowest
 * part. Trailer fields are checked like header fields, and one that names an internal header is refused.
 */
class ChunkedFramer implements BodyFramer {
  payloadBytes = 0;
  #s: State = S.Size;
  #size = 0;
  #digits = 0;
  #lineBytes = 0;
  #extChars = 0;
  #trailerBytes = 0;
  #line = '';
  readonly #maxTrailer: number;
  readonly #onData: ((chunk: Buffer) => void) | undefined;

  constructor(maxTrailerBytes: number, onData?: (chunk: Buffer) => void) {
    this.#maxTrailer = maxTrailerBytes;
    this.#onData = onData;
  }

  get done(): boolean {
    return this.#s === S.Done;
  }

  feed(buf: Buffer, from: number): number {
    let i = from;
    const end = buf.length;
    while (i < end && this.#s !== S.Done) {
      if (this.#s === S.Data) {
        const n = Math.min(this.#size, end - i);
        if (this.#onData) this.#onData(buf.subarray(i, i + n));
        this.#size -= n;
        this.payloadBytes += n;
        i += n;
        if (this.#size === 0) this.#s = S.DataCr;
        continue;
      }
      this.#step(buf[i]!);
      i++;
    }
    return i - from;
  }

  #step(c: number): undefined {
    switch (this.#s) {
      case S.Size: {
        const d = hexValue(c);
        if (d !== -1) {
          if (++this.#digits > 16) throw bad('invalid-chunk', 'chunk size too long');
          this.#size = this.#size * 16 + d;
          if (this.#size > MAX_CHUNK_SIZE) throw bad('invalid-chunk', 'chunk size too large');
          this.#line1();
          return;
        }
        if (this.#digits === 0) throw bad('invalid-chunk', 'chunk size expected');
        if (c === 0x3b) return this.#ext(S.ExtName);
        if (c === 0x0d) {
          this.#s = S.SizeLf;
          return;
        }
        throw bad('invalid-chunk', `byte ${c} in a chunk size`);
      }
      case S.ExtName:
      case S.ExtValue: {
        this.#line1();
        if (TCHAR[c] === 1) {
          this.#extChars++;
          return;
        }
        if (this.#extChars === 0) throw bad('invalid-chunk-extension', 'empty extension name or value');
        if (c === 0x3d && this.#s === S.ExtName) return this.#ext(S.ExtValue);
        if (c === 0x3b) return this.#ext(S.ExtName);
        if (c === 0x0d) {
          this.#s = S.SizeLf;
          return;
        }
        throw bad('invalid-chunk-extension', `byte ${c} in a chunk extension`);
      }
      case S.SizeLf:
        if (c !== 0x0a) throw bad('invalid-chunk', 'CR without LF after a chunk size');
        this.#lineBytes = 0;
        this.#digits = 0;
        this.#s = this.#size === 0 ? S.TrailerStart : S.Data;
        return;
      case S.DataCr:
        if (c !== 0x0d) throw bad('invalid-chunk', 'chunk data longer than its size');
        this.#s = S.DataLf;
        return;
      case S.DataLf:
        if (c !== 0x0a) throw bad('invalid-chunk', 'CR without LF after chunk data');
        this.#s = S.Size;
        return;
      case S.TrailerStart:
        if (c === 0x0d) {
          this.#s = S.EndLf;
          return;
        }
        this.#line = '';
        this.#s = S.Trailer;
        return this.#trailerByte(c);
      case S.Trailer:
        return this.#trailerByte(c);
      case S.TrailerLf:
        if (c !== 0x0a) throw bad('invalid-trailer', 'CR without LF in the trailer section');
        checkTrailer(this.#line);
        this.#s = S.TrailerStart;
        return;
      case S.EndLf:
        if (c !== 0x0a) throw bad('invalid-chunk', 'CR without LF after the last chunk');
        this.#s = S.Done;
        return;
    }
  }

  #ext(next: typeof S.ExtName | typeof S.ExtValue): undefined {
    this.#line1();
    this.#extChars = 0;
    this.#s = next;
  }

  #line1(): void {
    if (++this.#lineBytes > MAX_CHUNK_LINE) throw bad('invalid-chunk-extension', 'chunk line too long');
  }

  #trailerByte(c: number): undefined {
    if (++this.#trailerBytes > this.#maxTrailer) throw bad('invalid-trailer', 'trailer section too large');
    if (c === 0x0d) {
      this.#s = S.TrailerLf;
      return;
    }
    if (c === 0x0a) throw bad('invalid-trailer', 'LF without CR in the trailer section');
    this.#line += String.fromCharCode(c);
  }
}

function checkTrailer(line: string): void {
  const first = line.charCodeAt(0);
  if (first === 0x20 || first === 0x09) throw bad('invalid-trailer', 'obs-fold in a trailer');
  const colon = line.indexOf(':');
  if (colon <= 0) throw bad('invalid-trailer', 'a trailer line without a name');
  for (let i = 0; i < colon; i++) {
    if (TCHAR[line.charCodeAt(i)] !== 1) throw bad('invalid-trailer', 'invalid trailer name');
  }
  for (let i = colon + 1; i < line.length; i++) {
    if (VALUE_CHAR[line.charCodeAt(i)] !== 1) throw bad('invalid-trailer', 'invalid trailer value');
  }
  // a trailer is forwarded as sent: one a backend could merge into its headers must never carry trust
  if (isInternalHeader(line.slice(0, colon))) throw bad('invalid-trailer', 'an internal header as a trailer');
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function bad(reason: 'invalid-chunk' | 'invalid-chunk-extension' | 'invalid-trailer', detail: string) {
  return new HeadParseError(reason, detail);
}
