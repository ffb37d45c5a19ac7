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
  readonly #intermediates = new Map<string, X509Certificate>();
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

  /** Removes the root (or remembered intermediate) with this SHA-256 fingerprint (any case, with or without colons). */
  remove(fingerprint256: string): boolean {
    const fp = normaliseFingerprint(fingerprint256);
    const removed = this.#roots.delete(fp) || this.#intermediates.delete(fp);
    if (removed) this.#version++;
    return removed;
  }

  has(fingerprint256: string): boolean {
    return this.#roots.has(normaliseFingerprint(fingerprint256));
  }

  /**
   * Remembers intermediates (never trusted by themselves: they only help build paths to a root). Needed on the
   * accepting side of mutual TLS: node's TLS server exposes only the client's leaf, not the intermediates it sent.
   * Sources: every cluster's ca.crt, or the x5c chains of verified catalog entries. Returns how many were new.
   */
  addIntermediates(pem: string | readonly X509Certificate[]): number {
    const certs = typeof pem === 'string' ? parseCertificates(pem, 'the intermediates to add') : pem;
    let added = 0;
    for (const c of certs) {
      const f = certFacts(c);
      if (!f.isCa || this.#roots.has(f.fingerprint256) || this.#intermediates.has(f.fingerprint256)) continue;
      this.#intermediates.set(f.fingerprint256, c);
      added++;
    }
    if (added > 0) this.#version++;
    return added;
  }

  intermediates(): readonly X509Certificate[] {
    return [...this.#intermediates.values()];
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
