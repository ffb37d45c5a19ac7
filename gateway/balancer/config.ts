import { duration, z } from '../../core/index.ts';

const RETRY_DEFAULTS = {
  attempts: 2,
  budgetPercent: 20,
  minRetriesPerSecond: 10,
  budgetWindow: 10_000,
  backoffBase: 25,
  backoffMax: 250,
};

const CIRCUIT_BREAKER_DEFAULTS = {
  maxConnections: 1024,
  maxPending: 1024,
  maxRequests: 1024,
  maxClusterRequests: 4096,
  maxServiceRequests: 4096,
};

export const balancerConfigSchema = z
  .strictObject({
    overprovisioningFactor: z
      .number()
      .min(1)
      .max(10)
      .default(1.4)
      .describe('a locality level keeps all its traffic while healthy share × this ≥ 1 (default 1.4)'),
    panicThreshold: z
      .number()
      .min(0)
      .max(100)
      .default(50)
      .describe(
        'percent: below this healthy share a locality level balances over all its targets, healthy or not (per-level panic); 0 turns panic off',
      ),
    outlier: z
      .strictObject({
        consecutiveFailures: z
          .number()
          .int()
          .min(1)
          .default(5)
          .describe('failures in a row that eject a target'),
        baseEjection: duration().default(30_000).describe('first ejection; the n-th lasts n × this'),
        maxEjection: duration().default(300_000).describe('cap on one ejection'),
        maxEjectionPercent: z
          .number()
          .min(0)
          .max(100)
          .default(50)
          .describe('never eject more than this share of targets'),
      })
      .default({
        consecutiveFailures: 5,
        baseEjection: 30_000,
        maxEjection: 300_000,
        maxEjectionPercent: 50,
      }),
    healthCheck: z
      .strictObject({
        interval: duration().default(5_000).describe('active health check period for remote gateways'),
        timeout: duration().default(1_000),
        unhealthyThreshold: z.number().int().min(1).default(2),
        healthyThreshold: z.number().int().min(1).default(2),
      })
      .default({ interval: 5_000, timeout: 1_000, unhealthyThreshold: 2, healthyThreshold: 2 }),
    unresponsiveAfter: duration()
      .default(500)
      .describe(
        "how long a remote gateway has to show it is alive (answer an HTTP/2 PING on its tunnel session, send anything on that session, or answer a request on any connection) after the first per-try or connect timeout towards it, or 4 × the smoothed round trip of the health checks' PINGs to it when that is longer; if it does not, it gets no new request (until a health check answers, or outlier.baseEjection; never the last healthy remote gateway), its idle connections close and its in-flight tries that a timeout would retry are retried elsewhere at once; 0: no PING",
      ),
    retry: z
      .strictObject({
        attempts: z
          .number()
          .int()
          .min(0)
          .max(5)
          .default(2)
          .describe('extra tries for idempotent requests and connect failures'),
        budgetPercent: z
          .number()
          .min(0)
          .max(100)
          .default(20)
          .describe(
            'retries in the last budgetWindow may be at most this percent of the calls in it, per service',
          ),
        minRetriesPerSecond: z
          .number()
          .min(0)
          .default(10)
          .describe('retries per second always allowed on top of budgetPercent'),
        budgetWindow: duration()
          .default(10_000)
          .describe('how far back the retry budget counts calls and retries'),
        backoffBase: duration()
          .default(25)
          .describe('retry n waits a random time in [0, min(backoffMax, backoffBase × 2^n)) (full jitter)'),
        backoffMax: duration().default(250),
      })
      .default(RETRY_DEFAULTS),
    timeouts: z
      .strictObject({
        connect: duration().default(1_000),
        request: duration().default(15_000).describe('whole request, first byte to last, per try'),
        idle: duration().default(60_000),
      })
      .default({ connect: 1_000, request: 15_000, idle: 60_000 }),
    circuitBreaker: z
      .strictObject({
        maxConnections: z
          .number()
          .int()
          .min(1)
          .default(1024)
          .describe('connections (or tunnel streams carrying TCP) per target'),
        maxPending: z
          .number()
          .int()
          .min(1)
          .default(1024)
          .describe('requests per target waiting for a connection or a free stream'),
        maxRequests: z.number().int().min(1).default(1024).describe('concurrent requests per target'),
        maxClusterRequests: z
          .number()
          .int()
          .min(1)
          .default(4096)
          .describe('concurrent requests to all targets of one destination cluster'),
        maxServiceRequests: z
          .number()
          .int()
          .min(1)
          .default(4096)
          .describe('concurrent requests to one service, all targets together'),
      })
      .default(CIRCUIT_BREAKER_DEFAULTS),
  })
  .default({
    overprovisioningFactor: 1.4,
    panicThreshold: 50,
    outlier: { consecutiveFailures: 5, baseEjection: 30_000, maxEjection: 300_000, maxEjectionPercent: 50 },
    healthCheck: { interval: 5_000, timeout: 1_000, unhealthyThreshold: 2, healthyThreshold: 2 },
    unresponsiveAfter: 500,
    retry: RETRY_DEFAULTS,
    timeouts: { connect: 1_000, request: 15_000, idle: 60_000 },
    circuitBreaker: CIRCUIT_BREAKER_DEFAULTS,
  });

export type BalancerConfig = z.output<typeof balancerConfigSchema>;
