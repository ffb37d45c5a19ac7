import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
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
 * A handshake that resumes a session (a peer gateway presenting a ticket this gateway issued after a full,
 * verified handshake) costs RESUMED_COST of a token: no certificate is signed or verified. A ClientHello
 * whose ticket carries this gateway's ticket-key name and MAC (ticketIssuedBy: one HMAC, no decryption) is
 * admitted for that much, from the listener's bucket only; if its handshake then does not end resumed (the
 * ticket had expired, the binder failed, the connection closed) the rest of a whole token is charged to
 * both buckets then, into debt if need be. Any other ClientHello is charged a whole token when admitted and
 * refunded all but RESUMED_COST if it still ends resumed. Without that, a peer that dials per request
 * (tunnelMaxRequestsPerConnection: 1) was held to perSecond requests a second, and a few dials at once met
 * an empty bucket while each held a whole token it would give back.
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

  /** takes `cost` now, into debt if need be (what a handshake turned out to owe) */
  charge(now: number, cost: number): void {
    this.refill(now).tokens -= cost;
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
  /** admitted for RESUMED_COST on a ticket of ours: the rest is owed unless it ends resumed */
  owes: boolean;
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
  admit(socket: Socket, ticketOfOurs = false): boolean {
    // a connection already gone has no address left to key it by, and nothing to handshake
    if (socket.remotePort === undefined || socket.remoteAddress === undefined) {
      socket.destroy();
      return false;
    }
    const now = this.#now();
    const source = this.#sourceOf(socket.remoteAddress, now);
    const reason = this.#refusal(source, now, ticketOfOurs);
    if (reason) {
      this.#refused.inc({ listener: this.#listener, reason });
      socket.destroy();
      return false;
    }
    this.#bucket.tokens -= ticketOfOurs ? RESUMED_COST : 1;
    if (source) {
      if (!ticketOfOurs) source.bucket.tokens--;
      source.inProgress++;
    }
    const key = keyOf(socket);
    const admitted: Admitted = { socket, source, owes: ticketOfOurs };
    this.#inProgress.set(key, admitted);
    socket.once('close', () => {
      if (this.#inProgress.get(key) !== admitted) return;
      this.#done(key, admitted);
      this.#settle(admitted, false);
    });
    return true;
  }

  /** the handshake of this TLS socket completed: its slot is free, and a resumed one most of its token */
  secured(tls: TLSSocket): void {
    const key = keyOf(tls);
    const admitted = this.#inProgress.get(key);
    if (!admitted) return;
    this.#done(key, admitted);
    this.#settle(admitted, tls.isSessionReused());
  }

  /** what a finished handshake still owes (a ticket of ours that did not resume) or is owed (a resumption) */
  #settle(admitted: Admitted, resumed: boolean): void {
    if (admitted.owes) {
      if (resumed) return;
      const now = this.#now();
      this.#bucket.charge(now, 1 - RESUMED_COST);
      admitted.source?.bucket.charge(now, 1);
    } else if (resumed) {
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

  #refusal(source: Source | undefined, now: number, ticketOfOurs: boolean): Refusal | undefined {
    if (this.#inProgress.size >= this.#maxInProgress) return 'handshake-limit';
    if (source && source.inProgress >= this.#maxPerSource) return 'handshake-source-limit';
    if (this.#bucket.refill(now).tokens < (ticketOfOurs ? RESUMED_COST : 1)) return 'handshake-rate';
    if (!ticketOfOurs && source && source.bucket.refill(now).tokens < 1) return 'handshake-source-rate';
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

/**
 * Whether `identity` (a ClientHello's first pre-shared-key identity: for a ticket, the ticket itself) was
 * issued by `server` under its current ticket keys: node's tickets are the key's 16-byte name, a 16-byte IV,
 * the encrypted session, and an HMAC-SHA256 of all of that under the key's 16-byte MAC secret. Checking the
 * name and MAC costs one HMAC; the ticket is not decrypted, and its age is not known here (an expired one
 * ends in a full handshake, which HandshakeAdmission then charges).
 */
export function ticketIssuedBy(server: TlsServer, identity: Buffer | undefined): boolean {
  if (!identity || identity.length < 16 + 16 + 16 + 32) return false;
  const keys = server.getTicketKeys();
  if (keys.length !== 48 || !identity.subarray(0, 16).equals(keys.subarray(0, 16))) return false;
  const macAt = identity.length - 32;
  const mac = createHmac('sha256', macKeyOf(server, keys)).update(identity.subarray(0, macAt)).digest();
  return timingSafeEqual(mac, identity.subarray(macAt));
}

/**
 * The MAC secret of a server's current ticket keys as a KeyObject, made again only when the keys change: node 24's
 * createHmac with a Buffer key spends most of its time telling the Buffer from a KeyObject or CryptoKey (about 30 µs
 * against 6 with a KeyObject, here), once per resumed handshake.
 */
const macKeys = new WeakMap<TlsServer, { keys: Buffer; key: KeyObject }>();
function macKeyOf(server: TlsServer, keys: Buffer): KeyObject {
  const known = macKeys.get(server);
  if (known?.keys.equals(keys)) return known.key;
  const key = createSecretKey(keys.subarray(16, 32));
  macKeys.set(server, { keys, key });
  return key;
}
