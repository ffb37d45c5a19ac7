/**
 * Work that arrives on NATS subscriptions, queued per sending cluster. A subscription callback only
 * enqueues, so the NATS client keeps reading its socket during a flood (the server's PONGs sit behind
 * the flood in the same stream: a callback that verified each message inline starved them, and the
 * client dropped its connection, losing every other cluster's messages). The work then runs in slices of
 * at most `sliceMs`, one job per cluster in turn, so a cluster that floods delays another by one job,
 * not by its whole backlog; and a cluster's backlog is bounded (its oldest job is dropped and counted).
 */
export class IntakeQueue {
  readonly #queues = new Map<string, (() => void)[]>();
  readonly #options: IntakeQueueOptions;
  #scheduled = false;

  constructor(options: IntakeQueueOptions) {
    this.#options = options;
  }

  /** jobs waiting, all clusters together */
  get size(): number {
    let n = 0;
    for (const q of this.#queues.values()) n += q.length;
    return n;
  }

  push(key: string, job: () => void): void {
    let q = this.#queues.get(key);
    if (!q) {
      q = [];
      this.#queues.set(key, q);
    }
    if (q.length >= this.#options.maxPerKey) {
      q.shift();
      this.#options.onDrop(key);
    }
    q.push(job);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#run);
  }

  /** one job; a throwing one is reported and never stops the queue */
  #run1(key: string, job: () => void): void {
    try {
      job();
    } catch (err) {
      this.#options.onError(err, key);
    }
  }

  readonly #run = (): void => {
    this.#scheduled = false;
    const deadline = performance.now() + this.#options.sliceMs;
    while (this.#queues.size > 0 && performance.now() < deadline) {
      for (const [key, q] of this.#queues) {
        const job = q.shift();
        if (q.length === 0) this.#queues.delete(key);
        if (job) this.#run1(key, job);
        if (performance.now() >= deadline) break;
      }
    }
    if (this.#queues.size > 0) this.#schedule();
  };
}

export interface IntakeQueueOptions {
  /** jobs one key may have waiting; past it the oldest is dropped */
  maxPerKey: number;
  /** how long one turn of the event loop may spend on queued jobs */
  sliceMs: number;
  /** a job threw (a bug of ours: nothing a peer sends may crash the process) */
  onError: (err: unknown, key: string) => void;
  onDrop: (key: string) => void;
}
