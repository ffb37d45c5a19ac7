import {
  buildPolicySet,
  EMPTY_POLICY_SET,
  type Logger,
  type PolicySet,
  type PolicyView,
  toMeshfedError,
} from '../core/index.ts';
import type { VerifiedBundle } from './policy-verifier.ts';

export type OfferResult = 'applied' | 'duplicate' | 'stale_revision' | 'conflicting_revision';

/**
 * The verified policy in force: the newest bundle of each signer scope, merged into one immutable PolicySet.
 * A bundle replaces its scope whole; the set is rebuilt and swapped in one assignment, so `current()` never
 * shows half a revision. Revisions only move forward per scope (an older one is a replay or a rollback).
 */
export class PolicyStore implements PolicyView {
  readonly #scopes = new Map<string, VerifiedBundle>();
  readonly #listeners = new Set<(set: PolicySet) => void>();
  readonly #log: Logger;
  #set: PolicySet = EMPTY_POLICY_SET;

  constructor(o: { log: Logger }) {
    this.#log = o.log;
  }

  current(): PolicySet {
    return this.#set;
  }

  onChange(listener: (set: PolicySet) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The bundle held for a scope (what is persisted and re-broadcast). */
  held(scope: string): VerifiedBundle | undefined {
    return this.#scopes.get(scope);
  }

  bundles(): VerifiedBundle[] {
    return [...this.#scopes.values()];
  }

  /** `{ scope, revision }` of every scope held, sorted by scope. */
  revisions(): { scope: string; revision: number }[] {
    return this.#set.scopes.map((s) => ({ scope: s.scope, revision: s.revision }));
  }

  offer(b: VerifiedBundle): OfferResult {
    const held = this.#scopes.get(b.scope);
    if (held) {
      if (b.revision < held.revision) return 'stale_revision';
      if (b.revision === held.revision) return b.raw === held.raw ? 'duplicate' : 'conflicting_revision';
    }
    this.#scopes.set(b.scope, b);
    const scopes = [...this.#scopes.values()].sort((x, y) => (x.scope < y.scope ? -1 : 1));
    this.#set = buildPolicySet(
      scopes.flatMap((s) => s.documents),
      {
        revision: this.#set.revision + 1,
        scopes: scopes.map((s) => ({
          scope: s.scope,
          revision: s.revision,
          signer: s.signer,
          issuedAt: s.issuedAt,
        })),
      },
    );
    for (const l of this.#listeners) {
      try {
        l(this.#set);
      } catch (err) {
        this.#log.error({ err: toMeshfedError(err) }, 'a policy listener failed');
      }
    }
    return 'applied';
  }
}
