import fc from 'fast-check';
import { authorities, callerValues, SUFFIX, serviceHeaderValues } from './east-west-inputs.ts';

// What the fuzz tests throw at the east-west listener over HTTP/2: frames with literal HPACK blocks, header sets
// and the actions of a client session, as fast-check arbitraries (the TLS and HTTP/1.1 inputs, and the names
// these lean towards, are in east-west-inputs.ts).

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export function frame(type: number, flags: number, streamId: number, payload: Uint8Array): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length & 0xffffff, 0, 3);
  h[3] = type & 0xff;
  h[4] = flags & 0xff;
  h.writeUInt32BE(streamId >>> 0, 5);
  return Buffer.concat([h, payload]);
}

function hpackInt(value: number, prefixBits: number, first: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A header block of literal fields without indexing, no Huffman: any names, order and duplicates. */
export function hpackBlock(fields: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(
    fields.flatMap(([name, value]) => {
      const n = Buffer.from(name, 'latin1');
      const v = Buffer.from(value, 'latin1');
      return [Buffer.from([0]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v];
    }),
  );
}

const meshfedHeaders = fc.record(
  {
    'x-meshfed-service': serviceHeaderValues,
    'x-meshfed-caller': callerValues,
    x_meshfed_peer_identity: callerValues,
    // WEST_CHAIN stands for west's real intermediate, as a peer gateway sends it
    'x-meshfed-chain': fc.oneof(
      { weight: 3, arbitrary: fc.constant('WEST_CHAIN') },
      { weight: 1, arbitrary: fc.oneof(fc.base64String({ maxLength: 120 }), fc.constant(',,,')) },
    ),
  },
  { requiredKeys: [] },
);

/**
 * HTTP/2 header sets: mostly well-formed requests and CONNECTs (so they reach the gateway's own
 * code, not only nghttp2's checks) with hostile values, some with a pseudo-header missing or odd.
 */
export const h2HeaderSets = fc
  .tuple(
    fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          ':method': fc.constantFrom('GET', 'POST', 'OPTIONS', 'DELETE'),
          ':scheme': fc.constant('https'),
          ':path': fc.constantFrom('/fuzz', '/', '/status/500', '/a?b=c'),
          ':authority': authorities,
        }),
      },
      { weight: 3, arbitrary: fc.record({ ':method': fc.constant('CONNECT'), ':authority': authorities }) },
      {
        weight: 1,
        arbitrary: fc.record(
          {
            ':method': fc.oneof(
              fc.constantFrom('CONNECT', 'GET', 'connect'),
              fc.stringMatching(/^[A-Z]{1,8}$/),
            ),
            ':scheme': fc.constantFrom('https', 'http', 'ftp', ''),
            ':path': fc.constantFrom('/', '*', '', 'x', 'http://web.shop.svc.clusterset.local/'),
            ':authority': authorities,
            ':protocol': fc.constantFrom('websocket', 'connect-udp'),
          },
          { requiredKeys: [] },
        ),
      },
    ),
    meshfedHeaders,
  )
  .map(([pseudo, meshfed]) => ({ ...pseudo, ...meshfed }) as Record<string, string>);

export type H2HeaderSet = Record<string, string>;

/** Raw frames after the preface, some random, some well-formed HEADERS with hostile fields. */
export const rawFrames = fc.array(
  fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('headers' as const),
        streamId: fc.constantFrom(1, 3, 5, 2, 0, 0x7fffffff),
        endStream: fc.boolean(),
        fields: fc.tuple(
          h2HeaderSets,
          fc.array(fc.tuple(fc.stringMatching(/^[a-zA-Z:_-]{1,12}$/), fc.string({ maxLength: 20 })), {
            maxLength: 3,
          }),
        ),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('random' as const),
        type: fc.integer({ min: 0, max: 12 }),
        flags: fc.integer({ min: 0, max: 255 }),
        streamId: fc.oneof(fc.constantFrom(0, 1, 3), fc.nat()),
        payload: fc.uint8Array({ maxLength: 64 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('rst' as const),
        streamId: fc.constantFrom(1, 3, 5, 7),
        code: fc.integer({ min: 0, max: 20 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('window' as const),
        streamId: fc.constantFrom(0, 1, 3),
        increment: fc.oneof(fc.constantFrom(0, 1, 0x7fffffff), fc.nat()),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('settings' as const),
        entries: fc.array(fc.tuple(fc.integer({ min: 0, max: 10 }), fc.nat()), { maxLength: 4 }),
      }),
    },
  ),
  { minLength: 1, maxLength: 6 },
);

export type RawFrame = typeof rawFrames extends fc.Arbitrary<(infer T)[]> ? T : never;

export function rawFrameBytes(f: RawFrame, westChain: string): Buffer {
  switch (f.kind) {
    case 'headers': {
      const [set, extra] = f.fields;
      const fields = [
        ...Object.entries(set).map(([k, v]) => [k, v === 'WEST_CHAIN' ? westChain : v] as const),
        ...extra,
      ];
      return frame(1, 0x4 | (f.endStream ? 0x1 : 0), f.streamId, hpackBlock(fields));
    }
    case 'random':
      return frame(f.type, f.flags, f.streamId, f.payload);
    case 'rst': {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(f.code);
      return frame(3, 0, f.streamId, p);
    }
    case 'window': {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(f.increment >>> 0);
      return frame(8, 0, f.streamId, p);
    }
    case 'settings': {
      const p = Buffer.alloc(6 * f.entries.length);
      f.entries.forEach(([id, value], i) => {
        p.writeUInt16BE(id, i * 6);
        p.writeUInt32BE(value >>> 0, i * 6 + 2);
      });
      return frame(4, 0, 0, p);
    }
  }
}

/** What an HTTP/2 client session does, through node's client (which refuses some header sets itself). */
export const h2Actions = fc.array(
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('request' as const),
        headers: h2HeaderSets,
        body: fc.option(
          fc.oneof(
            fc.uint8Array({ maxLength: 200 }),
            fc.constant(
              Buffer.from(
                `GET / HTTP/1.1\r\nhost: web.shop.${SUFFIX}\r\nx-meshfed-peer-identity: spiffe://mesh.example/cluster/east/ns/shop/sa/admin\r\n\r\n`,
              ),
            ),
          ),
          { nil: undefined },
        ),
        endStream: fc.boolean(),
        // a reset right after the HEADERS, sometimes: usually the answer is what reaches the code
        rst: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('rst-storm' as const),
        // bounded: the gateway's rapid-reset guard trips past 200 a second, which is a fine outcome
        count: fc.integer({ min: 1, max: 250 }),
        method: fc.constantFrom('GET', 'CONNECT'),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('settings' as const),
        settings: fc.record(
          {
            headerTableSize: fc.nat({ max: 2 ** 32 - 1 }),
            enablePush: fc.boolean(),
            initialWindowSize: fc.nat({ max: 2 ** 31 - 1 }),
            maxFrameSize: fc.integer({ min: 16_384, max: 2 ** 24 - 1 }),
            maxConcurrentStreams: fc.nat({ max: 2 ** 32 - 1 }),
            maxHeaderListSize: fc.nat({ max: 2 ** 32 - 1 }),
          },
          { requiredKeys: [] },
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('window' as const), size: fc.nat({ max: 2 ** 31 - 1 }) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('goaway' as const), code: fc.integer({ min: 0, max: 13 }) }),
    },
  ),
  { minLength: 1, maxLength: 4 },
);

export type H2Action = typeof h2Actions extends fc.Arbitrary<(infer T)[]> ? T : never;
