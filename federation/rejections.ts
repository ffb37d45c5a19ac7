import { type Counter, type Logger, type Registry, sharedCounter } from '../core/index.ts';
import type { MessageSource } from './events.ts';
import type { Rejected } from './verifier.ts';

const METRIC = 'meshfed_catalog_rejected_total';
const LOGGED_MAX = 10_000;

/**
 * Counts every refused catalog message by reason and logs each (signer, reason) pair once, so a peer that
 * floods forged or stale messages costs a counter increment, not a log line each.
 */
export class RejectionRecorder {
  readonly #counter: Counter<'reason'>;
  readonly #log: Logger;
  readonly #logged = new Set<string>();

  constructor(registry: Registry, log: Logger) {
    this.#log = log;
    this.#counter = sharedCounter(
      registry,
      METRIC,
      'catalog messages refused (not JWS, forged, foreign root, wrong cluster, old revision, expired, malformed, oversized)',
      ['reason'],
    );
  }

  record(r: Rejected, context: { subject?: string; source: MessageSource }): void {
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
      'catalog message rejected (logged once per signer and reason; see meshfed_catalog_rejected_total)',
    );
  }
}
