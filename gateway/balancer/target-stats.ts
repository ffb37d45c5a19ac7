const DECAY_MS = 10_000;

/**
 * Outlier and load state of one target for one service (kept per service: a gateway that fails for
 * `orders` is not ejected for `payments`). Outlives catalog changes.
 */
export class TargetStats {
  outstanding = 0;
  /** sum of the start times of the outstanding requests: their mean age is now - startSum / outstanding */
  startSum = 0;
  /** peak-EWMA latency in ms: jumps up to a slow sample at once, decays toward fast ones */
  ewma = 0;
  lastSample = 0;
  consecutiveFailures = 0;
  ejections = 0;
  ejectedUntil = 0;
  /** back from an ejection but not yet proven: one trial request at a time until one succeeds */
  probation = false;
  requests = 0;
  failures = 0;

  /**
   * What picking it costs: outstanding work × latency, per unit of weight. Requests still waiting are a
   * latency sample in the making: a target that has stopped answering costs more with every millisecond,
   * long before its first timeout gives the EWMA a sample.
   */
  cost(weight: number, now: number): number {
    const age = now - this.lastSample;
    const waiting = this.outstanding > 0 ? now - this.startSum / this.outstanding : 0;
    const latency = Math.max(this.ewma * Math.exp(-age / DECAY_MS), waiting) + 1;
    return ((this.outstanding + 1) * latency) / Math.max(weight, 0.001);
  }

  /** a latency sample: the peak-EWMA jumps up to a slow one at once and decays toward fast ones */
  sample(latencyMs: number, now: number): void {
    const decayed = this.ewma * Math.exp(-(now - this.lastSample) / DECAY_MS);
    this.ewma = latencyMs > decayed ? latencyMs : decayed * 0.7 + latencyMs * 0.3;
    this.lastSample = now;
  }
}
