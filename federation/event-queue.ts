import { type Logger, toMeshfedError } from '../core/index.ts';
import type { FederationEvent } from './events.ts';

/**
 * The one dispatcher of a federation node's events: handled one at a time, in the order they were raised. An
 * event raised while another is handled (a handler's own, or a callback's) joins the end of the queue, so no
 * handler ever runs inside another.
 */
export class FederationEventQueue {
  readonly #handle: (e: FederationEvent) => void;
  readonly #log: Logger;
  readonly #queue: FederationEvent[] = [];
  #draining = false;

  constructor(o: { handle: (e: FederationEvent) => void; log: Logger }) {
    this.#handle = o.handle;
    this.#log = o.log;
  }

  push(event: FederationEvent): void {
    this.#queue.push(event);
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#processNextEvent()) {
        // handled in order; a handler's own events join the end of the queue
      }
    } finally {
      this.#draining = false;
    }
  }

  /** drops what waits (the node stopped) */
  clear(): void {
    this.#queue.length = 0;
  }

  /** Handles the oldest queued event; false when the queue is empty. */
  #processNextEvent(): boolean {
    const event = this.#queue.shift();
    if (!event) return false;
    try {
      this.#handle(event);
    } catch (err) {
      // nothing a peer sends may crash the process; this is a bug of ours, logged with what it was handling
      const at = 'subject' in event ? event.subject : undefined;
      this.#log.error(
        { err: toMeshfedError(err), event: event.type, source: event.source, subject: at },
        'federation event handling failed',
      );
    }
    return true;
  }
}
