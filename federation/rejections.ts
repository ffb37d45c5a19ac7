import { type Counter, type Logger, type Registry, sharedCounter } from '../core/index.ts';
import type { MessageSource } from './events.ts';

const LOGGED_MAX = 10_000;

/** What a recorder counts: its metric, and the log line of a first rejection. */
export interface RejectionKind {
  metric: string;
  help: string;
  message: string;
}

const CATALOG_REJECTIONS: RejectionKind = {
  metric: 'meshfed_catalog_rejected_total',
  help: 'catalog messages refused (not JWS, forged, foreign root, wrong cluster, old revision, expired, malformed, oversized)',
  message: 'catalog message rejected (logged once per signer and reason; see meshfed_catalog_rejected_total)',
};

/**
 * Counts every refused catalog message by reason and logs each (signer, reason) pair once, so a peer that
 * floods forged or stale messages costs a counter increment, not a log line each.
 */
export class RejectionRecorder {
  readonly #counter: Counter<'reason'>;
  readonly #log: Logger;
  readonly #logged = new Set<string>();
  readonly #message: string;

  constructor(registry: Registry, log: Logger, kind: RejectionKind = CATALOG_REJECTIONS) {
    this.#log = log;
    this.#message = kind.message;
    this.#counter = sharedCounter(registry, kind.metric, kind.help, ['reason']);
  }

  record(
    r: { ok?: false; reason: string; signer: string; detail: string },
    context: { subject?: string; source: MessageSource },
  ): void {
    this.#counter.inc({ reason: r.reason });
    const once = `${r.signer}|${r.reason}`;
    if (this.#logged.has(once)) return;
    if (this.#logged.size >= LOGGED_MAX) this.#logged.clear();
    this.#logged.add(once);
    this.#log.warn(
      {
        signer: r.signer,
        reason: r.reason,
        detail: r.detail,
        subject: context.subject,
        source: context.source,
      },
      this.#message,
    );
  }
}
