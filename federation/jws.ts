import { createPrivateKey, type KeyObject, sign as cryptoSign } from 'node:crypto';
import { parseCertificates } from '../ca/index.ts';
import { MeshfedError } from '../core/index.ts';

/**
 * Compact JWS (RFC 7515) with an `x5c` header, the envelope of every catalog message. ES256 signatures use the
 * IEEE P1363 (r||s) encoding that JWS requires, not DER.
 */
export type JwsAlg = 'ES256' | 'RS256';

export interface JwsHeader {
  alg: JwsAlg;
  /** standard base64 DER: leaf first, then intermediates */
  x5c: string[];
  /** the leaf's SHA-256 fingerprint (hex); informational, never trusted */
  kid?: string;
}

export function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** The algorithm a key signs with: ES256 for P-256, RS256 for RSA; other keys cannot sign catalog messages. */
export function algorithmFor(key: KeyObject): JwsAlg {
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  throw new MeshfedError(
    'MESHFED_CA_BAD_KEY_USAGE',
    `a ${key.asymmetricKeyType} key (${key.asymmetricKeyDetails?.namedCurve ?? 'no curve'}) cannot sign catalog messages; issue the federation identity with an ecdsa-p256 or RSA key`,
  );
}

/** Signs payloads with one leaf; the header (with its x5c chain) is encoded once. */
export class JwsSigner {
  readonly alg: JwsAlg;
  readonly #key: KeyObject;
  readonly #headerSegment: string;

  constructor(o: { chainPem: string; keyPem: string; fingerprint?: string }) {
    this.#key = createPrivateKey(o.keyPem);
    this.alg = algorithmFor(this.#key);
    const x5c = parseCertificates(o.chainPem, 'the federation signing chain').map((c) =>
      c.raw.toString('base64'),
    );
    const header: JwsHeader = { alg: this.alg, x5c };
    if (o.fingerprint) header.kid = o.fingerprint;
    this.#headerSegment = base64url(JSON.stringify(header));
  }

  sign(payload: unknown): string {
    const input = `${this.#headerSegment}.${base64url(JSON.stringify(payload))}`;
    const sig = cryptoSign('sha256', Buffer.from(input), { key: this.#key, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  }
}
