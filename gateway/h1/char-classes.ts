/**
 * Byte classes of HTTP/1.1's grammar (RFC 9110, 9112, 3986) as 256-entry tables, 1 where a byte belongs, for the
 * codec's head and body parsers; and the two bytes that end a line.
 */

export const CR = 0x0d;
export const LF = 0x0a;

/** tchar: the characters of a token (method, field name, transfer coding) */
export const TCHAR = table("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
/** pchar / "/" / "?" of RFC 3986 (origin-form); '%' is checked to start a pct-encoding */
export const TARGET_CHAR = table(
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%",
);
/** field-content: VCHAR, obs-text, and SP/HTAB inside a value */
export const VALUE_CHAR = new Uint8Array(256);
for (let c = 0x21; c <= 0x7e; c++) VALUE_CHAR[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE_CHAR[c] = 1;
VALUE_CHAR[0x20] = 1;
VALUE_CHAR[0x09] = 1;
/** the authority of a Host header: reg-name / IPv4 / [IPv6] with an optional port */
export const HOST_CHAR = table(
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:[]%",
);
/** hexadecimal digits (a request target's pct-encodings) */
export const HEX = table('0123456789ABCDEFabcdef');

function table(chars: string): Uint8Array {
  const t = new Uint8Array(256);
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  return t;
}
