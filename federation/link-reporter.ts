import { type LinkFigures, type Logger, MAX_REPORTED_LINKS, toMeshfedError } from '../core/index.ts';
import type { JwsSigner } from './jws.ts';
import { type LinksMessage, SCHEMA_VERSION } from './messages.ts';

export interface LinkReporterOptions {
  cluster: string;
  gateway: string;
  heartbeatInterval: number;
  /** `<p>.links.<cluster>` */
  subject: string;
  /** this gateway's outbound calls per destination cluster over the last `windowMs` */
  measure: (windowMs: number) => Promise<readonly LinkFigures[]>;
  /** the federation identity's signer, once there is one */
  signer: () => JwsSigner | undefined;
  /** false when not connected (the report is skipped: the next heartbeat sends a fresh one) */
  send: (subject: string, data: string) => boolean;
  log: Logger;
  now: () => number;
}

/** the shortest window a report covers: the dashboard's live window, so its figures compare with a report's */
const MIN_WINDOW_MS = 3_000;
/** the longest: what the golden metrics' window keeps */
const MAX_WINDOW_MS = 300_000;
/** a gateway that stops reporting stops showing links after this many missed heartbeats */
const REPORT_LIFE_HEARTBEATS = 3;

/**
 * Publishes this gateway's link report every heartbeat: its outbound golden figures per destination cluster
 * (the busiest MAX_REPORTED_LINKS), signed by the cluster's federation identity like every catalog message.
 * An idle gateway says "no calls" once, then stays quiet until it sends calls again.
 */
export class LinkReporter {
  readonly #o: LinkReporterOptions;
  #busy = false;
  #saidIdle = false;

  constructor(o: LinkReporterOptions) {
    this.#o = o;
  }

  /** the window a report covers: one heartbeat, within [MIN_WINDOW_MS, MAX_WINDOW_MS] */
  get windowMs(): number {
    return Math.min(MAX_WINDOW_MS, Math.max(MIN_WINDOW_MS, this.#o.heartbeatInterval));
  }

  async report(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const o = this.#o;
      const windowMs = this.windowMs;
      const links = toReported(await o.measure(windowMs), o.cluster);
      if (links.length === 0 && this.#saidIdle) return;
      const signer = o.signer();
      if (!signer) return;
      const issuedAt = o.now();
      const msg: LinksMessage = {
        v: SCHEMA_VERSION,
        type: 'links',
        cluster: o.cluster,
        gateway: o.gateway,
        issuedAt,
        expiresAt: issuedAt + REPORT_LIFE_HEARTBEATS * o.heartbeatInterval,
        windowMs,
        links,
      };
      if (o.send(o.subject, signer.sign(msg))) this.#saidIdle = links.length === 0;
    } catch (err) {
      // the next heartbeat tries again; nothing here is worth more than a debug line each time
      this.#o.log.debug({ err: toMeshfedError(err) }, 'link report not sent');
    } finally {
      this.#busy = false;
    }
  }
}

/** Calls within this cluster are no link; the busiest links first, so the cut keeps what matters. */
export function toReported(measured: readonly LinkFigures[], cluster: string): LinksMessage['links'] {
  return measured
    .filter((l) => l.requests > 0 && l.to !== cluster)
    .sort((a, b) => b.requests - a.requests)
    .slice(0, MAX_REPORTED_LINKS)
    .map((l) => ({
      to: l.to,
      requests: l.requests,
      failures: Math.min(l.failures, l.requests),
      p99Ms: Math.round(l.p99Ms * 100) / 100,
    }));
}
