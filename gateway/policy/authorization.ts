import { parseSpiffeId } from '../../ca/index.ts';
import type {
  AuthorizationAction,
  AuthorizationPolicy,
  CallerMatch,
  RequestMatch,
} from '../../core/index.ts';
import { compilePath, compilePattern, grpcCall, isExactPattern, type StringTest } from './matchers.ts';

/**
 * Who calls, as the destination gateway verified it. `caller` is a SPIFFE ID: a workload of the source
 * cluster, that cluster's anonymous caller, or the peer gateway itself. Both undefined: nobody is known
 * (SNI passthrough, where TLS is not terminated here).
 */
export interface AuthorizationCaller {
  caller?: string;
  sourceCluster?: string;
}

/** What is called. `method`, `path` and `grpc` are undefined where the path into the service has none. */
export interface AuthorizationCall extends AuthorizationCaller {
  /** upper-case; 'CONNECT' for a TCP stream */
  method?: string;
  /** see policyPath */
  path?: string;
  /** the destination service port */
  port?: number;
  /** only for gRPC requests: parsed from the path */
  grpc?: { service: string; method: string };
}

export type AuthorizationReason = 'no-policy' | 'deny-rule' | 'allow-rule' | 'no-allow-match';

export interface AuthorizationDecision {
  allowed: boolean;
  reason: AuthorizationReason;
  /** the deciding rule, `<policy>/<rule>`; 'default-deny' when ALLOW rules exist and none matched */
  rule?: string;
}

/** The decision with every rule that matched (policy explain); the hot path never builds this. */
export interface AuthorizationExplanation extends AuthorizationDecision {
  matched: { rule: string; action: AuthorizationAction }[];
  /** rules that could not be decided for lack of facts (passthrough): counted as matching a DENY, not an ALLOW */
  undecided: { rule: string; action: AuthorizationAction }[];
}

/** The facts of the caller the rules test, derived once per request from the verified SPIFFE ID. */
interface CallerFacts {
  /** the verified SPIFFE ID; undefined for an anonymous caller (known only by its cluster) */
  spiffeId: string | undefined;
  cluster: string | undefined;
  namespace: string | undefined;
  serviceAccount: string | undefined;
}

type Tri = 0 | 1 | 2; // no, yes, unknown
const NO: Tri = 0;
const YES: Tri = 1;
const UNKNOWN: Tri = 2;

// every compiled matcher has all its fields (undefined when absent): one object shape keeps the property
// reads of the evaluation monomorphic, which is most of its cost with thousands of rules
interface CompiledCaller {
  spiffeId: StringTest | undefined;
  cluster: StringTest | undefined;
  namespace: StringTest | undefined;
  serviceAccount: StringTest | undefined;
}

interface CompiledRequest {
  methods: ReadonlySet<string> | undefined;
  paths: StringTest[] | undefined;
  ports: ReadonlySet<number> | undefined;
  grpcService: string | undefined;
  grpcMethod: string | undefined;
}

interface CompiledRule {
  /** position across every policy of the service: the first matching rule is the one reported */
  ordinal: number;
  id: string;
  action: AuthorizationAction;
  from: CompiledCaller[] | undefined;
  to: CompiledRequest[] | undefined;
}

/** Rules of one action, indexed by the exact SPIFFE ID or cluster every `from` entry names. */
interface RuleIndex {
  bySpiffeId: Map<string, CompiledRule[]>;
  byCluster: Map<string, CompiledRule[]>;
  /** rules with a pattern (or no `from`): tested for every caller */
  rest: CompiledRule[];
  all: CompiledRule[];
}

/** The authorization rules of one destination service, compiled. */
export interface CompiledAuthorization {
  readonly deny: RuleIndex;
  readonly allow: RuleIndex;
  /** once a service has an ALLOW rule, a call that matches none is denied */
  readonly hasAllow: boolean;
}

const patternOrAny = (p: string | undefined) => (p === undefined ? undefined : compilePattern(p));

function compileCaller(c: CallerMatch): CompiledCaller {
  return {
    spiffeId: patternOrAny(c.spiffeId),
    cluster: patternOrAny(c.cluster),
    namespace: patternOrAny(c.namespace),
    serviceAccount: patternOrAny(c.serviceAccount),
  };
}

function compileRequest(m: RequestMatch): CompiledRequest {
  return {
    methods: m.methods ? new Set(m.methods) : undefined,
    paths: m.paths?.map(compilePath),
    ports: m.ports ? new Set(m.ports) : undefined,
    grpcService: m.grpc?.service,
    grpcMethod: m.grpc?.method,
  };
}

function emptyIndex(): RuleIndex {
  return { bySpiffeId: new Map(), byCluster: new Map(), rest: [], all: [] };
}

function addTo(map: Map<string, CompiledRule[]>, key: string, rule: CompiledRule): void {
  const list = map.get(key);
  if (!list) map.set(key, [rule]);
  else if (list[list.length - 1] !== rule) list.push(rule);
}

/**
 * Compiles every AuthorizationPolicy of one service. Rules whose `from` entries all name an exact SPIFFE
 * ID (or all an exact cluster) are indexed by it, so a service with thousands of per-caller rules costs
 * a map lookup per request, not a scan.
 */
export function compileAuthorization(policies: readonly AuthorizationPolicy[]): CompiledAuthorization {
  const deny = emptyIndex();
  const allow = emptyIndex();
  let ordinal = 0;
  let hasAllow = false;
  for (const p of policies) {
    for (const r of p.spec.rules) {
      const rule: CompiledRule = {
        ordinal: ordinal++,
        id: `${p.metadata.name}/${r.name}`,
        action: r.action,
        from: r.from?.map(compileCaller),
        to: r.to?.map(compileRequest),
      };
      const index = r.action === 'DENY' ? deny : allow;
      if (r.action === 'ALLOW') hasAllow = true;
      index.all.push(rule);
      const from = r.from;
      if (from?.every((f) => isExactPattern(f.spiffeId))) {
        for (const f of from) addTo(index.bySpiffeId, f.spiffeId!, rule);
      } else if (from?.every((f) => isExactPattern(f.cluster))) {
        for (const f of from) addTo(index.byCluster, f.cluster!, rule);
      } else {
        index.rest.push(rule);
      }
    }
  }
  return { deny, allow, hasAllow };
}

const callerCache = new Map<string, CallerFacts>();
const CALLER_CACHE_MAX = 10_000;

/**
 * The facts a rule may test. Only a verified SPIFFE ID of a workload or gateway can match `spiffeId`,
 * `namespace` or `serviceAccount` (as Istio's principals need an authenticated peer); an anonymous caller
 * is known by its cluster alone.
 */
function callerFacts(call: AuthorizationCaller): CallerFacts {
  const caller = call.caller;
  if (caller === undefined || caller === '') {
    return {
      spiffeId: undefined,
      cluster: call.sourceCluster,
      namespace: undefined,
      serviceAccount: undefined,
    };
  }
  let facts = callerCache.get(caller);
  if (!facts) {
    let id: ReturnType<typeof parseSpiffeId> | undefined;
    try {
      id = parseSpiffeId(caller);
    } catch {
      id = undefined;
    }
    const verified = id?.kind === 'workload' || id?.kind === 'gateway';
    facts = {
      spiffeId: verified ? caller : undefined,
      cluster: call.sourceCluster,
      namespace: id?.kind === 'workload' ? id.namespace : undefined,
      serviceAccount: id?.kind === 'workload' ? id.serviceAccount : undefined,
    };
    if (callerCache.size >= CALLER_CACHE_MAX) callerCache.clear();
    callerCache.set(caller, facts);
  }
  // the cluster is always the verified source cluster (a caller is bound to it), never read from the ID
  return facts.cluster === call.sourceCluster ? facts : { ...facts, cluster: call.sourceCluster };
}

function test(t: StringTest | undefined, v: string | undefined, known: boolean): Tri {
  if (!t) return YES;
  if (!known) return UNKNOWN;
  return v !== undefined && t(v) ? YES : NO;
}

function and(a: Tri, b: Tri): Tri {
  if (a === NO || b === NO) return NO;
  return a === UNKNOWN || b === UNKNOWN ? UNKNOWN : YES;
}

function matchFrom(from: CompiledCaller[] | undefined, f: CallerFacts, known: boolean): Tri {
  if (!from) return YES;
  let best: Tri = NO;
  for (const c of from) {
    let m = test(c.cluster, f.cluster, known);
    if (m !== NO) m = and(m, test(c.spiffeId, f.spiffeId, known));
    if (m !== NO) m = and(m, test(c.namespace, f.namespace, known));
    if (m !== NO) m = and(m, test(c.serviceAccount, f.serviceAccount, known));
    if (m === YES) return YES;
    if (m === UNKNOWN) best = UNKNOWN;
  }
  return best;
}

function matchTo(to: CompiledRequest[] | undefined, call: AuthorizationCall): Tri {
  if (!to) return YES;
  let best: Tri = NO;
  for (const t of to) {
    const m = matchTo1(t, call);
    if (m === YES) return YES;
    if (m === UNKNOWN) best = UNKNOWN;
  }
  return best;
}

function matchTo1(t: CompiledRequest, call: AuthorizationCall): Tri {
  let m: Tri = YES;
  if (t.ports) m = call.port === undefined ? UNKNOWN : t.ports.has(call.port) ? YES : NO;
  if (m !== NO && t.methods)
    m = and(m, call.method === undefined ? UNKNOWN : t.methods.has(call.method) ? YES : NO);
  if (m !== NO && t.paths) {
    const path = call.path;
    m = and(m, path === undefined ? UNKNOWN : t.paths.some((p) => p(path)) ? YES : NO);
  }
  if (m !== NO && (t.grpcService !== undefined || t.grpcMethod !== undefined)) {
    // a request that is not gRPC never matches a gRPC condition; passthrough cannot tell
    const g = call.grpc;
    const known = call.method !== undefined;
    m = and(
      m,
      !known
        ? UNKNOWN
        : g &&
            (t.grpcService === undefined || t.grpcService === g.service) &&
            (t.grpcMethod === undefined || t.grpcMethod === g.method)
          ? YES
          : NO,
    );
  }
  return m;
}

function matchRule(rule: CompiledRule, f: CallerFacts, known: boolean, call: AuthorizationCall): Tri {
  const from = matchFrom(rule.from, f, known);
  return from === NO ? NO : and(from, matchTo(rule.to, call));
}

/** The first rule (by ordinal) of `lists` that matches; an unknown counts as a match when `unknownMatches`. */
function firstMatch(
  lists: readonly (CompiledRule[] | undefined)[],
  f: CallerFacts,
  known: boolean,
  call: AuthorizationCall,
  unknownMatches: boolean,
): CompiledRule | undefined {
  // every fact known (a terminated request or stream): two-valued matching, the request path's case
  const complete = known && call.method !== undefined && call.path !== undefined;
  let first: CompiledRule | undefined;
  for (const list of lists) {
    if (!list) continue;
    for (let i = 0; i < list.length; i++) {
      const rule = list[i]!;
      if (first && rule.ordinal >= first.ordinal) break;
      if (complete) {
        if (!ruleMatches(rule, f, call)) continue;
      } else {
        const m = matchRule(rule, f, known, call);
        if (m === NO || (m === UNKNOWN && !unknownMatches)) continue;
      }
      first = rule;
      break;
    }
  }
  return first;
}

const holds = (t: StringTest | undefined, v: string | undefined) =>
  t === undefined || (v !== undefined && t(v));

/** matchRule for a call whose facts are all known, without the three-valued bookkeeping. */
function ruleMatches(rule: CompiledRule, f: CallerFacts, call: AuthorizationCall): boolean {
  const from = rule.from;
  if (from) {
    let any = false;
    for (let i = 0; i < from.length && !any; i++) {
      const c = from[i]!;
      any =
        holds(c.cluster, f.cluster) &&
        holds(c.spiffeId, f.spiffeId) &&
        holds(c.namespace, f.namespace) &&
        holds(c.serviceAccount, f.serviceAccount);
    }
    if (!any) return false;
  }
  const to = rule.to;
  if (!to) return true;
  for (let i = 0; i < to.length; i++) if (matchTo1(to[i]!, call) === YES) return true;
  return false;
}

function candidates(index: RuleIndex, f: CallerFacts, known: boolean): (CompiledRule[] | undefined)[] {
  if (!known) return [index.all];
  return [
    f.spiffeId !== undefined ? index.bySpiffeId.get(f.spiffeId) : undefined,
    f.cluster !== undefined ? index.byCluster.get(f.cluster) : undefined,
    index.rest,
  ];
}

const ALLOWED_NO_POLICY: AuthorizationDecision = Object.freeze({ allowed: true, reason: 'no-policy' });
const DEFAULT_DENY: AuthorizationDecision = Object.freeze({
  allowed: false,
  reason: 'no-allow-match',
  rule: 'default-deny',
});

/**
 * Istio's semantics on one service's compiled rules: any matching DENY wins; if ALLOW rules exist, a call
 * that matches none is denied; no rules, allowed. A call whose caller is unknown (passthrough) fails
 * closed: a DENY that might match it denies, and only an ALLOW that names no caller and no HTTP
 * condition can admit it.
 */
export function evaluateAuthorization(
  compiled: CompiledAuthorization | undefined,
  call: AuthorizationCall,
): AuthorizationDecision {
  if (!compiled) return ALLOWED_NO_POLICY;
  const known = call.caller !== undefined || call.sourceCluster !== undefined;
  const f = callerFacts(call);
  const deny = firstMatch(candidates(compiled.deny, f, known), f, known, call, true);
  if (deny) return { allowed: false, reason: 'deny-rule', rule: deny.id };
  if (!compiled.hasAllow) return ALLOWED_NO_POLICY;
  const allow = firstMatch(candidates(compiled.allow, f, known), f, known, call, false);
  if (allow) return { allowed: true, reason: 'allow-rule', rule: allow.id };
  return DEFAULT_DENY;
}

/** The decision and every rule that matched or could not be decided: what `policy explain` prints. */
export function explainAuthorization(
  compiled: CompiledAuthorization | undefined,
  call: AuthorizationCall,
): AuthorizationExplanation {
  const decision = evaluateAuthorization(compiled, call);
  const matched: AuthorizationExplanation['matched'] = [];
  const undecided: AuthorizationExplanation['undecided'] = [];
  if (compiled) {
    const known = call.caller !== undefined || call.sourceCluster !== undefined;
    const f = callerFacts(call);
    const all = [...compiled.deny.all, ...compiled.allow.all].sort((a, b) => a.ordinal - b.ordinal);
    for (const rule of all) {
      const m = matchRule(rule, f, known, call);
      if (m === YES) matched.push({ rule: rule.id, action: rule.action });
      else if (m === UNKNOWN) undecided.push({ rule: rule.id, action: rule.action });
    }
  }
  return { ...decision, matched, undecided };
}

/** The call facts of a request path, as the layers and `policy explain` derive them. */
export function requestCall(
  o: AuthorizationCaller & { method: string; path: string; port?: number; grpc: boolean },
): AuthorizationCall {
  const grpc = o.grpc ? grpcCall(o.path) : undefined;
  return {
    ...(o.caller !== undefined ? { caller: o.caller } : {}),
    ...(o.sourceCluster !== undefined ? { sourceCluster: o.sourceCluster } : {}),
    method: o.method,
    path: o.path,
    ...(o.port !== undefined ? { port: o.port } : {}),
    ...(grpc ? { grpc } : {}),
  };
}
