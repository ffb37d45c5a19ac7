import { type Counter, type Logger, type Registry, sharedCounter } from '../core/index.ts';
import { RequestLimiter } from './request-limiter.ts';
import type { MessageVerifier } from './verifier.ts';

/** Why a snapshot or announcement request went unanswered; the `reason` label of meshfed_catalog_sync_refused_total. */
export type SyncRefusal =
  | 'not_inbox'
  | 'unverified'
  | 'reply_mismatch'
  | 'replayed'
  | 'requester_rate'
  | 'total_rate';

/** What a verified request asks for: our announcement (sync-all) or a snapshot of our set. */
export interface SyncAnswer {
  kind: 'announce' | 'snapshot';
  req: string;
  reply: string;
  /** the asking cluster, as its signature proves */
  requester: string;
}

/** a reply subject: tokens of letters, digits, "-" and "_" (no wildcards, no spaces) */
const SUBJECT = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$/;
/** answered requests remembered against replays; each is forgotten at its own expiry */
const SEEN_MAX = 16_384;
const LOGGED_MAX = 1024;

/**
 * Decides whether a snapshot or announcement request is answered. A request is a `sync` message signed by the
 * asking cluster's federation identity, naming the inbox its answer goes to; it is answered only when
 *  - the NATS reply subject is an inbox (`_INBOX.` or our `nats.inboxPrefix`) and equals the signed one, so
 *    nobody can make this cluster publish signed snapshots onto a subject of their choosing;
 *  - it was not answered before (a captured request replayed spends nobody's budget);
 *  - the asking cluster is within its own rate, and everyone together within the total: the requester is the
 *    signer's cluster, which no one can cycle (inventing inboxes no longer buys a fresh bucket).
 * Refusals get no answer, are counted by reason and logged once per requester and reason.
 */
export class SyncResponder {
  readonly #verifier: MessageVerifier;
  readonly #limiter: RequestLimiter;
  readonly #inboxPrefixes: string[];
  readonly #syncAll: string;
  readonly #log: Logger;
  readonly #refused: Counter<'reason'>;
  readonly #seen = new Map<string, number>();
  readonly #logged = new Set<string>();

  constructor(o: {
    verifier: MessageVerifier;
    limits: { perRequester: number; perRequesterBurst: number; total: number; totalBurst: number };
    inboxPrefix: string;
    syncAllSubject: string;
    log: Logger;
    registry: Registry;
    now: number;
  }) {
    this.#verifier = o.verifier;
    this.#limiter = new RequestLimiter(o.limits, o.now);
    this.#inboxPrefixes = [...new Set(['_INBOX.', `${o.inboxPrefix}.`])];
    this.#syncAll = o.syncAllSubject;
    this.#log = o.log;
    this.#refused = sharedCounter(
      o.registry,
      'meshfed_catalog_sync_refused_total',
      'snapshot and announcement requests left unanswered (not to an inbox, not signed by a member cluster, replayed, or over federation.responderLimits), by reason',
      ['reason'],
    );
  }

  /** The answer to give, or undefined when the request is refused (already counted and logged). */
  handle(subject: string, reply: string | undefined, data: Uint8Array, now: number): SyncAnswer | undefined {
    if (!reply || !SUBJECT.test(reply) || !this.#inboxPrefixes.some((p) => reply.startsWith(p))) {
      return this.#refuse('not_inbox', reply ?? '(none)', `reply subject ${JSON.stringify(reply ?? '')}`);
    }
    const v = this.#verifier.verify(data);
    if (!v.ok || v.msg.type !== 'sync') {
      const why = v.ok ? `a ${v.msg.type}, not a sync request` : `${v.reason}: ${v.detail}`;
      return this.#refuse('unverified', v.signer, why);
    }
    const msg = v.msg;
    if (msg.reply !== reply) {
      return this.#refuse('reply_mismatch', msg.cluster, `signed for ${msg.reply}, sent with ${reply}`);
    }
    const id = `${msg.cluster}|${msg.req}`;
    if (this.#seen.has(id)) return this.#refuse('replayed', msg.cluster, `request ${msg.req} again`);
    const limited = this.#limiter.take(msg.cluster, now);
    if (limited) return this.#refuse(limited, msg.cluster, 'federation.responderLimits');
    this.#remember(id, msg.expiresAt, now);
    return {
      kind: subject === this.#syncAll ? 'announce' : 'snapshot',
      req: msg.req,
      reply,
      requester: msg.cluster,
    };
  }

  #remember(id: string, expiresAt: number, now: number): void {
    if (this.#seen.size >= SEEN_MAX) {
      // a request is remembered for as long as the verifier would accept it again (its expiry plus the skew)
      for (const [k, until] of this.#seen) if (this.#verifier.expired(until, now)) this.#seen.delete(k);
      // still full: the oldest goes (it is the closest to its own expiry)
      if (this.#seen.size >= SEEN_MAX) this.#seen.delete(this.#seen.keys().next().value!);
    }
    this.#seen.set(id, expiresAt);
  }

  #refuse(reason: SyncRefusal, requester: string, detail: string): undefined {
    this.#refused.inc({ reason });
    const once = `${requester}|${reason}`;
    if (this.#logged.has(once)) return undefined;
    if (this.#logged.size >= LOGGED_MAX) this.#logged.clear();
    this.#logged.add(once);
    this.#log.warn(
      { requester, reason, detail },
      'catalog sync request refused (logged once per requester and reason; see meshfed_catalog_sync_refused_total)',
    );
    return undefined;
  }
}
