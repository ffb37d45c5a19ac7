import type { X509Certificate } from 'node:crypto';
import { MeshfedError } from '../core/index.ts';
import { certFacts } from './cert-facts.ts';
import { joinPem, normaliseFingerprint, parseCertificates } from './pem.ts';

let nextBundleId = 1;

/**
 * A set of trust anchors (roots). Root rotation adds the new root here first, re-issues intermediates under it,
 * and removes the old root last, so both generations verify during the overlap. Every change bumps `version`,
 * which invalidates verify()'s cached chain results for this bundle.
 */
export class TrustBundle {
  readonly #roots = new Map<string, X509Certificate>();
  readonly #explicitTrustDomain: string | undefined;
  #version = 0;
  /** unique per bundle object in this process; with `version` it keys cached verification results */
  readonly id = nextBundleId++;

  constructor(roots: readonly X509Certificate[] = [], options: { trustDomain?: string } = {}) {
    this.#explicitTrustDomain = options.trustDomain;
    for (const r of roots) this.#addCert(r, 'a trust bundle root');
  }

  /** Parses one or more concatenated root certificates; throws MESHFED_CA_MALFORMED / _NOT_A_CA. */
  static fromPem(pem: string, options: { trustDomain?: string; what?: string } = {}): TrustBundle {
    const certs = parseCertificates(pem, options.what ?? 'the trust bundle');
    const b = new TrustBundle([], options);
    for (const c of certs) b.#addCert(c, options.what ?? 'the trust bundle');
    return b;
  }

  /** Adds one or more roots (PEM). Adding a root already present changes nothing. */
  add(rootPem: string): void {
    for (const c of parseCertificates(rootPem, 'the root to add')) this.#addCert(c, 'the root to add');
  }

  /** Removes the root with this SHA-256 fingerprint (any case, with or without colons). */
  remove(fingerprint256: string): boolean {
    const removed = this.#roots.delete(normaliseFingerprint(fingerprint256));
    if (removed) this.#version++;
    return removed;
  }

  has(fingerprint256: string): boolean {
    return this.#roots.has(normaliseFingerprint(fingerprint256));
  }

  roots(): readonly X509Certificate[] {
    return [...this.#roots.values()];
  }

  get size(): number {
    return this.#roots.size;
  }

  /** bumps on every add/remove */
  get version(): number {
    return this.#version;
  }

  /** The trust domain given at construction, else the one every root names in a spiffe://<td> URI SAN. */
  get trustDomain(): string | undefined {
    if (this.#explicitTrustDomain !== undefined) return this.#explicitTrustDomain;
    const tds = new Set<string>();
    for (const r of this.#roots.values()) {
      for (const u of certFacts(r).uris) {
        if (u.startsWith('spiffe://')) tds.add(u.slice('spiffe://'.length).split('/')[0]!);
      }
    }
    return tds.size === 1 ? [...tds][0] : undefined;
  }

  toPem(): string {
    return joinPem([...this.#roots.values()].map((c) => c.toString()));
  }

  #addCert(cert: X509Certificate, what: string): void {
    const f = certFacts(cert);
    if (!f.isCa) {
      throw new MeshfedError(
        'MESHFED_CA_NOT_A_CA',
        `${what}: "${f.subject}" is not a CA certificate, so it cannot be a trust root`,
      );
    }
    if (this.#roots.has(f.fingerprint256)) return;
    this.#roots.set(f.fingerprint256, cert);
    this.#version++;
  }
}
