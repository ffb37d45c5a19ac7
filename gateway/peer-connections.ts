import type { TLSSocket, Server as TlsServer } from 'node:tls';
import { spiffeIdOf } from '../ca/index.ts';
import type { Counter } from '../core/index.ts';

/**
 * The east-west connections each authenticated peer holds open (`limits.maxConnectionsPerPeer`). Handshake
 * admission bounds how fast connections are made and the listener's limit how many there are in all; this
 * bounds what one identity can hold, so a stolen or misbehaving peer certificate (a pool gone wrong, a
 * flood from inside the trust domain) cannot take the listener's every slot from the other peers. A
 * connection is counted once its handshake has verified the client certificate, by that certificate's
 * SPIFFE ID; past the limit it is closed at once, before any request on it is read, and counted as
 * refused{reason="peer-connection-limit"}. Passthrough connections are not terminated, carry no verified
 * identity, and are not counted here.
 */
export class PeerConnections {
  readonly #max: number;
  readonly #refused: Counter;
  readonly #listener: string;
  /** open connections by peer identity; an identity with none is deleted */
  readonly #open = new Map<string, number>();

  constructor(options: { max: number; refused: Counter; listener: string }) {
    this.#max = options.max;
    this.#refused = options.refused;
    this.#listener = options.listener;
  }

  /** open connections of `identity` */
  of(identity: string): number {
    return this.#open.get(identity) ?? 0;
  }

  /** identities holding connections now */
  get peers(): number {
    return this.#open.size;
  }

  /**
   * Counts `tls` (handshake done, client certificate verified) against its peer's share until it closes;
   * past the share it is destroyed and counted. Whether it was admitted.
   */
  admit(tls: TLSSocket): boolean {
    if (tls.destroyed) return false;
    const identity = peerIdentity(tls);
    const open = this.#open.get(identity) ?? 0;
    if (open >= this.#max) {
      this.#refused.inc({ listener: this.#listener, reason: 'peer-connection-limit' });
      tls.destroy();
      return false;
    }
    this.#open.set(identity, open + 1);
    tls.once('close', () => {
      const left = (this.#open.get(identity) ?? 1) - 1;
      if (left > 0) this.#open.set(identity, left);
      else this.#open.delete(identity);
    });
    return true;
  }

  /**
   * Admits every connection `server` completes. Its listener runs after the server's own (an HTTP/2 server
   * has made its session, the fast path's entry has taken the socket): a refused connection is closed
   * before the next read, so no request on it is served.
   */
  watch(server: TlsServer): void {
    server.on('secureConnection', (s: TLSSocket) => this.admit(s));
  }
}

/**
 * The SPIFFE ID of the verified client certificate (ca's SAN reader, cached per certificate); a certificate
 * without one (a listener that verified it but whose CA issues other kinds) by its SHA-256 fingerprint, so it
 * still has a share.
 */
function peerIdentity(tls: TLSSocket): string {
  const cert = tls.getPeerX509Certificate();
  if (!cert) return 'none';
  try {
    const id = spiffeIdOf(cert);
    if (id) return id;
  } catch {
    // extensions the handshake accepted but meshfed cannot decode: counted by fingerprint
  }
  return `sha256:${cert.fingerprint256}`;
}
