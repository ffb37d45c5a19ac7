import { parseServiceKey, type TrafficSplit } from '../../core/index.ts';
import { compileHttpMatch, type PolicyRequest } from './matchers.ts';

/** A backend a split may send a request to: another service, optionally only one cluster's instances. */
export interface SplitTarget {
  namespace: string;
  name: string;
  cluster?: string;
  weight: number;
}

export interface CompiledRoute {
  /** `<split>/<route>` */
  id: string;
  matches: (r: PolicyRequest) => boolean;
  /** the route has an HTTP match (headers, path, methods): it never applies to a TCP connection */
  http: boolean;
  backends: readonly SplitTarget[];
  /** running sums of the weights, for one draw per request */
  cumulative: readonly number[];
  total: number;
}

export interface CompiledSplit {
  readonly routes: readonly CompiledRoute[];
}

export function compileSplit(split: TrafficSplit): CompiledSplit {
  const routes: CompiledRoute[] = [];
  for (const r of split.spec.routes) {
    const backends: SplitTarget[] = [];
    const cumulative: number[] = [];
    let total = 0;
    for (const b of r.backends) {
      const ref = parseServiceKey(b.service);
      if (!ref || b.weight <= 0) continue;
      total += b.weight;
      backends.push({ ...ref, ...(b.cluster ? { cluster: b.cluster } : {}), weight: b.weight });
      cumulative.push(total);
    }
    // a route whose weights sum to 0 sends nowhere: the schema refuses it, and here it matches nothing
    if (total === 0) continue;
    routes.push({
      id: `${split.metadata.name}/${r.name}`,
      matches: compileHttpMatch(r.match),
      http: r.match !== undefined,
      backends,
      cumulative,
      total,
    });
  }
  return { routes };
}

/** The first route whose match holds (routes are ordered), or undefined: the service as addressed. */
export function matchRoute(split: CompiledSplit | undefined, r: PolicyRequest): CompiledRoute | undefined {
  if (!split) return undefined;
  for (const route of split.routes) if (route.matches(r)) return route;
  return undefined;
}

export interface RouteChoice {
  route: string;
  backend: SplitTarget;
}

/** The route that matches and one of its backends drawn by weight (`random` in [0, 1)). */
export function chooseRoute(
  split: CompiledSplit | undefined,
  r: PolicyRequest,
  random: () => number,
): RouteChoice | undefined {
  const route = matchRoute(split, r);
  return route && draw(route, random);
}

/**
 * The route a TCP connection takes: the first without an HTTP match (a connection has no headers, path or
 * method to match), which the schema allows only last. Undefined: the service as addressed.
 */
export function matchTcpRoute(split: CompiledSplit | undefined): CompiledRoute | undefined {
  return split?.routes.find((route) => !route.http);
}

/** chooseRoute for a TCP connection: one draw per connection on the route without an HTTP match. */
export function chooseTcpRoute(
  split: CompiledSplit | undefined,
  random: () => number,
): RouteChoice | undefined {
  const route = matchTcpRoute(split);
  return route && draw(route, random);
}

function draw(route: CompiledRoute, random: () => number): RouteChoice {
  const x = random() * route.total;
  let i = 0;
  while (i < route.cumulative.length - 1 && x >= route.cumulative[i]!) i++;
  return { route: route.id, backend: route.backends[i]! };
}
