import {
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  type webcrypto,
  type X509Certificate,
} from 'node:crypto';
import { MeshfedError } from '../core/index.ts';
import type { KeyType } from './types.ts';

type CryptoKey = webcrypto.CryptoKey;
type RsaHashedKeyGenParams = webcrypto.RsaHashedKeyGenParams;
type EcKeyGenParams = webcrypto.EcKeyGenParams;
type Algorithm = webcrypto.Algorithm;
type EcdsaParams = webcrypto.EcdsaParams;
export type { CryptoKey };

/** WebCrypto parameters for each key type: generation, and the signature it makes as an issuer. */
const ALGORITHMS: Record<
  KeyType,
  { gen: RsaHashedKeyGenParams | EcKeyGenParams; sign: Algorithm | EcdsaParams }
> = {
  'ecdsa-p256': {
    gen: { name: 'ECDSA', namedCurve: 'P-256' },
    sign: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
  },
  'ecdsa-p384': {
    gen: { name: 'ECDSA', namedCurve: 'P-384' },
    sign: { name: 'ECDSA', hash: 'SHA-384' } as EcdsaParams,
  },
  'rsa-2048': { gen: rsa(2048), sign: { name: 'RSASSA-PKCS1-v1_5' } },
  'rsa-3072': { gen: rsa(3072), sign: { name: 'RSASSA-PKCS1-v1_5' } },
  'rsa-4096': { gen: rsa(4096), sign: { name: 'RSASSA-PKCS1-v1_5' } },
};

function rsa(bits: number): RsaHashedKeyGenParams {
  return {
    name: 'RSASSA-PKCS1-v1_5',
    modulusLength: bits,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: 'SHA-256',
  };
}

export function isKeyType(v: string): v is KeyType {
  return v in ALGORITHMS;
}

export function signingAlgorithm(keyType: KeyType): Algorithm | EcdsaParams {
  return ALGORITHMS[keyType].sign;
}

export interface KeyPair {
  /** WebCrypto keys, what @peculiar/x509 signs with */
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  keyType: KeyType;
  /** PKCS#8 PEM of the private key */
  keyPem: string;
}

export async function generateKeyPair(keyType: KeyType): Promise<KeyPair> {
  const pair = (await crypto.subtle.generateKey(ALGORITHMS[keyType].gen, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const keyPem = (await exportPkcs8Pem(pair.privateKey)) as string;
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, keyType, keyPem };
}

async function exportPkcs8Pem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  const b64 = der
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n');
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

/** The key type of a node:crypto key, or undefined when meshfed cannot sign with it. */
export function keyTypeOf(key: KeyObject): KeyType | undefined {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d?.modulusLength;
    return bits === 2048 ? 'rsa-2048' : bits === 3072 ? 'rsa-3072' : bits === 4096 ? 'rsa-4096' : undefined;
  }
  if (key.asymmetricKeyType === 'ec') {
    return d?.namedCurve === 'prime256v1'
      ? 'ecdsa-p256'
      : d?.namedCurve === 'secp384r1'
        ? 'ecdsa-p384'
        : undefined;
  }
  return undefined;
}

/**
 * Reads a private key in any PEM form operators bring: PKCS#8, PKCS#1 ("RSA PRIVATE KEY"), SEC1
 * ("EC PRIVATE KEY"), encrypted PKCS#8, or legacy encrypted PEM ("Proc-Type: 4,ENCRYPTED"). node:crypto
 * (OpenSSL 3) decodes all of these, so no second parser is needed.
 */
export function readPrivateKey(pem: string, what: string, passphrase?: string): KeyObject {
  if (!/-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/.test(pem)) {
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${what}: no PEM private key found (expected "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY" or "ENCRYPTED PRIVATE KEY")`,
    );
  }
  const encrypted = /ENCRYPTED/.test(pem);
  if (encrypted && (passphrase === undefined || passphrase === '')) {
    throw new MeshfedError(
      'MESHFED_CA_BAD_PASSPHRASE',
      `${what}: the key is encrypted; give its passphrase (--passphrase-file FILE)`,
    );
  }
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase: encrypted ? passphrase : undefined });
  } catch (err) {
    if (encrypted) {
      throw new MeshfedError(
        'MESHFED_CA_BAD_PASSPHRASE',
        `${what}: cannot decrypt the key: wrong passphrase`,
        {
          cause: err,
        },
      );
    }
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${what}: the private key cannot be parsed (${(err as Error).message})`,
      { cause: err },
    );
  }
}

/** Throws MESHFED_CA_KEY_MISMATCH unless `key` is the private half of `cert`'s public key. */
export function assertKeyMatches(cert: X509Certificate, key: KeyObject, what: string): void {
  const a = cert.publicKey.export({ type: 'spki', format: 'der' });
  const b = createPublicKey(key).export({ type: 'spki', format: 'der' });
  if (!a.equals(b)) {
    throw new MeshfedError(
      'MESHFED_CA_KEY_MISMATCH',
      `${what}: the private key does not belong to the certificate (its public key differs)`,
    );
  }
}

/** A node:crypto private key as a WebCrypto signing key for @peculiar/x509, plus its PKCS#8 PEM. */
export async function toSigningKey(
  key: KeyObject,
  what: string,
): Promise<{ signingKey: CryptoKey; keyType: KeyType; keyPem: string }> {
  const keyType = keyTypeOf(key);
  if (!keyType) {
    const d = key.asymmetricKeyDetails;
    throw new MeshfedError(
      'MESHFED_CA_MALFORMED',
      `${what}: unsupported key (${key.asymmetricKeyType} ${d?.modulusLength ?? d?.namedCurve ?? ''}); use RSA 2048/3072/4096 or ECDSA P-256/P-384`,
    );
  }
  const gen = ALGORITHMS[keyType].gen;
  const importAlg = gen.name === 'ECDSA' ? gen : { name: gen.name, hash: 'SHA-256' };
  const signingKey = key.toCryptoKey(importAlg, false, ['sign']) as CryptoKey;
  const keyPem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
  return { signingKey, keyType, keyPem };
}
