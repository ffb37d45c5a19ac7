import { bodyFramer } from '../../../gateway/h1/body.ts';
import type { Headers } from '../../../gateway/h1/field-lines.ts';
import { headEnd, parseRequestHead } from '../../../gateway/h1/head.ts';
import { HeadParseError } from '../../../gateway/h1/head-error.ts';

export const LIMITS = { maxHeadBytes: 16 * 1024, maxHeaders: 100 };

export interface Framed {
  method: string;
  target: string;
  headers: Headers;
  body: string;
}

/** How a connection's bytes ended for meshfed's codec. */
export type Ending =
  | { kind: 'error'; reason: string }
  /** the bytes ended inside a head or a body */
  | { kind: 'incomplete' }
  /** a request that ends the connection (Connection: close, HTTP/1.0): what follows is never read */
  | { kind: 'closed' }
  /** an upgrade or CONNECT: the fast path hands the connection to another */
  | { kind: 'handover' }
  | { kind: 'eof' };

/**
 * Frames every request in `bytes` as the fast path's entry does (head, then the body by its framing, then
 * the next head), feeding the body in the given split sizes so the incremental framer is exercised.
 */
export function frameAll(
  bytes: Buffer,
  splits: readonly number[] = [],
): { requests: Framed[]; ending: Ending } {
  const requests: Framed[] = [];
  let at = 0;
  for (let guard = 0; guard < 64; guard++) {
    if (at === bytes.length) return { requests, ending: { kind: 'eof' } };
    const rest = bytes.subarray(at);
    try {
      const end = headEnd(rest, LIMITS.maxHeadBytes);
      if (end === -1) return { requests, ending: { kind: 'incomplete' } };
      const head = parseRequestHead(rest.subarray(0, end), LIMITS);
      if (head.upgrade || head.method === 'CONNECT') return { requests, ending: { kind: 'handover' } };
      at += end;
      const parts: Buffer[] = [];
      const framer = bodyFramer(head.framing, {
        maxTrailerBytes: LIMITS.maxHeadBytes,
        onData: (d) => parts.push(Buffer.from(d)),
      });
      let s = 0;
      while (!framer.done && at < bytes.length) {
        const size = Math.max(1, splits[s++ % Math.max(1, splits.length)] ?? bytes.length);
        const piece = bytes.subarray(at, Math.min(bytes.length, at + size));
        const used = framer.feed(piece, 0);
        at += used;
        if (used < piece.length) break;
      }
      if (!framer.done) return { requests, ending: { kind: 'incomplete' } };
      requests.push({
        method: head.method,
        target: head.target,
        headers: head.headers,
        body: Buffer.concat(parts).toString('latin1'),
      });
      if (!head.keepAlive) return { requests, ending: { kind: 'closed' } };
    } catch (err) {
      if (err instanceof HeadParseError) return { requests, ending: { kind: 'error', reason: err.reason } };
      throw err;
    }
  }
  return { requests, ending: { kind: 'eof' } };
}
