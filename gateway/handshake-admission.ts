import type { Socket } from 'node:net';
import type { TLSSocket, Server as TlsServer } from 'node:tls';
import type { Counter } from '../core/index.ts';

/**
 * Admission of TLS handshakes on one terminating listener (east-west, egress mTLS). A handshake is the
 * dearest thing a client can make the gateway do before it has proved anything (an ECDSA signature and a
 * client chain to verify, on the event loop that serves every request), and a client that holds
 * connections idle until they are closed and dials again can ask for one after another. So a connection
 * is admitted to its handshake only while fewer than `maxInProgress` are under way and the listener's
 * token bucket (`perSecond` handshakes a second, a burst of as many) has a token; past either it is closed
 * at once, before any TLS byte is written, and counted as refused{reason="handshake-limit"} or
 * {reason="handshake-rate"}. A refused peer gateway dials again (its pool backs off); passthrough
 * connections never handshake here and are not counted.
 *
 * Each source address (an IPv6 one by its /64) also has its own share: at most `maxInProgressPerSource`
 * under way and a bucket of `perSecondPerSource` (refused{reason="handshake-source-limit"} and
 * {reason="handshake-source-rate"}), so one client that dials as fast as it can does not use up the
 * handshakes every other peer needs.
 *
 * A handshake that resumed a session (a peer gateway presenting a ticket this gateway issued after a full,
 * verified handshake) costs RESUMED_COST of a token: no certificate is signed or verified. It is charged a
 * whole token when admitted, since a ClientHello that offers a ticket may still end in a full handshake,
 * and refunded the rest once it completed resumed (its source's share: all of it). Without that, a peer
 * that dials per request (tunnelMaxRequestsPerConnection: 1) was held to perSecond requests a second.
 */
export const RESUMED_COST = 0.05;

/** sources tracked at once; past it idle ones are forgotten, and while all are busy a new one has the listener's share only */
const MAX_SOURCES = 10_000;

type Refusal = 'handshake-limit' | 'handshake-rate' | 'handshake-source-limit' | 'handshake-source-rate';

class Bucket {
  tokens: number;
  #at: number;
  readonly #perSecond: number;

  constructor(perSecond: number, now: number) {
    this.#perSecond = perSecond;
    this.tokens = perSecond;
    this.#at = now;
  }

  refill(now: number): this {
    this.tokens = Math.min(this.#perSecond, this.tokens + ((now - this.#at) / 1000) * this.#perSecond);
    this.#at = now;
    return this;
  }

  refund(cost: number): void {
    this.tokens = Math.min(this.#perSecond, this.tokens + cost);
  }

  get full(): boolean {
    return this.tokens >= this.#perSecond;
  }
}

interface Source {
  bucket: Bucket;
  inProgress: number;
}

interface Admitted {
  socket: Socket;
  source: Source | undefined;
}

export class HandshakeAdmission {
  readonly #maxInProgress: number;
  readonly #perSecond: number;
  readonly #maxPerSource: number;
  readonly #perSecondPerSource: number;
  readonly #refused: Counter;
  readonly #listener: string;
  readonly #now: () => number;
  /** handshakes under way, by the connection's remote address and port (the TLS socket has the same) */
  readonly #inProgress = new Map<string, Admitted>();
  readonly #sources = new Map<string, Source>();
  readonly #bucket: Bucket;

  constructor(options: {
    maxInProgress: number;
    perSecond: number;
    maxInProgressPerSource: number;
    perSecondPerSource: number;
    refused: Counter;
    listener: string;
    now?: () => number;
  }) {
    this.#maxInProgress = options.maxInProgress;
    this.#perSecond = options.perSecond;
    this.#maxPerSource = options.maxInProgressPerSource;
    this.#perSecondPerSource = options.perSecondPerSource;
    this.#refused = options.refused;
    this.#listener = options.listener;
    this.#now = options.now ?? (() => performance.now());
    this.#bucket = new Bucket(this.#perSecond, this.#now());
  }

  get inProgress(): number {
    return this.#inProgress.size;
  }

  /** source addresses with a share of their own now (bounded by MAX_SOURCES) */
  get sources(): number {
    return this.#sources.size;
  }

  /**
   * Whether `socket` may start its handshake now; when not, it has been destroyed and counted. An admitted
   * one counts as in progress until `secured()` names its TLS socket, or it closes.
   */
  admit(socket: Socket): boolean {
    // a connection already gone has no address left to key it by, and nothing to handshake
    if (socket.remotePort === undefined || socket.remoteAddress === undefined) {
      socket.destroy();
      return false;
    }
    const now = this.#now();
    const source = this.#sourceOf(socket.remoteAddress, now);
    const reason = this.#refusal(source, now);
    if (reason) {
      this.#refused.inc({ listener: this.#listener, reason });
      socket.destroy();
      return false;
    }
    this.#bucket.tokens--;
    if (source) {
      source.bucket.tokens--;
      source.inProgress++;
    }
    const key = keyOf(socket);
    const admitted = { socket, source };
    this.#inProgress.set(key, admitted);
    socket.once('close', () => {
      if (this.#inProgress.get(key) === admitted) this.#done(key, admitted);
    });
    return true;
  }

  /** the handshake of this TLS socket completed: its slot is free, and a resumed one most of its token */
  secured(tls: TLSSocket): void {
    const key = keyOf(tls);
    const admitted = this.#inProgress.get(key);
    if (!admitted) return;
    this.#done(key, admitted);
    if (tls.isSessionReused()) {
      this.#bucket.refund(1 - RESUMED_COST);
      // a source's share is for the handshakes anyone can ask for: a resumed one needs a ticket this gateway
      // issued to a verified peer, which may dial per request (tunnelMaxRequestsPerConnection: 1)
      admitted.source?.bucket.refund(1);
    }
  }

  /** frees the slot of every handshake `server` completes (a server this admission hands connections to) */
  watch(server: TlsServer): void {
    server.on('secureConnection', (s: TLSSocket) => this.secured(s));
  }

  #done(key: string, admitted: Admitted): void {
    this.#inProgress.delete(key);
    if (admitted.source) admitted.source.inProgress--;
  }

  #refusal(source: Source | undefined, now: number): Refusal | undefined {
    if (this.#inProgress.size >= this.#maxInProgress) return 'handshake-limit';
    if (source && source.inProgress >= this.#maxPerSource) return 'handshake-source-limit';
    if (this.#bucket.refill(now).tokens < 1) return 'handshake-rate';
    if (source && source.bucket.refill(now).tokens < 1) return 'handshake-source-rate';
    return undefined;
  }

  #sourceOf(address: string, now: number): Source | undefined {
    const key = sourceKey(address);
    let s = this.#sources.get(key);
    if (s) return s;
    if (this.#sources.size >= MAX_SOURCES) this.#forgetIdle(now);
    if (this.#sources.size >= MAX_SOURCES) return undefined;
    s = { bucket: new Bucket(this.#perSecondPerSource, now), inProgress: 0 };
    this.#sources.set(key, s);
    return s;
  }

  /** drops the sources with nothing under way and a full bucket: they would start afresh the same */
  #forgetIdle(now: number): void {
    for (const [k, s] of this.#sources)
      if (s.inProgress === 0 && s.bucket.refill(now).full) this.#sources.delete(k);
  }
}

/** one TCP connection of a listener: its remote address and port, the same on the raw and the TLS socket */
function keyOf(s: Socket): string {
  return `${s.remoteAddress}|${s.remotePort}`;
}

/**
 * The source a connection's share is kept under: an IPv4 address (an IPv4-mapped IPv6 one as IPv4), or an
 * IPv6 address's /64 (one host is commonly given a whole /64, and could dial from each of its addresses).
 */
export function sourceKey(address: string): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!address.includes(':')) return address;
  const plain = address.split('%')[0]!.toLowerCase();
  const [head = '', tail] = plain.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups =
    tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
