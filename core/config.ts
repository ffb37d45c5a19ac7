import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import { basename } from 'node:path';
import { MeshfedError } from './errors.ts';
import * as z from './schema.ts';
import { yaml } from './yaml.ts';

export { z };

const HOST_PORT = /^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+|\*)?:)?(\d{1,5})$/;

/** Parses "host:port", "[::1]:port" or ":port" / "port" (host defaults to `defaultHost`). */
export function parseHostPort(
  value: string,
  defaultHost = '0.0.0.0',
): { host: string; port: number } | undefined {
  const m = HOST_PORT.exec(value.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return undefined;
  let host = m[1] ?? defaultHost;
  if (host.startsWith('[')) host = host.slice(1, -1);
  if (host === '*') host = '0.0.0.0';
  return { host, port };
}

/** A listen or dial address written as `host:port`; parsed into `{ host, port }`. */
export function hostPort(defaultHost = '0.0.0.0') {
  return z
    .string()
    .transform((value, ctx) => {
      const parsed = parseHostPort(value, defaultHost);
      if (!parsed) {
        ctx.addIssue({ code: 'custom', message: `expected host:port, got ${JSON.stringify(value)}` });
        return z.NEVER;
      }
      return parsed;
    })
    .meta({ format: 'host:port' });
}

/** True for the addresses that mean "every interface" (a listener bound there has no address to dial). */
export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/**
 * An IPv4 or IPv6 network written `address/prefix` ("10.0.0.0/8", "fd00::/8"); a bare address means
 * that one host. Parsed into the canonical `address/prefix` string, so a component never meets a
 * malformed one.
 */
export function cidr() {
  return z
    .string()
    .transform((value, ctx) => {
      const [address = '', prefix, extra] = value.trim().split('/');
      const family = isIP(address);
      const max = family === 6 ? 128 : 32;
      const bits = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : Number.NaN;
      if (family === 0 || extra !== undefined || !(bits >= 0 && bits <= max)) {
        ctx.addIssue({
          code: 'custom',
          message: `expected an IPv4 or IPv6 network such as "10.0.0.0/8" or "fd00::/8", got ${JSON.stringify(value)}`,
        });
        return z.NEVER;
      }
      return `${address}/${bits}`;
    })
    .meta({ format: 'CIDR' });
}

/**
 * The ranges of a list of CIDRs as `cidr()` writes them (`address/bits`), for membership checks: the one
 * place a validated range becomes a matcher (egress.trustedNetworks, federation.gatewayAddresses).
 */
export function cidrBlockList(ranges: readonly string[]): BlockList {
  const list = new BlockList();
  for (const range of ranges) {
    const [address = '', bits = ''] = range.split('/');
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(address, Number(bits), family);
  }
  return list;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "250ms", "30s", "5m", "24h", "7d" into milliseconds. */
export function parseDuration(value: string): number | undefined {
  const m = DURATION.exec(value.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNIT_MS[m[2]!]!);
}

/** the longest a timer can wait (setTimeout's limit, ~24.8 days); node fires a longer one after 1 ms */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A duration written as "30s", "5m", "24h" (or a number of milliseconds); parsed into milliseconds. At most
 * MAX_TIMER_MS unless `long` says the field is a validity period rather than a wait (a certificate's TTL): a
 * timeout or an interval past it would fire at once, so it is refused here, with the field's name.
 */
export function duration(o: { long?: boolean } = {}) {
  return z
    .union([z.number().int().nonnegative(), z.string()])
    .transform((value, ctx) => {
      const ms = typeof value === 'number' ? value : parseDuration(value);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration such as "500ms", "30s", "5m" or "24h", got ${JSON.stringify(value)}`,
        });
        return z.NEVER;
      }
      if (!o.long && ms > MAX_TIMER_MS) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a duration of at most 24d (${MAX_TIMER_MS} ms, the longest a timer waits), got ${JSON.stringify(value)}`,
        });
        return z.NEVER;
      }
      return ms;
    })
    .meta({ format: 'duration' });
}

/** A DNS label (RFC 1123): cluster names, zones, namespaces. */
export function dnsLabel() {
  return z
    .string()
    .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'expected a DNS label (lowercase letters, digits and "-")')
    .meta({ format: 'DNS label' });
}

export interface ConfigProblem {
  path: string;
  message: string;
}

function joinPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? '(top level)' : out;
}

/** Turns schema issues into one line per problem: `field.path: what is wrong`. */
export function describeIssues(error: z.SchemaError): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys ?? []) {
        problems.push({
          path: joinPath([...issue.path, key]),
          message: 'unknown field (remove it or check its spelling)',
        });
      }
      continue;
    }
    let message = issue.message;
    if (issue.code === 'invalid_type' && /received undefined/.test(message))
      message = 'required field is missing';
    problems.push({ path: joinPath(issue.path), message });
  }
  return problems;
}

export interface ParseConfigOptions {
  /** The name used in messages (usually the file name). */
  source: string;
  /** Options that were renamed: `{ "old.path": "new.path" }`. Using the old name fails with the new one. */
  renamed?: Record<string, string>;
}

function getPath(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const part of dotted.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Freezes an object and everything reachable from it (a parsed config is never changed in place). */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

/**
 * Validates a plain object against a schema. All problems are collected into one
 * MESHFED_CONFIG_INVALID error (one line per field); the result is deeply frozen.
 */
export function parseConfig<S extends z.Schema>(
  schema: S,
  raw: unknown,
  options: ParseConfigOptions,
): z.output<S> {
  const problems: ConfigProblem[] = [];
  for (const [from, to] of Object.entries(options.renamed ?? {})) {
    if (getPath(raw, from) !== undefined) {
      problems.push({ path: from, message: `this option was renamed to "${to}"; use that name instead` });
    }
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    for (const p of describeIssues(result.error)) {
      if (!problems.some((q) => q.path === p.path)) problems.push(p);
    }
  }
  if (problems.length > 0 || !result.success) {
    const lines = problems.map((p) => `${options.source}: ${p.path}: ${p.message}`);
    throw new MeshfedError('MESHFED_CONFIG_INVALID', lines.join('\n'), {
      details: { source: options.source, problems },
    });
  }
  return deepFreeze(result.data as z.output<S>);
}

/** Reads a YAML file and validates it (see parseConfig). Errors name the file and each bad field. */
export function loadConfigFile<S extends z.Schema>(
  schema: S,
  file: string,
  options: Omit<ParseConfigOptions, 'source'> & { source?: string } = {},
): z.output<S> {
  const source = options.source ?? basename(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    throw new MeshfedError('MESHFED_CONFIG_UNREADABLE', `${file}: cannot read config: ${reason}`, {
      cause: err,
    });
  }
  return parseConfigText(schema, text, { ...options, source });
}

/** Parses YAML text and validates it; YAML syntax errors name the line and column. */
export function parseConfigText<S extends z.Schema>(
  schema: S,
  text: string,
  options: ParseConfigOptions,
): z.output<S> {
  const doc = yaml().parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const where = pos ? `line ${pos.line} column ${pos.col}` : 'YAML';
      return `${options.source}: ${where}: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
    });
    throw new MeshfedError('MESHFED_CONFIG_UNREADABLE', lines.join('\n'));
  }
  return parseConfig(schema, doc.toJS() ?? {}, options);
}
