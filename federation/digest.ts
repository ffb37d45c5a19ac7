/**
 * A 128-bit hash of a string: four 32-bit FNV-1a lanes with different offsets, mixed at the end. Not a
 * cryptographic hash, and it need not be: the digest only decides whether to ask for a snapshot and whether a
 * (signed) snapshot is complete; it never decides whether anything is trusted. SHA-256 cost 30× more per entry.
 */
function hash128(s: string, out: Uint32Array): void {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  let c = 0x9e3779b9;
  let d = 0x85ebca6b;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    a = Math.imul(a ^ ch, 0x01000193);
    b = Math.imul(b ^ ch, 0x5bd1e995);
    c = Math.imul(c ^ ch, 0x27d4eb2d);
    d = Math.imul(d ^ ch, 0x165667b1);
  }
  // final avalanche so that near-identical inputs differ in every lane
  out[0] = fmix(a ^ d);
  out[1] = fmix(b ^ a);
  out[2] = fmix(c ^ b);
  out[3] = fmix(d ^ c);
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const scratch = new Uint32Array(4);

/**
 * An order-independent digest of a set of (namespace, name, revision): the XOR of a 128-bit hash of each
 * member. Adding and removing a member are the same XOR, so publisher and receivers keep it up to date in O(1)
 * per change and compare whole sets in one string comparison.
 */
export class SetDigest {
  readonly #acc = new Uint32Array(4);
  #count = 0;

  add(namespace: string, name: string, revision: number): void {
    this.#xor(namespace, name, revision);
    this.#count++;
  }

  remove(namespace: string, name: string, revision: number): void {
    this.#xor(namespace, name, revision);
    this.#count--;
  }

  get count(): number {
    return this.#count;
  }

  hex(): string {
    let out = '';
    for (const w of this.#acc) out += w.toString(16).padStart(8, '0');
    return out;
  }

  #xor(namespace: string, name: string, revision: number): void {
    hash128(`${namespace}/${name}@${revision}`, scratch);
    for (let i = 0; i < 4; i++) this.#acc[i] = (this.#acc[i]! ^ scratch[i]!) >>> 0;
  }
}

export function digestOf(
  members: Iterable<{ namespace: string; name: string; revision: number }>,
): SetDigest {
  const d = new SetDigest();
  for (const m of members) d.add(m.namespace, m.name, m.revision);
  return d;
}
