/**
 * The federated traffic policy model and the PolicyView interface where the gateway meets it.
 *
 * Documents are in Kubernetes shape (`apiVersion: meshfed.io/v1alpha1`, `kind`, `metadata.name`,
 * `spec`) so that a later step can serve them as CRDs unchanged. The types below are the PARSED
 * form: durations are milliseconds, header names are lowercase, HTTP methods are uppercase, and a
 * service is always `namespace/name`. federation/ verifies and distributes them and implements
 * PolicyView; gateway/ consumes a PolicyView and never learns that NATS exists.
 *
 * The schemas and the parser are in policy-schema.ts (parsePolicyDocuments), the cross-field
 * checks in policy-checks.ts; core/index.ts exports all three.
 *
 * Stability: the gateway enforcement layers are written against these types. Only optional fields
 * may be added; nothing is renamed or removed.
 */

import type { ServiceRef } from './catalog.ts';

export const POLICY_API_VERSION = 'meshfed.io/v1alpha1';

/** The response header naming the policy rule that refused or faulted a request (`<policy>/<rule>`). */
export const POLICY_HEADER = 'x-meshfed-policy';

export const POLICY_KINDS = [
  'AuthorizationPolicy',
  'TrafficSplit',
  'FaultInjection',
  'RateLimit',
  'ResilienceOverride',
] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

/**
 * The kinds a cluster's federation identity may sign, and then only for its own services. Every
 * kind may be signed by an admin identity (federation-wide policy).
 */
export const CLUSTER_SIGNABLE_KINDS: readonly PolicyKind[] = ['AuthorizationPolicy', 'RateLimit'];

/** A service as `namespace/name` (the key of `serviceKey()` in catalog.ts). */
export type ServiceKey = string;

export interface PolicyMetadata {
  /** unique per kind within one signer scope; a DNS-1123 subdomain */
  readonly name: string;
  readonly labels?: Readonly<Record<string, string>>;
}

/** The destination service a policy is about, optionally only where it runs in one cluster. */
export interface PolicyTarget {
  readonly service: ServiceKey;
  /** when set, only the gateways of this cluster enforce the policy */
  readonly cluster?: string;
}

/**
 * A pattern on one part of an identity: an exact value, `*` (anything), `prefix*` or `*suffix`
 * (the same rule for principals and namespaces).
 */
export type IdentityPattern = string;

/**
 * Who calls. All fields given must match. A caller known only by its source cluster (SNI
 * passthrough, or a gateway that forwarded no workload identity) can match only a CallerMatch
 * that has `cluster` and nothing else.
 */
export interface CallerMatch {
  /** the caller's SPIFFE ID (pattern) */
  readonly spiffeId?: IdentityPattern;
  /** the caller's source cluster (pattern); "any caller of cluster C" is `{ cluster: C }` */
  readonly cluster?: IdentityPattern;
  readonly namespace?: IdentityPattern;
  readonly serviceAccount?: IdentityPattern;
}

/** Exactly one of exact or prefix. */
export interface PathMatch {
  readonly exact?: string;
  readonly prefix?: string;
}

/** What is called. All fields given must match; within a list, any entry. */
export interface RequestMatch {
  /** uppercase HTTP methods */
  readonly methods?: readonly string[];
  readonly paths?: readonly PathMatch[];
  /** destination service ports */
  readonly ports?: readonly number[];
  /** gRPC: the fully qualified service (`pkg.Service`) and/or method name */
  readonly grpc?: { readonly service?: string; readonly method?: string };
}

export type AuthorizationAction = 'ALLOW' | 'DENY';

/** A rule matches when any `from` entry matches (absent: any caller) and any `to` entry matches (absent: any request). */
export interface AuthorizationRule {
  readonly name: string;
  readonly action: AuthorizationAction;
  readonly from?: readonly CallerMatch[];
  readonly to?: readonly RequestMatch[];
}

/**
 * The rule: any matching DENY wins; if the service has any ALLOW rule, a request that
 * matches none is denied; a service without policy keeps today's behaviour (exported = reachable).
 */
export interface AuthorizationPolicySpec {
  readonly target: PolicyTarget;
  readonly rules: readonly AuthorizationRule[];
}

/** One condition on a header (name lowercase). Exactly one of exact, prefix, present. */
export interface HeaderMatch {
  readonly name: string;
  readonly exact?: string;
  readonly prefix?: string;
  readonly present?: boolean;
}

/** A match on an HTTP request as its caller sends it; all fields given must match. */
export interface HttpMatch {
  /** every header condition must hold */
  readonly headers?: readonly HeaderMatch[];
  readonly path?: PathMatch;
  /** uppercase; any of them */
  readonly methods?: readonly string[];
}

export interface SplitBackend {
  /** the service traffic goes to (a canary is another service, e.g. `shop/orders-v2`) */
  readonly service: ServiceKey;
  /** when set, only this cluster's instances (locality balancing is then bypassed) */
  readonly cluster?: string;
  /** relative weight, 0..10000; the backends of a route never sum to 0 */
  readonly weight: number;
}

export interface TrafficRoute {
  readonly name: string;
  /** absent: every request (a catch-all; only the last route may be one) */
  readonly match?: HttpMatch;
  readonly backends: readonly SplitBackend[];
}

/** Routes for a service as its callers address it; the first route that matches decides. */
export interface TrafficSplitSpec {
  readonly service: ServiceKey;
  readonly routes: readonly TrafficRoute[];
}

export interface FaultDelay {
  /** milliseconds */
  readonly fixed: number;
  /** 0..100 */
  readonly percentage: number;
}

/** Exactly one of httpStatus and grpcStatus. */
export interface FaultAbort {
  readonly httpStatus?: number;
  readonly grpcStatus?: number;
  /** 0..100 */
  readonly percentage: number;
}

/** The first rule that matches applies its delay and/or abort. */
export interface FaultRule {
  readonly name: string;
  readonly match?: HttpMatch;
  readonly delay?: FaultDelay;
  readonly abort?: FaultAbort;
}

export interface FaultInjectionSpec {
  readonly service: ServiceKey;
  readonly rules: readonly FaultRule[];
}

/** What one token bucket is kept for, within one gateway process. */
export type RateLimitBucket = 'gateway' | 'sourceCluster' | 'caller';
export const RATE_LIMIT_BUCKETS: readonly RateLimitBucket[] = ['gateway', 'sourceCluster', 'caller'];

/**
 * A token bucket per gateway PROCESS (N gateways admit N× the rate: a local limit, not a
 * federated one): `requests` tokens are added every `interval` ms, up to `burst`.
 */
export interface RateLimitSpec {
  readonly target: PolicyTarget;
  readonly requests: number;
  /** milliseconds */
  readonly interval: number;
  /** bucket size; defaults to `requests` */
  readonly burst: number;
  /** default 'gateway': one bucket for all callers */
  readonly bucketPer: RateLimitBucket;
}

export type RetryOn =
  | '5xx'
  | 'gateway-error'
  | 'connect-failure'
  | 'reset'
  | 'refused-stream'
  | 'cancelled'
  | 'unavailable'
  | 'deadline-exceeded'
  | 'resource-exhausted';
export const RETRY_ON: readonly RetryOn[] = [
  '5xx',
  'gateway-error',
  'connect-failure',
  'reset',
  'refused-stream',
  'cancelled',
  'unavailable',
  'deadline-exceeded',
  'resource-exhausted',
];

/** Replaces the gateway-wide defaults (balancer config) for one service; fields absent keep them. */
export interface ResilienceOverrideSpec {
  readonly service: ServiceKey;
  /** milliseconds */
  readonly timeouts?: { readonly request?: number; readonly connect?: number };
  readonly retry?: {
    readonly attempts?: number;
    readonly retryOn?: readonly RetryOn[];
    /** milliseconds */
    readonly perTryTimeout?: number;
  };
  readonly outlier?: {
    readonly consecutiveFailures?: number;
    /** milliseconds */
    readonly baseEjection?: number;
    /** milliseconds */
    readonly maxEjection?: number;
    readonly maxEjectionPercent?: number;
  };
}

interface PolicyDocumentOf<K extends PolicyKind, S> {
  readonly apiVersion: typeof POLICY_API_VERSION;
  readonly kind: K;
  readonly metadata: PolicyMetadata;
  readonly spec: S;
}

export type AuthorizationPolicy = PolicyDocumentOf<'AuthorizationPolicy', AuthorizationPolicySpec>;
export type TrafficSplit = PolicyDocumentOf<'TrafficSplit', TrafficSplitSpec>;
export type FaultInjection = PolicyDocumentOf<'FaultInjection', FaultInjectionSpec>;
export type RateLimit = PolicyDocumentOf<'RateLimit', RateLimitSpec>;
export type ResilienceOverride = PolicyDocumentOf<'ResilienceOverride', ResilienceOverrideSpec>;

export type PolicyDocument =
  | AuthorizationPolicy
  | TrafficSplit
  | FaultInjection
  | RateLimit
  | ResilienceOverride;
export type PolicyDocumentOfKind<K extends PolicyKind> = Extract<PolicyDocument, { kind: K }>;

/** The service a document is about (its target or its `service`). */
export function policyService(doc: PolicyDocument): ServiceKey {
  return 'target' in doc.spec ? doc.spec.target.service : doc.spec.service;
}

/** The cluster a document is pinned to, if any (only targets of AuthorizationPolicy/RateLimit). */
export function policyCluster(doc: PolicyDocument): string | undefined {
  return 'target' in doc.spec ? doc.spec.target.cluster : undefined;
}

/** `kind/name`: how a document is named in messages and in the CLI. */
export function policyDocumentId(doc: Pick<PolicyDocument, 'kind' | 'metadata'>): string {
  return `${doc.kind}/${doc.metadata.name}`;
}

/** Parses `namespace/name`; undefined for anything else. */
export function parseServiceKey(key: string): ServiceRef | undefined {
  const slash = key.indexOf('/');
  if (slash <= 0 || slash !== key.lastIndexOf('/') || slash === key.length - 1) return undefined;
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/**
 * Who signed a set of documents: `admin` (federation-wide) or `cluster:<name>` (that cluster's
 * federation identity, for its own services only). Revisions are counted per scope.
 */
export type PolicyScope = string;
export const ADMIN_POLICY_SCOPE: PolicyScope = 'admin';
export function clusterPolicyScope(cluster: string): PolicyScope {
  return `cluster:${cluster}`;
}

/** The signed revision in force for one signer scope. */
export interface PolicyScopeRevision {
  readonly scope: PolicyScope;
  /** increases with every apply in this scope; never goes back (rollback-proof) */
  readonly revision: number;
  /** the SPIFFE ID that signed it */
  readonly signer: string;
  /** epoch ms when it was signed */
  readonly issuedAt: number;
}

/** Everything in force for one destination service. */
export interface ServicePolicies {
  /** from every scope; rules are combined (any DENY wins; any ALLOW makes the rest default-deny) */
  readonly authorization: readonly AuthorizationPolicy[];
  /** each is its own bucket; a request must pass all that apply */
  readonly rateLimits: readonly RateLimit[];
  readonly trafficSplit?: TrafficSplit;
  readonly faultInjection?: FaultInjection;
  readonly resilience?: ResilienceOverride;
}

/** An immutable set of documents in force, indexed for the request path. */
export interface PolicySet {
  /**
   * Local generation: increases every time the set in force changes in this process (0 = no
   * policy ever). Use it to cache compiled forms; compare `scopes` across processes.
   */
  readonly revision: number;
  /** the signed revision per signer scope, sorted by scope */
  readonly scopes: readonly PolicyScopeRevision[];
  readonly documents: readonly PolicyDocument[];
  readonly byKind: { readonly [K in PolicyKind]: readonly PolicyDocumentOfKind<K>[] };
  /** by destination service `namespace/name` */
  readonly byService: ReadonlyMap<ServiceKey, ServicePolicies>;
}

/**
 * The policy in force, as the gateway consumes it. `current()` is cheap (no copy) and always
 * returns a whole revision: a set is replaced atomically, never edited in place.
 */
export interface PolicyView {
  current(): PolicySet;
  /** called with the new set after every change; returns an unsubscribe function */
  onChange(listener: (set: PolicySet) => void): () => void;
}

const EMPTY_SERVICE_POLICIES: ServicePolicies = Object.freeze({
  authorization: Object.freeze([]) as readonly AuthorizationPolicy[],
  rateLimits: Object.freeze([]) as readonly RateLimit[],
});

/** What a service has when no document names it. */
export function noServicePolicies(): ServicePolicies {
  return EMPTY_SERVICE_POLICIES;
}

/**
 * Builds the indexed, frozen set. Single-valued kinds (TrafficSplit, FaultInjection,
 * ResilienceOverride) are validated to be unique per service before they get here; if two still
 * meet, the first in `documents` order wins, so the result never depends on Map iteration.
 */
export function buildPolicySet(
  documents: readonly PolicyDocument[],
  meta: { revision: number; scopes: readonly PolicyScopeRevision[] },
): PolicySet {
  const byKind = {
    AuthorizationPolicy: [] as AuthorizationPolicy[],
    TrafficSplit: [] as TrafficSplit[],
    FaultInjection: [] as FaultInjection[],
    RateLimit: [] as RateLimit[],
    ResilienceOverride: [] as ResilienceOverride[],
  };
  const byService = new Map<
    ServiceKey,
    {
      authorization: AuthorizationPolicy[];
      rateLimits: RateLimit[];
      trafficSplit?: TrafficSplit;
      faultInjection?: FaultInjection;
      resilience?: ResilienceOverride;
    }
  >();
  for (const doc of documents) {
    const key = policyService(doc);
    let entry = byService.get(key);
    if (!entry) {
      entry = { authorization: [], rateLimits: [] };
      byService.set(key, entry);
    }
    switch (doc.kind) {
      case 'AuthorizationPolicy':
        byKind.AuthorizationPolicy.push(doc);
        entry.authorization.push(doc);
        break;
      case 'RateLimit':
        byKind.RateLimit.push(doc);
        entry.rateLimits.push(doc);
        break;
      case 'TrafficSplit':
        byKind.TrafficSplit.push(doc);
        entry.trafficSplit ??= doc;
        break;
      case 'FaultInjection':
        byKind.FaultInjection.push(doc);
        entry.faultInjection ??= doc;
        break;
      case 'ResilienceOverride':
        byKind.ResilienceOverride.push(doc);
        entry.resilience ??= doc;
        break;
    }
  }
  for (const entry of byService.values()) {
    Object.freeze(entry.authorization);
    Object.freeze(entry.rateLimits);
    Object.freeze(entry);
  }
  for (const list of Object.values(byKind)) Object.freeze(list);
  return Object.freeze({
    revision: meta.revision,
    scopes: Object.freeze(
      [...meta.scopes].sort((a, b) => (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : 0)),
    ),
    documents: Object.freeze([...documents]),
    byKind: Object.freeze(byKind),
    byService: byService as ReadonlyMap<ServiceKey, ServicePolicies>,
  });
}

export const EMPTY_POLICY_SET: PolicySet = buildPolicySet([], { revision: 0, scopes: [] });

/** A PolicyView that never changes (tests, and a gateway run without federation). */
export function staticPolicyView(set: PolicySet = EMPTY_POLICY_SET): PolicyView {
  return { current: () => set, onChange: () => () => {} };
}
