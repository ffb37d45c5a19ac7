import type { Demo } from './demo.ts';
import { LEDGER_HOST } from './policy-phase.ts';
import { type CallResult, greeterClient, HttpCaller, sayHello, waitAbort } from './traffic.ts';

/** What the canary meter counted since the step it measures came into force. */
export interface CanaryCounts {
  /** answered calls by greeter release (`v1`, `v2`) */
  versions: Record<string, number>;
  /** answered calls by release and serving cluster (`v2@eu`) */
  backends: Record<string, number>;
  failed: number;
  total: number;
  lastError?: string;
}

function emptyCounts(): CanaryCounts {
  return { versions: {}, backends: {}, failed: 0, total: 0 };
}

/**
 * gRPC calls to greeter.demo from east's egress, counted by the release and cluster that answered. Each
 * canary step restarts the count (`nextStep`), and a call started under the previous step is not counted
 * in the new one, so each step's shares are those of its own split.
 */
export class CanaryMeter {
  readonly #client: ReturnType<typeof greeterClient>;
  readonly #maxPerStep: number;
  #step = 0;
  #counts = emptyCounts();
  #loop: Promise<void> | undefined;
  #stop = new AbortController();

  /** `maxPerStep` bounds the calls of one step: the meter idles once a step has that many. */
  constructor(o: { egress: string; maxPerStep?: number }) {
    this.#client = greeterClient(o.egress);
    this.#maxPerStep = o.maxPerStep ?? 5000;
  }

  get counts(): CanaryCounts {
    return structuredClone(this.#counts);
  }

  nextStep(): void {
    this.#step++;
    this.#counts = emptyCounts();
  }

  /** Calls in batches of `concurrency`, a pause of `pauseMs` between batches, until stop() or `signal`. */
  start(signal: AbortSignal, o: { concurrency?: number; pauseMs?: number } = {}): void {
    if (this.#loop) return;
    const stop = AbortSignal.any([signal, this.#stop.signal]);
    const concurrency = o.concurrency ?? 5;
    const pauseMs = o.pauseMs ?? 100;
    this.#loop = (async () => {
      while (!stop.aborted) {
        const step = this.#step;
        if (this.#counts.total < this.#maxPerStep) {
          const batch = await Promise.all(Array.from({ length: concurrency }, () => this.#call()));
          if (step === this.#step) for (const r of batch) this.#record(r);
        }
        await waitAbort(stop, pauseMs);
      }
    })();
  }

  async #call(): Promise<{ version: string; cluster: string } | Error> {
    try {
      return await sayHello(this.#client, 'canary');
    } catch (err) {
      return err as Error;
    }
  }

  #record(r: { version: string; cluster: string } | Error): void {
    const c = this.#counts;
    c.total++;
    if (r instanceof Error) {
      c.failed++;
      c.lastError = r.message;
      return;
    }
    c.versions[r.version] = (c.versions[r.version] ?? 0) + 1;
    const key = `${r.version}@${r.cluster}`;
    c.backends[key] = (c.backends[key] ?? 0) + 1;
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    this.#client.close();
  }
}

/** One caller's outcomes so far: the latest call, and how many calls ended each way. */
export interface ProbeTally {
  last: CallResult | undefined;
  outcomes: Record<string, number>;
}

/** A call's outcome in a few words: `200 served by eu`, `403 denied by rule deny-west`. */
export function outcomeOf(r: CallResult): string {
  if (r.ok) return `${r.status ?? 200} served by ${r.cluster ?? '?'}`;
  if (r.status === undefined) return `failed (${r.error ?? 'no answer'})`;
  return r.rule ? `${r.status} denied by rule ${r.rule}` : `${r.status} refused`;
}

/** Calls ledger.demo from east and from west, one call each per probe, through each cluster's egress. */
export class AuthorizationProbe {
  readonly callers: readonly string[];
  readonly #http: Map<string, HttpCaller>;
  readonly #tallies = new Map<string, ProbeTally>();

  constructor(demo: Demo, callers: readonly string[] = ['east', 'west']) {
    this.callers = callers;
    this.#http = new Map(
      callers.map((c) => [c, new HttpCaller(demo.cluster(c).addresses.egress, LEDGER_HOST)]),
    );
    this.reset();
  }

  reset(): void {
    for (const c of this.callers) this.#tallies.set(c, { last: undefined, outcomes: {} });
  }

  tally(caller: string): ProbeTally {
    return this.#tallies.get(caller)!;
  }

  async probe(): Promise<void> {
    await Promise.all(
      this.callers.map(async (c) => {
        const r = await this.#http.get(c)!.call();
        const t = this.#tallies.get(c)!;
        t.last = r;
        const key = outcomeOf(r);
        t.outcomes[key] = (t.outcomes[key] ?? 0) + 1;
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all([...this.#http.values()].map((h) => h.close()));
  }
}
