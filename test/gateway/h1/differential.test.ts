import fc from 'fast-check';
import { type Ending, type Framed, frameAll } from './frame-all.ts';
import { type NodeEvent, nodeStrictServer } from './node-strict.ts';
import { eol, fieldLine } from './line-arbitraries.ts';

// meshfed's HTTP/1.1 codec against node's own parser (llhttp, strict): the same bytes go to both, over
// loopback for node. meshfed may refuse what node accepts only for a reason listed below (each a rule
// RFC 9112 lets a proxy apply and meshfed applies on purpose); it must never accept, or frame
// differently, what node refuses. Any other difference fails. The seed is fixed and printed.

const SEED = Number(process.env.H1_DIFF_SEED ?? 20261205);
const RUNS = Number(process.env.H1_DIFF_RUNS ?? 250);

/** where meshfed is deliberately stricter than node */
const STRICTER = new Set([
  'unsupported-method', // only the methods meshfed forwards
  'invalid-request-target', // origin-form only (issue 11, finding 7)
  'unsupported-version',
  'duplicate-header', // a second Host, Content-Type, Authorization… is refused, not merged or dropped
  'unsupported-transfer-encoding', // exactly `chunked`, never another coding, never in HTTP/1.0
  'invalid-content-length', // a list, even of equal values
  'too-many-headers',
  'head-too-large', // node counts the head a little differently; meshfed's limit is never looser
  'invalid-chunk-extension', // `;token[=token]` only, a chunk line at most 128 bytes
  'invalid-trailer', // an internal header as a trailer
  'invalid-header-value', // Host must be an authority
  'invalid-request-line', // leading empty lines are not skipped
  // a bare LF ends no line (RFC 9112 2.2 lets a recipient take it for one; llhttp does before a request line
  // and at the end of one without a version)
  'bare-cr-or-lf',
  'missing-host',
  // an expectation other than 100-continue gets 417 in HTTP/1.0 too (RFC 9110 10.1.1 lets a server refuse it in
  // any version); node ignores Expect in an HTTP/1.0 request
  'expectation-failed',
]);

/** how many cases exercised each outcome, so a vacuous run (everything refused) fails */
const tally = {
  cases: 0,
  accepted: 0,
  refused: 0,
  reasons: new Map<string, number>(),
  stricter: new Map<string, number>(),
};

let node: Awaited<ReturnType<typeof nodeStrictServer>>;
beforeAll(async () => {
  node = await nodeStrictServer();
  console.log(`h1 differential: seed ${SEED}, ${RUNS} runs per property (H1_DIFF_SEED / H1_DIFF_RUNS)`);
});
afterAll(async () => {
  console.log(
    `h1 differential: ${JSON.stringify({ ...tally, reasons: Object.fromEntries(tally.reasons), stricter: Object.fromEntries(tally.stricter) })}`,
  );
  await node.close();
});

function sameRequest(a: Framed, b: NodeEvent): boolean {
  if (b.kind !== 'request' || !b.complete) return false;
  return (
    a.method === b.method &&
    a.target === b.target &&
    a.body === b.body &&
    JSON.stringify(a.headers) === JSON.stringify(b.headers)
  );
}

/** Compares meshfed's framing of `bytes` with node's; returns a description of the difference, or ''. */
async function difference(bytes: Buffer, splits: number[]): Promise<string> {
  const ours = frameAll(bytes, splits);
  const theirs = await node.run(bytes);
  tally.cases++;
  tally.accepted += ours.requests.length > 0 ? 1 : 0;
  if (ours.ending.kind === 'error') {
    tally.refused++;
    tally.reasons.set(ours.ending.reason, (tally.reasons.get(ours.ending.reason) ?? 0) + 1);
    const n = theirs[ours.requests.length];
    if (n?.kind === 'request' && n.complete)
      tally.stricter.set(ours.ending.reason, (tally.stricter.get(ours.ending.reason) ?? 0) + 1);
  }
  const show = () =>
    `bytes ${JSON.stringify(bytes.toString('latin1'))}\nmeshfed ${JSON.stringify(ours)}\nnode ${JSON.stringify(theirs)}`;
  for (let i = 0; i < ours.requests.length; i++) {
    if (!sameRequest(ours.requests[i]!, theirs[i] ?? { kind: 'error', code: 'none' }))
      return `request ${i} differs\n${show()}`;
  }
  const next = theirs[ours.requests.length];
  const nodeAcceptedNext = next?.kind === 'request' && next.complete;
  const e: Ending = ours.ending;
  switch (e.kind) {
    case 'error':
      if (nodeAcceptedNext && !STRICTER.has(e.reason))
        return `meshfed refused (${e.reason}), node accepted\n${show()}`;
      return '';
    case 'incomplete':
      if (nodeAcceptedNext) return `meshfed saw an incomplete request, node a whole one\n${show()}`;
      return '';
    case 'eof':
      if (next) return `node saw more after meshfed's last request\n${show()}`;
      return '';
    case 'closed':
    case 'handover':
      return '';
  }
}

// ------------------------------------------------------------------ generators

const method = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD') },
  { weight: 1, arbitrary: fc.constantFrom('get', 'FOO', 'G ET', 'GET\t', 'PRI', 'PROPFIND', 'CONNECT', '') },
);
const target = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom('/', '/a/b?c=d&e=f', '/x%20y', '/~user;p=1', '/a:b@c') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '*',
      'http://x/',
      'x:80',
      '/%zz',
      '/a b',
      '/\x7f',
      '/\x00',
      '/a#frag',
      '/\xff',
      '',
      '//x',
      '/a"b',
      '/{}',
    ),
  },
);
const version = fc.oneof(
  { weight: 40, arbitrary: fc.constant('HTTP/1.1') },
  {
    weight: 1,
    arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1.1 ', 'HTTP/11'),
  },
);
const name = fc.oneof(
  {
    weight: 40,
    arbitrary: fc.constantFrom('x-a', 'accept', 'user-agent', 'x-forwarded-for', 'cookie', 'connection'),
  },
  {
    weight: 4,
    arbitrary: fc.constantFrom('Content-Length', 'Transfer-Encoding', 'Host', 'Expect', 'Upgrade'),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom('x a', 'x_a', 'x-a ', ' x-a', 'x:a', '', 'x\x00', 'x(a)', 'x\xe9'),
  },
);
const value = fc.oneof(
  {
    weight: 40,
    arbitrary: fc.constantFrom(
      '1',
      'a b',
      'text/html',
      'close',
      'keep-alive',
      '100-continue',
      'chunked',
      'svc.ns',
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      ' ',
      '\t1',
      'a\x00b',
      'a\x7fb',
      'caf\xe9',
      '1, 1',
      '-1',
      '0x10',
      'gzip, chunked',
      'chunked, gzip',
      'CHUNKED',
      'chunked ',
      ' chunked',
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength: 12 }) },
  { weight: 3, arbitrary: fc.string({ unit: fc.constantFrom(...'abc xyz/;=,-'), maxLength: 12 }) },
);
const header = fieldLine(name, value);

/** a chunked body: chunks with plain, padded, extended or malformed size lines, then trailers */
const chunked = fc
  .tuple(
    fc.array(
      fc.tuple(
        fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 20 }),
        fc.constantFrom('', '', '', ';a', ';a=b', ';a="b"', ' ;a', ';', '\t', '0', ';a=b;c'),
        fc.constantFrom('x', 'X', 'r'),
      ),
      { maxLength: 4 },
    ),
    fc.constantFrom('', '', 'x-t: 1\r\n', 'x-meshfed-caller: spiffe://x\r\n', ' bad\r\n'),
    fc.constantFrom('0', '00', '0;a', '0 '),
  )
  .map(([chunks, trailer, last]) => {
    let s = '';
    for (const [data, ext, hex] of chunks) {
      const size = hex === 'X' ? data.length.toString(16).toUpperCase() : data.length.toString(16);
      s += `${hex === 'r' ? `${size}0` : size}${ext}\r\n${data}\r\n`;
    }
    return `${s}${last}\r\n${trailer}\r\n`;
  });

/** one request: a start line, headers, an optional framing of its own, and a body shaped to fit (or not) */
const request = fc
  .tuple(
    method,
    target,
    version,
    fc.array(header, { maxLength: 4 }),
    fc.oneof(
      { weight: 20, arbitrary: fc.constant('host') },
      { weight: 1, arbitrary: fc.constantFrom('none', 'two-hosts', 'bad-host') },
    ),
    fc.constantFrom('none', 'length', 'length', 'chunked', 'chunked', 'both', 'two-lengths', 'te-list'),
    fc.string({ unit: 'binary-ascii', maxLength: 24 }),
    chunked,
    eol,
  )
  .map(([m, t, v, hs, host, framing, data, chunks, nl]) => {
    const lines = [`${m} ${t} ${v}`];
    if (host === 'host') lines.push('Host: svc.ns.svc.clusterset.local');
    if (host === 'two-hosts') lines.push('Host: a', 'Host: b');
    if (host === 'bad-host') lines.push('Host: a b');
    lines.push(...hs);
    let body = '';
    if (framing === 'length') {
      lines.push(`Content-Length: ${data.length}`);
      body = data;
    } else if (framing === 'chunked') {
      lines.push('Transfer-Encoding: chunked');
      body = chunks;
    } else if (framing === 'both') {
      lines.push(`Content-Length: ${data.length}`, 'Transfer-Encoding: chunked');
      body = chunks;
    } else if (framing === 'two-lengths') {
      lines.push(`Content-Length: ${data.length}`, `Content-Length: ${data.length + 1}`);
      body = data;
    } else if (framing === 'te-list') {
      lines.push('Transfer-Encoding: gzip', 'Transfer-Encoding: chunked');
      body = chunks;
    }
    return `${lines.join(nl)}${nl}${nl}${body}`;
  });

const connection = fc
  .array(request, { minLength: 1, maxLength: 3 })
  .map((rs) => Buffer.from(rs.join(''), 'latin1'));
const splits = fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 4 });

/** a byte-level mutation: replace, insert or delete one byte at a position */
const mutated = fc
  .tuple(
    connection,
    fc.array(
      fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([bytes, edits]) => {
    let b = Buffer.from(bytes);
    for (const [pos, byte, op] of edits) {
      const at = pos % Math.max(1, b.length);
      if (op === 'set') b[at] = byte;
      else if (op === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([byte]), b.subarray(at)]);
      else b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
    }
    return b;
  });

async function check(arb: fc.Arbitrary<Buffer>, seed: number): Promise<void> {
  await fc.assert(
    fc.asyncProperty(arb, splits, async (bytes, s) => {
      const d = await difference(bytes, s);
      if (d !== '') throw new Error(d);
    }),
    { seed, numRuns: RUNS, endOnFailure: true },
  );
}

describe('meshfed h1 codec vs node strict (llhttp)', () => {
  test('generated requests: never accepts or frames what node would not', async () => {
    await check(connection, SEED);
    // the generators must reach both outcomes: requests both parsers accept, and ones meshfed refuses
    expect(tally.accepted).toBeGreaterThan(RUNS / 5);
    expect(tally.refused).toBeGreaterThan(RUNS / 5);
  });

  test('mutated requests: never accepts or frames what node would not', async () => {
    await check(mutated, SEED + 1);
  });

  test('the corpus of known disagreements between parsers agrees with node, or is refused on purpose', async () => {
    const corpus = [
      'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
      'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX-a: 1\r\n b\r\n\r\n',
      'GET / HTTP/1.1\nHost: a\n\n',
      'GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x="a\r\nb"\r\nabc\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc',
      'GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\n\x00X: 1\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n',
      // found by longer runs (H1_DIFF_RUNS=20000, seeds 1207001, 1207010, 1207012): node takes each of these
      'DELETE / HTTP/1.0\r\nHost: a\r\nExpect: x\r\nContent-Length: 0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\n\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET /a\nHost: a\r\n\r\n',
    ];
    for (const c of corpus) {
      const bytes = Buffer.from(c, 'latin1');
      expect(await difference(bytes, [3])).toBe('');
      // every one of these is a request meshfed refuses
      expect(frameAll(bytes).ending.kind).toBe('error');
    }
  });
});
