import http2 from 'node:http2';
import type { TLSSocket } from 'node:tls';
import fc from 'fast-check';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import { waitFor } from '../../core/index.ts';
import { TUNNEL_ALPN } from '../../gateway/config.ts';
import {
  exchange,
  h2Request,
  h2Session,
  type Outcome,
  rawExchange,
  type TlsOffer,
  tlsConnect,
} from './east-west-clients.ts';
import {
  alpnProtocols,
  clientHello,
  h1Bytes,
  h1Requests,
  hostNames,
  mutate,
  mutations,
} from './east-west-inputs.ts';
import {
  frame,
  H2_PREFACE,
  type H2Action,
  type H2HeaderSet,
  h2Actions,
  type RawFrame,
  rawFrameBytes,
  rawFrames,
} from './east-west-inputs-h2.ts';
import { GatewayUnderTest } from './east-west-subject.ts';

// Issue 11: no input on the east-west listener kills the gateway. The gateway is a real daemon in a
// child process, so a crash shows as that process exiting. After every input its admin listener
// must answer; between batches it must still serve a peer gateway's tunnel request, a third-party
// mTLS request and an egress request ("survives" means still works, not only still has a pid).
// Refusals, resets, TLS alerts and silence until a deadline are all fine answers to hostile input.
//
// The inputs are fast-check's, from a fixed seed (MESHFED_FUZZ_SEED overrides it); a failure
// prints the seed, the batch and the shrunk counterexample, so it replays. A killed gateway is
// started again (same CA, same ports) before the next input, so shrinking judges each input alone.

const SEED = Number(process.env.MESHFED_FUZZ_SEED ?? 20_261_205);

let nats: NatsServerProcess;
let gw: GatewayUnderTest;
const outcomes = new Map<string, number>();

function count(category: string, outcome: Outcome | string): void {
  const key = `${category}: ${outcome}`;
  outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
}

beforeAll(async () => {
  nats = await startNatsServer({ name: 'east-west-fuzz' });
  gw = await GatewayUnderTest.start(nats.url);
  await gw.checkServes();
}, 60_000);

afterAll(async () => {
  const refused =
    gw && !gw.dead() ? (await gw.metrics().catch(() => undefined))?.get('meshfed_refused_total') : undefined;
  const reasons = (refused ?? [])
    .filter((r) => r.labels.listener === 'eastWest')
    .map((r) => `${r.labels.reason}=${r.value}`)
    .join(' ');
  const seen = [...outcomes].map(([k, n]) => `  ${k}: ${n}`).join('\n');
  const deaths = gw?.deaths.map((d) => {
    const lines = d.tail.split('\n');
    const error = lines.findIndex((l) => /^\w*Error\b/.test(l));
    return `  ${d.input}\n    ${(error === -1 ? lines.slice(-3) : lines.slice(error, error + 3)).join('\n    ')}`;
  });
  console.log(
    `east-west fuzz, seed ${SEED}\noutcomes:\n${seen}\nrefused on east-west (since the last start): ${reasons}\n${deaths?.length ? `the gateway died ${deaths.length} time(s):\n${deaths.join('\n')}` : 'the gateway never died'}`,
  );
  await gw?.stop();
  await nats?.stop();
});

/**
 * Runs `batches` fast-check batches of `runs` inputs each, bounded in time per batch; after each
 * input the gateway must be alive, after each batch it must still serve.
 */
async function fuzz<T>(
  category: string,
  arbitrary: fc.Arbitrary<T>,
  send: (input: T) => Promise<Outcome | string>,
  o: { batches: number; runs: number; timeLimitMs: number },
): Promise<void> {
  for (let batch = 0; batch < o.batches; batch++) {
    const seed = SEED + batch;
    try {
      await fc.assert(
        fc.asyncProperty(arbitrary, async (input) => {
          await gw.ensureRunning();
          gw.current = `${category}: ${fc.stringify(input).slice(0, 1_500)}`;
          count(category, await send(input));
          const dead = await gw.checkAlive();
          if (dead) throw new Error(dead);
        }),
        { seed, numRuns: o.runs, interruptAfterTimeLimit: o.timeLimitMs, markInterruptAsFailure: false },
      );
    } catch (err) {
      (err as Error).message =
        `east-west fuzz "${category}" batch ${batch} (seed ${seed}; MESHFED_FUZZ_SEED=${SEED} replays it)\n${(err as Error).message}`;
      throw err;
    }
    await gw.checkServes();
  }
}

type IdentityName = 'westGateway' | 'westWorkload' | 'eastWorkload' | 'foreignGateway' | 'none';

/** Mostly certificates that pass the handshake (they reach the request paths), some that do not. */
const identities = fc.oneof(
  { weight: 3, arbitrary: fc.constant<IdentityName>('westGateway') },
  { weight: 2, arbitrary: fc.constant<IdentityName>('westWorkload') },
  { weight: 1, arbitrary: fc.constantFrom<IdentityName>('eastWorkload', 'foreignGateway', 'none') },
);

function offer(
  identity: IdentityName,
  alpn: readonly string[] | undefined,
  servername: string | undefined,
): TlsOffer {
  const id = identity === 'none' ? undefined : gw.ids[identity];
  return {
    ...(alpn ? { alpn: [...alpn] } : {}),
    ...(servername ? { servername } : {}),
    ...(id ? { identity: id } : {}),
  };
}

test.each([
  ['a workload certificate of another cluster', 'westWorkload'],
  ['a gateway certificate of another cluster', 'westGateway'],
] as const)(
  'an HTTP/1.1 CONNECT over the east-west listener does not kill the gateway (%s)',
  async (_, id) => {
    await gw.ensureRunning();
    gw.current = `HTTP/1.1 CONNECT with ${id}`;
    const c = await tlsConnect(
      gw.eastWest,
      gw.ids.rootPem,
      { alpn: ['http/1.1'], servername: 'web.shop.svc.clusterset.local', identity: gw.ids[id] },
      5_000,
    );
    // an answer, a close, or silence until the deadline is the gateway's choice, and one that no
    // longer offers http/1.1 on this listener refuses the handshake: it must only survive
    if ('socket' in c) {
      await exchange(
        c.socket,
        [
          Buffer.from(
            'CONNECT db.shop.svc.clusterset.local:5432 HTTP/1.1\r\nhost: db.shop.svc.clusterset.local:5432\r\n\r\n',
          ),
        ],
        5_000,
      );
    }
    expect(await gw.checkAlive()).toBeUndefined();
    await gw.checkServes();
  },
);

// ------------------------------------------------------------------ a) first bytes on raw TCP

const firstBytes = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('random' as const), bytes: fc.uint8Array({ maxLength: 600 }) }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('hello' as const),
      sni: fc.option(hostNames, { nil: undefined }),
      alpn: fc.option(fc.array(alpnProtocols, { maxLength: 4 }), { nil: undefined }),
      padding: fc.option(fc.oneof(fc.nat({ max: 600 }), fc.integer({ min: 16_000, max: 20_000 })), {
        nil: undefined,
      }),
      mutation: mutations,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('record' as const),
      head: fc.tuple(
        fc.constantFrom(0x16, 0x17, 0x15),
        fc.integer({ min: 0, max: 4 }),
        fc.nat({ max: 0xffff }),
      ),
      rest: fc.uint8Array({ maxLength: 64 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('http' as const), request: h1Requests }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('h2' as const), frames: rawFrames, mutation: mutations }),
  },
);

type FirstBytes = typeof firstBytes extends fc.Arbitrary<infer T> ? T : never;

function firstChunks(input: FirstBytes): Buffer[] {
  switch (input.kind) {
    case 'random':
      return [Buffer.from(input.bytes)];
    case 'hello':
      return mutate(
        clientHello({
          ...(input.sni !== undefined ? { sni: input.sni } : {}),
          ...(input.alpn !== undefined ? { alpn: input.alpn } : {}),
          ...(input.padding !== undefined ? { padding: input.padding } : {}),
        }),
        input.mutation,
      );
    case 'record': {
      const [type, minor, length] = input.head;
      const h = Buffer.from([type, 3, minor, length >> 8, length & 0xff]);
      return [Buffer.concat([h, input.rest])];
    }
    case 'http':
      return [h1Bytes(input.request)];
    case 'h2':
      return mutate(
        Buffer.concat([H2_PREFACE, ...input.frames.map((f: RawFrame) => rawFrameBytes(f, ''))]),
        input.mutation,
      );
  }
}

test('a) no first bytes on the east-west port (random, garbled ClientHellos, HTTP, the h2 preface) kill the gateway', async () => {
  await fuzz(
    'first bytes',
    firstBytes,
    async (input) =>
      (await rawExchange(gw.eastWest, firstChunks(input), { halfClose: true, deadlineMs: 3_000 })).outcome,
    { batches: 2, runs: 50, timeLimitMs: 8_000 },
  );
}, 60_000);

// ------------------------------------------------------------------ b) TLS, then HTTP/1.1

// the east-west listener offers h2 and http/1.1; without the tunnel ALPN it terminates TLS only for
// an SNI naming an exported service without a tls port: most offers are ones it accepts
const tlsAlpn = fc.oneof(
  { weight: 3, arbitrary: fc.constant(['http/1.1']) },
  { weight: 2, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.constant([TUNNEL_ALPN, 'http/1.1']) },
  { weight: 2, arbitrary: fc.constantFrom(['h2'], ['http/1.1', 'h2'], [TUNNEL_ALPN], ['h3']) },
);
const tlsNames = fc.oneof(
  { weight: 4, arbitrary: fc.constant('web.shop.svc.clusterset.local') },
  { weight: 1, arbitrary: fc.constant('db.shop.svc.clusterset.local') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '8080.api.shop.svc.clusterset.local',
      'http.api.shop.svc.clusterset.local',
      'api.shop.svc.clusterset.local',
      'vault.shop.svc.clusterset.local',
      'secret.shop.svc.clusterset.local',
      'gateway.east.meshfed.internal',
      undefined,
    ),
  },
);

test('b) no HTTP/1.1 request after a completed TLS handshake (any certificate, any ALPN) kills the gateway', async () => {
  await fuzz(
    'tls + http/1.1',
    fc.record({ identity: identities, alpn: tlsAlpn, servername: tlsNames, request: h1Requests }),
    async (input) => {
      const c = await tlsConnect(
        gw.eastWest,
        gw.ids.rootPem,
        offer(input.identity, input.alpn, input.servername),
        3_000,
      );
      if (!('socket' in c)) return `handshake ${c.outcome} (${input.identity})`;
      const r = await exchange(c.socket, [h1Bytes(input.request)], 1_500);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(r.head)?.[1];
      return status ? `${c.alpn} ${status}` : `${c.alpn} ${r.outcome}`;
    },
    { batches: 2, runs: 50, timeLimitMs: 10_000 },
  );
}, 60_000);

// ------------------------------------------------------------------ c) HTTP/2 sessions

function h2Headers(set: H2HeaderSet): http2.OutgoingHttpHeaders {
  const h: http2.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(set)) h[k] = v === 'WEST_CHAIN' ? gw.ids.westChainB64 : v;
  return h;
}

function ping(session: http2.ClientHttp2Session, deadlineMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, deadlineMs);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    try {
      if (!session.ping(done)) done();
    } catch {
      done();
    }
  });
}

async function act(session: http2.ClientHttp2Session, a: H2Action): Promise<string> {
  switch (a.kind) {
    case 'request': {
      const r = await h2Request(session, h2Headers(a.headers), {
        ...(a.body ? { body: a.body } : {}),
        endStream: a.endStream,
        rst: a.rst,
        deadlineMs: 1_000,
      });
      return r.status ? `${r.status}` : r.outcome;
    }
    case 'rst-storm': {
      for (let i = 0; i < a.count && !session.destroyed && !session.closed; i++) {
        try {
          const s = session.request(
            a.method === 'CONNECT'
              ? { ':method': 'CONNECT', ':authority': 'db.shop.svc.clusterset.local:5432' }
              : {
                  ':path': '/',
                  ':authority': 'web.shop.svc.clusterset.local',
                  'x-meshfed-service': 'shop/web/http',
                },
            { endStream: a.method !== 'CONNECT' },
          );
          s.on('error', () => undefined);
          s.close(http2.constants.NGHTTP2_CANCEL);
        } catch {
          return 'client-error';
        }
      }
      await ping(session, 1_000);
      return session.destroyed ? 'storm: session closed' : 'storm: session open';
    }
    case 'settings':
      try {
        session.settings(a.settings);
      } catch {
        return 'client-error';
      }
      return 'settings';
    case 'window':
      try {
        session.setLocalWindowSize(a.size);
      } catch {
        return 'client-error';
      }
      return 'window';
    case 'goaway':
      session.goaway(a.code);
      return 'goaway';
  }
}

/** Preface, frames and a PING: the PING's ACK says the gateway has read everything before it. */
function rawSession(c: { socket: TLSSocket }, frames: RawFrame[]): Promise<string> {
  const marker = Buffer.from('meshfed!');
  const bytes = Buffer.concat([
    H2_PREFACE,
    frame(4, 0, 0, Buffer.alloc(0)),
    ...frames.map((f) => rawFrameBytes(f, gw.ids.westChainB64)),
    frame(6, 0, 0, marker),
  ]);
  return new Promise((resolve) => {
    let seen = Buffer.alloc(0);
    const finish = (how: string) => {
      clearTimeout(timer);
      c.socket.destroy();
      resolve(how);
    };
    const timer = setTimeout(() => finish('timeout'), 1_500);
    c.socket.on('data', (d: Buffer) => {
      seen = Buffer.concat([seen, d]).subarray(-4_096);
      if (seen.includes(marker)) finish('ping acked');
    });
    c.socket.on('error', () => finish('reset'));
    c.socket.on('close', () => finish('closed'));
    c.socket.write(bytes);
  });
}

const h2Inputs = fc.record({
  identity: fc.constantFrom<IdentityName>(
    'westGateway',
    'westGateway',
    'westGateway',
    'westWorkload',
    'eastWorkload',
  ),
  // what the tunnel pool offers, mostly; h2 alone needs the SNI of an exported HTTP service
  alpn: fc.constantFrom([TUNNEL_ALPN, 'h2'], [TUNNEL_ALPN, 'h2'], ['h2'], [TUNNEL_ALPN, 'http/1.1', 'h2']),
  servername: fc.constantFrom(
    'gateway.east.meshfed.internal',
    'web.shop.svc.clusterset.local',
    'db.shop.svc.clusterset.local',
  ),
  session: fc.oneof(
    fc.record({ kind: fc.constant('client' as const), actions: h2Actions }),
    fc.record({ kind: fc.constant('raw' as const), frames: rawFrames }),
  ),
});

test('c) no HTTP/2 session (odd HEADERS and CONNECTs, reset storms, settings, raw frames) kills the gateway', async () => {
  await fuzz(
    'h2',
    h2Inputs,
    async (input) => {
      const c = await tlsConnect(
        gw.eastWest,
        gw.ids.rootPem,
        offer(input.identity, input.alpn, input.servername),
        3_000,
      );
      if (!('socket' in c)) return `handshake ${c.outcome} (${input.identity})`;
      if (input.session.kind === 'raw') return `raw: ${await rawSession(c, input.session.frames)}`;
      const session = h2Session(c.socket);
      const results: string[] = [];
      for (const a of input.session.actions) {
        // after our GOAWAY node's client opens no stream and answers no PING: nothing more to send
        if (session.destroyed || session.closed || results.at(-1) === 'goaway') break;
        results.push(await act(session, a));
      }
      // the PING's answer says the gateway has read all we sent before we hang up
      if (results.at(-1) !== 'goaway') await ping(session, 1_000);
      session.destroy();
      return `client: ${results.at(-1) ?? 'closed'}`;
    },
    { batches: 2, runs: 50, timeLimitMs: 10_000 },
  );
}, 60_000);

type Samples = Map<string, { labels: Record<string, string>; value: number }[]>;

/** the gateway's open client connections over all its listeners, from a scrape */
function connectionsIn(m: Samples): number | undefined {
  const samples = m.get('meshfed_active_connections');
  return samples?.reduce((n, s) => n + s.value, 0);
}

/** the listeners holding connections, e.g. `eastWest=1` (meshfed_active_connections' listener label) */
function listenersHolding(m: Samples): string {
  const held = (m.get('meshfed_active_connections') ?? []).filter((s) => s.value > 0);
  return held.map((s) => `${s.labels.listener}=${s.value}`).join(', ') || 'none';
}

/** the gateway's open client connections: 0 once it has let go of every connection a test opened */
async function activeConnections(): Promise<number | undefined> {
  return connectionsIn(await gw.metrics());
}

/** true once the gateway holds no connection (within 15 s), else what it still holds */
function noneOpen(what: string): Promise<true | string> {
  return waitFor(async () => ((await activeConnections()) === 0 ? true : undefined), {
    timeoutMs: 15_000,
    intervalMs: 100,
    what,
  }).catch(async (err: Error) => `${err.message}: ${listenersHolding(await gw.metrics())} open`);
}

test('regression: a request refused with its session, then a frame that breaks HTTP/2, leaves no connection behind', async () => {
  // found with MESHFED_FUZZ_SEED=1207102: a workload that speaks as a peer gateway is refused (peer-identity)
  // and its session closed gracefully (GOAWAY); node 24 reads nothing more on a session after its GOAWAY
  // once a frame breaks the protocol (here HEADERS on an even stream, padded past its payload), so only
  // the gateway's bound on a graceful close lets the connection go (gateway/session-close.ts)
  await gw.ensureRunning();
  expect(await noneOpen('no open connection before the input')).toBe(true);
  const c = await tlsConnect(
    gw.eastWest,
    gw.ids.rootPem,
    offer('westWorkload', ['h2'], 'web.shop.svc.clusterset.local'),
    3_000,
  );
  if (!('socket' in c)) throw new Error(`handshake ${c.outcome}`);
  const frames: RawFrame[] = [
    {
      kind: 'headers',
      streamId: 1,
      endStream: true,
      fields: [
        {
          ':method': 'POST',
          ':scheme': 'https',
          ':path': '/',
          ':authority': 'web.shop.svc.clusterset.local',
          'x-meshfed-caller': 'spiffe://mesh.example/cluster/west/ns/shop/sa/client',
          'x-meshfed-chain': 'WEST_CHAIN',
        },
        [],
      ],
    },
    { kind: 'random', type: 1, flags: 0x9c, streamId: 2, payload: Uint8Array.from([127]) },
  ];
  await rawSession(c, frames);
  const refused = (await gw.metrics())
    .get('meshfed_refused_total')
    ?.find((r) => r.labels.listener === 'eastWest' && r.labels.reason === 'peer-identity');
  expect(refused?.value ?? 0).toBeGreaterThan(0);
  // the client is gone: the gateway must close its side within the graceful close's bound (5 s)
  expect(await noneOpen('the refused connection to be let go')).toBe(true);
}, 45_000);

test('regression: requests refused with their sessions while their streams are open, the clients gone, leave no connection behind', async () => {
  // found with MESHFED_FUZZ_SEED=1208281: a workload of the gateway's own cluster on the tunnel ALPN, HEADERS
  // without END_STREAM (refused peer-identity, the session closed gracefully), a PING, and the client gone once
  // it is answered. node ends, but never destroys, the socket of a session closed gracefully, and emits the
  // session's 'close' only when that socket closes: a few such connections in sixty stayed open for good (one
  // slot of limits.maxConnections each). The graceful close's bound now takes the connection with the session.
  await gw.ensureRunning();
  expect(await noneOpen('no open connection before the input')).toBe(true);
  const request: RawFrame = {
    kind: 'headers',
    streamId: 3,
    endStream: false,
    fields: [
      {
        ':method': 'GET',
        ':scheme': 'https',
        ':path': '/fuzz',
        ':authority': 'db.shop.svc.clusterset.local',
        'x-meshfed-caller': 'spiffe://mesh.example/admin/root',
      },
      [],
    ],
  };
  for (let i = 0; i < 60; i++) {
    const c = await tlsConnect(
      gw.eastWest,
      gw.ids.rootPem,
      offer('eastWorkload', [TUNNEL_ALPN, 'h2'], 'db.shop.svc.clusterset.local'),
      3_000,
    );
    if (!('socket' in c)) throw new Error(`handshake ${c.outcome}`);
    await rawSession(c, [request]);
  }
  expect(await noneOpen('the refused connections to be let go')).toBe(true);
}, 60_000);

test('after the fuzz, the gateway holds no connection or request the fuzzer opened', async () => {
  await gw.ensureRunning();
  // every fuzz client is closed by now: what the gateway still counts, it leaked
  const settled = await waitFor(
    async () => {
      const m = await gw.metrics();
      const connections = connectionsIn(m);
      const requests = m.get('meshfed_active_requests')?.[0]?.value;
      return connections === 0 && requests === 0 ? true : undefined;
    },
    { timeoutMs: 10_000, intervalMs: 100, what: 'no open connections and no requests in flight' },
  ).catch(async (err: Error) => {
    const m = await gw.metrics();
    return `${err.message}: meshfed_active_connections ${connectionsIn(m)} (${listenersHolding(m)}), meshfed_active_requests ${m.get('meshfed_active_requests')?.[0]?.value}`;
  });
  expect(settled).toBe(true);
  await gw.checkServes();
}, 30_000);
