// Known response-smuggling and desync cases for the response differential (differential-response.test.ts):
// the bytes a backend answers with, and what meshfed's codec makes of them.

import { LIMITS } from './frame-all.ts';

/** known response-smuggling and desync cases: what meshfed makes of each ('refused', or where it ends) */
export const CORPUS: { m?: string; bytes: string; ours: 'refused' | number }[] = [
  // two framings: CL with TE either way round
  {
    bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    ours: 'refused',
  },
  {
    bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n',
    ours: 'refused',
  },
  // two lengths, different or equal, or a list
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc', ours: 'refused' },
  // lengths that are not 1*DIGIT
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 0x3\r\n\r\nabc', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 3 3\r\n\r\nabc', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nabc', ours: 'refused' },
  // codings other than exactly chunked (node reads `chunked, identity` and `gzip` to the close)
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n', ours: 'refused' },
  {
    bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n',
    ours: 'refused',
  },
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', ours: 'refused' },
  // chunked in an HTTP/1.0 response
  { bytes: 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n', ours: 'refused' },
  // a chunk size past 64 bits, past 2^48, with a sign or a prefix, or padded
  {
    bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff1\r\nabc\r\n0\r\n\r\n',
    ours: 'refused',
  },
  {
    bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000001\r\nabc\r\n0\r\n\r\n',
    ours: 'refused',
  },
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n', ours: 'refused' },
  {
    bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x="a\r\nb"\r\nabc\r\n0\r\n\r\n',
    ours: 'refused',
  },
  // chunk data longer than its size
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n', ours: 'refused' },
  // whitespace before the colon, obs-fold, bare CR and LF, NUL
  { bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\nabc', ours: 'refused' },
  {
    bytes: 'HTTP/1.1 200 OK\r\nX-a: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n',
    ours: 'refused',
  },
  { bytes: 'HTTP/1.1 200 OK\nContent-Length: 0\n\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nX: a\rContent-Length: 0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 200 OK\r\n\x00X: 1\r\nContent-Length: 0\r\n\r\n', ours: 'refused' },
  // status lines node and meshfed must read alike
  { bytes: 'HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n', ours: 'refused' },
  { bytes: 'HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n', ours: 'refused' },
  // a 101 nobody asked for: what follows is not HTTP
  {
    bytes:
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\n\r\n',
    ours: 'refused',
  },
  // a head over the limit
  {
    bytes: `HTTP/1.1 200 OK\r\nX-big: ${'a'.repeat(LIMITS.maxHeadBytes)}\r\nContent-Length: 0\r\n\r\n`,
    ours: 'refused',
  },
  // bytes past the Content-Length (or past a chunked body's end) are no part of the response: the connection
  // is closed after it, never read for the next caller's response
  {
    bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil',
    ours: 41,
  },
  {
    bytes:
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n',
    ours: 60,
  },
  // no body after a 204, a 304 or a HEAD, whatever the framing headers say
  { bytes: 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nevil!', ours: 46 },
  { bytes: 'HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', ours: 57 },
  { m: 'HEAD', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!', ours: 38 },
  { m: 'HEAD', bytes: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', ours: 47 },
  // ...but their Content-Length is still checked, as node does: it is forwarded (found by this test: meshfed
  // passed each of these on)
  { m: 'HEAD', bytes: 'HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n', ours: 'refused' },
  {
    m: 'HEAD',
    bytes: 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n',
    ours: 'refused',
  },
  {
    bytes: 'HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nContent-Length: 26\r\n\r\n',
    ours: 'refused',
  },
  { bytes: 'HTTP/1.1 304 Not Modified\r\nContent-Length: -1\r\n\r\n', ours: 'refused' },
  {
    bytes: 'HTTP/1.1 100 Continue\r\nContent-Length: +3\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n',
    ours: 'refused',
  },
  // an interim response that ends the connection: what follows is no response to this request (found by this
  // test: meshfed read on past it; node refuses, HPE_CLOSED_CONNECTION)
  { bytes: 'HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx', ours: 'refused' },
  {
    bytes:
      'HTTP/1.1 103 Early Hints\r\nConnection: close\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx',
    ours: 'refused',
  },
  // interim responses carry no body, whatever their framing headers say
  {
    bytes:
      'HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc',
    ours: 85,
  },
  // a body delimited by the close
  { bytes: 'HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', ours: 57 },
  { bytes: 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nabc', ours: 46 },
];
