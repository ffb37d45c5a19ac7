import type * as grpc from '@grpc/grpc-js';
import type { TrustBundle } from '../../ca/index.ts';

type CertificateProvider = Parameters<typeof grpc.experimental.createCertificateProviderServerCredentials>[0];
type CaListener = Parameters<CertificateProvider['addCaCertificateListener']>[0];
type IdentityListener = Parameters<CertificateProvider['addIdentityCertificateListener']>[0];

/**
 * The admin TCP listener's TLS material as grpc-js takes it from a certificate provider: the gateway's current
 * leaf and the trust bundle's roots, pushed again by `changed()` after a leaf rotation or a trust change, so
 * the listener follows both without a restart (credentials made with createSsl are fixed at bind).
 */
export class LiveCredentials implements CertificateProvider {
  private readonly ca = new Set<CaListener>();
  private readonly identity = new Set<IdentityListener>();
  private readonly leaf: () => { chainPem: string; keyPem: string };
  private readonly bundle: () => TrustBundle;

  constructor(leaf: () => { chainPem: string; keyPem: string }, bundle: () => TrustBundle) {
    this.leaf = leaf;
    this.bundle = bundle;
  }

  /** Sends the current leaf and roots to the listener's TLS context (new handshakes use them). */
  changed(): void {
    for (const l of this.ca) l(this.caUpdate());
    for (const l of this.identity) l(this.identityUpdate());
  }

  private caUpdate() {
    return { caCertificate: Buffer.from(this.bundle().toPem()) };
  }

  private identityUpdate() {
    const leaf = this.leaf();
    return { certificate: Buffer.from(leaf.chainPem), privateKey: Buffer.from(leaf.keyPem) };
  }

  // grpc-js registers its own watcher only after adding these listeners: an update given synchronously here
  // would reach no one, and the listener would refuse every connection until the next change
  addCaCertificateListener(listener: CaListener): void {
    this.ca.add(listener);
    queueMicrotask(() => listener(this.caUpdate()));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.ca.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identity.add(listener);
    queueMicrotask(() => listener(this.identityUpdate()));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identity.delete(listener);
  }
}
