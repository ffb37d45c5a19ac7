import fc from 'fast-check';
import { LIMITS } from './frame-all.ts';
import { eol, fieldLine } from './line-arbitraries.ts';

// The upstream responses the response differential (differential-response.test.ts) and the emitted-heads test
// generate: interim responses, a status line, field lines, a framing and a body shaped to fit (or not), and
// bytes after it that a desynchronised reader would take for the next response.

/** the request a response answers: mostly GET, now and then HEAD (no body, whatever the fields say) */
export const method = fc.oneof(
  { weight: 3, arbitrary: fc.constant('GET') },
  { weight: 1, arbitrary: fc.constant('HEAD') },
);
const version = fc.oneof(
  { weight: 30, arbitrary: fc.constant('HTTP/1.1') },
  { weight: 6, arbitrary: fc.constant('HTTP/1.0') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'HTTP/2.0',
      'HTTP/1.2',
      'HTTP/0.9',
      'http/1.1',
      'HTTP/11',
      'HTTP/1.1 ',
      'ICY',
      'RTSP/1.0',
    ),
  },
);
const status = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom('200', '201', '206', '301', '404', '500', '503') },
  { weight: 6, arbitrary: fc.constantFrom('204', '304', '205') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '100',
      '101',
      '103',
      '199',
      '099',
      '000',
      '600',
      '999',
      '20',
      '2000',
      '2x0',
      ' 200',
      '+20',
    ),
  },
);
const reason = fc.oneof(
  { weight: 30, arbitrary: fc.constantFrom(' OK', ' Not Found', ' Partial Content', ' No Content') },
  { weight: 3, arbitrary: fc.constantFrom('', ' ', ' a\tb', '  OK', ' caf\xe9') },
  { weight: 1, arbitrary: fc.constantFrom(' a\x00b', ' a\x7fb', ' a\x01', '\tOK', ' OK\r') },
);
const name = fc.oneof(
  {
    weight: 40,
    arbitrary: fc.constantFrom(
      'server',
      'date',
      'content-type',
      'set-cookie',
      'cache-control',
      'vary',
      'x-a',
    ),
  },
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'Content-Length',
      'Transfer-Encoding',
      'Connection',
      'Keep-Alive',
      'Trailer',
      'Upgrade',
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'x a',
      'x_a',
      'x-a ',
      ' x-a',
      'x:a',
      '',
      'x\x00',
      'x(a)',
      'x\xe9',
      'Content-Length ',
    ),
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
      'chunked',
      'max-age=0',
      'a=b; Path=/',
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
      '+1',
      '0x10',
      '1 1',
      'gzip, chunked',
      'chunked, gzip',
      'chunked, chunked',
      'identity',
      'CHUNKED',
      'chunked ',
      ' chunked',
      'upgrade',
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
        fc.oneof(
          { weight: 12, arbitrary: fc.constantFrom('', ';a', ';a=b', ';a=b;c') },
          { weight: 1, arbitrary: fc.constantFrom(';a="b"', ' ;a', ';', '\t', ' ', '0', ';a=b c', ';a=') },
        ),
        fc.oneof(
          { weight: 12, arbitrary: fc.constantFrom('x', 'X') },
          { weight: 1, arbitrary: fc.constantFrom('r', '0x', '-', 'short', 'long') },
        ),
      ),
      { maxLength: 4 },
    ),
    fc.oneof(
      { weight: 12, arbitrary: fc.constantFrom('', 'x-t: 1\r\n', 'x-t: 1\r\nx-u: a b\r\n') },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'x-meshfed-caller: spiffe://x\r\n',
          ' bad\r\n',
          'x : 1\r\n',
          'x-t: a\x00\r\n',
        ),
      },
    ),
    fc.oneof(
      { weight: 12, arbitrary: fc.constantFrom('0', '00', '0;a') },
      { weight: 1, arbitrary: fc.constantFrom('0 ', '000000000000000000', '0\t') },
    ),
    fc.oneof(
      { weight: 12, arbitrary: fc.constant('\r\n') },
      { weight: 1, arbitrary: fc.constantFrom('', '\n', '\r') },
    ),
  )
  .map(([chunks, trailer, last, end]) => {
    let s = '';
    for (const [data, ext, form] of chunks) {
      const n = form === 'short' ? data.length - 1 : form === 'long' ? data.length + 1 : data.length;
      let size = n.toString(16);
      if (form === 'X') size = size.toUpperCase();
      else if (form === 'r') size = `${size}0`;
      else if (form === '0x') size = `0x${size}`;
      else if (form === '-') size = `-${size}`;
      s += `${size}${ext}\r\n${data}\r\n`;
    }
    return `${s}${last}\r\n${trailer}${end}`;
  });

/** 1xx responses before the final one, some carrying framing headers they must not be framed by */
const interim = fc.oneof(
  { weight: 12, arbitrary: fc.constant('') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'HTTP/1.1 100 Continue\r\n\r\n',
      'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n',
      'HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n',
    ),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\n',
      'HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HTTP/1.1 199 Odd\r\nContent-Length: 3\r\n\r\nabc',
      'HTTP/1.1 150 Odd\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'HTTP/1.0 100 Continue\r\n\r\n',
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n',
      'HTTP/1.1 100 Continue\r\n\r\n'.repeat(17),
    ),
  },
);

/** a head near, at or over the size and field-count limits */
const bulk = fc.oneof(
  { weight: 20, arbitrary: fc.constant<string[]>([]) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        LIMITS.maxHeadBytes - 200,
        LIMITS.maxHeadBytes - 80,
        LIMITS.maxHeadBytes,
        LIMITS.maxHeadBytes + 100,
      )
      .map((n) => [`x-big: ${'a'.repeat(n)}`]),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(LIMITS.maxHeaders - 3, LIMITS.maxHeaders - 1, LIMITS.maxHeaders + 1)
      .map((n) => Array.from({ length: n }, (_, i) => `x-${i}: ${i}`)),
  },
);

/** what follows the response: nothing, or bytes a desynchronised reader would take for the next response */
const after = fc.oneof(
  { weight: 8, arbitrary: fc.constant('') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!',
      'HTTP/1.1 302 Found\r\nLocation: http://evil/\r\nContent-Length: 0\r\n\r\n',
      'garbage',
      '\r\n',
    ),
  },
);

/** one upstream exchange: interim responses, a status line, headers, a framing of its own, a body shaped to fit (or not) */
export const response = fc
  .tuple(
    fc.tuple(interim, version, status, reason),
    fc.array(header, { maxLength: 4 }),
    bulk,
    fc.constantFrom(
      'close',
      'length',
      'length',
      'length',
      'chunked',
      'chunked',
      'chunked',
      'both',
      'te-cl',
      'two-lengths',
      'same-lengths',
      'te-list',
      'te-gzip',
      'zero',
      'longer',
      'shorter',
    ),
    fc.string({ unit: 'binary-ascii', maxLength: 24 }),
    chunked,
    eol,
    after,
  )
  .map(([[pre, v, st, rs], hs, big, framing, data, chunks, nl, tail]) => {
    const lines = [`${v} ${st}${rs}`, ...hs, ...big];
    let body = data;
    if (framing === 'length' || framing === 'longer' || framing === 'shorter') {
      const n = data.length + (framing === 'longer' ? 1 : framing === 'shorter' ? -1 : 0);
      lines.push(`Content-Length: ${Math.max(0, n)}`);
    } else if (framing === 'zero') lines.push('Content-Length: 0');
    else if (framing === 'chunked') {
      lines.push('Transfer-Encoding: chunked');
      body = chunks;
    } else if (framing === 'both') {
      lines.push(`Content-Length: ${data.length}`, 'Transfer-Encoding: chunked');
      body = chunks;
    } else if (framing === 'te-cl') {
      lines.push('Transfer-Encoding: chunked', `Content-Length: ${chunks.length}`);
      body = chunks;
    } else if (framing === 'two-lengths') {
      lines.push(`Content-Length: ${data.length}`, `Content-Length: ${data.length + 1}`);
    } else if (framing === 'same-lengths') {
      lines.push(`Content-Length: ${data.length}`, `Content-Length: ${data.length}`);
    } else if (framing === 'te-list') {
      lines.push('Transfer-Encoding: gzip', 'Transfer-Encoding: chunked');
      body = chunks;
    } else if (framing === 'te-gzip') {
      lines.push('Transfer-Encoding: gzip');
    }
    return `${pre}${lines.join(nl)}${nl}${nl}${body}${tail}`;
  });
