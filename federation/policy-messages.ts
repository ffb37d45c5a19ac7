import { ADMIN_POLICY_SCOPE, dnsLabel, z } from '../core/index.ts';

/**
 * The policy wire schema, version 1. Every message is the payload of a compact JWS with an x5c chain (jws.ts).
 * A bundle carries ALL documents of one signer scope at one revision, so a revision travels, verifies and
 * applies whole or not at all. docs/protocol.md documents each field.
 */
export const POLICY_SCHEMA_VERSION = 1 as const;

/** A signed bundle larger than this is refused before parsing (NATS's default max_payload). */
export const MAX_POLICY_MESSAGE_BYTES = 1024 * 1024;

const epochMs = z.number().int().nonnegative().max(8.64e15);
/** revisions are the signer's clock in µs (or one more than the previous), exact in a double */
const revision = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** `admin` or `cluster:<name>` */
export const policyScopeSchema = z
  .string()
  .regex(
    new RegExp(`^(${ADMIN_POLICY_SCOPE}|cluster:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)$`),
    'expected "admin" or "cluster:<name>"',
  );

export const policyBundleSchema = z.strictObject({
  v: z.literal(POLICY_SCHEMA_VERSION),
  type: z.literal('policy'),
  scope: policyScopeSchema,
  revision,
  issuedAt: epochMs,
  /** validated separately, kind by kind (core/policy-schema.ts), so every problem is named */
  documents: z.array(z.unknown()).max(10_000),
});

/** A gateway's report of what it enforces: liveness for `policy apply`, and the anti-entropy signal. */
export const policyStateSchema = z.strictObject({
  v: z.literal(POLICY_SCHEMA_VERSION),
  type: z.literal('policy-state'),
  cluster: dnsLabel(),
  /** the gateway's name within its cluster */
  gateway: z.string().min(1).max(253),
  /** random per process: tells a restarted gateway from the one before */
  instance: z.string().min(1).max(64),
  scopes: z.array(z.strictObject({ scope: policyScopeSchema, revision })).max(10_000),
  issuedAt: epochMs,
});

export type PolicyBundleMessage = z.output<typeof policyBundleSchema>;
export type PolicyStateMessage = z.output<typeof policyStateSchema>;
