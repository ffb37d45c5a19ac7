import { randomBytes } from 'node:crypto';

/**
 * A fresh serial number: 16 random bytes, the first with its top bit cleared (the DER INTEGER is positive)
 * and its lowest bit set (never zero, so the encoding is minimal): 126 random bits. Serial numbers must
 * never repeat under one issuer; at 2^126 the chance is negligible, and the randomness also defeats
 * chosen-prefix attacks.
 */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}
