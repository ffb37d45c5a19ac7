import type { X509Certificate } from 'node:crypto';
import { px } from './x509-lib.ts';
import { readUriConstraints, type UriConstraints } from './der.ts';

/** OIDs of the extensions meshfed understands; a certificate with any other critical extension is refused. */
export const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  nameConstraints: '2.5.29.30',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

const UNDERSTOOD_CRITICAL = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.nameConstraints,
  '2.5.29.32', // certificate policies (we impose none, so any policy set is acceptable)
  '2.5.29.36', // policy constraints
  '2.5.29.54', // inhibit anyPolicy
]);

/** What verification needs from one certificate, parsed once and cached by fingerprint. */
export interface CertFacts {
  cert: X509Certificate;
  fingerprint256: string;
  /** lower-case hex without leading zero bytes */
  serial: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  isCa: boolean;
  pathLen: number | undefined;
  /** KeyUsage bit flags (px.KeyUsageFlags), undefined when the extension is absent */
  keyUsage: number | undefined;
  /** extended key usage OIDs, undefined when the extension is absent */
  extKeyUsage: string[] | undefined;
  uris: string[];
  dnsNames: string[];
  uriConstraints: UriConstraints | undefined;
  selfIssued: boolean;
  /** the name of an unsupported critical extension, if any */
  unknownCritical: string | undefined;
}

const cache = new Map<string, CertFacts>();
const CACHE_MAX = 4096;

/** Parses (or fetches from the cache) the facts of a certificate. Throws on undecodable extensions. */
export function certFacts(cert: X509Certificate): CertFacts {
  const fp = cert.fingerprint256;
  const hit = cache.get(fp);
  if (hit) return hit;
  const facts = parseFacts(cert, fp);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(fp, facts);
  return facts;
}

function parseFacts(cert: X509Certificate, fingerprint256: string): CertFacts {
  const p = new px.X509Certificate(cert.raw);
  const bc = p.getExtension(px.BasicConstraintsExtension);
  const ku = p.getExtension(px.KeyUsagesExtension);
  const eku = p.getExtension(px.ExtendedKeyUsageExtension);
  const san = p.getExtension(px.SubjectAlternativeNameExtension);
  const nc = p.extensions.find((e) => e.type === OID.nameConstraints);
  const names = san?.names.items ?? [];
  return {
    cert,
    fingerprint256,
    serial: p.serialNumber.toLowerCase(),
    subject: oneLine(cert.subject),
    notBefore: cert.validFromDate,
    notAfter: cert.validToDate,
    isCa: bc?.ca === true,
    pathLen: bc?.ca ? bc.pathLength : undefined,
    keyUsage: ku ? ku.usages : undefined,
    extKeyUsage: eku ? eku.usages.map(String) : undefined,
    uris: names.filter((n) => n.type === 'url').map((n) => n.value),
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    uriConstraints: nc ? readUriConstraints(Buffer.from(nc.value)) : undefined,
    selfIssued: cert.subject === cert.issuer,
    unknownCritical: p.extensions.find((e) => e.critical && !UNDERSTOOD_CRITICAL.has(e.type))?.type,
  };
}

/** node:crypto prints distinguished names one attribute per line; messages want them on one line. */
export function oneLine(dn: string): string {
  return dn.split('\n').join(', ');
}
