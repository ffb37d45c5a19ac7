import tls, { type TLSSocket } from 'node:tls';
import {
  type IssuedLeaf,
  peerCertificateChain,
  type TrustBundle,
  type VerifyExpectations,
  verify,
} from '../ca/index.ts';

/**
 * What dialling another gateway needs on both of its pools (the HTTP/2 tunnel's, gateway/h2-pool.ts, and the
 * fast path's, gateway/h1/gateway-tls.ts): the proof asked of the remote gateway, and our TLS context. The TLS
 * session tickets they keep follow gateway/session-tickets.ts.
 */

/** a remote gateway's certificate as it was verified: until when (ms), its chain, its SPIFFE ID */
export interface VerifiedPeer {
  notAfter: number;
  chain: readonly Buffer[];
  spiffeId: string;
}

/** what the remote gateway of `cluster` must prove, at the dial and whenever it is checked again */
export function gatewayExpectation(trustDomain: string, cluster: string): VerifyExpectations {
  return { trustDomain, cluster, kinds: ['gateway'] };
}

/** The remote gateway on `socket` must prove a gateway identity of `cluster` (throws otherwise). */
export function verifyGatewayPeer(
  socket: TLSSocket,
  bundle: TrustBundle,
  trustDomain: string,
  cluster: string,
): VerifiedPeer {
  const chain = peerCertificateChain(socket);
  const id = verify(chain, bundle, gatewayExpectation(trustDomain, cluster));
  return { notAfter: id.notAfter.getTime(), chain, spiffeId: id.spiffeId };
}

/**
 * The TLS context this gateway dials other gateways with: our leaf and chain, the trust bundle, TLS 1.3. One per
 * leaf and bundle version, since building one parses the PEMs and loads the CA store (a sixth of the CPU of a
 * dial when every request dials, tunnelMaxRequestsPerConnection: 1). Each pool keeps its own.
 */
export class ClientContext {
  #held: { leaf: IssuedLeaf; bundle: TrustBundle; version: number; ctx: tls.SecureContext } | undefined;

  /** the context for `leaf` and `bundle` as they are now */
  get(leaf: IssuedLeaf, bundle: TrustBundle): tls.SecureContext {
    const c = this.#held;
    if (c && c.leaf === leaf && c.bundle === bundle && c.version === bundle.version) return c.ctx;
    const ctx = tls.createSecureContext({
      cert: leaf.chainPem,
      key: leaf.keyPem,
      ca: bundle.toPem(),
      minVersion: 'TLSv1.3',
    });
    this.#held = { leaf, bundle, version: bundle.version, ctx };
    return ctx;
  }

  /** the next dial builds a new context (the trust bundle changed) */
  clear(): void {
    this.#held = undefined;
  }
}
