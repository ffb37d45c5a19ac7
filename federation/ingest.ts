import type { ApplyResult, CatalogStore } from './catalog-store.ts';
import type { EntryMessage, TombstoneMessage } from './messages.ts';
import type { Proof, ProofMaker } from './proof.ts';
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
  const result = applyEntryOrTombstone(store, msg, o.proofs?.make(raw), o.now);
  return result === 'stale_revision'
    ? { verdict: staleRevision(v.signer, msg.type) }
    : { verdict: v, result };
}

/** The newest-revision rule for one verified entry or tombstone. */
export function applyEntryOrTombstone(
  store: CatalogStore,
  msg: EntryMessage | TombstoneMessage,
  proof: Proof | undefined,
  seen: number,
): ApplyResult {
  return msg.type === 'entry' ? store.applyEntry(msg, proof, seen) : store.applyTombstone(msg, proof, seen);
}

/** A message older than what the view holds is a rejection too: a replay, or a publisher whose clock went back. */
export function staleRevision(signer: string, type: string): Rejected {
  return { ok: false, reason: 'stale_revision', signer, detail: `a replayed or older ${type}` };
}
