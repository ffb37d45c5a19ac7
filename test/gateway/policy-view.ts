import {
  buildPolicySet,
  type PolicyDocument,
  type PolicySet,
  type PolicyView,
  validatePolicyDocuments,
} from '../../core/index.ts';

/**
 * A PolicyView double: tests set the documents in force (validated by the real schema, so defaults such
 * as a RateLimit's burst apply) and every listener hears of the change, as federation's view would call it.
 */
export class TestPolicyView implements PolicyView {
  #set: PolicySet = buildPolicySet([], { revision: 0, scopes: [] });
  readonly #listeners = new Set<(s: PolicySet) => void>();

  constructor(docs: readonly unknown[] = []) {
    if (docs.length > 0) this.set(docs);
  }

  current(): PolicySet {
    return this.#set;
  }

  onChange(l: (s: PolicySet) => void): () => void {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }

  /** Replaces the documents in force (plain objects in the YAML shape). */
  set(docs: readonly unknown[]): PolicySet {
    const parsed: PolicyDocument[] = validatePolicyDocuments(docs, 'test');
    this.#set = buildPolicySet(parsed, { revision: this.#set.revision + 1, scopes: [] });
    for (const l of this.#listeners) l(this.#set);
    return this.#set;
  }
}

/** A policy document of `kind` named `name` with `spec`, in the shape `meshfed policy apply` reads. */
export function policyDoc(kind: string, name: string, spec: unknown): unknown {
  return { apiVersion: 'meshfed.io/v1alpha1', kind, metadata: { name }, spec };
}
