import { duration, z } from '../core/index.ts';
import { gatewayAddressesSchema } from './address-policy.ts';

/** A NATS subject token prefix: letters, digits, "-" and "_", dot-separated, no wildcards. */
const SUBJECT_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export const natsConnectionSchema = z.strictObject({
  servers: z
    .array(z.string().min(1))
    .min(1)
    .describe(
      'nats://host:port URLs of this cluster’s NATS (in a supercluster: the local NATS cluster); the client fails over between them',
    ),
  name: z
    .string()
    .optional()
    .describe('client name shown in the server’s monitoring pages (default meshfed-federation-<cluster>)'),
  user: z.string().optional().describe('NATS user name'),
  pass: z.string().optional().describe('NATS password (never logged)'),
  token: z.string().optional().describe('NATS token (never logged)'),
  credsFile: z.string().optional().describe('a NATS .creds file (JWT + nkey seed)'),
  inboxPrefix: z
    .string()
    .regex(SUBJECT_PREFIX, 'expected NATS subject tokens such as "_INBOX"')
    .default('_INBOX')
    .describe(
      'prefix of this client’s reply inboxes; responders answer only replies under _INBOX or their own inboxPrefix, so give every cluster the same one',
    ),
  reconnectWait: duration()
    .default(1_000)
    .describe('wait between connection attempts (the client also reconnects on its own)'),
  tls: z
    .strictObject({
      caFile: z.string().optional().describe('CA bundle PEM that signs the NATS servers’ certificates'),
      certFile: z.string().optional().describe('client certificate PEM, when NATS requires mTLS'),
      keyFile: z.string().optional().describe('its private key PEM'),
    })
    .optional()
    .describe('TLS to NATS'),
});

export const responderLimitsSchema = z.strictObject({
  perRequester: z
    .number()
    .positive()
    .max(1000)
    .default(1)
    .describe(
      'snapshot and announcement requests per second one requesting cluster (the signer of the request) is answered',
    ),
  perRequesterBurst: z
    .number()
    .int()
    .min(1)
    .max(10_000)
    .default(10)
    .describe('requests one requester may make at once before perRequester applies'),
  total: z
    .number()
    .positive()
    .max(10_000)
    .default(20)
    .describe('requests per second this cluster answers from all requesters together'),
  totalBurst: z
    .number()
    .int()
    .min(1)
    .max(100_000)
    .default(100)
    .describe(
      'requests answered at once from all requesters before total applies (a new view asks every cluster)',
    ),
});

export const federationConfigSchema = z
  .strictObject({
    nats: natsConnectionSchema.describe('the NATS connection'),
    subjectPrefix: z
      .string()
      .regex(SUBJECT_PREFIX, 'expected NATS subject tokens such as "meshfed"')
      .default('meshfed')
      .describe('first token(s) of every subject meshfed uses; lets several federations share one NATS'),
    heartbeatInterval: duration()
      .default(5_000)
      .describe('how often this cluster announces its gateways (the liveness signal)'),
    staleAfter: duration()
      .default(20_000)
      .describe('a cluster with no heartbeat for this long is stale: visible, flagged, no new traffic'),
    entryTtl: duration().default(60_000).describe('how long an entry stays valid unless re-published'),
    maxEntryTtl: duration()
      .default(3_600_000)
      .describe(
        'the longest lifetime a remote message may claim: its expiresAt is capped at issuedAt + this (and at its signer certificate’s notAfter)',
      ),
    maxClockSkew: duration()
      .default(30_000)
      .describe(
        'how far another cluster’s clock may be from this gateway’s: a remote message’s issuedAt or revision may be this far ahead, its expiresAt this far behind',
      ),
    gatewayAddresses: gatewayAddressesSchema
      .optional()
      .describe(
        'allow-lists of the gateway addresses remote clusters may advertise; entries and announcements outside them are refused (no constraint when absent)',
      ),
    republishInterval: duration()
      .optional()
      .describe('how often every exported entry is re-published as a bulk snapshot (default entryTtl / 3)'),
    stateDir: z
      .string()
      .optional()
      .describe(
        'where the last verified catalog is persisted (re-verified at start); no persistence when absent',
      ),
    maxMessageBytes: z
      .number()
      .int()
      .min(1024)
      .max(8 * 1024 * 1024)
      .default(64 * 1024)
      .describe('single catalog messages larger than this are refused before parsing'),
    withdrawOnStop: z
      .boolean()
      .default(false)
      .describe('publish tombstones for every exported service on a graceful stop'),
    syncTimeout: duration()
      .default(10_000)
      .describe('how long an incomplete snapshot waits for its missing parts before it is asked for again'),
    responderLimits: responderLimitsSchema
      .default({ perRequester: 1, perRequesterBurst: 10, total: 20, totalBurst: 100 })
      .describe(
        'rate limits on the snapshot and announcement requests this cluster answers, so a misbehaving peer cannot make it burn CPU',
      ),
  })
  .superRefine((c, ctx) => {
    if (c.staleAfter <= c.heartbeatInterval) {
      ctx.addIssue({
        code: 'custom',
        path: ['staleAfter'],
        message: `must be longer than heartbeatInterval (${c.heartbeatInterval} ms), or every cluster flaps stale`,
      });
    }
    if (c.entryTtl > c.maxEntryTtl) {
      ctx.addIssue({
        code: 'custom',
        path: ['maxEntryTtl'],
        message: `must be at least entryTtl (${c.entryTtl} ms), or this cluster's peers with the same setting cap its entries`,
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
