import { join } from 'node:path';
import {
  type CaMaterial,
  CREATABLE_KEY_TYPES,
  describeCertificate,
  isKeyType,
  type KeyType,
  parseCertificates,
  readInputFile,
} from '../../ca/index.ts';
import { MeshfedError } from '../../core/index.ts';
import { type CommandContext, renderTable, writeJson } from '../command.ts';

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  y: 365 * 86_400_000,
};

/** "90s", "24h", "30d", "10y" → milliseconds; anything else is a usage error naming the flag. */
export function parseDuration(value: string | undefined, flag: string, command: string): number | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)(ms|s|m|h|d|y)$/.exec(value.trim());
  if (!m || Number(m[1]) === 0) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: --${flag} "${value}" is not a duration like 90m, 24h, 30d or 10y`,
    );
  }
  return Number(m[1]) * UNITS[m[2]!]!;
}

export function parseKeyType(value: string | undefined, command: string): KeyType | undefined {
  if (value === undefined) return undefined;
  if (!isKeyType(value) || !CREATABLE_KEY_TYPES.includes(value)) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      `${command}: --key-type must be one of ${CREATABLE_KEY_TYPES.join(', ')} (got "${value}")`,
    );
  }
  return value;
}

/** The first line of a passphrase file (trailing newline removed, as `openssl -passin file:` does). */
export function readPassphraseFile(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  return readInputFile(path).split(/\r?\n/)[0];
}

/** Prints what was written: files and the certificate's identity; --json gives the same as an object. */
export function reportWritten(
  ctx: CommandContext,
  what: string,
  ca: { certPem: string },
  files: string[],
  extra: Record<string, unknown> = {},
): void {
  const d = describeCertificate(parseCertificates(ca.certPem, what)[0]!);
  if (ctx.json) {
    writeJson(ctx, { files, certificate: d, ...extra });
    return;
  }
  ctx.stdout.write(`${what}\n`);
  ctx.stdout.write(
    renderTable(
      ['field', 'value'],
      [
        ['subject', d.subject],
        ['spiffe id', d.spiffeId],
        ['key type', d.keyType],
        ['not after', d.notAfter],
        ['fingerprint', d.fingerprint256],
        ...Object.entries(extra).map(([k, v]) => [k, String(v)]),
        ...files.map((f, i) => [i === 0 ? 'files' : '', f]),
      ],
    ),
  );
}

export function outPath(dir: string, name: string): string {
  return join(dir, name);
}

export type { CaMaterial };
