import type { X509Certificate } from 'node:crypto';
import { MeshfedError } from '../core/index.ts';
import { decodeKeyUsage, decodeOid, readTlvs, readUriConstraints, type UriConstraints } from './der.ts';

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
  /** KeyUsage bit flags (as @peculiar/x509's KeyUsageFlags), undefined when the extension is absent */
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
  let facts: CertFacts;
  try {
    facts = parseFacts(cert, fp);
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `certificate "${oneLine(cert.subject)}" has undecodable extensions (${(err as Error).message})`,
      { cause: err },
    );
  }
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(fp, facts);
  return facts;
}

const EXTENSIONS_TAG = 0xa3;

/**
 * Reads the extensions meshfed relies on straight from the DER (node:crypto exposes neither pathLen, KeyUsage bits
 * nor name constraints, and a full ASN.1 library costs milliseconds per certificate on the cold verify path).
 * Duplicate extensions are refused, as RFC 5280 and OpenSSL require.
 */
function parseFacts(cert: X509Certificate, fingerprint256: string): CertFacts {
  const [outer] = readTlvs(cert.raw);
  const [tbs] = readTlvs(outer!.value);
  const tbsParts = readTlvs(tbs!.value);
  const serialTlv = tbsParts[tbsParts[0]!.tag === 0xa0 ? 1 : 0]!;
  let serial = serialTlv.value;
  if (serial.length > 1 && serial[0] === 0 && serial[1]! > 0x7f) serial = serial.subarray(1);
  const facts: CertFacts = {
    cert,
    fingerprint256,
    serial: serial.toString('hex'),
    subject: oneLine(cert.subject),
    notBefore: cert.validFromDate,
    notAfter: cert.validToDate,
    isCa: false,
    pathLen: undefined,
    keyUsage: undefined,
    extKeyUsage: undefined,
    uris: [],
    dnsNames: [],
    uriConstraints: undefined,
    selfIssued: cert.subject === cert.issuer,
    unknownCritical: undefined,
  };
  const extWrapper = tbsParts.find((t) => t.tag === EXTENSIONS_TAG);
  if (!extWrapper) return facts;
  const seen = new Set<string>();
  for (const ext of readTlvs(readTlvs(extWrapper.value)[0]!.value)) {
    const parts = readTlvs(ext.value);
    const oid = decodeOid(parts[0]!.value);
    const critical = parts[1]?.tag === 0x01 && parts[1].value[0] !== 0;
    const octets = parts.find((p) => p.tag === 0x04);
    if (!octets) throw new Error(`extension ${oid} has no value`);
    if (seen.has(oid)) throw new Error(`extension ${oid} appears twice`);
    seen.add(oid);
    const [value] = readTlvs(octets.value);
    switch (oid) {
      case OID.basicConstraints: {
        const items = readTlvs(value!.value);
        const caFlag = items.find((t) => t.tag === 0x01);
        facts.isCa = caFlag !== undefined && caFlag.value[0] !== 0;
        const len = items.find((t) => t.tag === 0x02);
        if (facts.isCa && len)
          facts.pathLen =
            len.value.length > 4 ? Number.MAX_SAFE_INTEGER : len.value.readUIntBE(0, len.value.length);
        break;
      }
      case OID.keyUsage:
        facts.keyUsage = decodeKeyUsage(value!.value);
        break;
      case OID.extKeyUsage:
        facts.extKeyUsage = readTlvs(value!.value).map((t) => decodeOid(t.value));
        break;
      case OID.subjectAltName:
        for (const n of readTlvs(value!.value)) {
          if (n.tag === 0x86) facts.uris.push(n.value.toString('latin1'));
          else if (n.tag === 0x82) facts.dnsNames.push(n.value.toString('latin1'));
        }
        break;
      case OID.nameConstraints:
        facts.uriConstraints = readUriConstraints(octets.value);
        break;
      default:
        if (critical && !UNDERSTOOD_CRITICAL.has(oid)) facts.unknownCritical ??= oid;
    }
  }
  return facts;
}

/**
 * The SPIFFE ID a certificate names (its first `spiffe://` URI SAN), read with the same DER parser and cache as
 * verification; undefined when it names none. Not a verification: the caller has verified the certificate
 * (a TLS handshake, `verify`). Throws MESHFED_CA_MALFORMED on undecodable extensions.
 */
export function spiffeIdOf(cert: X509Certificate): string | undefined {
  return certFacts(cert).uris.find((u) => u.startsWith('spiffe://'));
}

/** node:crypto prints distinguished names one attribute per line; messages want them on one line. */
export function oneLine(dn: string): string {
  return dn.split('\n').join(', ');
}
