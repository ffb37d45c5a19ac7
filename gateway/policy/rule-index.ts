/**
 * An index of authorization rules by the facts they name, so that a call is tested against the few rules
 * that could match it rather than against every rule of the service. It is a filter, never a judge: every
 * rule it returns is still matched in full, and a rule that could match a call is always among those it
 * returns (a superset), so indexing never changes a decision.
 */

/** The facts of a call the index can look up; each is one string, undefined when the call has none. */
export type IndexDimension =
  | 'spiffeId'
  | 'cluster'
  | 'namespace'
  | 'serviceAccount'
  | 'path'
  | 'grpcService'
  | 'grpcMethod';

const DIMENSIONS: readonly IndexDimension[] = [
  'spiffeId',
  'cluster',
  'namespace',
  'serviceAccount',
  'path',
  'grpcService',
  'grpcMethod',
];

export type IndexFacts = { readonly [D in IndexDimension]: string | undefined };

/** A value a rule entry requires of one fact: exactly `key`, starting with it, or ending with it. */
export interface IndexKey {
  readonly dim: IndexDimension;
  readonly kind: 'exact' | 'prefix' | 'suffix';
  readonly key: string;
}

/**
 * How a rule can be found. A rule matches when one entry of its `from` AND one entry of its `to` match;
 * so listing it under keys that cover every entry of ONE side finds it whenever it can match. Per side,
 * per entry, the key groups that cover the entry: a group covers it when the entry cannot match without
 * one of the group's keys holding (a caller field: one key; `paths`: one key per path).
 */
export type RuleKeys = readonly (readonly (readonly (readonly IndexKey[])[])[])[];

interface TrieNode<R> {
  next: Map<number, TrieNode<R>> | undefined;
  rules: R[] | undefined;
}

/** Lists by exact value, and tries of prefixes and of reversed suffixes, for one dimension. */
class StringIndex<R> {
  readonly #exact = new Map<string, R[]>();
  readonly #prefixes: TrieNode<R> = { next: undefined, rules: undefined };
  readonly #suffixes: TrieNode<R> = { next: undefined, rules: undefined };
  #hasPrefixes = false;
  #hasSuffixes = false;

  add(kind: IndexKey['kind'], key: string, rule: R): void {
    if (kind === 'exact') {
      const list = this.#exact.get(key);
      if (!list) this.#exact.set(key, [rule]);
      else if (list[list.length - 1] !== rule) list.push(rule);
      return;
    }
    const reverse = kind === 'suffix';
    if (reverse) this.#hasSuffixes = true;
    else this.#hasPrefixes = true;
    let node = reverse ? this.#suffixes : this.#prefixes;
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(reverse ? key.length - 1 - i : i);
      node.next ??= new Map();
      let child = node.next.get(c);
      if (!child) {
        child = { next: undefined, rules: undefined };
        node.next.set(c, child);
      }
      node = child;
    }
    if (!node.rules) node.rules = [rule];
    else if (node.rules[node.rules.length - 1] !== rule) node.rules.push(rule);
  }

  /** Pushes every list whose key `value` equals, starts with or ends with. */
  collect(value: string, out: R[][]): void {
    const exact = this.#exact.get(value);
    if (exact) out.push(exact);
    if (this.#hasPrefixes) walk(this.#prefixes, value, false, out);
    if (this.#hasSuffixes) walk(this.#suffixes, value, true, out);
  }

  get empty(): boolean {
    return this.#exact.size === 0 && !this.#hasPrefixes && !this.#hasSuffixes;
  }
}

function walk<R>(root: TrieNode<R>, value: string, reverse: boolean, out: R[][]): void {
  let node: TrieNode<R> | undefined = root;
  for (let i = 0; node; i++) {
    if (node.rules) out.push(node.rules);
    if (i === value.length || !node.next) return;
    node = node.next.get(value.charCodeAt(reverse ? value.length - 1 - i : i));
  }
}

const keyId = (k: IndexKey) => `${k.dim}\u0000${k.kind}\u0000${k.key}`;

/**
 * Rules (given in evaluation order, each list it fills stays in that order) indexed by the cheapest of
 * their keys: per entry the group whose keys fewest rules share, per rule the side whose entries cost
 * least. A rule without a usable side (no `from` and no indexable `to`, or a `*` entry) is tested for
 * every call. Rules sharing one key (thousands of rules all on `cluster: east`) are still tested one by
 * one within that key's list.
 */
export class RuleIndex<R> {
  readonly #dims = new Map<IndexDimension, StringIndex<R>>();
  /** rules every call is tested against */
  readonly #always: R[] = [];
  #lookups: [IndexDimension, StringIndex<R>][] = [];

  constructor(rules: readonly { rule: R; keys: RuleKeys }[]) {
    const shared = new Map<string, number>();
    for (const { keys } of rules) {
      const seen = new Set<string>();
      for (const side of keys)
        for (const entry of side) for (const group of entry) for (const k of group) seen.add(keyId(k));
      for (const id of seen) shared.set(id, (shared.get(id) ?? 0) + 1);
    }
    const cost = (group: readonly IndexKey[]) => {
      let sum = 0;
      for (const k of group) sum += shared.get(keyId(k)) ?? 0;
      return sum;
    };
    for (const { rule, keys } of rules) {
      let best: (readonly IndexKey[])[] | undefined;
      let bestCost = Number.POSITIVE_INFINITY;
      for (const side of keys) {
        if (side.length === 0) continue;
        const chosen: (readonly IndexKey[])[] = [];
        let sideCost = 0;
        for (const entry of side) {
          let pick: readonly IndexKey[] | undefined;
          let pickCost = Number.POSITIVE_INFINITY;
          for (const group of entry) {
            const c = cost(group);
            if (group.length > 0 && c < pickCost) {
              pick = group;
              pickCost = c;
            }
          }
          if (!pick) {
            sideCost = Number.POSITIVE_INFINITY;
            break;
          }
          chosen.push(pick);
          sideCost += pickCost;
        }
        if (sideCost < bestCost) {
          best = chosen;
          bestCost = sideCost;
        }
      }
      if (!best) {
        this.#always.push(rule);
        continue;
      }
      for (const group of best) for (const k of group) this.#dim(k.dim).add(k.kind, k.key, rule);
    }
    this.#lookups = DIMENSIONS.flatMap((d) => {
      const index = this.#dims.get(d);
      return index && !index.empty ? [[d, index] as [IndexDimension, StringIndex<R>]] : [];
    });
  }

  #dim(d: IndexDimension): StringIndex<R> {
    let index = this.#dims.get(d);
    if (!index) {
      index = new StringIndex();
      this.#dims.set(d, index);
    }
    return index;
  }

  /**
   * The lists that hold every rule that could match a call with these facts (a rule may be in several);
   * each list is in evaluation order. Every fact must be known: undefined means the call has none.
   */
  candidates(facts: IndexFacts): R[][] {
    const out: R[][] = this.#always.length > 0 ? [this.#always] : [];
    for (const [d, index] of this.#lookups) {
      const v = facts[d];
      if (v !== undefined) index.collect(v, out);
    }
    return out;
  }
}
