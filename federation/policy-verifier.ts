import type { KeyObject } from 'node:crypto';
import type { TrustBundle, VerifiedIdentity } from '../ca/index.ts';
import {
  ADMIN_POLICY_SCOPE,
  CLUSTER_SIGNABLE_KINDS,
  clusterPolicyScope,
  isMeshfedError,
  MAX_POLICY_SCOPE_BYTES,
  type PolicyDocument,
  type PolicyProblem,
  policyCluster,
  policyDocumentId,
  validatePolicyDocuments,
} from '../core/index.ts';
import {
  MAX_POLICY_MESSAGE_BYTES,
  POLICY_SCHEMA_VERSION,
  type PolicyStateMessage,
  policyBundleSchema,
  policyStateSchema,
} from './policy-messages.ts';
import { firstIssue } from './messages.ts';
import {
  type CachedSigner,
  CHAIN_CODE_REASONS,
  keyFitsAlg,
  openCompactJws,
  type Refusal,
  readJwsHeader,
  refuse,
  SignerCache,
  type SignedMessageRejectReason,
  signatureVerifies,
  verifySigner,
} from './signed-message.ts';

/** Why a policy message was refused; the `reason` label of meshfed_policy_rejected_total. */
export type PolicyRejectReason =
  | SignedMessageRejectReason
  | 'wrong_scope'
  | 'wrong_cluster'
  | 'kind_not_allowed'
  | 'invalid_policy'
  | 'too_large'
  | 'issued_in_future'
  | 'revision_in_future'
  | 'stale_revision'
  | 'conflicting_revision';

export type PolicyRejected = Refusal<PolicyRejectReason>;

export interface VerifiedBundle {
  ok: true;
  scope: string;
  revision: number;
  issuedAt: number;
  signer: string;
  documents: readonly PolicyDocument[];
  /** the compact JWS as received: what is persisted and re-broadcast */
  raw: string;
}

export interface VerifiedState {
  ok: true;
  msg: PolicyStateMessage;
  signer: string;
}

/** A signer verified as of now, remembered per header (and the identity kinds asked for). */
interface PolicySigner extends CachedSigner {
  key: KeyObject;
  identity: VerifiedIdentity;
  /** the leaf key is of the kind the header's alg signs with */
  keyFits: boolean;
}

export interface PolicyVerifierOptions {
  trustDomain: string;
  bundle: () => TrustBundle;
  /** how far ahead of `now` an issuedAt (and a revision, in ms × 1000) may be */
  maxClockSkew: number;
  now: () => number;
}

/**
 * A signer issued by an intermediate that may not issue its kind (an admin under a cluster's intermediate, a
 * cluster identity under the admin intermediate) is counted as a wrong identity here; the catalog verifier,
 * which accepts no admins, counts it as an untrusted chain.
 */
const CODE_REASON: Readonly<Record<string, PolicyRejectReason>> = {
  ...CHAIN_CODE_REASONS,
  MESHFED_CA_WRONG_ISSUER: 'wrong_identity',
};

/**
 * Turns raw bytes into a verified policy bundle or state report, or a refusal; never throws. Who may sign what:
 * an admin identity (`spiffe://<td>/admin/<name>`) signs the `admin` scope, any kind, for any service; a
 * cluster's federation identity signs only its own scope `cluster:<c>`, and in it only AuthorizationPolicy and
 * RateLimit pinned to its own cluster (`spec.target.cluster: <c>`), so no cluster can set policy for another.
 * Bundles are rare (one per apply), but every gateway's state report arrives once per heartbeat interval: a chain
 * verified as of now is remembered per `x5c` header (SignerCache), so a report costs one signature check; a
 * bundle read back from its file is checked as of its signing time, every time.
 */
export class PolicyVerifier {
  readonly #o: PolicyVerifierOptions;
  readonly #decoder = new TextDecoder('utf-8', { fatal: true });
  readonly #signers = new SignerCache<PolicySigner>(256);

  constructor(o: PolicyVerifierOptions) {
    this.#o = o;
  }

  /**
   * A signed bundle. `chainAt: 'issuedAt'` is for the persisted file: the chain was verified at receipt and is
   * checked again as of its signing time, so a policy outlives the admin certificate that signed it on the
   * gateways that already hold it. Over NATS the chain must be valid now (an expired signer is refused).
   */
  bundle(
    raw: string | Uint8Array,
    o: { subjectScope?: string; chainAt?: 'now' | 'issuedAt' } = {},
  ): VerifiedBundle | PolicyRejected {
    const opened = this.#open(raw, ['admin', 'federation'], o.chainAt ?? 'now');
    if (!opened.ok) return opened;
    const { id, payload, text } = opened;
    const parsed = policyBundleSchema.safeParse(payload);
    if (!parsed.success) {
      return refuse('bad_payload', id.spiffeId, firstIssue(parsed.error));
    }
    const msg = parsed.data;
    if (o.subjectScope !== undefined && o.subjectScope !== msg.scope) {
      return refuse(
        'wrong_scope',
        id.spiffeId,
        `a bundle of scope ${msg.scope} on the subject of ${o.subjectScope}`,
      );
    }
    const own = id.kind === 'admin' ? ADMIN_POLICY_SCOPE : clusterPolicyScope(id.cluster ?? '');
    if (msg.scope !== own) {
      return refuse(
        'wrong_scope',
        id.spiffeId,
        `${id.spiffeId} may sign the policy scope "${own}" only, not "${msg.scope}"${id.kind === 'admin' ? '' : ' (federation-wide policy needs an admin identity)'}`,
      );
    }
    const bounds = this.#bounds(msg.issuedAt, msg.revision);
    if (bounds) return refuse(bounds.reason, id.spiffeId, bounds.detail);
    const bytes = Buffer.byteLength(JSON.stringify(msg.documents));
    if (bytes > MAX_POLICY_SCOPE_BYTES) {
      return refuse(
        'too_large',
        id.spiffeId,
        `${bytes} bytes of documents; at most ${MAX_POLICY_SCOPE_BYTES}`,
      );
    }
    let documents: PolicyDocument[];
    try {
      documents = validatePolicyDocuments(msg.documents, `${msg.scope}@${msg.revision}`);
    } catch (err) {
      const problems = (isMeshfedError(err) ? err.details?.problems : undefined) as
        | PolicyProblem[]
        | undefined;
      const first = problems?.[0];
      return refuse(
        'invalid_policy',
        id.spiffeId,
        first
          ? `${problems.length} problem(s); first: ${first.document}: ${first.path}: ${first.message}`
          : String(err),
      );
    }
    if (id.kind !== 'admin') {
      for (const doc of documents) {
        if (!CLUSTER_SIGNABLE_KINDS.includes(doc.kind)) {
          return refuse(
            'kind_not_allowed',
            id.spiffeId,
            `${policyDocumentId(doc)}: a cluster may sign only ${CLUSTER_SIGNABLE_KINDS.join(' and ')}; this kind needs an admin identity`,
          );
        }
        if (policyCluster(doc) !== id.cluster) {
          return refuse(
            'wrong_cluster',
            id.spiffeId,
            `${policyDocumentId(doc)}: cluster ${id.cluster} may set policy only for its own services (spec.target.cluster: ${id.cluster})`,
          );
        }
      }
    }
    return {
      ok: true,
      scope: msg.scope,
      revision: msg.revision,
      issuedAt: msg.issuedAt,
      signer: id.spiffeId,
      documents,
      raw: text,
    };
  }

  /** A gateway's state report, signed by its cluster's federation identity. */
  state(raw: string | Uint8Array, o: { subjectCluster?: string } = {}): VerifiedState | PolicyRejected {
    const opened = this.#open(raw, ['federation'], 'now');
    if (!opened.ok) return opened;
    const { id, payload } = opened;
    const parsed = policyStateSchema.safeParse(payload);
    if (!parsed.success) {
      return refuse('bad_payload', id.spiffeId, firstIssue(parsed.error));
    }
    const msg = parsed.data;
    if (msg.cluster !== id.cluster || (o.subjectCluster !== undefined && o.subjectCluster !== msg.cluster)) {
      return refuse(
        'wrong_cluster',
        id.spiffeId,
        `a state report of cluster "${msg.cluster}" signed by ${id.spiffeId}`,
      );
    }
    const bounds = this.#bounds(msg.issuedAt, undefined);
    if (bounds) return refuse(bounds.reason, id.spiffeId, bounds.detail);
    return { ok: true, msg, signer: id.spiffeId };
  }

  #bounds(
    issuedAt: number,
    revision: number | undefined,
  ): { reason: PolicyRejectReason; detail: string } | undefined {
    const horizon = this.#o.now() + this.#o.maxClockSkew;
    if (issuedAt > horizon) {
      return {
        reason: 'issued_in_future',
        detail: `issuedAt ${new Date(issuedAt).toISOString()} is more than federation.maxClockSkew ahead of this gateway's clock`,
      };
    }
    // a revision far in the future would pin the scope: nothing signed later could supersede it
    if (revision !== undefined && revision > horizon * 1000) {
      return {
        reason: 'revision_in_future',
        detail: `revision ${revision} is ahead of ${horizon * 1000} (revisions are the signer's clock in µs)`,
      };
    }
    return undefined;
  }

  /** Size, compact-JWS shape, header, chain (at `now` or at the payload's issuedAt), signature, JSON, version. */
  #open(
    raw: string | Uint8Array,
    kinds: ('admin' | 'federation')[],
    chainAt: 'now' | 'issuedAt',
  ): { ok: true; id: VerifiedIdentity; payload: unknown; text: string } | PolicyRejected {
    const opened = openCompactJws(raw, MAX_POLICY_MESSAGE_BYTES, this.#decoder, { nonEmpty: true });
    if (!opened.ok) return opened;
    const { text, dot1, dot2 } = opened;
    const headerSeg = text.slice(0, dot1);
    const bundle = this.#o.bundle();
    const now = this.#o.now();
    // a chain checked as of now is remembered per header and kinds; one checked as of a signing time is not
    const cacheKey = chainAt === 'now' ? `${kinds.join(',')} ${headerSeg}` : undefined;
    // a remembered signer, or the header to verify one from (after the payload: its issuedAt may be the time)
    const source =
      (cacheKey !== undefined && this.#signers.get(cacheKey, bundle, now)) || readJwsHeader(headerSeg);
    if ('ok' in source && !source.ok) return refuse('bad_header', 'unknown', source.detail);
    let payload: unknown;
    try {
      payload = JSON.parse(Buffer.from(text.slice(dot1 + 1, dot2), 'base64url').toString('utf8'));
    } catch {
      return refuse('bad_payload', 'unknown', 'the payload is not JSON');
    }
    let signer: PolicySigner;
    if ('ders' in source) {
      const issuedAt = (payload as { issuedAt?: unknown } | null)?.issuedAt;
      const at = chainAt === 'issuedAt' && typeof issuedAt === 'number' ? issuedAt : now;
      const verified = verifySigner<PolicyRejectReason>(source.ders, {
        bundle,
        trustDomain: this.#o.trustDomain,
        kinds,
        at,
        codeReasons: CODE_REASON,
      });
      if (!verified.ok) return verified;
      signer = {
        bundle,
        bundleVersion: bundle.version,
        validUntil: verified.identity.notAfter.getTime(),
        key: verified.key,
        identity: verified.identity,
        keyFits: keyFitsAlg(verified.key, source.alg),
      };
      if (cacheKey !== undefined) this.#signers.set(cacheKey, signer);
    } else signer = source;
    const { key, identity: id } = signer;
    const good =
      signer.keyFits && signatureVerifies(key, Buffer.from(text.slice(0, dot2)), text.slice(dot2 + 1));
    if (!good)
      return refuse('bad_signature', id.spiffeId, 'the signature does not verify with the x5c leaf key');
    if ((payload as { v?: unknown } | null)?.v !== POLICY_SCHEMA_VERSION) {
      return refuse(
        'unsupported_version',
        id.spiffeId,
        `policy schema version ${JSON.stringify((payload as { v?: unknown } | null)?.v)} is not ${POLICY_SCHEMA_VERSION}; upgrade this gateway`,
      );
    }
    return { ok: true, id, payload, text };
  }
}
