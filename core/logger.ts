import pino, { type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths that are always censored. The list lives in code, never in configuration, so a config
 * change can never turn redaction off. Child loggers must not pass `redact` (it would replace this).
 */
export const REDACT_PATHS: readonly string[] = [
  'key',
  'privateKey',
  'passphrase',
  'password',
  'token',
  'secret',
  'seed',
  'creds',
  'credentials',
  'authorization',
  'headers.authorization',
  'headers["proxy-authorization"]',
  'headers["x-consul-token"]',
  '*.key',
  '*.privateKey',
  '*.passphrase',
  '*.password',
  '*.token',
  '*.secret',
  '*.seed',
  '*.creds',
  '*.credentials',
  '*.authorization',
  '*.keyPem',
  'keyPem',
  'req.headers.authorization',
  'req.headers.cookie',
];

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Where lines go; defaults to stdout. Tests pass a stream to read lines back. */
  destination?: DestinationStream;
  base?: Record<string, unknown>;
}

/** The root logger. Build it once, in the composition root (cli/). */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: options.base ?? { pid: process.pid },
      redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err, cert: certificateSerializer },
    },
    options.destination,
  );
}

/** A component's logger: `log.child({ component, cluster })`. */
export function componentLogger(parent: Logger, component: string, cluster?: string): Logger {
  // pino writes a binding once per child that sets it: a key the parent already binds to the same value is
  // left out, or a line would carry it twice (JSON with duplicate keys)
  const bound = parent.bindings();
  const add: Record<string, string> = {};
  if (bound.component !== component) add.component = component;
  if (cluster !== undefined && bound.cluster !== cluster) add.cluster = cluster;
  return Object.keys(add).length === 0 ? parent : parent.child(add);
}

/** Certificates are logged by allowlist: identity, serial, fingerprint and expiry, never the PEM. */
export function certificateSerializer(cert: unknown): unknown {
  if (cert === null || typeof cert !== 'object') return cert;
  const c = cert as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const k of [
    'spiffeId',
    'serial',
    'serialNumber',
    'fingerprint',
    'fingerprint256',
    'notAfter',
    'validTo',
  ]) {
    if (c[k] !== undefined) out[k] = c[k];
  }
  return out;
}

/** A logger that drops everything, for library users and tests that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
