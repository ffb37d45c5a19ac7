import type { KeyObject } from 'node:crypto';
import type { TrustBundle, VerifiedIdentity } from '../ca/index.ts';
import type { GatewayAddressPolicy } from './address-policy.ts';
import { pastExpiry, skewAdvice } from './clock-skew.ts';
import type { JwsAlg } from './jws.ts';
import { type CatalogMessage, firstIssue, messageSchema, SCHEMA_VERSION } from './messages.ts';
import {
  type CachedSigner,
  keyFitsAlg,
  openCompactJws,
  type Refusal,
  readJwsHeader,
  refuse,
  SIGNED_MESSAGE_REASONS,
  SignerCache,
  type SignedMessageRejectReason,
  signatureVerifies,
  verifySigner,
} from './signed-message.ts';

/** Why a message was refused; the `reason` label of meshfed_catalog_rejected_total. */
export type RejectReason =
  | SignedMessageRejectReason
  | 'wrong_cluster'
  | 'expired'
  | 'issued_in_future'
  | 'revision_in_future'
  | 'gateway_not_allowed'
  | 'stale_revision';

export const REJECT_REASONS: readonly RejectReason[] = [
  ...SIGNED_MESSAGE_REASONS,
  'wrong_cluster',
  'expired',
  'issued_in_future',
  'revision_in_future',
  'gateway_not_allowed',
  'stale_revision',
];

export interface Accepted {
  ok: true;
  msg: CatalogMessage;
  /** the signer's SPIFFE ID */
  signer: string;
  signerCluster: string;
}

export type Rejected = Refusal<RejectReason>;

export type Verdict = Accepted | Rejected;

/** What one `x5c` header resolved to: a trusted signing key or a refusal; cached per header. */
interface SignerResult extends CachedSigner {
  alg: JwsAlg;
  key?: KeyObject;
  identity?: VerifiedIdentity;
  refusal?: Rejected;
}

export interface VerifierOptions {
  trustDomain: string;
  bundle: () => TrustBundle;
  maxMessageBytes: number;
  /** snapshot parts may be larger than single messages */
  maxSnapshotBytes: number;
  /** a message's expiresAt is capped at issuedAt + this (and at its signer's notAfter) */
  maxEntryTtl: number;
  /** how far ahead of `now` an issuedAt (and a revision, in ms × 1000) may be */
  maxClockSkew: number;
  /** the gateway addresses each cluster may advertise; every address when absent */
  gatewayAddresses?: GatewayAddressPolicy;
  /** distinct signer headers remembered; default 1024 */
  cacheSize?: number;
  now: () => number;
}

/** ca/'s own default tolerance for certificate validity; a smaller maxClockSkew does not tighten it */
const CERT_SKEW_FLOOR_MS = 60_000;

/**
 * Turns raw bytes into a verified catalog message or a refusal, never throwing. Order matters for cost: the size
 * check comes before any parsing, and the chain behind an `x5c` header is verified once and cached (bounded LRU
 * keyed by the encoded header, which is identical on every message of one signer), so each further message
 * costs one signature check.
 */
export class MessageVerifier {
  readonly #o: VerifierOptions;
  readonly #cache: SignerCache<SignerResult>;
  readonly #now: () => number;
  readonly #decoder = new TextDecoder('utf-8', { fatal: true });
  #scratch = Buffer.alloc(0);
  #bytes = Buffer.alloc(0);

  constructor(o: VerifierOptions) {
    this.#o = o;
    this.#cache = new SignerCache(o.cacheSize ?? 1024);
    this.#now = o.now;
  }

  /**
   * Whether an expiry stamped by another cluster's clock has passed by ours: only once it is more than
   * maxClockSkew behind us, the same allowance an issuedAt gets ahead of us. Whatever remembers a message
   * until its expiry (a replay guard) must remember it until then too.
   */
  expired(expiresAt: number, now: number): boolean {
    return pastExpiry(expiresAt, now, this.#o.maxClockSkew);
  }

  /** `checkExpiry: false` is for the persisted catalog: it is re-verified, but kept past expiry until NATS says otherwise. */
  verify(
    raw: string | Uint8Array,
    o: { snapshot?: boolean; checkExpiry?: boolean; subjectCluster?: string } = {},
  ): Verdict {
    const limit = o.snapshot ? this.#o.maxSnapshotBytes : this.#o.maxMessageBytes;
    const opened = openCompactJws(raw, limit, this.#decoder);
    if (!opened.ok) return opened;
    const { text, dot1, dot2 } = opened;
    const headerSeg = text.slice(0, dot1);
    const signer = this.#signer(headerSeg);
    if (signer.refusal) return signer.refusal;
    const id = signer.identity!;
    // the signed bytes are the message's own when it is ASCII (as every JWS is: a character per byte): a snapshot
    // part is ~90 KB, and a copy of it per message is native memory that waits for a GC
    const signed =
      typeof raw !== 'string' && text.length === raw.byteLength
        ? raw.subarray(0, dot2)
        : this.#encoded(text.slice(0, dot2));
    if (!signatureVerifies(signer.key!, signed, text.slice(dot2 + 1)))
      return refuse('bad_signature', id.spiffeId, 'the signature does not verify with the x5c leaf key');
    let payload: unknown;
    try {
      payload = JSON.parse(this.#decodePayload(text.slice(dot1 + 1, dot2)));
    } catch {
      return refuse('bad_payload', id.spiffeId, 'the payload is not JSON');
    }
    if (
      typeof payload === 'object' &&
      payload !== null &&
      (payload as { v?: unknown }).v !== SCHEMA_VERSION
    ) {
      return refuse(
        'unsupported_version',
        id.spiffeId,
        `schema version ${JSON.stringify((payload as { v?: unknown }).v)} is not ${SCHEMA_VERSION}; upgrade this gateway`,
      );
    }
    const parsed = messageSchema.safeParse(payload);
    if (!parsed.success) {
      return refuse('bad_payload', id.spiffeId, firstIssue(parsed.error));
    }
    const msg = parsed.data;
    if (msg.cluster !== id.cluster || (o.subjectCluster !== undefined && o.subjectCluster !== msg.cluster)) {
      return refuse(
        'wrong_cluster',
        id.spiffeId,
        `a message for cluster "${msg.cluster}" signed by ${id.spiffeId}${o.subjectCluster === undefined ? '' : ` on the subject of cluster "${o.subjectCluster}"`}`,
      );
    }
    if (msg.type === 'snapshot' && msg.entries.some((e) => e.cluster !== msg.cluster)) {
      return refuse(
        'wrong_cluster',
        id.spiffeId,
        `a snapshot of cluster "${msg.cluster}" holds another cluster's entry`,
      );
    }
    const now = this.#now();
    const bounds = this.#checkBounds(msg, now, signer.validUntil);
    if (bounds) return refuse(bounds.reason, id.spiffeId, bounds.detail);
    // the signer's clock may run behind ours by up to maxClockSkew, as it may run ahead for issuedAt
    if (o.checkExpiry !== false && this.expired(msg.expiresAt, now)) {
      return refuse(
        'expired',
        id.spiffeId,
        `the ${msg.type} issued at ${new Date(msg.issuedAt).toISOString()} expired at ${new Date(msg.expiresAt).toISOString()} by its signer's clock (or it is an old message replayed); ${skewAdvice(msg.cluster, msg.issuedAt, now, this.#o.maxClockSkew)}`,
      );
    }
    return { ok: true, msg, signer: id.spiffeId, signerCluster: id.cluster! };
  }

  /** the UTF-8 bytes of `text`, in a buffer kept for the purpose (valid until the next call) */
  #encoded(text: string): Uint8Array {
    const need = Buffer.byteLength(text);
    if (this.#bytes.byteLength < need) this.#bytes = Buffer.allocUnsafeSlow(need);
    const n = this.#bytes.write(text);
    return this.#bytes.subarray(0, n);
  }

  /**
   * base64url → UTF-8 text through one buffer kept for the purpose (grown to the largest payload seen, at most
   * 3/4 of maxSnapshotBytes), not a new one per message.
   */
  #decodePayload(b64: string): string {
    const need = Math.ceil((b64.length * 3) / 4);
    if (this.#scratch.byteLength < need) this.#scratch = Buffer.allocUnsafeSlow(need);
    const n = this.#scratch.write(b64, 'base64url');
    return this.#scratch.toString('utf8', 0, n);
  }

  /**
   * What makes one signed message unable to pin the view: a revision or issuedAt at most `maxClockSkew` ahead of
   * our clock (publishers' revisions are their clock in µs, so a legitimate publisher overtakes any revision we
   * accept within that skew), and an expiry capped at issuedAt + maxEntryTtl and at the signer's notAfter (the
   * cap is applied to the message, entries of a snapshot included). Then the gateway address allow-list.
   */
  #checkBounds(
    msg: CatalogMessage,
    now: number,
    signerNotAfter: number,
  ): { reason: RejectReason; detail: string } | undefined {
    const horizon = now + this.#o.maxClockSkew;
    // the parsed message is ours (a fresh object from the schema), so its expiry may be capped in place
    const items: { issuedAt: number; expiresAt: number; revision?: number }[] = [msg];
    if (msg.type === 'snapshot') {
      for (const e of msg.entries) items.push(e);
      if (msg.asOf > horizon * 1000) {
        return {
          reason: 'revision_in_future',
          detail: `snapshot asOf ${msg.asOf} µs is ahead of ${horizon * 1000}; ${skewAdvice(msg.cluster, msg.asOf / 1000, now, this.#o.maxClockSkew)}`,
        };
      }
    }
    for (const item of items) {
      if (item.issuedAt > horizon) {
        return {
          reason: 'issued_in_future',
          detail: `issuedAt ${new Date(item.issuedAt).toISOString()}; ${skewAdvice(msg.cluster, item.issuedAt, now, this.#o.maxClockSkew)}`,
        };
      }
      if (item.revision !== undefined && item.revision > horizon * 1000) {
        return {
          reason: 'revision_in_future',
          detail: `revision ${item.revision} (the publisher's clock in µs); ${skewAdvice(msg.cluster, item.revision / 1000, now, this.#o.maxClockSkew)}`,
        };
      }
      item.expiresAt = Math.min(item.expiresAt, item.issuedAt + this.#o.maxEntryTtl, signerNotAfter);
    }
    const policy = this.#o.gatewayAddresses;
    if (policy && (msg.type === 'entry' || msg.type === 'announce' || msg.type === 'snapshot')) {
      const lists = msg.type === 'snapshot' ? msg.entries.map((e) => e.gateways) : [msg.gateways];
      for (const gateways of lists) {
        const wrong = policy.check(msg.cluster, gateways);
        if (wrong) return { reason: 'gateway_not_allowed', detail: wrong };
      }
    }
    return undefined;
  }

  #signer(headerSeg: string): SignerResult {
    const bundle = this.#o.bundle();
    const now = this.#now();
    const hit = this.#cache.get(headerSeg, bundle, now);
    if (hit) return hit;
    const result = this.#resolve(headerSeg, bundle, now);
    this.#cache.set(headerSeg, result);
    return result;
  }

  #resolve(headerSeg: string, bundle: TrustBundle, now: number): SignerResult {
    const base = { bundle, bundleVersion: bundle.version, alg: 'ES256' as JwsAlg };
    // refusals are cached briefly, so a flood of one forged header costs a map lookup each
    const refusal = (reason: RejectReason, signer: string, detail: string): SignerResult => ({
      ...base,
      validUntil: now + 60_000,
      refusal: refuse(reason, signer, detail),
    });
    const header = readJwsHeader(headerSeg);
    if (!header.ok) {
      const detail = 'alg' in header ? `${header.detail}, got ${JSON.stringify(header.alg)}` : header.detail;
      return refusal('bad_header', 'unknown', detail);
    }
    const { alg } = header;
    const verified = verifySigner<RejectReason>(header.ders, {
      bundle,
      trustDomain: this.#o.trustDomain,
      kinds: ['federation'],
      at: now,
      // a signer whose clock runs ahead issues certificates that start in our future: the skew the
      // operator allows for messages is allowed for their signers' certificates too
      clockSkewMs: Math.max(this.#o.maxClockSkew, CERT_SKEW_FLOOR_MS),
    });
    if (!verified.ok) {
      // a leaf that cannot be parsed is a bad header, cached as such; for a chain refused: an expired certificate may
      // be replaced by a valid one under the same header never; a short retry is enough
      if (verified.reason === 'bad_header') return refusal(verified.reason, verified.signer, verified.detail);
      return { ...base, refusal: verified, validUntil: now + 5_000 };
    }
    const { key, identity } = verified;
    if (!keyFitsAlg(key, alg)) {
      return refusal(
        'bad_header',
        identity.spiffeId,
        `alg ${alg} does not match the ${key.asymmetricKeyType} leaf key`,
      );
    }
    return { ...base, alg, key, identity, validUntil: identity.notAfter.getTime() };
  }
}
