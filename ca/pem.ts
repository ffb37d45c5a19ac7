import { X509Certificate } from 'node:crypto';
import { MeshfedError } from '../core/index.ts';

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

export interface PemBlock {
  label: string;
  /** the whole block, normalised to end with a newline */
  text: string;
}

/** Splits a PEM bundle into its blocks (text between blocks is ignored, as openssl does). */
export function pemBlocks(pem: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of pem.matchAll(BLOCK)) out.push({ label: m[1]!, text: `${m[0].trim()}\n` });
  return out;
}

/** Parses every CERTIFICATE block; `what` names the input in errors ("root.crt", "the chain"). */
export function parseCertificates(pem: string, what: string): X509Certificate[] {
  const all = pemBlocks(pem);
  const blocks = all.filter((b) => b.label === 'CERTIFICATE');
  if (blocks.length === 0) {
    throw new MeshfedError('MESHFED_CA_MALFORMED', `${what}: no PEM "CERTIFICATE" block found`);
  }
  // a block begun and never ended is a file cut short (written in place, read half way): taking only the
  // complete blocks would silently drop the rest, e.g. a root from a trust bundle
  const begun = pem.match(/-----BEGIN [A-Z0-9 ]+-----/g)?.length ?? 0;
  if (begun !== all.length) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${what}: a PEM block begins but never ends; is the file still being written? (write it to a temp name and rename it into place)`,
    );
  }
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b.text);
    } catch (err) {
      throw new MeshfedError(
        'MESHFED_CA_MALFORMED',
        `${what}: certificate #${i + 1} is not a valid X.509 certificate (${(err as Error).message})`,
        { cause: err },
      );
    }
  });
}

export function parseCertificate(pem: string, what: string): X509Certificate {
  return parseCertificates(pem, what)[0]!;
}

/** node:crypto prints PEM with a trailing newline; keep every chain in the same shape. */
export function joinPem(parts: string[]): string {
  return parts.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
}

/** Normalises a fingerprint to node:crypto's form (upper-case hex with colons). */
export function normaliseFingerprint(fp: string): string {
  const hex = fp.replace(/[^0-9a-fA-F]/g, '').toUpperCase();
  return hex.match(/.{2}/g)?.join(':') ?? '';
}
