import type { ApplyResult, CatalogStore } from './catalog-store.ts';
import type { ProofMaker } from './proof.ts';
import type { Accepted, MessageVerifier, Rejected } from './verifier.ts';

export type IngestOutcome =
  | { verdict: Accepted; result: ApplyResult }
  | { verdict: Rejected; result?: undefined };

/**
 * The one path from bytes on the catalog subject to the view: verify, then apply by the newest-revision rule.
 * A message that fails any check changes nothing; one that is older than what the view holds is a rejection too.
 */
export function ingestCatalogMessage(
  verifier: MessageVerifier,
  store: CatalogStore,
  raw: string | Uint8Array,
  o: { subjectCluster?: string; now: number; proofs?: ProofMaker | undefined },
): IngestOutcome {
  const v = verifier.verify(raw, o.subjectCluster === undefined ? {} : { subjectCluster: o.subjectCluster });
  if (!v.ok) return { verdict: v };
  const msg = v.msg;
  if (msg.type !== 'entry' && msg.type !== 'tombstone') {
    return {
      verdict: {
        ok: false,
        reason: 'bad_payload',
        signer: v.signer,
        detail: `a ${msg.type} on the catalog subject`,
      },
    };
  }
  // the proof is kept only for persistence
  const proof = o.proofs?.make(raw);
  const result =
    msg.type === 'entry' ? store.applyEntry(msg, proof, o.now) : store.applyTombstone(msg, proof, o.now);
  if (result === 'stale_revision') {
    return {
      verdict: {
        ok: false,
        reason: 'stale_revision',
        signer: v.signer,
        detail: `a replayed or older ${msg.type}`,
      },
    };
  }
  return { verdict: v, result };
}
