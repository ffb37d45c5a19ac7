import type { Demo } from './demo.ts';
import { type ApplyOutcome, DENIED_CLUSTER, DENY_RULE, PolicyPhase, shown } from './policy-phase.ts';
import {
  AuthorizationProbe,
  type CanaryCounts,
  CanaryMeter,
  outcomeOf,
  type ProbeTally,
} from './policy-traffic.ts';
import { bar, percent } from './screen.ts';

/** One canary step: its split, what applying it did, and what was measured while it was in force. */
interface CanaryStep {
  percent: number;
  outcome: ApplyOutcome;
  /** frozen when the next step starts; the meter's live counts until then */
  counts?: CanaryCounts;
}

export function describeOutcome(o: ApplyOutcome): string {
  if (!o.ok) return `apply failed: ${o.error}`;
  if (o.unchanged) return `already in force (${o.scope} revision ${o.revision}): nothing published`;
  return `${o.scope} revision ${o.revision} in force at ${o.reached} gateway(s) (${o.ms} ms)`;
}

/** `v1=390 v2=43 failed=0 (v2 9.9%; v1@eu=189 v1@west=201 v2@eu=43)`: the form tests and scripts read. */
export function canarySummary(c: CanaryCounts): string {
  const answered = c.total - c.failed;
  const v2 = c.versions.v2 ?? 0;
  const share = answered === 0 ? '—' : `${((v2 / answered) * 100).toFixed(1)}%`;
  const backends = Object.entries(c.backends)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k}=${n}`)
    .join(' ');
  return `v1=${c.versions.v1 ?? 0} v2=${v2} failed=${c.failed} (v2 ${share}; ${backends || 'no answers yet'})`;
}

/** The gateway's explanation from a refusal's JSON body (cut at 200 characters by the caller), else the text. */
function refusalMessage(body: string): string {
  const m = /"message":"((?:[^"\\]|\\.)*)/.exec(body);
  return (m?.[1] ?? body).trim().slice(0, 120);
}

function probeSummary(t: ProbeTally): string {
  if (!t.last) return 'not called yet';
  const key = outcomeOf(t.last);
  const n = t.outcomes[key] ?? 0;
  return `${key} (${n} call${n === 1 ? '' : 's'})`;
}

/**
 * The policy half of the demo's live view: the greeter canary (10 → 50 → 100 % to greeter-v2, one signed
 * revision per step, shares measured per step) and an AuthorizationPolicy that refuses cluster west's calls
 * to ledger.demo. Each `enter…` applies one policy file and returns the lines to print once; `screen()` and
 * `line()` render the current state for a terminal and for a log.
 */
export class PolicyTour {
  readonly policy: PolicyPhase;
  readonly #demo: Demo;
  readonly #signal: AbortSignal;
  readonly #steps: CanaryStep[] = [];
  #meter: CanaryMeter | undefined;
  #probe: AuthorizationProbe | undefined;
  #authorization: { before: string; outcome: ApplyOutcome } | undefined;

  constructor(demo: Demo, o: { signal: AbortSignal }) {
    this.#demo = demo;
    this.#signal = o.signal;
    this.policy = new PolicyPhase(demo, o);
  }

  async prepare(): Promise<void> {
    await this.policy.prepare();
  }

  /** Applies the step's split; the meter counts afresh from the moment every gateway enforces it. */
  async enterCanary(percentToV2: number): Promise<string[]> {
    this.#freezeStep();
    this.#meter ??= new CanaryMeter({ egress: this.#demo.cluster('east').addresses.egress });
    this.#meter.start(this.#signal);
    const file = this.policy.canaryFile(percentToV2);
    const outcome = await this.policy.apply(file);
    this.#meter.nextStep();
    this.#steps.push({ percent: percentToV2, outcome });
    return [`applied ${shown(file)}: ${describeOutcome(outcome)}`, `replay: ${this.policy.replay(file)}`];
  }

  /** Stops the canary traffic, shows west reaching ledger.demo, then applies the AuthorizationPolicy. */
  async enterAuthorization(): Promise<string[]> {
    this.#freezeStep();
    await this.#meter?.stop();
    this.#meter = undefined;
    this.#probe ??= new AuthorizationProbe(this.#demo);
    await this.#probe.probe();
    const before = this.#probe.tally(DENIED_CLUSTER).last;
    const file = this.policy.authorizationFile;
    const outcome = await this.policy.apply(file);
    this.#probe.reset();
    this.#authorization = { before: before ? outcomeOf(before) : 'not called', outcome };
    return [
      `before the policy, ledger.demo from ${DENIED_CLUSTER}: ${this.#authorization.before}`,
      `applied ${shown(file)}: ${describeOutcome(outcome)}`,
      `replay: ${this.policy.replay(file)}`,
    ];
  }

  /** Once per screen refresh: the authorization phase calls ledger.demo from each caller. */
  async tick(): Promise<void> {
    if (this.#authorization) await this.#probe?.probe();
  }

  /** One line for a log (non-TTY), or undefined outside the policy phases. */
  line(): string | undefined {
    if (this.#authorization && this.#probe) {
      return `ledger.demo ${this.#probe.callers.map((c) => `from ${c}: ${probeSummary(this.#probe!.tally(c))}`).join('; ')}`;
    }
    const counts = this.#meter?.counts;
    if (!counts || counts.total === 0) return undefined;
    return `greeter.demo from east: ${canarySummary(counts)}`;
  }

  /** The policy block of the live screen (empty before the first policy phase). */
  screen(): string[] {
    if (this.#steps.length === 0) return [];
    const out = [
      'Canary of greeter.demo: gRPC calls from east (greeter v1 runs in west and eu, greeter-v2 in eu only)',
      `  ${'step'.padEnd(10)} ${'calls'.padStart(6)}   ${'share served by v2'.padEnd(35)}  by release@cluster`,
    ];
    for (const s of this.#steps) {
      const c = s.counts ?? this.#meter?.counts;
      const answered = c ? c.total - c.failed : 0;
      const v2 = c?.versions.v2 ?? 0;
      const backends = c
        ? Object.entries(c.backends)
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([k, n]) => `${k} ${n}`)
            .join('  ')
        : '';
      const failed = c && c.failed > 0 ? `  FAILED ${c.failed} (${c.lastError ?? ''})` : '';
      out.push(
        `  ${`${s.percent}% → v2`.padEnd(10)} ${String(c?.total ?? 0).padStart(6)}   ${bar(v2, answered)} ${String(percent(v2, answered)).padStart(3)}%  ${backends}${failed}${s.counts ? '' : '  (measuring)'}`,
      );
      if (!s.outcome.ok) out.push(`    ${describeOutcome(s.outcome)}`);
    }
    const last = this.#steps.at(-1)!;
    if (!this.#authorization) {
      out.push(`  ${describeOutcome(last.outcome)}`);
      out.push(`  $ ${this.policy.replay(this.policy.canaryFile(last.percent))}`);
      return out;
    }
    out.push(
      '',
      `AuthorizationPolicy/ledger: rule ${DENY_RULE} refuses calls from cluster ${DENIED_CLUSTER} to ledger.demo (it runs in eu only)`,
      `  before the policy, from ${DENIED_CLUSTER}: ${this.#authorization.before}`,
      `  ${describeOutcome(this.#authorization.outcome)}`,
      `  $ ${this.policy.replay(this.policy.authorizationFile)}`,
    );
    for (const c of this.#probe?.callers ?? []) {
      const t = this.#probe!.tally(c);
      const body = t.last && !t.last.ok && t.last.error ? `: ${refusalMessage(t.last.error)}` : '';
      out.push(`  ${c.padEnd(5)} → ledger.demo  ${probeSummary(t)}${body}`);
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#meter?.stop();
    await this.#probe?.close();
  }

  #freezeStep(): void {
    const current = this.#steps.at(-1);
    if (current && !current.counts && this.#meter) current.counts = this.#meter.counts;
  }
}
