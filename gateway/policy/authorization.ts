import { parseSpiffeId } from '../../ca/index.ts';
import type {
  AuthorizationAction,
  AuthorizationPolicy,
  AuthorizationRule,
  CallerMatch,
  RequestMatch,
} from '../../core/index.ts';
import { compilePath, compilePattern, grpcCall, type StringTest } from './matchers.ts';
import {
  type IndexDimension,
  type IndexFacts,
  type IndexKey,
  RuleIndex,
  type RuleKeys,
} from './rule-index.ts';

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

/** Rules of one action: every rule in evaluation order, and the index that finds the few a call can match. */
interface ActionRules {
  index: RuleIndex<CompiledRule>;
  all: CompiledRule[];
}

/** The authorization rules of one destination service, compiled. */
export interface CompiledAuthorization {
  readonly deny: ActionRules;
  readonly allow: ActionRules;
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

const CALLER_FIELDS = ['spiffeId', 'cluster', 'namespace', 'serviceAccount'] as const;

/** The index key an identity pattern requires; none for `*`, which every known value matches. */
function patternKey(dim: IndexDimension, p: string): IndexKey[] {
  if (p === '*') return [];
  if (p.endsWith('*')) return [{ dim, kind: 'prefix', key: p.slice(0, -1) }];
  if (p.startsWith('*')) return [{ dim, kind: 'suffix', key: p.slice(1) }];
  return [{ dim, kind: 'exact', key: p }];
}

/** How a rule can be found (see RuleKeys): by any one field of each `from` entry, or by each `to` entry. */
function ruleKeys(r: AuthorizationRule): RuleKeys {
  const from = (r.from ?? []).map((c) =>
    CALLER_FIELDS.flatMap((dim) => (c[dim] === undefined ? [] : [patternKey(dim, c[dim])])),
  );
  const to = (r.to ?? []).map((t) => {
    const groups: IndexKey[][] = [];
    if (t.paths)
      groups.push(
        t.paths.map(
          (p): IndexKey =>
            p.exact !== undefined
              ? { dim: 'path', kind: 'exact', key: p.exact }
              : { dim: 'path', kind: 'prefix', key: p.prefix ?? '/' },
        ),
      );
    if (t.grpc?.service !== undefined)
      groups.push([{ dim: 'grpcService', kind: 'exact', key: t.grpc.service }]);
    if (t.grpc?.method !== undefined) groups.push([{ dim: 'grpcMethod', kind: 'exact', key: t.grpc.method }]);
    return groups;
  });
  // an absent side matches every call: it cannot narrow anything down
  return [...(r.from ? [from] : []), ...(r.to ? [to] : [])];
}

/**
 * Compiles every AuthorizationPolicy of one service. The rules of each action are indexed by the caller
 * parts (SPIFFE ID, cluster, namespace, service account: exact values, prefixes, suffixes), the paths and
 * the gRPC service or method they name, so a service with thousands of rules costs a few lookups per
 * request and a test of the handful of rules found, not a scan.
 */
export function compileAuthorization(policies: readonly AuthorizationPolicy[]): CompiledAuthorization {
  const rules: {
    deny: { rule: CompiledRule; keys: RuleKeys }[];
    allow: { rule: CompiledRule; keys: RuleKeys }[];
  } = {
    deny: [],
    allow: [],
  };
  let ordinal = 0;
  for (const p of policies) {
    for (const r of p.spec.rules) {
      const rule: CompiledRule = {
        ordinal: ordinal++,
        id: `${p.metadata.name}/${r.name}`,
        action: r.action,
        from: r.from?.map(compileCaller),
        to: r.to?.map(compileRequest),
      };
      (r.action === 'DENY' ? rules.deny : rules.allow).push({ rule, keys: ruleKeys(r) });
    }
  }
  const index = (list: { rule: CompiledRule; keys: RuleKeys }[]): ActionRules => ({
    index: new RuleIndex(list),
    all: list.map((e) => e.rule),
  });
  return { deny: index(rules.deny), allow: index(rules.allow), hasAllow: rules.allow.length > 0 };
}

const callerCache = new Map<string, CallerFacts>();
const CALLER_CACHE_MAX = 10_000;

/**
 * The facts a rule may test. Only a verified SPIFFE ID of a workload or gateway can match `spiffeId`,
 * `namespace` or `serviceAccount` (a principal needs an authenticated peer); an anonymous caller
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

/**
 * The first rule (by ordinal) of `lists` that matches; an unknown counts as a match when `unknownMatches`.
 * Each list is in ordinal order, and a rule may stand in several.
 */
function firstMatch(
  lists: readonly CompiledRule[][],
  f: CallerFacts,
  known: boolean,
  call: AuthorizationCall,
  unknownMatches: boolean,
): CompiledRule | undefined {
  // every fact known (a terminated request or stream on a known port): two-valued matching, the request
  // path's case
  const complete = known && call.method !== undefined && call.path !== undefined && call.port !== undefined;
  let first: CompiledRule | undefined;
  for (const list of lists) {
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

/**
 * The facts the index looks up (IndexFacts, in DIMENSIONS order), or undefined when some are unknown: the
 * index needs the caller (or at least its cluster), the method (whether it is gRPC) and the path; without
 * them (passthrough, or `policy explain` left some out), every rule is tested.
 */
function indexFacts(f: CallerFacts, known: boolean, call: AuthorizationCall): IndexFacts | undefined {
  if (!known || call.method === undefined || call.path === undefined) return undefined;
  // DIMENSIONS order (a slip here makes the indexed evaluation disagree with the plain scan: the property test)
  return [
    f.spiffeId,
    f.cluster,
    f.namespace,
    f.serviceAccount,
    call.path,
    call.grpc?.service,
    call.grpc?.method,
  ];
}

/** The rules of one action that could match the call: the index's lists, or every rule. */
function candidates(rules: ActionRules, facts: IndexFacts | undefined): CompiledRule[][] {
  return facts ? rules.index.candidates(facts) : [rules.all];
}

const ALLOWED_NO_POLICY: AuthorizationDecision = Object.freeze({ allowed: true, reason: 'no-policy' });
const DEFAULT_DENY: AuthorizationDecision = Object.freeze({
  allowed: false,
  reason: 'no-allow-match',
  rule: 'default-deny',
});

/**
 * The rule on one service's compiled rules: any matching DENY wins; if ALLOW rules exist, a call
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
  const facts = indexFacts(f, known, call);
  const deny = firstMatch(candidates(compiled.deny, facts), f, known, call, true);
  if (deny) return { allowed: false, reason: 'deny-rule', rule: deny.id };
  if (!compiled.hasAllow) return ALLOWED_NO_POLICY;
  const allow = firstMatch(candidates(compiled.allow, facts), f, known, call, false);
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
