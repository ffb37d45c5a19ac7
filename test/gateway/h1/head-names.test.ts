import { parseRequestHead, parseResponseHead } from '../../../gateway/h1/head.ts';
import { HeadParseError } from '../../../gateway/h1/head-error.ts';

// The head parser takes the field names most messages carry from a table of interned lower-case names
// instead of slicing them; these cases pin that a table hit and a miss give the same headers.

const limits = { maxHeadBytes: 16384, maxHeaders: 100 };
const head = (lines: string[]) => Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');

test('known names in any case are the lower-case names, with their values', () => {
  const h = parseRequestHead(
    head([
      'POST /x HTTP/1.1',
      'HoSt: a.example',
      'CONTENT-LENGTH: 0',
      'X-MESHFED-caller: spiffe://m/x',
      'accept-Encoding: gzip',
      'TraceParent: 00-aa-bb-01',
    ]),
    limits,
  ).headers;
  expect({ ...h }).toEqual({
    host: 'a.example',
    'content-length': '0',
    'x-meshfed-caller': 'spiffe://m/x',
    'accept-encoding': 'gzip',
    traceparent: '00-aa-bb-01',
  });
});

test('names one character away from a known one keep their own name', () => {
  const h = parseRequestHead(
    head([
      'GET / HTTP/1.1',
      'host: a.example',
      'Hosx: 1',
      'hosts: 2',
      'X-Meshfed-Callex: 3',
      'content-lengtH2: 4',
      'accept_encoding: 5',
      'cookie2: 6',
    ]),
    limits,
  ).headers;
  expect({ ...h }).toEqual({
    host: 'a.example',
    hosx: '1',
    hosts: '2',
    'x-meshfed-callex': '3',
    'content-length2': '4',
    accept_encoding: '5',
    cookie2: '6',
  });
});

test('a known name twice in different cases is still one field: merged, or refused for a singleton', () => {
  const merged = parseRequestHead(
    head([
      'GET / HTTP/1.1',
      'host: a.example',
      'Accept: text/html',
      'ACCEPT: */*',
      'Cookie: a=1',
      'cookie: b=2',
    ]),
    limits,
  ).headers;
  expect(merged.accept).toBe('text/html, */*');
  expect(merged.cookie).toBe('a=1; b=2');
  expect(() =>
    parseRequestHead(head(['GET / HTTP/1.1', 'Host: a.example', 'HOST: b.example']), limits),
  ).toThrow(HeadParseError);
  const response = parseResponseHead(
    head(['HTTP/1.1 200 OK', 'Set-Cookie: a=1', 'SET-COOKIE: b=2', 'Content-Length: 0']),
    limits,
    'GET',
  );
  expect(response.headers['set-cookie']).toEqual(['a=1', 'b=2']);
});

test('a bad value after a known name names the field', () => {
  expect(() =>
    parseRequestHead(head(['GET / HTTP/1.1', 'Host: a.example', 'User-Agent: a\x7fb']), limits),
  ).toThrow('invalid-header-value: in user-agent');
});
