/**
 * Reads the SNI and ALPN offers out of a TLS ClientHello without terminating TLS, so the
 * east-west listener can route passthrough connections on the name alone, and the first
 * pre-shared-key identity (a session ticket being offered), so handshake admission can tell a
 * resumption of ours from a full handshake. Every length is bounds-checked: garbage yields
 * `{ ok: false }`, never an exception or an out-of-range read.
 */
export type HelloResult =
  | { ok: true; serverName: string | undefined; alpn: string[]; ticket?: Buffer }
  | { ok: false; reason: 'incomplete' | 'not-tls' | 'malformed' };

/** A ClientHello spread over several records is legal but rare; we accept up to this much. */
export const MAX_HELLO_BYTES = 16 * 1024 + 5;

export function parseClientHello(buf: Buffer): HelloResult {
  if (buf.length < 5) return { ok: false, reason: 'incomplete' };
  if (buf[0] !== 0x16 || buf[1] !== 0x03) return { ok: false, reason: 'not-tls' };
  const recordLen = buf.readUInt16BE(3);
  if (recordLen > 16384 + 2048) return { ok: false, reason: 'malformed' };
  if (buf.length < 5 + recordLen)
    return buf.length >= MAX_HELLO_BYTES
      ? { ok: false, reason: 'malformed' }
      : { ok: false, reason: 'incomplete' };
  const end = 5 + recordLen;
  let p = 5;
  if (buf[p] !== 0x01) return { ok: false, reason: 'not-tls' };
  if (p + 4 > end) return { ok: false, reason: 'malformed' };
  const helloLen = (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!;
  p += 4;
  const helloEnd = p + helloLen;
  if (helloEnd > end) return { ok: false, reason: 'malformed' };
  p += 2 + 32; // version, random
  if (p + 1 > helloEnd) return { ok: false, reason: 'malformed' };
  p += 1 + buf[p]!; // session id
  if (p + 2 > helloEnd) return { ok: false, reason: 'malformed' };
  p += 2 + buf.readUInt16BE(p); // cipher suites
  if (p + 1 > helloEnd) return { ok: false, reason: 'malformed' };
  p += 1 + buf[p]!; // compression methods
  let serverName: string | undefined;
  const alpn: string[] = [];
  let ticket: Buffer | undefined;
  if (p === helloEnd) return { ok: true, serverName, alpn };
  if (p + 2 > helloEnd) return { ok: false, reason: 'malformed' };
  const extEnd = p + 2 + buf.readUInt16BE(p);
  p += 2;
  if (extEnd > helloEnd) return { ok: false, reason: 'malformed' };
  while (p + 4 <= extEnd) {
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return { ok: false, reason: 'malformed' };
    if (type === 0x0000 && len >= 2) {
      let q = p + 2;
      const listEnd = Math.min(p + 2 + buf.readUInt16BE(p), p + len);
      while (q + 3 <= listEnd) {
        const nameType = buf[q]!;
        const nameLen = buf.readUInt16BE(q + 1);
        q += 3;
        if (q + nameLen > listEnd) return { ok: false, reason: 'malformed' };
        if (nameType === 0) {
          const name = buf.toString('latin1', q, q + nameLen);
          if (!/^[A-Za-z0-9._-]{1,253}$/.test(name)) return { ok: false, reason: 'malformed' };
          serverName = name.toLowerCase();
        }
        q += nameLen;
      }
    } else if (type === 0x0010 && len >= 2) {
      let q = p + 2;
      const listEnd = Math.min(p + 2 + buf.readUInt16BE(p), p + len);
      while (q + 1 <= listEnd) {
        const l = buf[q]!;
        q += 1;
        if (q + l > listEnd) return { ok: false, reason: 'malformed' };
        alpn.push(buf.toString('latin1', q, q + l));
        q += l;
      }
    } else if (type === 0x0029 && len >= 4) {
      // pre_shared_key: identities<7..2^16-1> { identity<1..2^16-1>, obfuscated_ticket_age u32 }, binders
      const listEnd = Math.min(p + 2 + buf.readUInt16BE(p), p + len);
      const idLen = buf.readUInt16BE(p + 2);
      if (idLen > 0 && p + 4 + idLen + 4 <= listEnd) ticket = buf.subarray(p + 4, p + 4 + idLen);
    }
    p += len;
  }
  return ticket ? { ok: true, serverName, alpn, ticket } : { ok: true, serverName, alpn };
}
