import fc from 'fast-check';
import { eol, fieldLine } from './line-arbitraries.ts';

// The requests the request differential (differential.test.ts) and the emitted-heads test generate: mostly
// well-formed, now and then a method, target, version, field line or framing a parser may take differently.

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
/** a field line of a generated name and value */
export const header = fieldLine(name, value);

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

/**
 * One request: a start line, the given field lines, an optional framing of its own, and a body shaped to fit
 * (or not).
 */
export function requestOf(headers: fc.Arbitrary<string[]>): fc.Arbitrary<string> {
  return fc
    .tuple(
      method,
      target,
      version,
      headers,
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
}

/** one request, of up to four generated field lines */
export const request = requestOf(fc.array(header, { maxLength: 4 }));
