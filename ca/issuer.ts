import { type KeyObject, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import type { px } from './x509-lib.ts';
import { MeshfedError } from '../core/index.ts';
import { certFacts, OID, oneLine } from './cert-facts.ts';
import { KEY_USAGE, nameConstraintsPermittingUriHost } from './der.ts';
import {
  assertKeyMatches,
  type CryptoKey,
  generateKeyPair,
  readPrivateKey,
  signingAlgorithm,
  toSigningKey,
} from './keys.ts';
import { joinPem, parseCertificates } from './pem.ts';
import { randomSerial } from './serial.ts';
import {
  adminCaSpiffeId,
  assertIdentityName,
  assertTrustDomain,
  parseSpiffeId,
  spiffeIdFor,
} from './spiffe.ts';
import type { CaMaterial, IdentityKind, IssuedLeaf, KeyType } from './types.ts';

/**
 * @peculiar/x509 and the ASN.1 stack under it are the largest libraries ca/ uses: loaded by the first call
 * that creates a certificate, so a process that only verifies (or reads its certificates from files)
 * never holds them.
 */
const x509 = async () => (await import('./x509-lib.ts')).px;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
export const DEFAULT_ROOT_TTL_MS = 10 * 365 * DAY;
export const DEFAULT_INTERMEDIATE_TTL_MS = 365 * DAY;
export const DEFAULT_LEAF_TTL_MS = 24 * HOUR;
/**
 * New certificates start this far in the past so that peers whose clock is up to a few minutes behind the
 * issuer's accept them at once: TLS peers check notBefore with their own clock and no allowance at all.
 * A leaf is backdated by a tenth of its lifetime at most, so short-lived leaves stay short-lived and
 * their renewal (at 2/3 of the life counted from notBefore) still comes after they were issued.
 */
export const BACKDATE_MS = 10 * 60_000;

/**
 * How far a leaf starts in the past: a tenth of its lifetime up to BACKDATE_MS, and at least `skewMs` (how
 * far behind ours a peer's clock may be, federation.maxClockSkew) up to a third of its lifetime. A peer whose
 * clock runs behind the issuer's checks notBefore in its TLS handshake with no allowance, so a smaller
 * backdate made every handshake between two clusters further apart than it fail, within the allowed skew.
 * A third keeps the renewal point (2/3 of the life from notBefore) after the issue time.
 */
function leafBackdate(ttlMs: number, skewMs = 0): number {
  return Math.max(Math.min(BACKDATE_MS, Math.floor(ttlMs / 10)), Math.min(skewMs, Math.floor(ttlMs / 3)));
}

interface Signer {
  cert: X509Certificate;
  subject: px.Name;
  signingKey: CryptoKey;
  keyType: KeyType;
  authorityKeyId: px.AuthorityKeyIdentifierExtension;
}

// Parsing a CA's PEM key and certificate costs more than signing a leaf; keep the few CAs a process uses.
const signers = new Map<string, Promise<Signer>>();

function signerFor(ca: CaMaterial): Promise<Signer> {
  const k = `${ca.certPem}\0${ca.keyPem}`;
  let s = signers.get(k);
  if (!s) {
    s = makeSigner(ca);
    s.catch(() => signers.delete(k));
    if (signers.size >= 32) signers.delete(signers.keys().next().value!);
    signers.set(k, s);
  }
  return s;
}

async function makeSigner(ca: CaMaterial): Promise<Signer> {
  const lib = await x509();
  const cert = parseCertificates(ca.certPem, 'the CA certificate')[0]!;
  const key = readPrivateKey(ca.keyPem, 'the CA key');
  assertKeyMatches(cert, key, 'the CA key');
  const { signingKey, keyType } = await toSigningKey(key, 'the CA key');
  const p = new lib.X509Certificate(cert.raw);
  const skid = p.getExtension(lib.SubjectKeyIdentifierExtension);
  const authorityKeyId = skid
    ? new lib.AuthorityKeyIdentifierExtension(skid.keyId)
    : await lib.AuthorityKeyIdentifierExtension.create(new lib.PublicKey(p.publicKey.rawData));
  return { cert, subject: p.subjectName, signingKey, keyType, authorityKeyId };
}

/** Refuses to sign with a CA that is not a CA, is outside its validity window, or may not issue CAs. */
function assertCanIssue(cert: X509Certificate, what: string, issuingCa: boolean, now = new Date()): void {
  const f = certFacts(cert);
  if (!f.isCa) {
    throw new MeshfedError(
      'MESHFED_CA_NOT_A_CA',
      `${what} "${f.subject}" is not a CA certificate (basicConstraints CA:FALSE)`,
    );
  }
  if (f.keyUsage !== undefined && !(f.keyUsage & KEY_USAGE.keyCertSign)) {
    throw new MeshfedError('MESHFED_CA_NOT_A_CA', `${what} "${f.subject}" lacks the keyCertSign key usage`);
  }
  if (issuingCa && f.pathLen === 0) {
    throw new MeshfedError(
      'MESHFED_CA_NOT_A_CA',
      `${what} "${f.subject}" has pathLen 0: it can sign leaves but not another CA; use its issuer instead`,
    );
  }
  if (now > f.notAfter) {
    throw new MeshfedError(
      'MESHFED_CA_EXPIRED',
      `${what} "${f.subject}" expired at ${f.notAfter.toISOString()}`,
    );
  }
  if (now < f.notBefore) {
    throw new MeshfedError(
      'MESHFED_CA_NOT_YET_VALID',
      `${what} "${f.subject}" is not valid before ${f.notBefore.toISOString()}`,
    );
  }
}

function assertTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs < 1000) {
    throw new MeshfedError('MESHFED_USAGE', `a certificate lifetime must be at least 1 s (got ${ttlMs} ms)`);
  }
}

function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}

function pemOf(c: px.X509Certificate): string {
  return `${c.toString('pem').replace(/\r\n/g, '\n').trim()}\n`;
}

function isSelfSigned(cert: X509Certificate): boolean {
  return cert.subject === cert.issuer && cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/** A new self-signed root: CA, pathLen 1 (root → cluster intermediate → leaf), URI SAN spiffe://<td>. */
export async function createRoot(o: {
  trustDomain: string;
  keyType?: KeyType;
  ttlMs?: number;
  commonName?: string;
}): Promise<CaMaterial> {
  const lib = await x509();
  assertTrustDomain(o.trustDomain);
  const ttl = o.ttlMs ?? DEFAULT_ROOT_TTL_MS;
  assertTtl(ttl);
  const keyType = o.keyType ?? 'ecdsa-p256';
  const keys = await generateKeyPair(keyType);
  const now = Date.now();
  // A distinct subject per root keeps old and new roots apart during rotation (chain building by name).
  const cn =
    o.commonName ??
    `meshfed root ${o.trustDomain} ${new Date(now).toISOString().slice(0, 10)} ${randomSerial().slice(0, 6)}`;
  const name = new lib.Name([{ CN: [cn] }, { O: [o.trustDomain] }]);
  const cert = await lib.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: name,
    issuer: name,
    notBefore: wholeSeconds(new Date(now - BACKDATE_MS)),
    notAfter: wholeSeconds(new Date(now + ttl)),
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: signingAlgorithm(keyType),
    extensions: [
      new lib.BasicConstraintsExtension(true, 1, true),
      new lib.KeyUsagesExtension(lib.KeyUsageFlags.keyCertSign | lib.KeyUsageFlags.cRLSign, true),
      new lib.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${o.trustDomain}` }]),
      await lib.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const certPem = pemOf(cert);
  return {
    certPem,
    keyPem: keys.keyPem,
    chainPem: certPem,
    trustDomain: o.trustDomain,
    keyType,
    bundlePem: certPem,
  };
}

/**
 * Loads an existing root or intermediate ("bring your own CA"). `certPem` may hold the CA certificate followed by
 * its issuers; `chainPem` may add more. Validates everything: the key matches, the certificate is a CA and valid now,
 * each certificate in the chain is signed by the next. A self-signed certificate at the top becomes the bundle.
 */
export async function loadCa(o: {
  certPem: string;
  keyPem: string;
  passphrase?: string;
  trustDomain: string;
  chainPem?: string;
  /** names the inputs in errors, e.g. the file names */
  certName?: string;
  keyName?: string;
}): Promise<CaMaterial> {
  const certName = o.certName ?? 'the CA certificate';
  const keyName = o.keyName ?? 'the CA key';
  assertTrustDomain(o.trustDomain);
  const certs = parseCertificates(o.certPem, certName);
  if (o.chainPem) certs.push(...parseCertificates(o.chainPem, 'the CA chain'));
  const cert = certs[0]!;
  const key: KeyObject = readPrivateKey(o.keyPem, keyName, o.passphrase);
  assertKeyMatches(cert, key, keyName);
  assertCanIssue(cert, certName, false);
  const { keyType, keyPem } = await toSigningKey(key, keyName);
  for (let i = 0; i + 1 < certs.length; i++) {
    const child = certs[i]!;
    const parent = certs[i + 1]!;
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      throw new MeshfedError(
        'MESHFED_CA_BAD_SIGNATURE',
        `${certName}: certificate "${oneLine(child.subject)}" is not signed by the next one in the chain ("${oneLine(parent.subject)}"); order the chain CA first, root last`,
      );
    }
  }
  const f = certFacts(cert);
  let cluster: string | undefined;
  let admin = false;
  for (const uri of f.uris.filter((u) => u.startsWith('spiffe://'))) {
    const td = uri.slice('spiffe://'.length).split('/')[0];
    if (td !== o.trustDomain) {
      throw new MeshfedError(
        'MESHFED_CA_WRONG_TRUST_DOMAIN',
        `${certName} names trust domain "${td}" (${uri}), not "${o.trustDomain}"; pass --trust-domain ${td}`,
      );
    }
    if (uri === adminCaSpiffeId(o.trustDomain)) admin = true;
    else if (uri !== `spiffe://${td}`) {
      const id = parseSpiffeId(uri);
      if (id.kind !== 'cluster') {
        throw new MeshfedError(
          'MESHFED_CA_NOT_A_CA',
          `${certName} carries a ${id.kind} identity (${uri}), not a CA one`,
        );
      }
      cluster = id.cluster;
    }
  }
  const top = certs[certs.length - 1]!;
  const selfSigned = isSelfSigned(cert);
  const below = certs.filter((c) => !isSelfSigned(c));
  const certPem = cert.toString();
  return {
    certPem,
    keyPem,
    chainPem: selfSigned ? certPem : joinPem(below.map((c) => c.toString())),
    trustDomain: o.trustDomain,
    ...(cluster === undefined ? {} : { cluster }),
    ...(admin ? { admin: true as const } : {}),
    keyType,
    ...(isSelfSigned(top) ? { bundlePem: top.toString() } : {}),
  };
}

/**
 * A cluster intermediate: CA with pathLen 0, URI SAN spiffe://<td>/cluster/<cluster>, and a name constraint that
 * permits only URIs in the trust domain. (RFC 5280 URI constraints name hosts, so the cluster itself cannot be
 * expressed there; verify() binds the intermediate to its cluster instead.)
 */
export async function issueIntermediate(
  parent: CaMaterial,
  o: { cluster: string; ttlMs?: number; keyType?: KeyType },
): Promise<CaMaterial> {
  const ca = await issueSubordinate(parent, {
    ...o,
    spiffeId: spiffeIdFor(parent.trustDomain, 'cluster', { cluster: o.cluster }),
    subject: [{ CN: [`meshfed cluster ${o.cluster}`] }, { OU: [o.cluster] }, { O: [parent.trustDomain] }],
  });
  return { ...ca, cluster: o.cluster };
}

/**
 * The admin intermediate: the one CA that issues admin identities (spiffe://<td>/admin/<name>), bound to no
 * cluster, so that no cluster's intermediate can vouch for an operator of the whole federation and the root can
 * stay offline. CA with pathLen 0, URI SAN spiffe://<td>/admin, the same name constraint as a cluster
 * intermediate; verify() lets it issue admin identities only.
 */
export async function issueAdminIntermediate(
  parent: CaMaterial,
  o: { ttlMs?: number; keyType?: KeyType } = {},
): Promise<CaMaterial> {
  const ca = await issueSubordinate(parent, {
    ...o,
    spiffeId: adminCaSpiffeId(parent.trustDomain),
    subject: [{ CN: ['meshfed admin CA'] }, { OU: ['admin'] }, { O: [parent.trustDomain] }],
  });
  return { ...ca, admin: true };
}

/** An intermediate CA (pathLen 0) below `parent` with one SPIFFE URI SAN. */
async function issueSubordinate(
  parent: CaMaterial,
  o: { spiffeId: string; subject: px.JsonName; ttlMs?: number; keyType?: KeyType },
): Promise<CaMaterial> {
  const lib = await x509();
  const ttl = o.ttlMs ?? DEFAULT_INTERMEDIATE_TTL_MS;
  assertTtl(ttl);
  const signer = await signerFor(parent);
  assertCanIssue(signer.cert, 'the parent CA', true);
  const keyType = o.keyType ?? parent.keyType;
  const keys = await generateKeyPair(keyType);
  const now = Date.now();
  const notAfter = Math.min(now + ttl, signer.cert.validToDate.getTime());
  const cert = await lib.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: new lib.Name(o.subject),
    issuer: signer.subject,
    notBefore: wholeSeconds(new Date(Math.max(now - BACKDATE_MS, signer.cert.validFromDate.getTime()))),
    notAfter: wholeSeconds(new Date(notAfter)),
    publicKey: keys.publicKey,
    signingKey: signer.signingKey,
    signingAlgorithm: signingAlgorithm(signer.keyType),
    extensions: [
      new lib.BasicConstraintsExtension(true, 0, true),
      new lib.KeyUsagesExtension(
        lib.KeyUsageFlags.keyCertSign | lib.KeyUsageFlags.cRLSign | lib.KeyUsageFlags.digitalSignature,
        true,
      ),
      new lib.SubjectAlternativeNameExtension([{ type: 'url', value: o.spiffeId }]),
      new lib.Extension(OID.nameConstraints, true, nameConstraintsPermittingUriHost(parent.trustDomain)),
      await lib.SubjectKeyIdentifierExtension.create(keys.publicKey),
      signer.authorityKeyId,
    ],
  });
  const certPem = pemOf(cert);
  const parentIsRoot = isSelfSigned(signer.cert);
  return {
    certPem,
    keyPem: keys.keyPem,
    chainPem: parentIsRoot ? certPem : joinPem([certPem, parent.chainPem]),
    trustDomain: parent.trustDomain,
    keyType,
    ...(parent.bundlePem === undefined ? {} : { bundlePem: parent.bundlePem }),
  };
}

export interface IssueLeafOptions {
  kind: IdentityKind;
  /** gateway and admin name */
  name?: string;
  namespace?: string;
  serviceAccount?: string;
  /** default 24 h; never beyond the issuer's own expiry */
  ttlMs?: number;
  keyType?: KeyType;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** lets tests mint already-expired or not-yet-valid leaves; default: now minus the backdate */
  notBefore?: Date;
  /** how far behind the issuer's a peer's clock may be (federation.maxClockSkew): the leaf starts at least that early */
  clockSkewMs?: number;
}

const EKU: Record<IdentityKind, string[]> = {
  gateway: [OID.serverAuth, OID.clientAuth],
  workload: [OID.serverAuth, OID.clientAuth],
  admin: [OID.clientAuth],
  // the federation identity signs catalog entries (JWS); no EKU, and verify() requires serverAuth/clientAuth
  // explicitly for TLS, so this certificate cannot be used as a TLS identity.
  federation: [],
};

/**
 * A leaf for one of meshfed's identities: admin identities from the admin intermediate, every other kind from
 * its cluster's intermediate (verify() refuses anything else, so neither is ever issued here).
 */
export async function issueLeaf(ca: CaMaterial, o: IssueLeafOptions): Promise<IssuedLeaf> {
  const lib = await x509();
  if (o.kind === 'admin' && !ca.admin) {
    throw new MeshfedError(
      'MESHFED_CA_WRONG_ISSUER',
      'admin certificates are issued from the admin intermediate only, not from a cluster intermediate or the root; create it with "meshfed ca admin"',
    );
  }
  if (o.kind !== 'admin' && ca.admin) {
    throw new MeshfedError(
      'MESHFED_CA_WRONG_ISSUER',
      `the admin intermediate issues admin certificates only; issue ${o.kind} certificates from a cluster intermediate`,
    );
  }
  if (o.kind !== 'admin' && ca.cluster === undefined) {
    throw new MeshfedError(
      'MESHFED_USAGE',
      'leaf certificates are issued from a cluster intermediate, not from the root; run "meshfed ca cluster" first',
    );
  }
  const spiffeId = spiffeIdFor(ca.trustDomain, o.kind, {
    ...(ca.cluster ? { cluster: ca.cluster } : {}),
    ...o,
  });
  const ttl = o.ttlMs ?? DEFAULT_LEAF_TTL_MS;
  assertTtl(ttl);
  for (const d of o.dnsNames ?? []) assertIdentityName('DNS name', d);
  for (const ip of o.ipAddresses ?? []) {
    if (isIP(ip) === 0) throw new MeshfedError('MESHFED_CA_INVALID_NAME', `IP address "${ip}" is not valid`);
  }
  const signer = await signerFor(ca);
  assertCanIssue(signer.cert, 'the issuing CA', false);
  const keyType = o.keyType ?? ca.keyType;
  const keys = await generateKeyPair(keyType);
  const now = Date.now();
  const notBefore = o.notBefore ? o.notBefore.getTime() : now - leafBackdate(ttl, o.clockSkewMs);
  const notAfter = Math.min(o.notBefore ? notBefore + ttl : now + ttl, signer.cert.validToDate.getTime());
  const rsa = keyType.startsWith('rsa');
  const eku = EKU[o.kind];
  const label = o.kind === 'workload' ? `${o.namespace}/${o.serviceAccount}` : (o.name ?? ca.cluster);
  const cert = await lib.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: new lib.Name([
      { CN: [`${o.kind} ${label}`.slice(0, 64)] },
      { OU: [ca.cluster ?? 'admin'] },
      { O: [ca.trustDomain] },
    ]),
    issuer: signer.subject,
    notBefore: wholeSeconds(new Date(notBefore)),
    notAfter: wholeSeconds(new Date(notAfter)),
    publicKey: keys.publicKey,
    signingKey: signer.signingKey,
    signingAlgorithm: signingAlgorithm(signer.keyType),
    extensions: [
      new lib.BasicConstraintsExtension(false, undefined, true),
      new lib.KeyUsagesExtension(
        lib.KeyUsageFlags.digitalSignature |
          (rsa && o.kind !== 'federation' ? lib.KeyUsageFlags.keyEncipherment : 0),
        true,
      ),
      ...(eku.length > 0 ? [new lib.ExtendedKeyUsageExtension(eku, false)] : []),
      new lib.SubjectAlternativeNameExtension(
        [
          { type: 'url', value: spiffeId },
          ...(o.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
          ...(o.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
        ],
        true, // the subject is informational only; SPIFFE identities live in the SAN
      ),
      await lib.SubjectKeyIdentifierExtension.create(keys.publicKey),
      signer.authorityKeyId,
    ],
  });
  const certPem = pemOf(cert);
  const parsed = new X509Certificate(certPem);
  return {
    certPem,
    chainPem: joinPem([certPem, ca.chainPem]),
    keyPem: keys.keyPem,
    spiffeId,
    serial: cert.serialNumber.toLowerCase(),
    notBefore: parsed.validFromDate,
    notAfter: parsed.validToDate,
  };
}
