import { type KeyObject, verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { type TrustBundle, type VerifiedIdentity, verify } from '../ca/index.ts';
import { isMeshfedError } from '../core/index.ts';
import type { JwsAlg } from './jws.ts';

/**
 * The signed-message checks the catalog (verifier.ts) and policy (policy-verifier.ts) verifiers share: a
 * compact JWS with an `x5c` chain, signed by a leaf that chains to the federation's trust bundle and names a
 * SPIFFE identity. Each verifier calls them in its own order (the catalog caches a header's chain; the policy
 * reads the payload first to verify a persisted bundle as of its signing time) and adds its own checks and
 * reasons after these.
 */

/** Why a signed message was refused before its payload's meaning was looked at, in the order of the checks. */
export const SIGNED_MESSAGE_REASONS = [
  'oversized',
  'not_jws',
  'bad_header',
  'untrusted_chain',
  'certificate_expired',
  'wrong_identity',
  'bad_signature',
  'bad_payload',
  'unsupported_version',
] as const;

export type SignedMessageRejectReason = (typeof SIGNED_MESSAGE_REASONS)[number];

/** A refused message: the `reason` label of its verifier's metric, and what its log line says. */
export interface Refusal<R extends string> {
  ok: false;
  reason: R;
  /** the signer's SPIFFE ID when the chain verified, else its leaf fingerprint or "unknown" */
  signer: string;
  detail: string;
}

export function refuse<R extends string>(reason: R, signer: string, detail: string): Refusal<R> {
  return { ok: false, reason, signer, detail };
}

/** What ca/'s verify() codes mean for a message's signer; a code not listed is an untrusted chain. */
export const CHAIN_CODE_REASONS: Readonly<Record<string, SignedMessageRejectReason | 'wrong_cluster'>> = {
  MESHFED_CA_EXPIRED: 'certificate_expired',
  MESHFED_CA_NOT_YET_VALID: 'certificate_expired',
  MESHFED_CA_WRONG_TRUST_DOMAIN: 'wrong_identity',
  MESHFED_CA_WRONG_KIND: 'wrong_identity',
  MESHFED_CA_BAD_KEY_USAGE: 'wrong_identity',
  MESHFED_CA_BAD_SPIFFE_ID: 'wrong_identity',
  MESHFED_CA_WRONG_CLUSTER: 'wrong_cluster',
};

/** A message's text and the positions of its two dots (header = [0, dot1), payload = (dot1, dot2)). */
export interface CompactJws {
  ok: true;
  text: string;
  dot1: number;
  dot2: number;
}

/**
 * The size limit (before any parsing), UTF-8, and the compact shape `header.payload.signature` with a non-empty
 * header. `nonEmpty`: an empty payload or signature is refused here too (policy messages); else it is left to
 * fail the signature check.
 */
export function openCompactJws(
  raw: string | Uint8Array,
  limit: number,
  decoder: { decode(bytes: Uint8Array): string },
  o: { nonEmpty?: boolean } = {},
): CompactJws | Refusal<'oversized' | 'not_jws'> {
  const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.byteLength;
  if (size > limit) return refuse('oversized', 'unknown', `${size} bytes is more than the limit of ${limit}`);
  let text: string;
  try {
    text = typeof raw === 'string' ? raw : decoder.decode(raw);
  } catch {
    return refuse('not_jws', 'unknown', 'the message is not UTF-8 text');
  }
  const dot1 = text.indexOf('.');
  const dot2 = dot1 === -1 ? -1 : text.indexOf('.', dot1 + 1);
  const empty = o.nonEmpty === true && (dot2 === dot1 + 1 || dot2 === text.length - 1);
  if (dot1 <= 0 || dot2 === -1 || text.indexOf('.', dot2 + 1) !== -1 || empty) {
    return refuse('not_jws', 'unknown', 'the message is not a compact JWS (header.payload.signature)');
  }
  return { ok: true, text, dot1, dot2 };
}

/** A JWS header that names a usable algorithm and carries an `x5c` chain (not yet verified). */
export interface JwsHeaderFacts {
  ok: true;
  alg: JwsAlg;
  /** the x5c certificates as DER, leaf first */
  ders: Buffer[];
}

/** Why a header is refused (always `bad_header`); `alg` is what a header with a wrong algorithm named. */
export interface JwsHeaderProblem {
  ok: false;
  detail: string;
  alg?: unknown;
}

const WRONG_ALG = 'the JWS alg must be ES256 or RS256';

/** The header segment: base64url JSON, alg ES256 or RS256, and an x5c chain of 1 to 8 base64 certificates. */
export function readJwsHeader(headerSeg: string): JwsHeaderFacts | JwsHeaderProblem {
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(headerSeg, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, detail: 'the JWS header is not base64url JSON' };
  }
  const h = header as { alg?: unknown; x5c?: unknown } | null;
  if (typeof header !== 'object' || h === null || (h.alg !== 'ES256' && h.alg !== 'RS256')) {
    return { ok: false, detail: WRONG_ALG, alg: h?.alg };
  }
  if (
    !Array.isArray(h.x5c) ||
    h.x5c.length === 0 ||
    h.x5c.length > 8 ||
    !h.x5c.every((c) => typeof c === 'string' && c.length < 16_384)
  ) {
    return { ok: false, detail: 'the JWS header needs an x5c chain of 1 to 8 base64 certificates' };
  }
  return { ok: true, alg: h.alg, ders: (h.x5c as string[]).map((c) => Buffer.from(c, 'base64')) };
}

/** What a verifier remembers of one `x5c` header: good while the bundle is the one it was checked against. */
export interface CachedSigner {
  bundle: TrustBundle;
  bundleVersion: number;
  /** re-verified after this (the leaf's notAfter; sooner for a refusal) */
  validUntil: number;
}

/**
 * A bounded LRU of what encoded `x5c` headers resolved to (the header is identical on every message of one
 * signer): a hit costs a map lookup instead of parsing the chain and walking it to the bundle. An entry is used
 * only with the same bundle at the same version and until its validUntil.
 */
export class SignerCache<T extends CachedSigner> {
  readonly #map = new Map<string, T>();
  readonly #size: number;

  constructor(size: number) {
    this.#size = size;
  }

  get(key: string, bundle: TrustBundle, now: number): T | undefined {
    const hit = this.#map.get(key);
    if (!hit || hit.bundle !== bundle || hit.bundleVersion !== bundle.version || now > hit.validUntil) return;
    // refresh its LRU position
    this.#map.delete(key);
    this.#map.set(key, hit);
    return hit;
  }

  set(key: string, value: T): void {
    this.#map.delete(key);
    if (this.#map.size >= this.#size) this.#map.delete(this.#map.keys().next().value!);
    this.#map.set(key, value);
  }
}

/** A leaf that chains to the bundle, and the identity it names. */
export interface VerifiedSigner {
  ok: true;
  key: KeyObject;
  identity: VerifiedIdentity;
}

export interface SignerExpectations {
  bundle: TrustBundle;
  trustDomain: string;
  /** the identity kinds that may sign this message */
  kinds: ('admin' | 'federation')[];
  /** the time the chain must be valid at */
  at: number;
  /** how far a certificate's validity may be off; ca/'s default when absent */
  clockSkewMs?: number;
  /** ca/ codes → reasons; CHAIN_CODE_REASONS unless a verifier reads a code otherwise */
  codeReasons?: Readonly<Record<string, string>>;
}

/**
 * The x5c chain: its leaf parses (else `bad_header`), and the chain verifies to the bundle as a signing identity
 * of the expected kinds in the trust domain (else the reason of ca/'s code, signed by the leaf's fingerprint).
 */
export function verifySigner<R extends string>(
  ders: Buffer[],
  e: SignerExpectations,
): VerifiedSigner | Refusal<R | 'bad_header' | 'untrusted_chain'> {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(ders[0]!);
  } catch {
    return refuse('bad_header', 'unknown', 'the first x5c certificate cannot be parsed');
  }
  try {
    const identity = verify(ders, e.bundle, {
      trustDomain: e.trustDomain,
      kinds: e.kinds,
      usage: 'signing',
      now: new Date(e.at),
      ...(e.clockSkewMs === undefined ? {} : { clockSkewMs: e.clockSkewMs }),
    });
    return { ok: true, key: leaf.publicKey, identity };
  } catch (err) {
    const code = isMeshfedError(err) ? err.code : 'MESHFED_INTERNAL';
    const reason = ((e.codeReasons ?? CHAIN_CODE_REASONS)[code] ?? 'untrusted_chain') as
      | R
      | 'untrusted_chain';
    return refuse(
      reason,
      leaf.fingerprint256,
      `${code}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

/** Whether the leaf key is of the kind the header's alg signs with (P-256 for ES256, RSA for RS256). */
export function keyFitsAlg(key: KeyObject, alg: JwsAlg): boolean {
  return alg === 'ES256'
    ? key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1'
    : key.asymmetricKeyType === 'rsa';
}

/** The JWS signature (base64url; ES256 in IEEE P1363 form) over `signed`, the bytes of `header.payload`. */
export function signatureVerifies(key: KeyObject, signed: Uint8Array, signature: string): boolean {
  try {
    return cryptoVerify(
      'sha256',
      signed,
      { key, dsaEncoding: 'ieee-p1363' },
      Buffer.from(signature, 'base64url'),
    );
  } catch {
    return false;
  }
}
