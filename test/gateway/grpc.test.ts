import * as grpc from '@grpc/grpc-js';
import { waitFor } from '../../core/index.ts';
import { createMesh, httpService, type Mesh, type TestGateway, TRUST_DOMAIN } from './harness.ts';

// The real @grpc/grpc-js client and server, two gateways between them: alpha's egress (h2c), the
// pooled mTLS tunnel, beta's local h2c connection to the server.

interface Msg {
  text: string;
  seq?: number;
}

const json = {
  serialize: (m: Msg) => Buffer.from(JSON.stringify(m)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as Msg,
};

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/meshfed.test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  };
}

const ECHO = {
  Unary: method('Unary', false, false),
  Count: method('Count', false, true),
  Chat: method('Chat', true, true),
} satisfies grpc.ServiceDefinition;

type EchoClient = grpc.Client & {
  Unary(m: Msg, md: grpc.Metadata, o: grpc.CallOptions, cb: grpc.requestCallback<Msg>): grpc.ClientUnaryCall;
  Count(m: Msg, md?: grpc.Metadata): grpc.ClientReadableStream<Msg>;
  Chat(md?: grpc.Metadata): grpc.ClientDuplexStream<Msg, Msg>;
};

let mesh: Mesh;
let a: TestGateway;
let b: TestGateway;
let server: grpc.Server;
let client: EchoClient;
let cancelled = 0;
const seenMetadata: grpc.Metadata[] = [];

function trailer(pairs: Record<string, string>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(pairs)) md.set(k, v);
  return md;
}

beforeAll(async () => {
  server = new grpc.Server();
  server.addService(ECHO, {
    Unary(call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) {
      seenMetadata.push(call.metadata);
      const text = call.request.text;
      if (text === 'missing') {
        cb({
          code: grpc.status.NOT_FOUND,
          details: 'no such thing',
          metadata: trailer({ 'x-why': 'missing' }),
        });
        return;
      }
      if (text === 'hang') {
        call.on('cancelled', () => cancelled++);
        return;
      }
      call.sendMetadata(trailer({ 'x-echo': String(call.metadata.get('x-req')[0] ?? '') }));
      cb(null, { text: `echo ${text}` }, trailer({ 'x-trailer': 'unary-done' }));
    },
    Count(call: grpc.ServerWritableStream<Msg, Msg>) {
      const n = Number(call.request.text);
      for (let i = 0; i < Math.abs(n); i++) call.write({ text: 'tick', seq: i });
      if (n < 0) call.emit('error', { code: grpc.status.ABORTED, details: 'stopped on purpose' });
      else call.end(trailer({ 'x-count': String(n) }));
    },
    Chat(call: grpc.ServerDuplexStream<Msg, Msg>) {
      let seq = 0;
      call.on('data', (m: Msg) => call.write({ text: m.text.toUpperCase(), seq: seq++ }));
      call.on('end', () => call.end(trailer({ 'x-chat': String(seq) })));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  mesh = await createMesh();
  a = await mesh.gateway('alpha');
  b = await mesh.gateway('beta');
  const echo = httpService('shop', 'echo', [`127.0.0.1:${port}`], true, 'grpc');
  b.source.set([echo]);
  a.catalog.offer('beta', echo, b.eastWest);
  const Echo = grpc.makeGenericClientConstructor(ECHO, 'Echo');
  client = new Echo(a.egress, grpc.credentials.createInsecure(), {
    'grpc.default_authority': 'echo.shop.svc.clusterset.local',
  }) as unknown as EchoClient;
}, 30_000);

afterAll(async () => {
  client?.close();
  server?.forceShutdown();
  await a?.close();
  await b?.close();
});

function unary(text: string, md = new grpc.Metadata(), deadlineMs = 5_000) {
  let headers: grpc.Metadata | undefined;
  let status: grpc.StatusObject | undefined;
  return new Promise<{
    reply?: Msg;
    err?: grpc.ServiceError;
    headers?: grpc.Metadata;
    status?: grpc.StatusObject;
  }>((resolve) => {
    const call = client.Unary({ text }, md, { deadline: Date.now() + deadlineMs }, (err, reply) => {
      // the status (with its trailers) may follow the callback by a tick
      setImmediate(() =>
        resolve({
          ...(err ? { err } : {}),
          ...(reply ? { reply } : {}),
          ...(headers ? { headers } : {}),
          ...(status ? { status } : {}),
        }),
      );
    });
    call.on('metadata', (m) => {
      headers = m;
    });
    call.on('status', (s) => {
      status = s;
    });
  });
}

test('unary: reply, response headers and trailers cross both gateways; the server sees an anonymous caller of the calling cluster', async () => {
  const r = await unary('hi', trailer({ 'x-req': 'abc' }));
  expect(r.err).toBeUndefined();
  expect(r.reply).toEqual({ text: 'echo hi' });
  expect(r.headers?.get('x-echo')).toEqual(['abc']);
  expect(r.status?.code).toBe(grpc.status.OK);
  expect(r.status?.metadata.get('x-trailer')).toEqual(['unary-done']);
  // no workload certificate (clientAuth: none): the caller is alpha's anonymous caller, not its gateway
  expect(seenMetadata.at(-1)?.get('x-meshfed-peer-identity')).toEqual([
    `spiffe://${TRUST_DOMAIN}/cluster/alpha/anonymous`,
  ]);
});

test('unary error: status code, message and trailing metadata survive (trailers-only answer)', async () => {
  const r = await unary('missing');
  expect(r.err?.code).toBe(grpc.status.NOT_FOUND);
  expect(r.err?.details).toBe('no such thing');
  expect(r.err?.metadata.get('x-why')).toEqual(['missing']);
});

test('a deadline ends the call with DEADLINE_EXCEEDED and the cancellation reaches the server', async () => {
  const r = await unary('hang', new grpc.Metadata(), 300);
  expect(r.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  await waitFor(() => cancelled === 1, { timeoutMs: 5_000 });
});

function collect(stream: grpc.ClientReadableStream<Msg>) {
  const messages: Msg[] = [];
  stream.on('data', (m: Msg) => messages.push(m));
  return new Promise<{ messages: Msg[]; status: grpc.StatusObject; err?: grpc.ServiceError }>((resolve) => {
    let err: grpc.ServiceError | undefined;
    stream.on('error', (e: grpc.ServiceError) => {
      err = e;
    });
    stream.on('status', (status: grpc.StatusObject) =>
      resolve({ messages, status, ...(err ? { err } : {}) }),
    );
  });
}

test('server streaming: 200 messages in order, then OK with trailers', async () => {
  const r = await collect(client.Count({ text: '200' }));
  expect(r.messages.map((m) => m.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i));
  expect(r.status.code).toBe(grpc.status.OK);
  expect(r.status.metadata.get('x-count')).toEqual(['200']);
});

test('server streaming that fails midway: the messages sent, then the error status', async () => {
  const r = await collect(client.Count({ text: '-3' }));
  expect(r.messages).toHaveLength(3);
  expect(r.status.code).toBe(grpc.status.ABORTED);
  expect(r.status.details).toBe('stopped on purpose');
});

test('bidirectional streaming: every message is answered while the client still sends, in order', async () => {
  const call = client.Chat();
  const done = collect(call);
  let answers = 0;
  call.on('data', () => answers++);
  for (let i = 0; i < 20; i++) {
    call.write({ text: `m${i}` });
    // the answer to each message arrives before the client sends the next: nothing waits for the end
    await waitFor(() => answers === i + 1, { timeoutMs: 5_000 });
  }
  call.end();
  const r = await done;
  expect(r.messages.map((m) => m.text)).toEqual(Array.from({ length: 20 }, (_, i) => `M${i}`));
  expect(r.messages.map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  expect(r.status.code).toBe(grpc.status.OK);
  expect(r.status.metadata.get('x-chat')).toEqual(['20']);
});
