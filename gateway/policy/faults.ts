import type { FaultAbort, FaultDelay, FaultInjection } from '../../core/index.ts';
import { compileHttpMatch, type PolicyRequest } from './matchers.ts';

export interface CompiledFaultRule {
  /** `<policy>/<rule>` */
  id: string;
  matches: (r: PolicyRequest) => boolean;
  /** the rule has an HTTP match: it never applies to a TCP connection */
  http: boolean;
  delay?: FaultDelay;
  abort?: FaultAbort;
}

export interface CompiledFaults {
  readonly rules: readonly CompiledFaultRule[];
}

export function compileFaults(doc: FaultInjection): CompiledFaults {
  return {
    rules: doc.spec.rules.map((r) => ({
      id: `${doc.metadata.name}/${r.name}`,
      matches: compileHttpMatch(r.match),
      http: r.match !== undefined,
      ...(r.delay ? { delay: r.delay } : {}),
      ...(r.abort ? { abort: r.abort } : {}),
    })),
  };
}

/** The first fault rule whose match holds: the only one that applies. */
export function matchFault(
  faults: CompiledFaults | undefined,
  r: PolicyRequest,
): CompiledFaultRule | undefined {
  if (!faults) return undefined;
  for (const rule of faults.rules) if (rule.matches(r)) return rule;
  return undefined;
}

/** The faults drawn for one request: a delay, an abort, both or none. */
export interface FaultDecision {
  rule: string;
  delayMs?: number;
  abort?: { httpStatus?: number; grpcStatus?: number };
}

/** The fault rule a TCP connection gets: the first without an HTTP match. */
export function matchTcpFault(faults: CompiledFaults | undefined): CompiledFaultRule | undefined {
  return faults?.rules.find((rule) => !rule.http);
}

/**
 * The matching rule's delay and abort, each drawn on its own with its percentage (`random` in [0, 1)):
 * a 50% delay and a 10% abort delay half the requests and abort a tenth, independently.
 */
export function faultsFor(
  faults: CompiledFaults | undefined,
  r: PolicyRequest,
  random: () => number,
): FaultDecision | undefined {
  const rule = matchFault(faults, r);
  return rule && drawFaults(rule, random);
}

/** faultsFor a TCP connection: a delay before it is connected onward, an abort refuses it. */
export function tcpFaultsFor(
  faults: CompiledFaults | undefined,
  random: () => number,
): FaultDecision | undefined {
  const rule = matchTcpFault(faults);
  return rule && drawFaults(rule, random);
}

function drawFaults(rule: CompiledFaultRule, random: () => number): FaultDecision | undefined {
  const delay = rule.delay && random() * 100 < rule.delay.percentage ? rule.delay.fixed : undefined;
  const abort = rule.abort && random() * 100 < rule.abort.percentage ? rule.abort : undefined;
  if (delay === undefined && !abort) return undefined;
  return {
    rule: rule.id,
    ...(delay !== undefined ? { delayMs: delay } : {}),
    ...(abort
      ? {
          abort:
            abort.httpStatus !== undefined
              ? { httpStatus: abort.httpStatus }
              : { grpcStatus: abort.grpcStatus! },
        }
      : {}),
  };
}
