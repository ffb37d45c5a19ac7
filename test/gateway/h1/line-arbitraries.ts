import fc from 'fast-check';

// What the request and response differentials (differential.test.ts, differential-response.test.ts) generate
// alike: line endings, and field lines from a name, a separator and a value.

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
