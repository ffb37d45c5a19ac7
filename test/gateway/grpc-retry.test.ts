import * as grpc from '@grpc/grpc-js';
import { createMesh, httpService, type Mesh, type TestGateway } from './harness.ts';
import { policyDoc, TestPolicyView } from './policy-view.ts';

// gRPC outcomes in the retry decision (found by the chaos slow-cluster scenario): a try that reaches the
// per-try timeout, or a trailers-only DEADLINE_EXCEEDED/UNAVAILABLE, is retried on another target as
// the gRPC retry-on conditions read it, and the caller gets a real gRPC status when no retry is left.

const json = {
  serialize: (m: unknown) => Buffer.from(JSON.stringify(m)),
  deserialize: (b: Buffer) => JSON.parse(b.toString()) as { label: string },
};
const SERVICE = {
  Hello: {
    path: '/meshfed.test.Greeter/Hello',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
} satisfies grpc.ServiceDefinition;

type Reply = { label?: string; code?: number; details?: string };

const servers: grpc.Server[] = [];
const clients: grpc.Client[] = [];
let mesh: Mesh;
let alpha: TestGateway;
let beta: TestGateway;
let gamma: TestGateway;

/** a gRPC server; `answer(n)` for its n-th call (from 1): a delay before OK, or an error status */
async function greeter(label: string, answer: (n: number) => { delayMs?: number; code?: number }) {
  const server = new grpc.Server();
  let n = 0;
  server.addService(SERVICE, {
    Hello(_call: unknown, cb: grpc.sendUnaryData<unknown>) {
      const a = answer(++n);
      const reply = () => (a.code ? cb({ code: a.code, details: `${label} says no` }) : cb(null, { label }));
      // unref'd: a reply the client stopped waiting for must not keep jest's worker alive after the file
      if (a.delayMs) setTimeout(reply, a.delayMs).unref();
      else reply();
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  servers.push(server);
  return `127.0.0.1:${port}`;
}

function hello(service: string): Promise<Reply> {
  const Client = grpc.makeGenericClientConstructor(SERVICE, 'Greeter');
  const client = new Client(alpha.egress, grpc.credentials.createInsecure(), {
    'grpc.default_authority': `${service}.shop.svc.clusterset.local`,
  }) as unknown as grpc.Client & {
    Hello(m: unknown, o: grpc.CallOptions, cb: grpc.requestCallback<{ label: string }>): void;
  };
  clients.push(client);
  return new Promise((resolve) =>
    client.Hello({}, { deadline: Date.now() + 10_000 }, (err, reply) =>
      resolve(err ? { code: err.code, details: err.details } : { label: reply!.label }),
    ),
  );
}

const grpcService = (name: string, address: string) => httpService('shop', name, [address], true, 'grpc');

const override = (service: string, retry: Record<string, unknown>) =>
  policyDoc('ResilienceOverride', `${service}-override`, { service: `shop/${service}`, retry });

async function metric(g: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const m = await g.registry.getSingleMetric(name)?.get();
  return (m?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((a, v) => a + v.value, 0);
}

beforeAll(async () => {
  mesh = await createMesh();
  const view = new TestPolicyView([
    // alpha gives up on a try to `slow` long before beta would
    override('slow', { perTryTimeout: 500 }),
    override('lonely', { perTryTimeout: 150 }),
    override('flaky-connect-only', { retryOn: ['connect-failure'] }),
    override('flaky-unavailable', { retryOn: ['unavailable'] }),
    override('busy-named', { retryOn: ['resource-exhausted'] }),
  ]);
  const outlier = { consecutiveFailures: 2, baseEjection: '30s', maxEjectionPercent: 100 };
  alpha = await mesh.gateway('alpha', { policy: view, balancer: { outlier } });
  // beta's own per-try timeout: what `slow-answered` meets first (alpha waits 15 s per try)
  beta = await mesh.gateway('beta', { balancer: { timeouts: { request: '300ms' } } });
  gamma = await mesh.gateway('gamma');
  const late = await greeter('beta', () => ({ delayMs: 1_500 }));
  const prompt = await greeter('gamma', () => ({}));
  const across = [
    ['slow', true],
    ['slow-answered', true],
    ['lonely', false],
  ] as const;
  beta.source.set(across.map(([name]) => grpcService(name, late)));
  gamma.source.set(across.filter(([, both]) => both).map(([name]) => grpcService(name, prompt)));
  for (const [name, both] of across) {
    alpha.catalog.offer('beta', grpcService(name, late), beta.eastWest);
    if (both) alpha.catalog.offer('gamma', grpcService(name, prompt), gamma.eastWest);
  }
  // local endpoints of alpha that answer UNAVAILABLE (trailers-only) every other call
  const flaky = async (name: string, code: number = grpc.status.UNAVAILABLE) =>
    grpcService(name, await greeter(name, (n) => (n % 2 === 1 ? { code } : {})));
  alpha.source.set([
    await flaky('flaky'),
    await flaky('flaky-connect-only'),
    await flaky('flaky-unavailable'),
    await flaky('busy', grpc.status.RESOURCE_EXHAUSTED),
    await flaky('busy-named', grpc.status.RESOURCE_EXHAUSTED),
    // nothing listens there: every try fails to connect
    grpcService('gone', '127.0.0.1:1'),
  ]);
}, 30_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const s of servers) s.forceShutdown();
  await alpha?.close();
  await beta?.close();
  await gamma?.close();
});

describe('the gateway answers a gRPC caller with a status (regression: grpc-js read it as INTERNAL 13)', () => {
  test('a per-try timeout with no other target is DEADLINE_EXCEEDED, not "call ended without status"', async () => {
    expect(await hello('lonely')).toEqual({
      code: grpc.status.DEADLINE_EXCEEDED,
      details: expect.stringMatching(/^timeout from gateway beta-gw of cluster beta; it is retried/),
    });
  });

  test('a target that cannot be reached is UNAVAILABLE', async () => {
    expect(await hello('gone')).toMatchObject({ code: grpc.status.UNAVAILABLE });
  });
});

describe('retries of gRPC calls on another target', () => {
  test('a try that reaches the per-try timeout is retried on another cluster; the slow one is ejected or no longer picked', async () => {
    const retried = { destination_cluster: 'beta', failure: 'timeout' };
    const ejected = { destination_cluster: 'beta', service: 'slow.shop' };
    const before = await metric(alpha, 'meshfed_upstream_retries_total', retried);
    // waves of calls at once, until beta has met two timeouts in a row and is ejected, or until the balancer
    // has stopped picking it (its peak-EWMA cost after a timeout makes power-of-two choices prefer gamma:
    // five waves in a row without a try to beta). Which comes first is up to how the calls of a wave reach
    // alpha on a loaded machine (bounded: 40 waves)
    const replies: Reply[] = [];
    let quietWaves = 0;
    for (
      let wave = 0;
      wave < 40 && quietWaves < 5 && (await metric(alpha, 'meshfed_outlier_ejections_total', ejected)) === 0;
      wave++
    ) {
      const triedBefore = await metric(alpha, 'meshfed_upstream_retries_total', retried);
      replies.push(...(await Promise.all(Array.from({ length: 6 }, () => hello('slow')))));
      const tried = (await metric(alpha, 'meshfed_upstream_retries_total', retried)) - triedBefore;
      quietWaves = tried === 0 && triedBefore > before ? quietWaves + 1 : 0;
    }
    expect(replies).toEqual(Array(replies.length).fill({ label: 'gamma' }));
    // every try beta timed out on was retried on gamma
    const retries = (await metric(alpha, 'meshfed_upstream_retries_total', retried)) - before;
    expect(retries).toBeGreaterThanOrEqual(1);
    const ejections = await metric(alpha, 'meshfed_outlier_ejections_total', ejected);
    // ejected after two timeouts in a row, or avoided: then five waves (30 calls) went to gamma alone
    if (ejections === 0) expect(quietWaves).toBe(5);
    else expect(ejections).toBe(1);
  });

  test('a remote gateway answering DEADLINE_EXCEEDED (its own per-try timeout) is retried elsewhere', async () => {
    const replies = [];
    for (let i = 0; i < 3; i++) replies.push(await hello('slow-answered'));
    expect(replies).toEqual(Array(3).fill({ label: 'gamma' }));
    expect(
      await metric(alpha, 'meshfed_upstream_retries_total', { destination_cluster: 'beta', failure: '5xx' }),
    ).toBeGreaterThanOrEqual(1);
  });

  test('a trailers-only UNAVAILABLE is retried by default and under retryOn [unavailable]', async () => {
    expect(await hello('flaky')).toEqual({ label: 'flaky' });
    expect(await hello('flaky-unavailable')).toEqual({ label: 'flaky-unavailable' });
  });

  test('retryOn [connect-failure] passes a trailers-only UNAVAILABLE through as it came', async () => {
    expect(await hello('flaky-connect-only')).toEqual({
      code: grpc.status.UNAVAILABLE,
      details: 'flaky-connect-only says no',
    });
    expect(await hello('flaky-connect-only')).toEqual({ label: 'flaky-connect-only' });
  });

  test('RESOURCE_EXHAUSTED passes through by default and is retried only when retryOn names it', async () => {
    expect(await hello('busy')).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    expect(await hello('busy-named')).toEqual({ label: 'busy-named' });
  });
});
