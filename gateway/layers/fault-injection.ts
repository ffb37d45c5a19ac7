import { POLICY_HEADER, serviceKey } from '../../core/index.ts';
import { httpStatusOfGrpc } from '../answers.ts';
import { type GatewayRequest, type RequestLayer, routeOf } from '../pipeline.ts';
import { faultsFor, type PolicyIndex } from '../policy/index.ts';
import { type PolicyMetrics, policyRequestOf, serviceLabel } from './policy-facts.ts';

/** the status the metrics record for a caller that left before an answer (499, client closed request) */
const CLIENT_GONE = 499;

const ANSWERED: Promise<void> = Promise.resolve();

type FaultDecision = NonNullable<ReturnType<typeof faultsFor>>;

/** Waits `ms`, or less when the caller goes away first; says whether it is still there. */
function delay(r: GatewayRequest, ms: number): Promise<boolean> {
  const res = r.io.res;
  return new Promise((resolve) => {
    const onGone = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      res.off('close', onGone);
      resolve(true);
    }, ms);
    res.once('close', onGone);
  });
}

/**
 * FaultInjection at the source gateway, for the service as its callers address it (not a split's backend): the
 * first matching rule delays and/or aborts, each with its own percentage. An abort answers at once with
 * the rule's HTTP status (or gRPC status), `x-meshfed-error: fault-injected` and the rule's name.
 */
export function faultInjection(o: {
  index: PolicyIndex;
  metrics: PolicyMetrics;
  random: () => number;
}): RequestLayer {
  return (next) => {
    /** the request's delay is over (or there was none): abort it, or pass it on */
    const afterDelay = (r: GatewayRequest, f: FaultDecision, service: string): Promise<void> => {
      if (!f.abort) return next(r);
      o.metrics.faults.inc({ service, rule: f.rule, fault: 'abort' });
      const grpcStatus = f.abort.grpcStatus;
      const status = grpcStatus !== undefined ? httpStatusOfGrpc(grpcStatus) : f.abort.httpStatus!;
      r.status = status;
      r.answer({
        status,
        reason: 'fault-injected',
        message: `fault injected by ${f.rule}`,
        headers: { [POLICY_HEADER]: f.rule },
        ...(grpcStatus !== undefined ? { grpcStatus } : {}),
      });
      return ANSWERED;
    };
    // not an async function: a request with no fault (nearly all) costs no promise of its own
    return (r) => {
      const route = r.addressed ?? routeOf(r);
      const faults = o.index.service(serviceKey(route))?.faults;
      if (!faults) return next(r);
      const f = faultsFor(faults, policyRequestOf(r), o.random);
      if (!f) return next(r);
      const service = serviceLabel(route);
      const fault = f.delayMs !== undefined ? (f.abort ? 'delay+abort' : 'delay') : 'abort';
      r.policy = { ...r.policy, fault };
      r.span?.setAttributes({ 'meshfed.policy.fault': fault, 'meshfed.policy.fault_rule': f.rule });
      if (f.delayMs === undefined) return afterDelay(r, f, service);
      o.metrics.faults.inc({ service, rule: f.rule, fault: 'delay' });
      // a caller that leaves during the delay gets nothing sent upstream on its behalf
      return delay(r, f.delayMs).then((stillThere) => {
        if (stillThere) return afterDelay(r, f, service);
        r.status = CLIENT_GONE;
      });
    };
  };
}
