import type { X509Certificate } from 'node:crypto';
import { certFacts, oneLine } from './cert-facts.ts';
import { keyTypeOf } from './keys.ts';

export interface CertificateDescription {
  subject: string;
  spiffeId: string | undefined;
  issuer: string;
  notBefore: string;
  notAfter: string;
  keyType: string;
  fingerprint256: string;
  serial: string;
  ca: boolean;
  pathLen: number | undefined;
  dnsNames: string[];
  selfSigned: boolean;
}

/** What `meshfed ca inspect` prints for one certificate; never key material. */
export function describeCertificate(cert: X509Certificate): CertificateDescription {
  const f = certFacts(cert);
  const pk = cert.publicKey;
  const d = pk.asymmetricKeyDetails;
  return {
    subject: f.subject,
    spiffeId: f.uris.find((u) => u.startsWith('spiffe://')),
    issuer: oneLine(cert.issuer),
    notBefore: f.notBefore.toISOString(),
    notAfter: f.notAfter.toISOString(),
    keyType:
      keyTypeOf(pk) ??
      `${pk.asymmetricKeyType}${(d?.modulusLength ?? d?.namedCurve) ? `-${d?.modulusLength ?? d?.namedCurve}` : ''}`,
    fingerprint256: f.fingerprint256,
    serial: f.serial,
    ca: f.isCa,
    pathLen: f.pathLen,
    dnsNames: f.dnsNames,
    selfSigned: f.selfIssued && cert.verify(cert.publicKey),
  };
}
