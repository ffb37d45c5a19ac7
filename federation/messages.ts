import { dnsLabel, MAX_REPORTED_LINKS, PROTOCOLS, z } from '../core/index.ts';

/**
 * The catalog wire schema, version 1. Every message is the payload of a compact JWS (see jws.ts) signed by the
 * publishing cluster's federation identity. Receivers reject unknown versions and unknown fields, so a change
 * of meaning always comes with a new `v`. docs/protocol.md documents each field.
 */
export const SCHEMA_VERSION = 1 as const;

/** The largest signed message a receiver accepts (a snapshot part; single messages have maxMessageBytes). */
export const MAX_SNAPSHOT_BYTES = 1024 * 1024;

const label = dnsLabel();
const epochMs = z.number().int().nonnegative().max(8.64e15);
/** revisions are integers that must stay exact in a double */
const revision = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

const localitySchema = z.strictObject({
  region: z.string().min(1).max(128),
  zone: z.string().min(1).max(128),
});

const portSchema = z.strictObject({
  name: z.string().min(1).max(63),
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(PROTOCOLS as readonly [string, ...string[]]),
});

const gatewaySchema = z.strictObject({
  name: z.string().min(1).max(253),
  address: z.string().min(3).max(300),
  locality: localitySchema.optional(),
});

const envelope = {
  v: z.literal(SCHEMA_VERSION),
  cluster: label,
  issuedAt: epochMs,
  expiresAt: epochMs,
};

export const entrySchema = z.strictObject({
  ...envelope,
  type: z.literal('entry'),
  namespace: label,
  name: label,
  revision,
  ports: z.array(portSchema).min(1).max(64),
  locality: localitySchema,
  gateways: z.array(gatewaySchema).max(64),
  weight: z.number().int().nonnegative().max(1_000_000),
});

export const tombstoneSchema = z.strictObject({
  ...envelope,
  type: z.literal('tombstone'),
  namespace: label,
  name: label,
  revision,
});

/** A cluster's gateway announcement and heartbeat; `digest` summarises its live entry set for anti-entropy. */
export const announceSchema = z.strictObject({
  ...envelope,
  type: z.literal('announce'),
  revision,
  locality: localitySchema,
  gateways: z.array(gatewaySchema).max(64),
  services: z.number().int().nonnegative(),
  digest: z.string().regex(/^[0-9a-f]{32}$/),
});

/**
 * A gateway withdraws itself by name (it drains or stops), on `withdraw.<cluster>`: receivers drop it from every
 * offer of its cluster whose revision is older, and refuse its older entries until `expiresAt`; the cluster's
 * other gateways stay. A newer message from a gateway of that name (it started again) brings it back. Gateways
 * of older versions do not subscribe to the subject (docs/protocol.md, "Several gateways per cluster").
 */
export const withdrawSchema = z.strictObject({
  ...envelope,
  type: z.literal('withdraw'),
  gateway: gatewaySchema.shape.name,
  revision,
});

/**
 * One part of a snapshot: the sender's whole live set as of revision `asOf` is `count` entries whose digest is
 * `digest`, split into `parts` signed parts. Signing parts rather than single entries makes a full sync cost one
 * signature check per part instead of per entry.
 */
export const snapshotSchema = z.strictObject({
  ...envelope,
  type: z.literal('snapshot'),
  /** the request id this snapshot answers */
  req: z.string().min(1).max(64),
  part: z.number().int().nonnegative(),
  parts: z.number().int().positive().max(10_000),
  asOf: revision,
  count: z.number().int().nonnegative(),
  digest: z.string().regex(/^[0-9a-f]{32}$/),
  entries: z.array(entrySchema).max(20_000),
});

/**
 * A request for a snapshot (on `sync.<cluster>`) or for announcements (on `sync-all`), signed by the asking
 * cluster's federation identity: responders hold each cluster to its own rate, which a requester cannot escape by
 * inventing inboxes, and answer only to the inbox named here (the NATS reply subject must equal it).
 */
export const syncRequestSchema = z.strictObject({
  ...envelope,
  type: z.literal('sync'),
  req: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  reply: z.string().min(1).max(256),
});

/**
 * One gateway's outbound golden figures per destination cluster over `windowMs` (ending at issuedAt), on
 * `links.<cluster>` every heartbeat: what lets another gateway's dashboard draw links between clusters
 * other than its own. Bounded: at most MAX_REPORTED_LINKS links, each a few numbers.
 */
export const linksSchema = z.strictObject({
  ...envelope,
  type: z.literal('links'),
  gateway: z.string().min(1).max(253),
  windowMs: z.number().int().min(1_000).max(300_000),
  links: z
    .array(
      z.strictObject({
        to: label,
        requests: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
        failures: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
        p99Ms: z.number().nonnegative().max(3_600_000),
      }),
    )
    .max(MAX_REPORTED_LINKS),
});

export const messageSchema = z.discriminatedUnion('type', [
  linksSchema,
  entrySchema,
  tombstoneSchema,
  announceSchema,
  snapshotSchema,
  syncRequestSchema,
  withdrawSchema,
]);

export type EntryMessage = z.output<typeof entrySchema>;
export type TombstoneMessage = z.output<typeof tombstoneSchema>;
export type AnnounceMessage = z.output<typeof announceSchema>;
export type SnapshotMessage = z.output<typeof snapshotSchema>;
export type SyncRequestMessage = z.output<typeof syncRequestSchema>;
export type LinksMessage = z.output<typeof linksSchema>;
export type WithdrawMessage = z.output<typeof withdrawSchema>;
export type CatalogMessage = z.output<typeof messageSchema>;

export function entryKey(cluster: string, namespace: string, name: string): string {
  return `${cluster}/${namespace}/${name}`;
}

/** The first problem the schema found in a message's payload, as a verifier reports it: `field.path: what`. */
export function firstIssue(error: {
  issues: readonly { path: readonly PropertyKey[]; message: string }[];
}): string {
  const issue = error.issues[0];
  if (!issue) return 'payload: invalid';
  return `${issue.path.map(String).join('.') || 'payload'}: ${issue.message}`;
}
