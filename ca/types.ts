/** Key algorithms meshfed creates. The first three are the ones operators choose; the last two exist so a
 *  brought-your-own CA with such a key can be loaded and used as an issuer. */
export type KeyType = 'ecdsa-p256' | 'rsa-2048' | 'rsa-3072' | 'ecdsa-p384' | 'rsa-4096';

/** The key types `meshfed ca init --key-type` offers for new keys. */
export const CREATABLE_KEY_TYPES: readonly KeyType[] = ['ecdsa-p256', 'rsa-2048', 'rsa-3072'];

export type IdentityKind = 'gateway' | 'federation' | 'workload' | 'admin';
export const IDENTITY_KINDS: readonly IdentityKind[] = ['gateway', 'federation', 'workload', 'admin'];

/** A root or a cluster intermediate: what it takes to issue certificates. */
export interface CaMaterial {
  /** this CA's certificate */
  certPem: string;
  /** PKCS#8 PEM */
  keyPem: string;
  /** this cert + issuers up to (excluding) the root; for a root: its cert */
  chainPem: string;
  trustDomain: string;
  /** set for cluster intermediates */
  cluster?: string;
  /** set for the admin intermediate (URI SAN spiffe://<td>/admin), which issues admin identities only */
  admin?: true;
  keyType: KeyType;
  /** the root(s) this CA chains to, when known (a root: itself); what goes into a trust bundle */
  bundlePem?: string;
}

export interface IssuedLeaf {
  /** the leaf alone */
  certPem: string;
  /** leaf + intermediate(s): what a TLS server or client presents */
  chainPem: string;
  /** PKCS#8 */
  keyPem: string;
  spiffeId: string;
  /** hex, lower case */
  serial: string;
  notBefore: Date;
  notAfter: Date;
}

export interface SpiffeIdentity {
  spiffeId: string;
  trustDomain: string;
  kind: IdentityKind | 'cluster';
  cluster?: string;
  name?: string;
  namespace?: string;
  serviceAccount?: string;
}

export interface VerifiedIdentity extends SpiffeIdentity {
  /** the leaf's serial number, hex lower case */
  serial: string;
  /** the leaf's SHA-256 fingerprint, as node:crypto prints it (AB:CD:…) */
  fingerprint256: string;
  notAfter: Date;
  /** the trust-bundle root the chain ends at */
  chainRootFingerprint256: string;
  /** the cluster of the intermediate that issued the leaf */
  issuerCluster?: string;
}

export interface VerifyExpectations {
  trustDomain?: string;
  cluster?: string;
  kinds?: IdentityKind[];
  usage?: 'server' | 'client' | 'signing';
  now?: Date;
  /** allowance on both ends of the validity window; unset: 60 s past notAfter, 10 min before notBefore */
  clockSkewMs?: number;
}
