import type { TLSSocket } from 'node:tls';
import type { CertificateSource, VerifiedIdentity } from '../../ca/index.ts';
import { Counter, createRegistry, type LocalService, silentLogger } from '../../core/index.ts';
import { type Answer, Refusal } from '../../gateway/answers.ts';
import { Identities } from '../../gateway/identity.ts';
import { answerLayer } from '../../gateway/layers/answer.ts';
import { callerRule } from '../../gateway/layers/identity.ts';
import { requestTargetCheck, underscoreHeaders } from '../../gateway/layers/request-checks.ts';
import { connectRoute, egressRoute, tunnelRoute } from '../../gateway/layers/route.ts';
import type { LocalServices } from '../../gateway/local-services.ts';
import type { PeerRevalidation } from '../../gateway/peer-revalidation.ts';
import { type GatewayRequest, type Handler, type RequestLayer, stack } from '../../gateway/pipeline.ts';
import { TestCatalog } from './harness.ts';

// Each request layer alone, on a request built by hand: what it refuses (by reason), what it sets.

function fakeRequest(o: Partial<Pick<GatewayRequest, 'method' | 'target' | 'authority' | 'headers'>> = {}) {
  const answers: Answer[] = [];
  const r: GatewayRequest = {
    listener: 'egress',
    method: o.method ?? 'GET',
    target: o.target ?? '/',
    authority: o.authority ?? 'api.shop.svc.clusterset.local',
    headers: o.headers ?? {},
    socket: {} as TLSSocket,
    connection: {} as TLSSocket,
    hasBody: false,
    answer: (a) => answers.push(a),
    closeConnection: () => answers.push({ status: 0, reason: 'closed', message: '' }),
    whenDone: (fn) => fn(),
    responseOver: () => false,
    io: { req: {}, res: { destroy() {} } } as unknown as GatewayRequest['io'],
    sourceCluster: 'alpha',
    destination: '',
    status: 0,
    grpcStatus: '',
    bytesIn: 0,
    bytesOut: 0,
  };
  return { r, answers };
}

const reached = () => {
  const seen: GatewayRequest[] = [];
  const terminal: Handler = async (r) => {
    seen.push(r);
  };
  return { seen, terminal };
};

/** Runs one layer; resolves with the refusal reason it threw, or 'passed'. */
async function run(layer: RequestLayer, r: GatewayRequest): Promise<string> {
  const { seen, terminal } = reached();
  try {
    await layer(terminal)(r);
  } catch (err) {
    if (err instanceof Refusal) return err.reason;
    throw err;
  }
  return seen.length === 1 ? 'passed' : 'stopped';
}

const local = (services: LocalService[]): LocalServices =>
  ({
    get: (ref: { namespace: string; name: string }) =>
      services.find((s) => s.namespace === ref.namespace && s.name === ref.name),
  }) as LocalServices;

const svc = (name: string, ports: LocalService['ports'], exported = true): LocalService => ({
  namespace: 'shop',
  name,
  ports,
  endpoints: [],
  exported,
  source: 'test',
});

test.each([
  ['GET', '/a?b=1', 'passed'],
  ['OPTIONS', '*', 'passed'],
  ['GET', '*', 'invalid-request-target'],
  ['GET', 'http://x/', 'invalid-request-target'],
  ['CONNECT', 'api.shop:80', 'invalid-request-target'],
  ['GET', '', 'invalid-request-target'],
])('requestTargetCheck: %s %s → %s', async (method, target, outcome) => {
  expect(await run(requestTargetCheck, fakeRequest({ method, target }).r)).toBe(outcome);
});

describe('underscoreHeaders', () => {
  const headers = () => ({
    x_meshfed_caller: 'forged',
    X_MESHFED_CHAIN: 'forged',
    x_plain: '1',
    'x-ok': '2',
  });

  test('allow keeps ordinary underscore headers and drops any that a backend would read as internal', async () => {
    const { r } = fakeRequest({ headers: headers() });
    expect(await run(underscoreHeaders('allow'), r)).toBe('passed');
    expect(Object.keys(r.headers).sort()).toEqual(['x-ok', 'x_plain']);
  });

  test('drop-header drops every underscore header', async () => {
    const { r } = fakeRequest({ headers: headers() });
    expect(await run(underscoreHeaders('drop-header'), r)).toBe('passed');
    expect(Object.keys(r.headers)).toEqual(['x-ok']);
  });

  test('reject-request refuses the request', async () => {
    expect(await run(underscoreHeaders('reject-request'), fakeRequest({ headers: headers() }).r)).toBe(
      'header-with-underscore',
    );
    expect(await run(underscoreHeaders('reject-request'), fakeRequest({ headers: { 'x-ok': '1' } }).r)).toBe(
      'passed',
    );
  });
});

describe('routes', () => {
  const db = svc('db', [
    { name: 'sql', port: 5432, protocol: 'tcp' },
    { name: 'http', port: 8080, protocol: 'http' },
    { name: 'tls', port: 8443, protocol: 'tls' },
  ]);
  const services = local([db, svc('hidden', [{ name: 'tcp', port: 1, protocol: 'tcp' }], false)]);

  test.each([
    ['db.shop.svc.clusterset.local:5432', 'passed'],
    ['db.shop.svc.clusterset.local:8080', 'not-a-tcp-port'],
    ['db.shop.svc.clusterset.local:8443', 'not-a-tcp-port'],
    ['db.shop.svc.clusterset.local:9999', 'unknown-port'],
    ['db.shop.svc.clusterset.local', 'unknown-port'],
    ['hidden.shop.svc.clusterset.local:1', 'not-exported'],
    ['garbage', 'not-exported'],
  ])('connectRoute: CONNECT %s → %s', async (authority, outcome) => {
    const { r } = fakeRequest({ method: 'CONNECT', authority });
    expect(await run(connectRoute({ local: services }), r)).toBe(outcome);
    if (outcome === 'passed')
      expect(r.route).toEqual({ namespace: 'shop', name: 'db', scope: 'local', portName: 'sql' });
  });

  test('tunnelRoute takes x-meshfed-service first, the authority otherwise, and only exported services', async () => {
    const viaHeader = fakeRequest({ authority: 'x', headers: { 'x-meshfed-service': 'shop/db/http' } }).r;
    expect(await run(tunnelRoute({ local: services }), viaHeader)).toBe('passed');
    expect(viaHeader.route).toEqual({ namespace: 'shop', name: 'db', scope: 'local', portName: 'http' });
    expect(
      await run(
        tunnelRoute({ local: services }),
        fakeRequest({ authority: 'db.shop.svc.clusterset.local' }).r,
      ),
    ).toBe('passed');
    const byAuthority = fakeRequest({ authority: 'db.shop.svc.clusterset.local' }).r;
    await run(tunnelRoute({ local: services }), byAuthority);
    // no port named: the first HTTP port, never the tcp one listed before it
    expect(byAuthority.route?.portName).toBe('http');
    for (const [port, outcome] of [
      ['sql', 'not-an-http-port'],
      ['tls', 'not-an-http-port'],
      ['8080', 'passed'],
      ['nope', 'unknown-port'],
    ]) {
      const r = fakeRequest({ headers: { 'x-meshfed-service': `shop/db/${port}` } }).r;
      expect([port, await run(tunnelRoute({ local: services }), r)]).toEqual([port, outcome]);
    }
    const hidden = fakeRequest({ headers: { 'x-meshfed-service': 'shop/hidden/tcp' } }).r;
    expect(await run(tunnelRoute({ local: services }), hidden)).toBe('not-exported');
    expect(
      await run(tunnelRoute({ local: services }), fakeRequest({ headers: { 'x-meshfed-service': '//' } }).r),
    ).toBe('not-exported');
  });

  test('egressRoute: a clusterset name known locally or in the catalog, else unknown-service', async () => {
    const catalog = new TestCatalog();
    catalog.offer('beta', svc('api', [{ name: 'http', port: 80, protocol: 'http' }]), '127.0.0.1:1');
    const layer = egressRoute({ catalog, local: services });
    const api = fakeRequest({ authority: 'api.shop.svc.clusterset.local:80' }).r;
    expect(await run(layer, api)).toBe('passed');
    expect(api.route).toEqual({ namespace: 'shop', name: 'api', scope: 'any', portName: 'http' });
    expect(await run(layer, fakeRequest({ authority: 'db.shop.svc.clusterset.local' }).r)).toBe('passed');
    expect(await run(layer, fakeRequest({ authority: 'nope.shop.svc.clusterset.local' }).r)).toBe(
      'unknown-service',
    );
    expect(await run(layer, fakeRequest({ authority: 'example.com' }).r)).toBe('unknown-service');
    // a service with only a tcp port is reached by its TCP port, never by an HTTP request
    catalog.offer('beta', svc('cache', [{ name: 'tcp', port: 6379, protocol: 'tcp' }]), '127.0.0.1:1');
    expect(await run(layer, fakeRequest({ authority: 'cache.shop.svc.clusterset.local' }).r)).toBe(
      'not-an-http-port',
    );
  });
});

describe('callerRule', () => {
  const identities = new Identities({
    cluster: 'beta',
    trustDomain: 'meshfed.test',
    identity: {} as CertificateSource,
    bundle: () => {
      throw new Error('not used');
    },
    clientAuth: 'none',
    revalidation: {} as PeerRevalidation,
    clientCerts: new Counter({ name: 'x_total', help: 'x', labelNames: ['result'], registers: [] }),
  });
  const peer = {
    spiffeId: 'spiffe://meshfed.test/cluster/alpha/gateway/gw',
    cluster: 'alpha',
  } as VerifiedIdentity;

  test.each([
    [undefined, 'passed', 'spiffe://meshfed.test/cluster/alpha/gateway/gw'],
    [
      'spiffe://meshfed.test/cluster/alpha/ns/shop/sa/web',
      'passed',
      'spiffe://meshfed.test/cluster/alpha/ns/shop/sa/web',
    ],
    [
      'spiffe://meshfed.test/cluster/alpha/anonymous',
      'passed',
      'spiffe://meshfed.test/cluster/alpha/anonymous',
    ],
    ['spiffe://meshfed.test/cluster/beta/ns/shop/sa/web', 'caller-identity', undefined],
    ['spiffe://meshfed.test/cluster/beta/anonymous', 'caller-identity', undefined],
    ['spiffe://meshfed.test/cluster/alpha/gateway/other', 'caller-identity', undefined],
    ['spiffe://other.test/cluster/alpha/ns/shop/sa/web', 'caller-identity', undefined],
    ['not a spiffe id', 'caller-identity', undefined],
  ])('a peer of alpha asserting %s → %s', async (asserted, outcome, caller) => {
    const { r } = fakeRequest({ headers: asserted ? { 'x-meshfed-caller': asserted } : {} });
    r.peer = peer;
    expect(await run(callerRule(identities), r)).toBe(outcome);
    expect(r.caller).toBe(caller);
  });

  test('regression: a tunnel request whose session already went is refused (peer-identity), not a TypeError', () => {
    // what http2 leaves as a destroyed session's socket: nothing to read certificates from
    const gone = {} as TLSSocket;
    let thrown: unknown;
    try {
      identities.peerGateway(gone, undefined, {} as Parameters<Identities['peerGateway']>[2]);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(Refusal);
    expect((thrown as Refusal).reason).toBe('peer-identity');
  });
});

describe('answerLayer and stack', () => {
  const refused = () =>
    new Counter({
      name: 'meshfed_refused_total',
      help: 'x',
      labelNames: ['listener', 'reason'],
      registers: [createRegistry()],
    });

  test('a refusal inside is counted by its reason and answered with its status', async () => {
    const counter = refused();
    const inner: RequestLayer = () => async () => {
      throw new Refusal('not-a-tcp-port', 'no');
    };
    const { r, answers } = fakeRequest();
    await stack(reached().terminal, answerLayer({ refused: counter, log: silentLogger() }), inner)(r);
    expect(answers).toEqual([expect.objectContaining({ status: 403, reason: 'not-a-tcp-port' })]);
    expect(r.status).toBe(403);
    expect((await counter.get()).values).toEqual([
      expect.objectContaining({ labels: { listener: 'egress', reason: 'not-a-tcp-port' }, value: 1 }),
    ]);
  });

  test('an unexpected error inside is answered, not rejected', async () => {
    const inner: RequestLayer = () => async () => {
      throw new TypeError('a bug');
    };
    const { r, answers } = fakeRequest();
    await expect(
      stack(reached().terminal, answerLayer({ refused: refused(), log: silentLogger() }), inner)(r),
    ).resolves.toBeUndefined();
    expect(answers[0]?.status).toBe(502);
  });

  test('stack: the first layer sees the request first', async () => {
    const order: string[] = [];
    const mark =
      (name: string): RequestLayer =>
      (next) =>
      async (r) => {
        order.push(name);
        return next(r);
      };
    await stack(async () => void order.push('terminal'), mark('a'), mark('b'))(fakeRequest().r);
    expect(order).toEqual(['a', 'b', 'terminal']);
  });
});
