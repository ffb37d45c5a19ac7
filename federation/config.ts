import { duration, z } from '../core/index.ts';

/** A NATS subject token prefix: letters, digits, "-" and "_", dot-separated, no wildcards. */
const SUBJECT_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export const natsConnectionSchema = z.strictObject({
  /** nats://host:port URLs; the client fails over between them */
  servers: z.array(z.string().min(1)).min(1),
  /** client name shown in the server's monitoring pages */
  name: z.string().optional(),
  user: z.string().optional(),
  pass: z.string().optional(),
  token: z.string().optional(),
  /** a NATS .creds file (JWT + nkey seed) */
  credsFile: z.string().optional(),
  /** wait between connection attempts (the client also reconnects on its own) */
  reconnectWait: duration().default(1_000),
  tls: z
    .strictObject({
      caFile: z.string().optional(),
      certFile: z.string().optional(),
      keyFile: z.string().optional(),
    })
    .optional(),
});

export const federationConfigSchema = z
  .strictObject({
    nats: natsConnectionSchema,
    /** first token(s) of every subject meshfed uses; lets several federations share one NATS */
    subjectPrefix: z
      .string()
      .regex(SUBJECT_PREFIX, 'expected NATS subject tokens such as "meshfed"')
      .default('meshfed'),
    /** how often this cluster announces its gateways (the liveness signal) */
    heartbeatInterval: duration().default(5_000),
    /** a cluster with no heartbeat for this long is stale: visible, flagged, no new traffic */
    staleAfter: duration().default(20_000),
    /** how long an entry stays valid unless re-published */
    entryTtl: duration().default(60_000),
    /** how often every exported entry is re-published; default entryTtl / 3 */
    republishInterval: duration().optional(),
    /** where the last verified catalog is persisted; no persistence when absent */
    stateDir: z.string().optional(),
    /** messages larger than this are refused before parsing */
    maxMessageBytes: z
      .number()
      .int()
      .min(1024)
      .max(8 * 1024 * 1024)
      .default(64 * 1024),
    /** publish tombstones for every exported service on stop() */
    withdrawOnStop: z.boolean().default(false),
    /** how long the snapshot collection of a sync waits for the last reply */
    syncTimeout: duration().default(10_000),
  })
  .superRefine((c, ctx) => {
    if (c.staleAfter <= c.heartbeatInterval) {
      ctx.addIssue({
        code: 'custom',
        path: ['staleAfter'],
        message: `must be longer than heartbeatInterval (${c.heartbeatInterval} ms), or every cluster flaps stale`,
      });
    }
    const republish = c.republishInterval ?? Math.floor(c.entryTtl / 3);
    if (republish >= c.entryTtl) {
      ctx.addIssue({
        code: 'custom',
        path: ['republishInterval'],
        message: `must be shorter than entryTtl (${c.entryTtl} ms), or entries expire between refreshes`,
      });
    }
  });

export type FederationConfigInput = z.input<typeof federationConfigSchema>;
export type FederationConfig = z.output<typeof federationConfigSchema>;

/** The effective re-publish interval. */
export function republishIntervalOf(c: FederationConfig): number {
  return c.republishInterval ?? Math.floor(c.entryTtl / 3);
}
