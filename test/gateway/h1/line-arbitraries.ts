import fc from 'fast-check';

// What the request and response differentials (differential.test.ts, differential-response.test.ts) generate
// alike: line endings, field lines from a name, a separator and a value, and the byte edits and read splits
// applied to a message.

/** a line ending: CRLF, now and then a bare CR or LF, or a doubled one */
export const eol = fc.oneof(
  { weight: 80, arbitrary: fc.constant('\r\n') },
  { weight: 1, arbitrary: fc.constantFrom('\n', '\r', '\r\r\n', '\n\r') },
);

/** the separator of a field line: `: `, now and then whitespace around or before the colon */
const sep = fc.oneof(
  { weight: 40, arbitrary: fc.constant(': ') },
  { weight: 1, arbitrary: fc.constantFrom(':', ' : ', ':\t', ': \t ', ' :') },
);

/** field lines (without their line ending) of these names and values */
export function fieldLine(name: fc.Arbitrary<string>, value: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(name, sep, value).map(([n, s, v]) => `${n}${s}${v}`);
}

/** where a message's bytes are split into reads */
export const splits = fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 4 });

/** one to three byte edits: replace, insert or delete one byte at a position */
export const byteEdits = fc.array(
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')),
  { minLength: 1, maxLength: 3 },
);

/** `bytes` with `edits` applied in order (a copy) */
export function edited(bytes: Buffer, edits: readonly (readonly [number, number, string])[]): Buffer {
  let b = Buffer.from(bytes);
  for (const [pos, byte, op] of edits) {
    const at = pos % Math.max(1, b.length);
    if (op === 'set') b[at] = byte;
    else if (op === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([byte]), b.subarray(at)]);
    else b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
  }
  return b;
}
