import { createHash } from 'node:crypto';

/**
 * An order-independent digest of a set of (namespace, name, revision): the XOR of a 128-bit hash of each
 * member. Adding and removing a member are the same XOR, so publisher and receivers keep it up to date in O(1)
 * per change and compare whole sets in one string comparison.
 */
export class SetDigest {
  readonly #acc = Buffer.alloc(16);
  #count = 0;

  static member(namespace: string, name: string, revision: number): Buffer {
    return createHash('sha256').update(`${namespace}/${name}@${revision}`).digest().subarray(0, 16);
  }

  add(namespace: string, name: string, revision: number): void {
    this.#xor(SetDigest.member(namespace, name, revision));
    this.#count++;
  }

  remove(namespace: string, name: string, revision: number): void {
    this.#xor(SetDigest.member(namespace, name, revision));
    this.#count--;
  }

  get count(): number {
    return this.#count;
  }

  hex(): string {
    return this.#acc.toString('hex');
  }

  #xor(h: Buffer): void {
    for (let i = 0; i < 16; i++) this.#acc[i]! ^= h[i]!;
  }
}

export function digestOf(
  members: Iterable<{ namespace: string; name: string; revision: number }>,
): SetDigest {
  const d = new SetDigest();
  for (const m of members) d.add(m.namespace, m.name, m.revision);
  return d;
}
