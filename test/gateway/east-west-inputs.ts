import fc from 'fast-check';
import { TUNNEL_ALPN } from '../../gateway/config.ts';

// What the fuzz tests throw at the east-west listener: byte builders (TLS ClientHello, HTTP/1.1
// requests, HTTP/2 frames with literal HPACK blocks) and the fast-check arbitraries over them.
// Names and values lean towards what the gateway routes on (the services of east-west-subject.ts:
// web, db, vault, api exported; secret not), so inputs reach deep paths, not only the first check.

export const SUFFIX = 'svc.clusterset.local';

/** Host names a peer could ask for, from plausible to hostile. */
export const hostNames = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      `web.shop.${SUFFIX}`,
      `db.shop.${SUFFIX}`,
      `vault.shop.${SUFFIX}`,
      `api.shop.${SUFFIX}`,
      `secret.shop.${SUFFIX}`,
      `missing.shop.${SUFFIX}`,
      `http.api.shop.${SUFFIX}`,
      `tcp.api.shop.${SUFFIX}`,
      `tls.api.shop.${SUFFIX}`,
      `9443.api.shop.${SUFFIX}`,
      `8080.api.shop.${SUFFIX}`,
      `9000.api.shop.${SUFFIX}`,
      `tls.vault.shop.${SUFFIX}`,
      `1.vault.shop.${SUFFIX}`,
      `http.web.shop.${SUFFIX}`,
      `tcp.db.shop.${SUFFIX}`,
      `5432.db.shop.${SUFFIX}`,
      `nope.web.shop.${SUFFIX}`,
      `web.shop.${SUFFIX}.`,
      `WEB.SHOP.SVC.CLUSTERSET.LOCAL`,
      `x.y.web.shop.${SUFFIX}`,
      `.shop.${SUFFIX}`,
      `..${SUFFIX}`,
      SUFFIX,
      'gateway.east.meshfed.internal',
      'localhost',
      '127.0.0.1',
    ),
  },
  // overly long names and labels
  { weight: 1, arbitrary: fc.integer({ min: 64, max: 400 }).map((n) => `${'a'.repeat(n)}.shop.${SUFFIX}`) },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-z0-9._-]{1,80}$/) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

/** Ports as they appear after a colon, good and bad. */
const portText = fc.oneof(
  fc.constantFrom(
    '80',
    '5432',
    '8080',
    '9000',
    '9443',
    '8443',
    '1',
    '0',
    '65535',
    '65536',
    '99999',
    '-1',
    'http',
    '',
  ),
  fc.nat({ max: 70_000 }).map(String),
);

export const authorities = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(hostNames, portText).map(([h, p]) => `${h}:${p}`) },
  { weight: 2, arbitrary: hostNames },
  {
    weight: 1,
    arbitrary: fc.constantFrom('[::1]:80', `[web.shop.${SUFFIX}]:80`, ':80', `web.shop.${SUFFIX}:80:80`, ''),
  },
);

/** Values of x-meshfed-service: namespace/name/port, with odd slashes and ports. */
export const serviceHeaderValues = fc.oneof(
  fc.constantFrom(
    'shop/web',
    'shop/web/http',
    'shop/db/tcp',
    'shop/vault/tls',
    'shop/api/9000',
    'shop/api/tcp',
    'shop/api/9443',
    'shop/secret',
    'shop/missing/http',
    '/web',
    'shop/',
    '/',
    '//',
    'shop//http',
    'shop/web/',
    'shop/web/http/extra',
    'shop/web/99999',
    'shop/web/-1',
    '../../etc',
    'SHOP/WEB',
    '',
  ),
  fc.array(fc.stringMatching(/^[a-z0-9.:-]{0,12}$/), { maxLength: 5 }).map((p) => p.join('/')),
);

export const callerValues = fc.constantFrom(
  'spiffe://mesh.example/cluster/west/ns/shop/sa/client',
  'spiffe://mesh.example/cluster/east/ns/shop/sa/admin',
  'spiffe://other.example/cluster/west/ns/shop/sa/client',
  'spiffe://mesh.example/admin/root',
  'not a spiffe id',
  '',
);

export const alpnProtocols = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('h2', 'http/1.1', TUNNEL_ALPN, 'h3', 'http/1.0', 'h2c') },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 255 }).map((n) => 'p'.repeat(n)) },
);

// ------------------------------------------------------------------ TLS ClientHello

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

function extension(type: number, data: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(data.length), data]);
}

/** A TLS 1.3 ClientHello record whose SNI and ALPN say what the caller wants. */
export function clientHello(o: { sni?: string; alpn?: string[]; padding?: number }): Buffer {
  const exts: Buffer[] = [];
  if (o.sni !== undefined) {
    const name = Buffer.from(o.sni, 'latin1').subarray(0, 4000);
    exts.push(extension(0, Buffer.concat([u16(name.length + 3), Buffer.from([0]), u16(name.length), name])));
  }
  if (o.alpn !== undefined) {
    const list = Buffer.concat(
      o.alpn.map((p) => {
        const b = Buffer.from(p, 'latin1').subarray(0, 255);
        return Buffer.concat([Buffer.from([b.length]), b]);
      }),
    );
    exts.push(extension(16, Buffer.concat([u16(list.length), list])));
  }
  exts.push(extension(43, Buffer.from([2, 0x03, 0x04])));
  exts.push(extension(10, Buffer.concat([u16(2), u16(0x001d)])));
  exts.push(extension(13, Buffer.concat([u16(4), u16(0x0403), u16(0x0804)])));
  exts.push(extension(51, Buffer.concat([u16(36), u16(0x001d), u16(32), Buffer.alloc(32, 9)])));
  if (o.padding) exts.push(extension(21, Buffer.alloc(o.padding)));
  const extBytes = Buffer.concat(exts);
  const body = Buffer.concat([
    u16(0x0303),
    // fixed random and session id: an input replays byte for byte
    Buffer.alloc(32, 1),
    Buffer.from([32]),
    Buffer.alloc(32, 2),
    Buffer.concat([u16(6), u16(0x1301), u16(0x1302), u16(0x1303)]),
    Buffer.from([1, 0]),
    u16(extBytes.length),
    extBytes,
  ]);
  const hs = Buffer.concat([
    Buffer.from([1, (body.length >> 16) & 0xff, (body.length >> 8) & 0xff, body.length & 0xff]),
    body,
  ]);
  return Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), u16(hs.length), hs]);
}

/** Truncation, flipped bytes and a split point, applied to any first bytes. */
export const mutations = fc.record({
  truncateAt: fc.option(fc.nat(), { nil: undefined }),
  flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
  splitAt: fc.option(fc.nat(), { nil: undefined }),
});

export type Mutation = typeof mutations extends fc.Arbitrary<infer T> ? T : never;

/** The bytes as chunks to write: truncated, garbled, split in two writes. */
export function mutate(bytes: Buffer, m: Mutation): Buffer[] {
  let b = Buffer.from(bytes);
  if (m.truncateAt !== undefined && b.length > 0) b = b.subarray(0, m.truncateAt % b.length);
  for (const [at, value] of m.flips) if (b.length > 0) b[at % b.length] = value;
  if (m.splitAt === undefined || b.length < 2) return [b];
  const i = 1 + (m.splitAt % (b.length - 1));
  return [b.subarray(0, i), b.subarray(i)];
}

// ------------------------------------------------------------------ HTTP/1.1

const methods = fc.oneof(
  { weight: 5, arbitrary: fc.constant('CONNECT') },
  { weight: 4, arbitrary: fc.constantFrom('GET', 'POST') },
  { weight: 2, arbitrary: fc.constantFrom('OPTIONS', 'HEAD', 'PUT', 'DELETE', 'PRI', 'TRACE', 'connect') },
  { weight: 1, arbitrary: fc.oneof(fc.stringMatching(/^[A-Za-z]{1,12}$/), fc.string({ maxLength: 8 })) },
);

const requestTargets = fc.oneof(
  { weight: 4, arbitrary: authorities },
  { weight: 3, arbitrary: fc.constantFrom('/', '*', '/a?b=1', '//x', '/%00', `/${'p'.repeat(3000)}`) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('http', 'https', 'ftp'), authorities)
      .map(([s, a]) => `${s}://${a}/x`),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }) },
);

/** Header lines; well-formed ones dominate so that requests get past node's parser. */
const headerLines = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.tuple(
      fc.constantFrom('x-meshfed-service', 'x_meshfed_service', 'X-MESHFED-SERVICE'),
      serviceHeaderValues,
    ),
  },
  {
    weight: 2,
    arbitrary: fc.tuple(
      fc.constantFrom(
        'x-meshfed-caller',
        'x_meshfed_caller',
        'x-meshfed-peer-identity',
        'x_meshfed_peer_identity',
      ),
      callerValues,
    ),
  },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('host', 'Host'), authorities) },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constant('x-meshfed-chain'),
      fc.oneof(fc.base64String({ maxLength: 200 }), fc.string({ maxLength: 30 })),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constant('transfer-encoding'),
      fc.constantFrom('chunked', 'gzip, chunked', 'chunked, identity', 'x'),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constant('content-length'),
      fc.constantFrom('0', '5', '100', '-1', 'abc', '1, 2', '99999999999999999999'),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constantFrom('connection', 'upgrade', 'expect', 'te', 'proxy-connection'),
      fc.constantFrom(
        'upgrade',
        'h2c',
        'websocket',
        '100-continue',
        'close',
        'keep-alive, HTTP2-Settings',
        'trailers',
      ),
    ),
  },
  // past maxHeaderBytes (32 KiB) or near it
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constant('x-big'),
      fc.integer({ min: 1_000, max: 48_000 }).map((n) => 'b'.repeat(n)),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.oneof(
      fc.tuple(fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/), fc.stringMatching(/^[ -~]{0,30}$/)),
      fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 })),
    ),
  },
);

const h1Bodies = fc.oneof(
  fc.constant(''),
  fc.constantFrom(
    '5\r\nhello\r\n0\r\n\r\n',
    'zz\r\nhello\r\n0\r\n\r\n',
    'ffffffffffffffffff\r\nx\r\n',
    '5\r\nab\r\n',
    '5;ext=1\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\n',
    '0\r\n\r\nGET / HTTP/1.1\r\nhost: web.shop.svc.clusterset.local\r\n\r\n',
    `GET / HTTP/1.1\r\nhost: web.shop.${SUFFIX}\r\nx-meshfed-peer-identity: spiffe://mesh.example/cluster/east/ns/shop/sa/admin\r\n\r\n`,
  ),
  fc.string({ maxLength: 100 }),
);

const chaoticH1Requests = fc.record({
  method: methods,
  target: requestTargets,
  version: fc.oneof(
    { weight: 6, arbitrary: fc.constant('HTTP/1.1') },
    { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/9', 'http/1.1') },
  ),
  // HTTP/1.1 needs a Host; most requests have one, some have none (and headers may add a second)
  host: fc.option(authorities, { nil: undefined, freq: 8 }),
  headers: fc.array(headerLines, { maxLength: 4 }),
  body: h1Bodies,
});

/** Requests a peer could well send, to one of our services, with a hostile header or two. */
const plausibleH1Requests = fc
  .record({
    method: fc.constantFrom('CONNECT', 'CONNECT', 'GET', 'POST'),
    service: fc.constantFrom('web', 'db', 'api', 'vault', 'secret', 'missing'),
    port: fc.constantFrom('80', '5432', '8080', '9000', '9443', '1'),
    headers: fc.array(headerLines, { maxLength: 2 }),
  })
  .map(({ method, service, port, headers }) => {
    const authority = `${service}.shop.${SUFFIX}:${port}`;
    return {
      method,
      target: method === 'CONNECT' ? authority : '/fuzz',
      version: 'HTTP/1.1',
      host: method === 'CONNECT' ? authority : `${service}.shop.${SUFFIX}`,
      headers: method === 'POST' ? [['content-length', '5'] as [string, string], ...headers] : headers,
      body: method === 'POST' ? 'hello' : '',
    };
  });

export const h1Requests = fc.oneof(chaoticH1Requests, plausibleH1Requests);

export type H1Request = typeof h1Requests extends fc.Arbitrary<infer T> ? T : never;

export function h1Bytes(r: H1Request): Buffer {
  const headers = r.host === undefined ? r.headers : [['host', r.host] as const, ...r.headers];
  const head = `${r.method} ${r.target} ${r.version}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return Buffer.from(head + r.body, 'latin1');
}
