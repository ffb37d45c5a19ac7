/** The few DER encodings meshfed builds or reads by hand (name constraints), kept minimal and bounds-checked. */

function encodeLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

export interface Tlv {
  tag: number;
  value: Buffer;
}

/** Reads consecutive TLVs from `buf`; throws on truncation or indefinite lengths (not DER). */
export function readTlvs(buf: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let i = 0;
  while (i < buf.length) {
    if (i + 2 > buf.length) throw new Error('truncated DER');
    const tag = buf[i]!;
    let len = buf[i + 1]!;
    i += 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4 || i + n > buf.length) throw new Error('bad DER length');
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + buf[i + k]!;
      i += n;
    }
    if (i + len > buf.length) throw new Error('truncated DER');
    out.push({ tag, value: buf.subarray(i, i + len) });
    i += len;
  }
  return out;
}

const SEQUENCE = 0x30;
const PERMITTED = 0xa0;
const EXCLUDED = 0xa1;
const URI = 0x86;

/** NameConstraints permitting only URIs whose host is `host` (RFC 5280 4.2.1.10: URI constraints name hosts). */
export function nameConstraintsPermittingUriHost(host: string): Buffer {
  const subtree = tlv(SEQUENCE, tlv(URI, Buffer.from(host, 'ascii')));
  return tlv(SEQUENCE, tlv(PERMITTED, subtree));
}

export interface UriConstraints {
  permitted: string[];
  excluded: string[];
}

/** The URI subtrees of a NameConstraints extension value (other name forms are left to openssl/TLS). */
export function readUriConstraints(extValue: Buffer): UriConstraints {
  const out: UriConstraints = { permitted: [], excluded: [] };
  const [outer] = readTlvs(extValue);
  if (!outer || outer.tag !== SEQUENCE) throw new Error('NameConstraints is not a SEQUENCE');
  for (const part of readTlvs(outer.value)) {
    const list = part.tag === PERMITTED ? out.permitted : part.tag === EXCLUDED ? out.excluded : undefined;
    if (!list) continue;
    for (const subtree of readTlvs(part.value)) {
      const [base] = readTlvs(subtree.value);
      if (base?.tag === URI) list.push(base.value.toString('ascii').toLowerCase());
    }
  }
  return out;
}

/** RFC 5280: a constraint starting with '.' matches any host under it, otherwise the host itself. */
export function uriHostMatches(host: string, constraint: string): boolean {
  const h = host.toLowerCase();
  return constraint.startsWith('.') ? h.endsWith(constraint) : h === constraint;
}

/** Dotted form of a DER OBJECT IDENTIFIER's contents. */
export function decodeOid(v: Buffer): string {
  if (v.length === 0) throw new Error('empty OID');
  const parts: number[] = [];
  let n = 0;
  for (const b of v) {
    n = n * 128 + (b & 0x7f);
    if (!(b & 0x80)) {
      parts.push(n);
      n = 0;
    }
  }
  const first = parts.shift()!;
  const a = first < 80 ? Math.floor(first / 40) : 2;
  return [a, first - a * 40, ...parts].join('.');
}

/** The KeyUsage bits that verification checks, as decodeKeyUsage (and @peculiar/x509's KeyUsageFlags) number them. */
export const KEY_USAGE = { digitalSignature: 1, keyCertSign: 32 } as const;

/** KeyUsage BIT STRING → flags where bit i of the ASN.1 string is 1 << i (digitalSignature = 1, keyCertSign = 32). */
export function decodeKeyUsage(v: Buffer): number {
  let flags = 0;
  for (let i = 0; i < (v.length - 1) * 8 && i < 16; i++) {
    if ((v[1 + (i >> 3)]! >> (7 - (i & 7))) & 1) flags |= 1 << i;
  }
  return flags;
}
