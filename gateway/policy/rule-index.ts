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

/** The order of the facts in IndexFacts. */
export const DIMENSIONS: readonly IndexDimension[] = [
  'spiffeId',
  'cluster',
  'namespace',
  'serviceAccount',
  'path',
  'grpcService',
  'grpcMethod',
];

/**
 * A call's facts, in DIMENSIONS order (an array: the lookup reads them by position, which is cheaper on the
 * request path than by name); undefined where the call has none.
 */
export type IndexFacts = readonly (string | undefined)[];

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

/**
 * A node of a radix tree: `edge` is the run of characters from its parent to it (in walk order: reversed
 * for suffixes), so a walk costs a map lookup per branching point, not per character.
 */
interface RadixNode<R> {
  edge: string;
  next: Map<number, RadixNode<R>> | undefined;
  rules: R[] | undefined;
}

const radixNode = <R>(edge: string): RadixNode<R> => ({ edge, next: undefined, rules: undefined });

function addRule<R>(list: R[] | undefined, rule: R): R[] {
  if (!list) return [rule];
  // rules come in evaluation order; a rule filed twice under one key (two equal entries) stays once
  if (list[list.length - 1] !== rule) list.push(rule);
  return list;
}

/** Files `rule` under `key` (already in walk order), splitting an edge where the key leaves it. */
function insert<R>(root: RadixNode<R>, key: string, rule: R): void {
  let node = root;
  let i = 0;
  while (i < key.length) {
    node.next ??= new Map();
    const c = key.charCodeAt(i);
    const child = node.next.get(c);
    if (!child) {
      const leaf = radixNode<R>(key.slice(i));
      node.next.set(c, leaf);
      node = leaf;
      break;
    }
    const e = child.edge;
    let j = 1;
    while (j < e.length && i + j < key.length && e.charCodeAt(j) === key.charCodeAt(i + j)) j++;
    if (j < e.length) {
      const mid = radixNode<R>(e.slice(0, j));
      child.edge = e.slice(j);
      mid.next = new Map([[child.edge.charCodeAt(0), child]]);
      node.next.set(c, mid);
      node = mid;
    } else node = child;
    i += j;
  }
  node.rules = addRule(node.rules, rule);
}

/** Pushes the rules of every key that `value` starts with (ends with, when `reverse`). */
function walk<R>(root: RadixNode<R>, value: string, reverse: boolean, out: R[][]): void {
  const n = value.length;
  let node = root;
  let i = 0;
  for (;;) {
    if (node.rules) out.push(node.rules);
    if (i === n || !node.next) return;
    const child = node.next.get(value.charCodeAt(reverse ? n - 1 - i : i));
    if (!child) return;
    const e = child.edge;
    if (i + e.length > n) return;
    // the edge's first character is the map's key
    for (let j = 1; j < e.length; j++) {
      if (value.charCodeAt(reverse ? n - 1 - i - j : i + j) !== e.charCodeAt(j)) return;
    }
    i += e.length;
    node = child;
  }
}

/** `s` backwards by UTF-16 code unit, as walk() reads a value for suffixes (not by code point). */
function reversed(s: string): string {
  let r = '';
  for (let i = s.length - 1; i >= 0; i--) r += s[i];
  return r;
}

/** Lists by exact value, and radix trees of prefixes and of reversed suffixes, for one dimension. */
class StringIndex<R> {
  readonly #exact = new Map<string, R[]>();
  readonly #prefixes = radixNode<R>('');
  readonly #suffixes = radixNode<R>('');
  #hasPrefixes = false;
  #hasSuffixes = false;

  add(kind: IndexKey['kind'], key: string, rule: R): void {
    if (kind === 'exact') {
      this.#exact.set(key, addRule(this.#exact.get(key), rule));
    } else if (kind === 'prefix') {
      this.#hasPrefixes = true;
      insert(this.#prefixes, key, rule);
    } else {
      this.#hasSuffixes = true;
      insert(this.#suffixes, reversed(key), rule);
    }
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
  /** the dimensions that index something: their position in IndexFacts, and their index */
  #lookups: { at: number; index: StringIndex<R> }[] = [];

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
    this.#lookups = DIMENSIONS.flatMap((d, at) => {
      const index = this.#dims.get(d);
      return index && !index.empty ? [{ at, index }] : [];
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
    const lookups = this.#lookups;
    for (let i = 0; i < lookups.length; i++) {
      const l = lookups[i]!;
      const v = facts[l.at];
      if (v !== undefined) l.index.collect(v, out);
    }
    return out;
  }
}
