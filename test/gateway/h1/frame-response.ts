import { bodyFramer } from '../../../gateway/h1/body.ts';
import type { Headers } from '../../../gateway/h1/field-lines.ts';
import { type Framing, headEnd, parseResponseHead, type ResponseHead } from '../../../gateway/h1/head.ts';
import { HeadParseError } from '../../../gateway/h1/head-error.ts';
import { LIMITS } from './frame-all.ts';

/** interim responses upstream.ts reads past before it gives up on a response (its `#head` guard) */
const MAX_INTERIM = 16;

export interface FramedResponse {
  status: number;
  headers: Headers;
  body: string;
  framing: Framing['kind'];
  /** where the exchange ended in the bytes: past the last head, or the body's last byte */
  end: number;
}

/** How an upstream's bytes ended for meshfed's codec. */
export type ResponseEnding =
  | { kind: 'response'; response: FramedResponse }
  /**
   * a head or body refused: a HeadParseError's reason, or one of upstream.ts's own refusals of interim
   * responses, named here (`unexpected-upgrade`, `interim-response-ends-connection`,
   * `too-many-interim-responses`) though it throws them as invalid-status-line
   */
  | { kind: 'error'; reason: string }
  /** the bytes ended inside a head, or inside a body its connection's close does not end */
  | { kind: 'incomplete' };

class Refused extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(reason);
    this.reason = reason;
  }
}

/**
 * Reads a response from `bytes`, which arrive in pieces of the given sizes and then the connection closes,
 * as the fast path's upstream exchange does (gateway/h1/upstream.ts `#read`, `#head`, `#feed`): the head
 * once headEnd finds its end in what has arrived, interim responses skipped, then the body by the head's
 * framing, fed each piece as it comes, a close-delimited one ended by the close.
 */
export function frameResponse(
  bytes: Buffer,
  method: string,
  splits: readonly number[] = [],
): { interim: number; ending: ResponseEnding } {
  let buf = Buffer.alloc(0);
  let consumed = 0;
  let interim = 0;
  let res: ResponseHead | undefined;
  let framer: ReturnType<typeof bodyFramer> | undefined;
  const parts: Buffer[] = [];
  const done = (): ResponseEnding => ({
    kind: 'response',
    response: {
      status: res!.status,
      headers: res!.headers,
      body: Buffer.concat(parts).toString('latin1'),
      framing: res!.framing.kind,
      end: consumed,
    },
  });
  const head = (): boolean => {
    for (let guard = 0; guard < MAX_INTERIM; guard++) {
      const e = headEnd(buf, LIMITS.maxHeadBytes);
      if (e === -1) return false;
      const h = parseResponseHead(buf.subarray(0, e), LIMITS, method);
      buf = buf.subarray(e);
      consumed += e;
      if (h.status >= 200) {
        res = h;
        return true;
      }
      interim++;
      if (h.status === 101) throw new Refused('unexpected-upgrade');
      if (!h.keepAlive) throw new Refused('interim-response-ends-connection');
    }
    throw new Refused('too-many-interim-responses');
  };
  const feed = (d: Buffer): boolean => {
    const used = framer!.feed(d, 0);
    consumed += used;
    return framer!.done;
  };
  try {
    let at = 0;
    for (let s = 0; at < bytes.length; s++) {
      const size = Math.max(1, splits[s % Math.max(1, splits.length)] ?? bytes.length);
      const piece = bytes.subarray(at, Math.min(bytes.length, at + size));
      at += piece.length;
      if (res) {
        if (feed(piece)) return { interim, ending: done() };
        continue;
      }
      buf = Buffer.concat([buf, piece]);
      if (!head()) continue;
      framer = bodyFramer(res!.framing, {
        maxTrailerBytes: LIMITS.maxHeadBytes,
        onData: (b) => parts.push(Buffer.from(b)),
      });
      const rest = buf;
      buf = Buffer.alloc(0);
      if (framer.done || (rest.length > 0 && feed(rest))) return { interim, ending: done() };
    }
    // the upstream closed: that ends only a body delimited by the close
    if (res?.framing.kind === 'close') return { interim, ending: done() };
    return { interim, ending: { kind: 'incomplete' } };
  } catch (err) {
    if (err instanceof HeadParseError || err instanceof Refused)
      return { interim, ending: { kind: 'error', reason: err.reason } };
    throw err;
  }
}
