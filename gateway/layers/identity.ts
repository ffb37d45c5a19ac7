import type { Identities } from '../identity.ts';
import { type RequestLayer, routeOf } from '../pipeline.ts';
import type { AuthorizeHook } from '../gateway-options.ts';
import { refuse } from '../answers.ts';

/** Egress: the local caller (a verified workload certificate, or an anonymous caller of this cluster). */
export function egressCaller(identities: Identities): RequestLayer {
  return (next) => (r) => {
    r.caller = identities.workloadCaller(r.socket, r.connection);
    return next(r);
  };
}

/** East-west: the peer gateway's verified identity; the call's source cluster is the peer's. */
export function peerGateway(identities: Identities): RequestLayer {
  return (next) => (r) => {
    r.peer = identities.peerGateway(r.socket, r.headers['x-meshfed-chain'], r.connection);
    r.sourceCluster = r.peer.cluster ?? '';
    return next(r);
  };
}

/** East-west: the caller a peer asserts must be one of the peer's own cluster (or the peer itself). */
export function callerRule(identities: Identities): RequestLayer {
  return (next) => (r) => {
    if (!r.peer) throw new Error('pipeline order: callerRule needs peerGateway before it');
    r.caller = identities.assertedCaller(r.peer, r.headers['x-meshfed-caller']);
    return next(r);
  };
}

/** The authorization hook, on the verified caller: a throw or false refuses the request with 403. */
export function authorize(hook: AuthorizeHook, cluster: string): RequestLayer {
  return (next) => (r) => {
    const route = routeOf(r);
    let allowed = false;
    try {
      allowed = hook({
        peer: r.peer?.spiffeId ?? '',
        caller: r.caller ?? '',
        service: `${route.name}.${route.namespace}`,
        cluster,
      });
    } catch {
      allowed = false;
    }
    if (!allowed) refuse('unauthorized', `${r.caller} may not call ${route.name}.${route.namespace}`);
    return next(r);
  };
}
