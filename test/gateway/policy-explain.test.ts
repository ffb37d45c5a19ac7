import { buildPolicySet, type PolicyDocument, validatePolicyDocuments } from '../../core/index.ts';
import { explainPolicy } from '../../gateway/policy/index.ts';
import { policyDoc } from './policy-view.ts';

// `meshfed policy explain`'s evaluation (gateway/policy/explain.ts), without a gateway: what a call or a TCP
// connection would meet, rule by rule. The evaluation functions it shares with the layers: policy-evaluation.test.ts.

const TD = 'meshfed.test';
const wl = (cluster: string, ns: string, sa: string) => `spiffe://${TD}/cluster/${cluster}/ns/${ns}/sa/${sa}`;

function docs(...raw: unknown[]): PolicyDocument[] {
  return validatePolicyDocuments(raw, 'test');
}

describe('explainPolicy (what `meshfed policy explain` prints)', () => {
  const set = buildPolicySet(
    docs(
      policyDoc('AuthorizationPolicy', 'api-access', {
        target: { service: 'shop/api' },
        rules: [
          { name: 'no-b', action: 'DENY', from: [{ cluster: 'b' }] },
          { name: 'shop', action: 'ALLOW', from: [{ namespace: 'shop' }], to: [{ methods: ['GET'] }] },
        ],
      }),
      policyDoc('TrafficSplit', 'api-split', {
        service: 'shop/api',
        routes: [
          {
            name: 'canary',
            backends: [
              { service: 'shop/api', weight: 3 },
              { service: 'shop/api-v2', cluster: 'c', weight: 1 },
            ],
          },
        ],
      }),
      policyDoc('FaultInjection', 'api-faults', {
        service: 'shop/api',
        rules: [
          {
            name: 'chaos',
            match: { headers: [{ name: 'x-chaos', present: true }] },
            abort: { httpStatus: 500, percentage: 10 },
          },
        ],
      }),
      policyDoc('RateLimit', 'api-limit', { target: { service: 'shop/api', cluster: 'a' }, requests: 5 }),
    ),
    { revision: 4, scopes: [] },
  );

  test('a call is explained with the rules that match, the one that decides, the route, fault and limits', () => {
    const e = explainPolicy(set, {
      service: 'shop/api',
      destinationCluster: 'a',
      caller: wl('a', 'shop', 'web'),
      sourceCluster: 'a',
      method: 'GET',
      target: '/items',
      headers: { 'x-chaos': '1' },
    });
    expect(e.generation).toBe(4);
    expect(e.authorization).toMatchObject({ allowed: true, reason: 'allow-rule', rule: 'api-access/shop' });
    expect(e.authorization.matched).toEqual([{ rule: 'api-access/shop', action: 'ALLOW' }]);
    expect(e.route).toEqual({
      route: 'api-split/canary',
      backends: [
        { service: 'shop/api', weight: 3, percent: 75 },
        { service: 'shop/api-v2', cluster: 'c', weight: 1, percent: 25 },
      ],
    });
    expect(e.fault).toEqual({ rule: 'api-faults/chaos', abort: { httpStatus: 500, percentage: 10 } });
    expect(e.rateLimits).toEqual([
      { limit: 'api-limit', requests: 5, interval: 1000, burst: 5, bucketPer: 'gateway' },
    ]);
  });

  test('a TCP connection (CONNECT) gets only the routes and fault rules without an HTTP match', () => {
    const tcpSet = buildPolicySet(
      docs(
        policyDoc('TrafficSplit', 'db-split', {
          service: 'data/db',
          routes: [
            {
              name: 'any-header',
              match: { headers: [{ name: 'x-v', present: false }] },
              backends: [{ service: 'data/db-v3', weight: 1 }],
            },
            {
              name: 'canary',
              backends: [
                { service: 'data/db', weight: 9 },
                { service: 'data/db-v2', weight: 1 },
              ],
            },
          ],
        }),
        policyDoc('FaultInjection', 'db-faults', {
          service: 'data/db',
          rules: [
            {
              name: 'any-header',
              match: { headers: [{ name: 'x-f', present: false }] },
              abort: { httpStatus: 503, percentage: 100 },
            },
          ],
        }),
      ),
      { revision: 1, scopes: [] },
    );
    const call = { service: 'data/db', destinationCluster: 'a', sourceCluster: 'b', target: '/' };
    // an HTTP request without those headers matches the first route and fault rule
    const http = explainPolicy(tcpSet, { ...call, method: 'GET' });
    expect([http.route?.route, http.fault?.rule]).toEqual(['db-split/any-header', 'db-faults/any-header']);
    const tcp = explainPolicy(tcpSet, {
      ...call,
      method: 'CONNECT',
      target: 'db.data.svc.clusterset.local:5432',
    });
    expect(tcp.route?.route).toBe('db-split/canary');
    expect(tcp.fault).toBeUndefined();
  });

  test('facts left out are undecided; a limit pinned to another cluster is not listed', () => {
    const e = explainPolicy(set, { service: 'shop/api', destinationCluster: 'z', sourceCluster: 'b' });
    expect(e.authorization).toMatchObject({ allowed: false, rule: 'api-access/no-b' });
    expect(e.authorization.undecided).toEqual([]);
    const f = explainPolicy(set, {
      service: 'shop/api',
      destinationCluster: 'z',
      caller: wl('a', 'shop', 'x'),
      sourceCluster: 'a',
    });
    expect(f.authorization.undecided).toEqual([{ rule: 'api-access/shop', action: 'ALLOW' }]);
    expect(f.rateLimits).toEqual([]);
  });
});
