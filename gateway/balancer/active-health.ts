import { stallSafeTimeout } from '../../core/index.ts';
import type { BalancerTarget } from './balancers.ts';
import type { BalancerConfig } from './config.ts';

/**
 * How long a remote gateway that said it drains gets no new request unless a health probe finds a gateway
 * serving at its address first (a restarted one): longer than a drain, bounded for a gateway without probes.
 */
export const PEER_DRAINING_MS = 30_000;

/** Active health of one address (a remote gateway answers for all its services at once). */
interface ActiveHealth {
  healthy: boolean;
  /** probes in a row that disagree with `healthy` */
  streak: number;
}

export interface ActiveHealthOptions {
  /** read at every round: a reloaded configuration applies at the next one */
  config: () => BalancerConfig['healthCheck'];
  now: () => number;
  /** one target per remote gateway address to probe */
  targets: () => Iterable<BalancerTarget>;
}

/**
 * Active health checks of remote gateways, by address, with thresholds in both directions, and the remote
 * gateways that said they drain (they get no new request until a probe finds one serving there again).
 */
export class ActiveHealthChecks {
  readonly #o: ActiveHealthOptions;
  /** keyed by target address; only remote gateways are probed */
  readonly #health = new Map<string, ActiveHealth>();
  /** remote gateway addresses that said they drain, and until when they get no new request */
  readonly #drainingUntil = new Map<string, number>();
  /** remote gateway addresses that left a PING unanswered (gateway/peer-liveness.ts), and until when */
  readonly #unresponsiveUntil = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #probe: ((t: BalancerTarget) => Promise<boolean>) | undefined;
  #probing = false;

  constructor(o: ActiveHealthOptions) {
    this.#o = o;
  }

  /** neither draining, nor unresponsive, nor failing its probes */
  healthy(address: string): boolean {
    if (this.#drainingUntil.size > 0 && this.#stillDraining(address)) return false;
    if (this.#unresponsiveUntil.size > 0 && this.unresponsive(address)) return false;
    return this.probedHealthy(address);
  }

  /**
   * The remote gateway at `address` left a PING unanswered: no new request until a probe is answered there,
   * or `forMs` pass. 'last' (nothing marked) when no other remote gateway is healthy: a gateway cannot tell a
   * silent peer from its own overloaded host, and taking every peer out of rotation on that would turn a slow
   * host into an outage.
   */
  peerUnresponsive(address: string, forMs: number): 'ejected' | 'already' | 'last' {
    const was = this.unresponsive(address);
    if (!was) {
      let others = 0;
      for (const t of this.#o.targets()) if (t.address !== address && this.healthy(t.address)) others++;
      if (others === 0) return 'last';
    }
    this.#unresponsiveUntil.set(address, this.#o.now() + forMs);
    return was ? 'already' : 'ejected';
  }

  /** whether `address` is marked unresponsive now */
  unresponsive(address: string): boolean {
    const until = this.#unresponsiveUntil.get(address);
    if (until === undefined) return false;
    if (until > this.#o.now()) return true;
    this.#unresponsiveUntil.delete(address);
    return false;
  }

  /** what the probes say of `address` (true until they say otherwise) */
  probedHealthy(address: string): boolean {
    return this.#health.get(address)?.healthy ?? true;
  }

  /** the remote gateway at `address` said it drains (see Balancers.peerDraining) */
  peerDraining(address: string): void {
    this.#drainingUntil.set(address, this.#o.now() + PEER_DRAINING_MS);
  }

  #stillDraining(address: string): boolean {
    const until = this.#drainingUntil.get(address);
    if (until === undefined) return false;
    if (until > this.#o.now()) return true;
    this.#drainingUntil.delete(address);
    return false;
  }

  /** probes with `probe` every healthCheck.interval, or stops (undefined) */
  start(probe: ((t: BalancerTarget) => Promise<boolean>) | undefined): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#probe = probe;
    if (!probe) return;
    this.#timer = setInterval(() => void this.#run(), this.#o.config().interval);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    const probe = this.#probe;
    if (this.#probing || !probe) return;
    this.#probing = true;
    try {
      const hc = this.#o.config();
      await Promise.all(
        [...this.#o.targets()].map(async (t) => {
          const ok = await Promise.race([
            probe(t).catch(() => false),
            // an answer that arrived during a stall of the loop wins over the timeout
            new Promise<boolean>((r) => {
              stallSafeTimeout(() => r(false), hc.timeout, { unref: true });
            }),
          ]);
          let h = this.#health.get(t.address);
          if (!h) {
            h = { healthy: true, streak: 0 };
            this.#health.set(t.address, h);
          }
          // a probe answered by a gateway that is not draining: a restarted one serves at that address, and
          // one that was unresponsive answers again
          if (ok) {
            this.#drainingUntil.delete(t.address);
            this.#unresponsiveUntil.delete(t.address);
          }
          h.streak = ok === h.healthy ? 0 : h.streak + 1;
          if (h.streak >= (ok ? hc.healthyThreshold : hc.unhealthyThreshold)) {
            h.healthy = ok;
            h.streak = 0;
          }
        }),
      );
    } finally {
      this.#probing = false;
    }
  }
}
