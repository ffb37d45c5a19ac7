import type { TLSSocket } from 'node:tls';
import {
  type CertificateSource,
  type IssuedLeaf,
  parseCertificates,
  parseSpiffeId,
  peerCertificateChain,
  type TrustBundle,
  type VerifiedIdentity,
  verify,
} from '../ca/index.ts';
import { type Counter, MeshfedError } from '../core/index.ts';
import { type RefusalReason, Refusal } from './answers.ts';
import type { PeerRevalidation } from './peer-revalidation.ts';
import type { GatewayRequest } from './pipeline.ts';

/** the connection a request arrived on, as the pipeline names it */
type Connection = GatewayRequest['connection'];

/** The caller SPIFFE ID a gateway asserts for a local caller that presented no certificate. */
export function anonymousCaller(trustDomain: string, cluster: string): string {
  return `spiffe://${trustDomain}/cluster/${cluster}/anonymous`;
}

export interface IdentitiesOptions {
  cluster: string;
  trustDomain: string;
  identity: CertificateSource;
  bundle: () => TrustBundle;
  clientAuth: 'none' | 'optional' | 'required';
  /** meshfed_egress_client_certs_total{result} */
  clientCerts: Counter;
  /** re-verifies the peers of established connections; every connection verified here is handed to it */
  revalidation: PeerRevalidation;
}

/**
 * Who is calling: the local workload behind an egress request (its verified certificate, or an anonymous
 * caller of this cluster), the peer gateway behind a tunnel request, and the caller a peer may assert
 * (only one of its own cluster). Each connection's certificate is verified once and remembered with it.
 */
export class Identities {
  readonly #options: IdentitiesOptions;
  readonly #workloads = new WeakMap<object, string | Refusal>();
  readonly #peers = new WeakMap<object, VerifiedIdentity>();
  #chain: { pem: string; raw: Buffer[]; b64: string } | undefined;

  constructor(options: IdentitiesOptions) {
    this.#options = options;
  }

  get anonymous(): string {
    return anonymousCaller(this.#options.trustDomain, this.#options.cluster);
  }

  /**
   * The SPIFFE ID of the local caller on `socket`: its verified workload certificate, or the anonymous
   * caller of this cluster when clientAuth lets a caller in without one. Throws a Refusal otherwise.
   */
  workloadCaller(socket: TLSSocket, connection: Connection): string {
    if (this.#options.clientAuth === 'none') return this.anonymous;
    let outcome = this.#workloads.get(socket);
    if (!outcome) {
      outcome = this.#checkWorkload(socket, connection);
      this.#workloads.set(socket, outcome);
      this.#options.clientCerts.inc({
        result:
          outcome instanceof Refusal ? outcome.reason : outcome === this.anonymous ? 'anonymous' : 'verified',
      });
    }
    if (outcome instanceof Refusal) throw outcome;
    return outcome;
  }

  /** A plain TCP caller (a per-service TCP port) carries no certificate: anonymous, unless one is required. */
  tcpCaller(): string {
    if (this.#options.clientAuth === 'required') {
      throw new Refusal(
        'client-cert-required',
        'this gateway requires a workload certificate (egress.clientAuth: required), which a plain TCP port cannot carry',
      );
    }
    return this.anonymous;
  }

  #checkWorkload(socket: TLSSocket, connection: Connection): string | Refusal {
    const mode = this.#options.clientAuth;
    const chain = socket.encrypted ? peerCertificateChain(socket) : [];
    if (chain.length === 0) {
      if (mode === 'optional') return this.anonymous;
      return new Refusal(
        'client-cert-required',
        `this egress listener requires a workload certificate of cluster ${this.#options.cluster} (mTLS); connect with TLS and present one`,
      );
    }
    try {
      // the TLS server exposes only the leaf: our own intermediates complete a chain of this cluster
      const full = [...chain, ...this.localChain().raw];
      const expect = {
        trustDomain: this.#options.trustDomain,
        kinds: ['workload' as const],
        usage: 'client' as const,
      };
      const id = verify(full, this.#options.bundle(), expect);
      if (id.cluster !== this.#options.cluster) {
        return new Refusal(
          'client-cert-foreign-cluster',
          `${id.spiffeId} belongs to cluster ${id.cluster}; this gateway speaks only for workloads of cluster ${this.#options.cluster}`,
        );
      }
      // the connection lives on: its peer is verified again on a timer and on trust changes
      this.#options.revalidation.trackConnection(
        'egress',
        connection,
        full,
        { ...expect, cluster: this.#options.cluster },
        id.spiffeId,
        id.notAfter.getTime(),
      );
      return id.spiffeId;
    } catch (err) {
      const code = err instanceof MeshfedError ? err.code : 'MESHFED_CA_MALFORMED';
      const reason: RefusalReason =
        code === 'MESHFED_CA_EXPIRED'
          ? 'client-cert-expired'
          : code === 'MESHFED_CA_WRONG_CLUSTER'
            ? 'client-cert-foreign-cluster'
            : code === 'MESHFED_CA_WRONG_KIND'
              ? 'client-cert-not-workload'
              : 'client-cert-untrusted';
      return new Refusal(reason, `workload certificate refused (${code}): ${(err as Error).message}`);
    }
  }

  /**
   * The peer gateway on a tunnel or terminated connection. Node's TLS server exposes only the peer's
   * leaf: its intermediates travel in `x-meshfed-chain` (at most 3, base64 DER), or come from the bundle.
   */
  peerGateway(socket: TLSSocket, chainHeader: unknown, connection: Connection): VerifiedIdentity {
    const cached = this.#peers.get(socket);
    if (cached) return cached;
    const extra = String(chainHeader ?? '')
      .split(',')
      .filter(Boolean)
      .slice(0, 3)
      .map((b) => Buffer.from(b, 'base64'));
    try {
      // inside the try: a session already gone has no socket to read the peer's certificates from
      const chain = peerCertificateChain(socket);
      const full = chain.length > 1 ? chain : [...chain, ...extra];
      const expect = {
        trustDomain: this.#options.trustDomain,
        kinds: ['gateway' as const],
        usage: 'client' as const,
      };
      const id = verify(full, this.#options.bundle(), expect);
      this.#peers.set(socket, id);
      this.#options.revalidation.trackConnection(
        'eastWest',
        connection,
        full,
        expect,
        id.spiffeId,
        id.notAfter.getTime(),
      );
      return id;
    } catch (err) {
      throw new Refusal('peer-identity', `peer certificate refused: ${(err as Error).message}`);
    }
  }

  /**
   * The caller a peer gateway speaks for. A gateway may speak only for callers of its own cluster: a
   * workload of that cluster, or its anonymous caller. Without an assertion the gateway itself calls.
   */
  assertedCaller(peer: VerifiedIdentity, asserted: unknown): string {
    if (asserted === undefined || asserted === '') return peer.spiffeId;
    if (typeof asserted === 'string') {
      if (peer.cluster && asserted === anonymousCaller(this.#options.trustDomain, peer.cluster))
        return asserted;
      try {
        const id = parseSpiffeId(asserted);
        if (
          id.trustDomain === this.#options.trustDomain &&
          id.kind === 'workload' &&
          id.cluster === peer.cluster
        )
          return asserted;
      } catch {
        // refused below
      }
    }
    throw new Refusal(
      'caller-identity',
      `gateway ${peer.spiffeId} may not assert caller ${String(asserted)}`,
    );
  }

  /** Our leaf's intermediates (DER and the header form), parsed once per leaf. */
  localChain(): { raw: Buffer[]; b64: string } {
    const pem = this.#options.identity.current().chainPem;
    if (this.#chain?.pem !== pem) {
      const raw = parseCertificates(pem, 'the gateway certificate chain')
        .slice(1)
        .map((c) => c.raw);
      this.#chain = { pem, raw, b64: raw.map((r) => r.toString('base64')).join(',') };
    }
    return this.#chain;
  }
}

const chainHeaders = new WeakMap<IssuedLeaf, string>();

/**
 * The `x-meshfed-chain` value for a connection on which we presented `leaf`: its intermediates, base64 DER.
 * It must be the chain of the leaf the peer saw on that connection (a connection dialled just before our
 * leaf rotated still presents the old one), or the peer cannot build the path and refuses the request.
 */
export function chainHeaderOf(leaf: IssuedLeaf): string {
  let b64 = chainHeaders.get(leaf);
  if (b64 === undefined) {
    b64 = parseCertificates(leaf.chainPem, 'the gateway certificate chain')
      .slice(1)
      .map((c) => c.raw.toString('base64'))
      .join(',');
    chainHeaders.set(leaf, b64);
  }
  return b64;
}
