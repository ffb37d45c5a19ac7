/**
 * One schema per policy kind, and the parser that turns YAML (one or many documents) into
 * validated, frozen PolicyDocuments, reporting every problem at once: the document, the field, the fix.
 */

import { deepFreeze, describeIssues, dnsLabel, duration, z } from './config.ts';
import { MeshfedError } from './errors.ts';
import { yaml } from './yaml.ts';
import type {
  AuthorizationPolicy,
  FaultInjection,
  PolicyDocument,
  PolicyKind,
  RateLimit,
  RateLimitBucket,
  ResilienceOverride,
  RetryOn,
  TrafficSplit,
} from './policy.ts';
import { POLICY_API_VERSION, POLICY_KINDS, RATE_LIMIT_BUCKETS, RETRY_ON } from './policy.ts';
import { semanticProblems } from './policy-checks.ts';

/** One document's YAML may not exceed this (measured on its source text). */
export const MAX_POLICY_DOCUMENT_BYTES = 256 * 1024;
/**
 * All documents of one signer scope, as JSON, may not exceed this: once signed (base64url, ×4/3,
 * plus the x5c chain) they must fit NATS's default max_payload of 1 MiB in one message, because a
 * revision travels whole.
 */
export const MAX_POLICY_SCOPE_BYTES = 640 * 1024;
/** A text (one file) larger than this is refused before it is parsed. */
export const MAX_POLICY_TEXT_BYTES = 4 * 1024 * 1024;

export type PolicyProblemReason =
  | 'schema'
  | 'yaml'
  | 'too-large'
  | 'duplicate'
  | 'conflict'
  | 'weight'
  | 'unreachable'
  | 'overlap'
  | 'unknown-service';

export interface PolicyProblem {
  /** `file.yaml#2 (TrafficSplit/greeter)`: which document */
  document: string;
  /** the field, dotted (`spec.routes[1].backends`), or `(document)` */
  path: string;
  /** what is wrong and how to fix it */
  message: string;
  reason: PolicyProblemReason;
}

type PolicySchemas = {
  readonly [K in PolicyKind]: z.Schema<Extract<PolicyDocument, { kind: K }>, unknown>;
};

let schemas: PolicySchemas | undefined;

/**
 * One schema per kind, built on first use: schemas are objects of their own, and a gateway that never
 * receives a policy document never needs them.
 */
function policyDocumentSchemas(): PolicySchemas {
  schemas ??= buildPolicySchemas();
  return schemas;
}

function buildPolicySchemas(): PolicySchemas {
  const ID_PATTERN = z
    .string()
    .min(1)
    .max(512)
    .regex(/^(\*|\*?[^*\s]+|[^*\s]+\*)$/, 'expected an exact value, "*", "prefix*" or "*suffix"');

  const serviceKey = z
    .string()
    .regex(
      /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/,
      'expected a service as "namespace/name" (DNS labels), e.g. "shop/orders"',
    );

  const method = z
    .string()
    .regex(/^[A-Za-z]{1,20}$/, 'expected an HTTP method such as GET')
    .transform((m) => m.toUpperCase());

  const pathMatch = z
    .strictObject({
      exact: z.string().startsWith('/', 'a path starts with "/"').max(2048).optional(),
      prefix: z.string().startsWith('/', 'a path starts with "/"').max(2048).optional(),
    })
    .refine((p) => (p.exact === undefined) !== (p.prefix === undefined), {
      message: 'give exactly one of "exact" or "prefix"',
    });

  const headerMatch = z
    .strictObject({
      name: z
        .string()
        .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/, 'expected an HTTP header name')
        .transform((n) => n.toLowerCase()),
      exact: z.string().max(1024).optional(),
      prefix: z.string().min(1).max(1024).optional(),
      present: z.boolean().optional(),
    })
    .refine((h) => [h.exact, h.prefix, h.present].filter((v) => v !== undefined).length === 1, {
      message: 'give exactly one of "exact", "prefix" or "present"',
    });

  const httpMatch = z.strictObject({
    headers: z.array(headerMatch).min(1).max(32).optional(),
    path: pathMatch.optional(),
    methods: z.array(method).min(1).max(16).optional(),
  });

  const target = z.strictObject({
    service: serviceKey,
    cluster: dnsLabel().optional(),
  });

  const metadata = z.strictObject({
    name: z
      .string()
      .regex(
        /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/,
        'expected a DNS-1123 name (lowercase letters, digits, "-" and ".")',
      ),
    labels: z.record(z.string().max(317), z.string().max(63)).optional(),
  });

  const ruleName = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'expected a DNS label');
  const percentage = z.number().min(0).max(100);

  function documentSchema<K extends PolicyKind, S extends z.Schema>(kind: K, spec: S) {
    return z.strictObject({
      apiVersion: z.literal(POLICY_API_VERSION, { error: `expected apiVersion "${POLICY_API_VERSION}"` }),
      kind: z.literal(kind),
      metadata,
      spec,
    });
  }

  const callerMatch = z
    .strictObject({
      spiffeId: ID_PATTERN.optional(),
      cluster: ID_PATTERN.optional(),
      namespace: ID_PATTERN.optional(),
      serviceAccount: ID_PATTERN.optional(),
    })
    .refine((c) => Object.values(c).some((v) => v !== undefined), {
      message: 'a caller match needs at least one of spiffeId, cluster, namespace, serviceAccount',
    });

  const requestMatch = z
    .strictObject({
      methods: z.array(method).min(1).max(16).optional(),
      paths: z.array(pathMatch).min(1).max(64).optional(),
      ports: z.array(z.number().int().min(1).max(65535)).min(1).max(64).optional(),
      grpc: z
        .strictObject({
          service: z
            .string()
            .regex(/^[A-Za-z0-9_.]{1,256}$/, 'expected a gRPC service name such as pkg.Service')
            .optional(),
          method: z
            .string()
            .regex(/^[A-Za-z0-9_]{1,128}$/, 'expected a gRPC method name')
            .optional(),
        })
        .refine((g) => g.service !== undefined || g.method !== undefined, {
          message: 'give a gRPC service and/or method',
        })
        .optional(),
    })
    .refine((r) => Object.values(r).some((v) => v !== undefined), {
      message:
        'a request match needs at least one of methods, paths, ports, grpc (omit "to" to match any request)',
    });

  const authorizationPolicy: z.Schema<AuthorizationPolicy, unknown> = documentSchema(
    'AuthorizationPolicy',
    z.strictObject({
      target,
      rules: z
        .array(
          z.strictObject({
            name: ruleName,
            action: z.enum(['ALLOW', 'DENY'], { error: 'expected "ALLOW" or "DENY"' }),
            from: z.array(callerMatch).min(1).max(256).optional(),
            to: z.array(requestMatch).min(1).max(256).optional(),
          }),
        )
        .min(1, 'an AuthorizationPolicy needs at least one rule')
        .max(1000),
    }),
  );

  const backend = z.strictObject({
    service: serviceKey,
    cluster: dnsLabel().optional(),
    weight: z.number().int().min(0).max(10_000),
  });

  const trafficSplit: z.Schema<TrafficSplit, unknown> = documentSchema(
    'TrafficSplit',
    z.strictObject({
      service: serviceKey,
      routes: z
        .array(
          z.strictObject({
            name: ruleName,
            match: httpMatch.optional(),
            backends: z.array(backend).min(1, 'a route needs at least one backend').max(64),
          }),
        )
        .min(1, 'a TrafficSplit needs at least one route')
        .max(1000),
    }),
  );

  const faultInjection: z.Schema<FaultInjection, unknown> = documentSchema(
    'FaultInjection',
    z.strictObject({
      service: serviceKey,
      rules: z
        .array(
          z
            .strictObject({
              name: ruleName,
              match: httpMatch.optional(),
              delay: z.strictObject({ fixed: duration(), percentage }).optional(),
              abort: z
                .strictObject({
                  httpStatus: z.number().int().min(200).max(599).optional(),
                  grpcStatus: z.number().int().min(1).max(16).optional(),
                  percentage,
                })
                .refine((a) => (a.httpStatus === undefined) !== (a.grpcStatus === undefined), {
                  message: 'give exactly one of "httpStatus" or "grpcStatus"',
                })
                .optional(),
            })
            .refine((r) => r.delay !== undefined || r.abort !== undefined, {
              message: 'a fault rule needs a "delay", an "abort" or both',
            }),
        )
        .min(1, 'a FaultInjection needs at least one rule')
        .max(1000),
    }),
  );

  const rateLimit: z.Schema<RateLimit, unknown> = documentSchema(
    'RateLimit',
    z
      .strictObject({
        target,
        requests: z.number().int().min(1).max(1_000_000_000),
        interval: duration().default(1000),
        burst: z.number().int().min(1).max(1_000_000_000).optional(),
        bucketPer: z
          .enum(RATE_LIMIT_BUCKETS as [RateLimitBucket, ...RateLimitBucket[]], {
            error: `expected one of ${RATE_LIMIT_BUCKETS.join(', ')}`,
          })
          .default('gateway'),
      })
      .refine((s) => s.interval >= 1, { message: 'interval must be at least 1ms', path: ['interval'] })
      .transform((s) => ({ ...s, burst: s.burst ?? s.requests })),
  );

  const resilienceOverride: z.Schema<ResilienceOverride, unknown> = documentSchema(
    'ResilienceOverride',
    z
      .strictObject({
        service: serviceKey,
        timeouts: z
          .strictObject({ request: duration().optional(), connect: duration().optional() })
          .optional(),
        retry: z
          .strictObject({
            attempts: z.number().int().min(0).max(5).optional(),
            retryOn: z
              .array(
                z.enum(RETRY_ON as [RetryOn, ...RetryOn[]], {
                  error: `expected one of ${RETRY_ON.join(', ')}`,
                }),
              )
              .min(1)
              .optional(),
            perTryTimeout: duration().optional(),
          })
          .optional(),
        outlier: z
          .strictObject({
            consecutiveFailures: z.number().int().min(1).optional(),
            baseEjection: duration().optional(),
            maxEjection: duration().optional(),
            maxEjectionPercent: z.number().min(0).max(100).optional(),
          })
          .optional(),
      })
      .refine((s) => s.timeouts !== undefined || s.retry !== undefined || s.outlier !== undefined, {
        message: 'a ResilienceOverride needs at least one of timeouts, retry, outlier',
      }),
  );

  return {
    AuthorizationPolicy: authorizationPolicy,
    TrafficSplit: trafficSplit,
    FaultInjection: faultInjection,
    RateLimit: rateLimit,
    ResilienceOverride: resilienceOverride,
  };
}

function describeDocument(base: string, raw: unknown): string {
  const r = raw as { kind?: unknown; metadata?: { name?: unknown } } | null;
  const kind = typeof r?.kind === 'string' ? r.kind : undefined;
  const name = typeof r?.metadata?.name === 'string' ? r.metadata.name : undefined;
  const label = kind && name ? ` (${kind}/${name})` : kind ? ` (${kind})` : '';
  return `${base}${label}`;
}

/** Builds the one error that lists every problem (details.problems holds them for --json). */
export function policyInvalidError(problems: readonly PolicyProblem[], source: string): MeshfedError {
  const lines = problems.map((p) => `${p.document}: ${p.path}: ${p.message}`);
  return new MeshfedError('MESHFED_POLICY_INVALID', lines.join('\n'), {
    details: { source, problems },
  });
}

/** `bases[i]` names raw[i] in messages (e.g. `file.yaml#3`). */
function collect(
  raw: readonly unknown[],
  bases: readonly string[],
): { docs: PolicyDocument[]; problems: PolicyProblem[] } {
  const problems: PolicyProblem[] = [];
  const docs: PolicyDocument[] = [];
  const labels: string[] = [];
  raw.forEach((item, index) => {
    const document = describeDocument(bases[index]!, item);
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      problems.push({
        document,
        path: '(document)',
        message: 'expected a mapping with apiVersion, kind, metadata, spec',
        reason: 'schema',
      });
      return;
    }
    const kind = (item as { kind?: unknown }).kind;
    if (typeof kind !== 'string' || !(POLICY_KINDS as readonly string[]).includes(kind)) {
      problems.push({
        document,
        path: 'kind',
        message: `unknown kind ${JSON.stringify(kind ?? null)}; expected one of ${POLICY_KINDS.join(', ')}`,
        reason: 'schema',
      });
      return;
    }
    const result = policyDocumentSchemas()[kind as PolicyKind].safeParse(item);
    if (!result.success) {
      for (const p of describeIssues(result.error)) problems.push({ document, ...p, reason: 'schema' });
      return;
    }
    docs.push(result.data);
    labels.push(document);
  });
  // semantic problems of the documents that did parse are reported too, so one run shows everything
  problems.push(...semanticProblems(docs, labels));
  return { docs, problems };
}

/**
 * Validates already-decoded documents (from YAML, or from a signed message's JSON). Throws one
 * MESHFED_POLICY_INVALID listing every problem; returns deeply frozen documents in input order.
 */
export function validatePolicyDocuments(raw: readonly unknown[], source: string): PolicyDocument[] {
  const { docs, problems } = collect(
    raw,
    raw.map((_, i) => `${source}#${i + 1}`),
  );
  if (problems.length > 0) throw policyInvalidError(problems, source);
  return deepFreeze(docs);
}

/**
 * Parses YAML text holding one or many documents (`---`), then validates them (see
 * validatePolicyDocuments). A text over MAX_POLICY_TEXT_BYTES is refused unread
 * (MESHFED_POLICY_TOO_LARGE); a document over MAX_POLICY_DOCUMENT_BYTES is a problem of its own.
 */
export function parsePolicyDocuments(text: string, source: string): PolicyDocument[] {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_POLICY_TEXT_BYTES) {
    throw new MeshfedError(
      'MESHFED_POLICY_TOO_LARGE',
      `${source}: ${bytes} bytes is over the ${MAX_POLICY_TEXT_BYTES}-byte limit for a policy file (one document may hold at most ${MAX_POLICY_DOCUMENT_BYTES} bytes); split it into smaller documents`,
      { details: { source, bytes, limit: MAX_POLICY_TEXT_BYTES } },
    );
  }
  const problems: PolicyProblem[] = [];
  const raw: unknown[] = [];
  const bases: string[] = [];
  let index = 0;
  for (const doc of yaml().parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true })) {
    if (doc.contents === null && doc.errors.length === 0) continue; // an empty document between `---`
    index++;
    const document = `${source}#${index}`;
    const [start, , end] = doc.range;
    if (Buffer.byteLength(text.slice(start, end), 'utf8') > MAX_POLICY_DOCUMENT_BYTES) {
      problems.push({
        document,
        path: '(document)',
        message: `larger than ${MAX_POLICY_DOCUMENT_BYTES} bytes; split it (e.g. one AuthorizationPolicy per service)`,
        reason: 'too-large',
      });
      continue;
    }
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0];
        problems.push({
          document,
          path: pos ? `line ${pos.line} column ${pos.col}` : '(yaml)',
          message: e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, ''),
          reason: 'yaml',
        });
      }
      continue;
    }
    try {
      raw.push(doc.toJS({ maxAliasCount: 100 }));
      bases.push(document);
    } catch (err) {
      problems.push({ document, path: '(yaml)', message: (err as Error).message, reason: 'yaml' });
    }
  }
  if (index === 0) {
    problems.push({
      document: source,
      path: '(document)',
      message: 'no policy document found',
      reason: 'schema',
    });
  }
  const { docs, problems: more } = collect(raw, bases);
  problems.push(...more);
  if (problems.length > 0) throw policyInvalidError(problems, source);
  return deepFreeze(docs);
}
