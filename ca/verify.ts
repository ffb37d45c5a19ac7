import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import { type ErrorCode, MeshfedError } from '../core/index.ts';
import { type CertFacts, certFacts, OID, oneLine } from './cert-facts.ts';
import { KEY_USAGE, uriHostMatches } from './der.ts';
import { pemBlocks } from './pem.ts';
import { adminCaSpiffeId, parseSpiffeId } from './spiffe.ts';
import type { TrustBundle } from './trust-bundle.ts';
import type { SpiffeIdentity, VerifiedIdentity, VerifyExpectations } from './types.ts';

const MAX_CHAIN = 8;
const DEFAULT_SKEW_MS = 60_000;
/**
 * How far in the future a certificate's notBefore may be when the caller sets no clockSkewMs. Larger
 * than the expiry allowance: a start in our future only means the issuer's clock runs ahead of ours
 * (or ours behind), and refusing it cut a cluster 5 min off from every peer, while accepting a
 * certificate after its notAfter is what the expiry check exists to prevent.
 */
const DEFAULT_START_SKEW_MS = 10 * 60_000;

/** The time-independent outcome of building and checking a chain; cached per (chain, bundle version). */
interface ChainResult {
  id: SpiffeIdentity;
  /** leaf, intermediates…, trust anchor */
  path: CertFacts[];
  issuerCluster: string | undefined;
}

interface BundleCache {
  version: number;
  results: Map<string, ChainResult | MeshfedError>;
}

const caches = new WeakMap<TrustBundle, BundleCache>();
const CACHE_MAX = 2048;

function fail(code: ErrorCode, message: string, details?: Record<string, unknown>): MeshfedError {
  return new MeshfedError(code, message, details === undefined ? {} : { details });
}

type ChainInput = string | Buffer[] | X509Certificate[];

function chainKey(chain: ChainInput): string {
  if (typeof chain === 'string') return chain;
  if (!Array.isArray(chain))
    throw fail('MESHFED_CA_MALFORMED', 'the certificate chain is not a PEM string or a list');
  return chain
    .map((c) =>
      Buffer.isBuffer(c) ? c.toString('base64') : c instanceof X509Certificate ? c.fingerprint256 : '?',
    )
    .join('|');
}

function parseChain(chain: ChainInput): X509Certificate[] {
  const items: (string | Buffer | X509Certificate)[] =
    typeof chain === 'string'
      ? pemBlocks(chain)
          .filter((b) => b.label === 'CERTIFICATE')
          .map((b) => b.text)
      : chain;
  if (items.length === 0) {
    throw fail(
      'MESHFED_CA_MALFORMED',
      typeof chain === 'string'
        ? 'the chain contains no PEM "CERTIFICATE" block'
        : 'the peer presented no certificate',
    );
  }
  if (items.length > MAX_CHAIN) {
    throw fail(
      'MESHFED_CA_MALFORMED',
      `the chain has ${items.length} certificates; at most ${MAX_CHAIN} are accepted`,
    );
  }
  return items.map((item, i) => {
    if (item instanceof X509Certificate) return item;
    try {
      return new X509Certificate(item);
    } catch (err) {
      throw new MeshfedError('MESHFED_CA_MALFORMED', `certificate #${i + 1} of the chain cannot be parsed`, {
        cause: err,
      });
    }
  });
}

function factsOf(cert: X509Certificate, i: number): CertFacts {
  let f: CertFacts;
  try {
    f = certFacts(cert);
  } catch (err) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `certificate #${i + 1} ("${oneLine(cert.subject)}") has undecodable extensions`,
      {
        cause: err,
      },
    );
  }
  if (f.unknownCritical) {
    throw fail(
      'MESHFED_CA_MALFORMED',
      `certificate "${f.subject}" has an unsupported critical extension ${f.unknownCritical}`,
    );
  }
  return f;
}

function leafIdentity(leaf: CertFacts): SpiffeIdentity {
  if (leaf.isCa) {
    throw fail(
      'MESHFED_CA_BAD_KEY_USAGE',
      `"${leaf.subject}" is a CA certificate; a leaf certificate was expected`,
    );
  }
  if (leaf.uris.length !== 1) {
    throw fail(
      'MESHFED_CA_BAD_SPIFFE_ID',
      leaf.uris.length === 0
        ? `the certificate "${leaf.subject}" carries no SPIFFE ID (no URI SAN)`
        : `the certificate "${leaf.subject}" carries ${leaf.uris.length} URI SANs; a SPIFFE certificate has exactly one`,
    );
  }
  const id = parseSpiffeId(leaf.uris[0]!);
  if (id.kind === 'cluster') {
    throw fail(
      'MESHFED_CA_WRONG_KIND',
      `${id.spiffeId} names a cluster CA, not a gateway, federation, workload or admin`,
    );
  }
  return id;
}

function checkIssuer(f: CertFacts, role: string): void {
  if (!f.isCa) {
    throw fail(
      'MESHFED_CA_BAD_KEY_USAGE',
      `${role} "${f.subject}" is not a CA certificate but issued another certificate`,
    );
  }
  if (f.keyUsage !== undefined && !(f.keyUsage & KEY_USAGE.keyCertSign)) {
    throw fail('MESHFED_CA_BAD_KEY_USAGE', `${role} "${f.subject}" lacks the keyCertSign key usage`);
  }
}

/** Walks leaf → intermediates → a bundle root, checking signatures, CA constraints and cluster binding. */
function buildChain(certs: X509Certificate[], bundle: TrustBundle): ChainResult {
  const leaf = factsOf(certs[0]!, 0);
  const id = leafIdentity(leaf);
  const path: CertFacts[] = [leaf];
  // presented intermediates first, then the ones the bundle remembers (a TLS server sees only the client's leaf)
  const pool = [...certs.slice(1), ...bundle.intermediates()];
  let current = certs[0]!;
  let anchor: CertFacts | undefined;
  while (!anchor) {
    if (path.length > MAX_CHAIN) throw fail('MESHFED_CA_MALFORMED', 'the chain is too long');
    let badSignature = false;
    for (const root of bundle.roots()) {
      if (!current.checkIssued(root)) continue;
      if (current.verify(root.publicKey)) {
        anchor = certFacts(root);
        break;
      }
      badSignature = true;
    }
    if (anchor) break;
    const idx = pool.findIndex((c) => current.checkIssued(c) && !path.some((p) => p.cert === c));
    if (idx === -1) {
      if (badSignature) {
        throw fail(
          'MESHFED_CA_BAD_SIGNATURE',
          `the signature on "${oneLine(current.subject)}" does not verify with the bundle root that names it`,
        );
      }
      throw fail(
        'MESHFED_CA_UNKNOWN_ROOT',
        `the chain of ${id.spiffeId} ends at "${oneLine(current.issuer)}", which is not in the trust bundle (${bundle.size} roots)${
          certs.length === 1
            ? '; only the leaf was given: pass its intermediates too, or add them to the bundle (addIntermediates)'
            : ''
        }`,
        { spiffeId: id.spiffeId },
      );
    }
    const next = pool.splice(idx, 1)[0]!;
    if (!current.verify(next.publicKey)) {
      throw fail(
        'MESHFED_CA_BAD_SIGNATURE',
        `the signature on "${oneLine(current.subject)}" does not verify with its issuer "${oneLine(next.subject)}"`,
      );
    }
    const nf = factsOf(next, path.length);
    checkIssuer(nf, 'intermediate');
    path.push(nf);
    current = next;
  }
  checkIssuer(anchor, 'trust root');
  path.push(anchor);

  // pathLen: a CA at path[i] may have at most pathLen non-self-issued intermediates below it.
  for (let i = 1; i < path.length; i++) {
    const pathLen = path[i]!.pathLen;
    if (pathLen === undefined) continue;
    const below = path.slice(1, i).filter((p) => !p.selfIssued).length;
    if (below > pathLen) {
      throw fail(
        'MESHFED_CA_BAD_KEY_USAGE',
        `"${path[i]!.subject}" allows ${pathLen} intermediate(s) below it (pathLen) but the chain has ${below}`,
      );
    }
  }

  // Cluster binding and name constraints, whether or not the CA certificates carry name constraints.
  let issuerCluster: string | undefined;
  for (let i = 1; i < path.length; i++) {
    const ca = path[i]!;
    for (const uri of ca.uris) {
      if (!uri.startsWith('spiffe://')) continue;
      const caTd = uri.slice('spiffe://'.length).split('/')[0]!;
      if (caTd !== id.trustDomain) {
        throw fail(
          'MESHFED_CA_WRONG_TRUST_DOMAIN',
          `${id.spiffeId} is issued under "${ca.subject}", which belongs to trust domain ${caTd}`,
          { spiffeId: id.spiffeId },
        );
      }
      if (uri === `spiffe://${caTd}`) continue;
      if (uri === adminCaSpiffeId(caTd)) {
        // the admin intermediate speaks for operators of the whole federation, and for nothing else
        if (id.kind !== 'admin') {
          throw fail(
            'MESHFED_CA_WRONG_ISSUER',
            `${id.spiffeId} is issued under the admin intermediate "${ca.subject}", which may only issue admin identities`,
            { spiffeId: id.spiffeId },
          );
        }
        continue;
      }
      let caId: SpiffeIdentity;
      try {
        caId = parseSpiffeId(uri);
      } catch {
        throw fail('MESHFED_CA_BAD_SPIFFE_ID', `the CA "${ca.subject}" carries a malformed SPIFFE ID ${uri}`);
      }
      if (caId.kind !== 'cluster') {
        throw fail(
          'MESHFED_CA_BAD_KEY_USAGE',
          `the CA "${ca.subject}" carries a ${caId.kind} identity, not a cluster one`,
        );
      }
      // an admin is an operator of every cluster: no single cluster may vouch for one
      if (id.kind === 'admin') {
        throw fail(
          'MESHFED_CA_WRONG_ISSUER',
          `${id.spiffeId} was issued under the intermediate of cluster "${caId.cluster}"; admin identities are issued by the admin intermediate only (meshfed ca admin)`,
          { spiffeId: id.spiffeId, issuerCluster: caId.cluster },
        );
      }
      if (id.cluster !== caId.cluster) {
        throw fail(
          'MESHFED_CA_WRONG_CLUSTER',
          `${id.spiffeId} was issued by the intermediate of cluster "${caId.cluster}", which may only vouch for its own cluster`,
          { spiffeId: id.spiffeId, issuerCluster: caId.cluster },
        );
      }
      issuerCluster ??= caId.cluster;
    }
    if (ca.uriConstraints) {
      for (const below of path.slice(0, i)) {
        for (const u of below.uris) {
          const host = hostOf(u);
          const { permitted, excluded } = ca.uriConstraints;
          if (
            (permitted.length > 0 && !permitted.some((c) => uriHostMatches(host, c))) ||
            excluded.some((c) => uriHostMatches(host, c))
          ) {
            throw fail(
              'MESHFED_CA_WRONG_TRUST_DOMAIN',
              `${u} is outside the name constraints of "${ca.subject}" (permitted: ${permitted.join(', ') || 'any'})`,
            );
          }
        }
      }
    }
  }
  // the CA that signed an admin leaf must itself be the admin intermediate: not the root (kept offline), and
  // not an intermediate that carries no SPIFFE ID at all
  if (id.kind === 'admin' && !path[1]!.uris.includes(adminCaSpiffeId(id.trustDomain))) {
    throw fail(
      'MESHFED_CA_WRONG_ISSUER',
      `${id.spiffeId} was issued by "${path[1]!.subject}", which is not the admin intermediate (SAN ${adminCaSpiffeId(id.trustDomain)}; meshfed ca admin)`,
      { spiffeId: id.spiffeId },
    );
  }
  return { id, path, issuerCluster };
}

function hostOf(uri: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/([^/?#:]*)/i.exec(uri);
  return m ? m[1]! : '';
}

function chainResult(chain: ChainInput, bundle: TrustBundle): ChainResult {
  let cache = caches.get(bundle);
  if (!cache || cache.version !== bundle.version) {
    cache = { version: bundle.version, results: new Map() };
    caches.set(bundle, cache);
  }
  const key = chainKey(chain);
  let r = cache.results.get(key);
  if (r === undefined) {
    try {
      r = buildChain(parseChain(chain), bundle);
    } catch (err) {
      // untrusted input must never surface as anything but a typed refusal
      r =
        err instanceof MeshfedError
          ? err
          : new MeshfedError(
              'MESHFED_CA_MALFORMED',
              `the certificate chain cannot be processed: ${(err as Error).message}`,
              {
                cause: err,
              },
            );
    }
    if (cache.results.size >= CACHE_MAX) cache.results.delete(cache.results.keys().next().value!);
    cache.results.set(key, r);
  }
  // a fresh error object per call, so callers that annotate it do not change the cached one
  if (r instanceof MeshfedError)
    throw new MeshfedError(
      r.code,
      r.message,
      r.details ? { details: r.details, cause: r.cause } : { cause: r.cause },
    );
  return r;
}

const ROLE = ['leaf', 'intermediate', 'root'];

function checkTime(path: CertFacts[], now: number, skew: number, startSkew: number): void {
  for (let i = 0; i < path.length; i++) {
    const f = path[i]!;
    const role = i === 0 ? ROLE[0] : i === path.length - 1 ? ROLE[2] : ROLE[1];
    if (now - skew > f.notAfter.getTime()) {
      throw fail(
        'MESHFED_CA_EXPIRED',
        `the ${role} certificate "${f.subject}" expired at ${f.notAfter.toISOString()}`,
        {
          notAfter: f.notAfter.toISOString(),
        },
      );
    }
    if (now + startSkew < f.notBefore.getTime()) {
      throw fail(
        'MESHFED_CA_NOT_YET_VALID',
        `the ${role} certificate "${f.subject}" is not valid before ${f.notBefore.toISOString()} (check the clocks)`,
        { notBefore: f.notBefore.toISOString() },
      );
    }
  }
}

function checkUsage(leaf: CertFacts, id: SpiffeIdentity, usage: 'server' | 'client' | 'signing'): void {
  const ku = leaf.keyUsage;
  if (ku !== undefined && !(ku & KEY_USAGE.digitalSignature)) {
    throw fail(
      'MESHFED_CA_BAD_KEY_USAGE',
      `${id.spiffeId} lacks the digitalSignature key usage needed for ${usage}`,
    );
  }
  if (usage === 'signing') return;
  // TLS use needs the EKU spelled out: a certificate without EKU (the federation signer) is not a TLS identity.
  const need = usage === 'server' ? OID.serverAuth : OID.clientAuth;
  if (!leaf.extKeyUsage?.includes(need)) {
    throw fail(
      'MESHFED_CA_BAD_KEY_USAGE',
      `${id.spiffeId} is not allowed as a TLS ${usage} (no ${usage}Auth extended key usage)`,
    );
  }
}

/**
 * THE one verification function: TLS peers in gateway/, catalog signatures in federation/. Synchronous; chain
 * results are cached per (chain, bundle version), so a repeated peer costs a map lookup plus the time checks.
 * `chain` is leaf first, then intermediates (a trailing root is allowed). Throws MeshfedError with a MESHFED_CA_*
 * code whose message says exactly why.
 */
export function verify(
  chain: ChainInput,
  bundle: TrustBundle,
  expect: VerifyExpectations = {},
): VerifiedIdentity {
  const r = chainResult(chain, bundle);
  const now = (expect.now ?? new Date()).getTime();
  checkTime(r.path, now, expect.clockSkewMs ?? DEFAULT_SKEW_MS, expect.clockSkewMs ?? DEFAULT_START_SKEW_MS);
  const { id } = r;
  const td = expect.trustDomain ?? bundle.trustDomain;
  if (td !== undefined && id.trustDomain !== td) {
    throw fail(
      'MESHFED_CA_WRONG_TRUST_DOMAIN',
      `${id.spiffeId} belongs to trust domain ${id.trustDomain}, expected ${td}`,
      {
        spiffeId: id.spiffeId,
      },
    );
  }
  if (expect.cluster !== undefined && id.cluster !== expect.cluster) {
    throw fail(
      'MESHFED_CA_WRONG_CLUSTER',
      `${id.spiffeId} belongs to ${id.cluster === undefined ? 'no cluster' : `cluster "${id.cluster}"`}, expected cluster "${expect.cluster}"`,
      { spiffeId: id.spiffeId, expected: expect.cluster },
    );
  }
  if (expect.kinds && !expect.kinds.includes(id.kind as never)) {
    throw fail(
      'MESHFED_CA_WRONG_KIND',
      `${id.spiffeId} is a ${id.kind} identity, expected ${expect.kinds.join(' or ')}`,
      {
        spiffeId: id.spiffeId,
      },
    );
  }
  const leaf = r.path[0]!;
  if (expect.usage) checkUsage(leaf, id, expect.usage);
  return {
    ...id,
    serial: leaf.serial,
    fingerprint256: leaf.fingerprint256,
    notAfter: leaf.notAfter,
    chainRootFingerprint256: r.path[r.path.length - 1]!.fingerprint256,
    ...(r.issuerCluster === undefined ? {} : { issuerCluster: r.issuerCluster }),
  };
}

/**
 * The chain a TLS peer presented (leaf first) as DER buffers, for verify(); [] when it presented none. On a socket a
 * server accepted (node sets its `server`), the client's leaf is all node holds: it is read as an X509Certificate,
 * where getPeerCertificate(true) decodes subject, issuer, extensions and fingerprints in JavaScript (~70 µs a
 * connection against ~10). A client socket keeps the detailed walk: on one, getPeerX509Certificate hands the peer's
 * chain over, and every later call, ours or node's, finds none (node 24).
 */
export function peerCertificateChain(socket: TLSSocket): Buffer[] {
  if ((socket as { server?: unknown }).server !== undefined) {
    const leaf = socket.getPeerX509Certificate();
    if (leaf !== undefined && leaf.issuerCertificate === undefined) return [leaf.raw];
  }
  return derChainOf(socket.getPeerCertificate(true));
}

/** The DER chain (leaf first) of a peer certificate object as node:tls or grpc-js expose it. */
export function derChainOf(cert: DetailedPeerCertificate | undefined): Buffer[] {
  const out: Buffer[] = [];
  const seen = new Set<string>();
  let c = cert;
  while (c?.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}
