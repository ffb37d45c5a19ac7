import { randomBytes } from 'node:crypto';

/**
 * A fresh serial number: 16 random bytes (127 bits of entropy) with the top bit cleared so the DER INTEGER is
 * positive, and never zero in the first byte so the encoding is minimal. Serial numbers must never repeat under
 * one issuer; at 2^127 the chance is negligible, and the randomness also defeats chosen-prefix attacks.
 */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}
