import { createRoot, issueIntermediate, issueLeaf, type IssuedLeaf } from '../../ca/index.ts';
import { createRegistry } from '../../core/index.ts';
import {
  CatalogStore,
  type EntryMessage,
  JwsSigner,
  MessageVerifier,
  RejectionRecorder,
  type RejectReason,
  SCHEMA_VERSION,
} from '../../federation/index.ts';
import { GatewayAddressPolicy } from '../../federation/address-policy.ts';
import { captureLogger } from '../doubles/log-capture.ts';
import { counterValue, makePki, type Pki, TD } from './helpers.ts';

let pki: Pki;
let foreignEast: IssuedLeaf;
let gatewayEast: IssuedLeaf;
let expiredEast: IssuedLeaf;
let rsaSouth: IssuedLeaf;

beforeAll(async () => {
  pki = await makePki(['east', 'west']);
  const foreignRoot = await createRoot({ trustDomain: TD });
  foreignEast = await issueLeaf(await issueIntermediate(foreignRoot, { cluster: 'east' }), {
    kind: 'federation',
  });
  gatewayEast = await issueLeaf(pki.intermediates.get('east')!, { kind: 'gateway', name: 'gw-1' });
  expiredEast = await issueLeaf(pki.intermediates.get('east')!, {
    kind: 'federation',
    notBefore: new Date(Date.now() - 3 * 3_600_000),
    ttlMs: 3_600_000,
  });
  const rsaSouthCa = await issueIntermediate(pki.root, { cluster: 'south' });
  rsaSouth = await issueLeaf(rsaSouthCa, { kind: 'federation', keyType: 'rsa-2048' });
});

function entry(o: Partial<EntryMessage> = {}): EntryMessage {
  const now = Date.now();
  return {
    v: SCHEMA_VERSION,
    type: 'entry',
    cluster: 'east',
    namespace: 'shop',
    name: 'orders',
    revision: now * 1000,
    issuedAt: now,
    expiresAt: now + 60_000,
    ports: [{ name: 'http', port: 8080, protocol: 'http' }],
    locality: { region: 'us-east', zone: 'us-east-1a' },
    gateways: [{ name: 'gw-1', address: '127.0.0.1:15443' }],
    weight: 3,
    ...o,
  };
}

function signer(leaf: IssuedLeaf): JwsSigner {
  return new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
}

function verifier(o: { now?: () => number; gatewayAddresses?: GatewayAddressPolicy } = {}): MessageVerifier {
  return new MessageVerifier({
    trustDomain: TD,
    bundle: () => pki.bundle,
    maxMessageBytes: 16 * 1024,
    maxSnapshotBytes: 1024 * 1024,
    maxEntryTtl: 3_600_000,
    maxClockSkew: 30_000,
    now: o.now ?? Date.now,
    ...(o.gatewayAddresses ? { gatewayAddresses: o.gatewayAddresses } : {}),
  });
}

const b64 = (s: string) => Buffer.from(s).toString('base64url');

describe('MessageVerifier', () => {
  test('accepts an ES256 entry signed by its own cluster', () => {
    const v = verifier().verify(signer(pki.leaves.get('east')!).sign(entry()));
    expect(v).toMatchObject({
      ok: true,
      signer: `spiffe://${TD}/cluster/east/federation`,
      msg: { name: 'orders' },
    });
  });

  test('accepts an RS256 entry from a cluster with an RSA federation key', () => {
    const s = signer(rsaSouth);
    expect(s.alg).toBe('RS256');
    const v = verifier().verify(s.sign(entry({ cluster: 'south' })));
    expect(v.ok).toBe(true);
  });

  const cases: { name: string; raw: () => string | Uint8Array; reason: RejectReason }[] = [
    { name: 'not JSON, not JWS', raw: () => 'hello', reason: 'not_jws' },
    { name: 'a plain JSON entry', raw: () => JSON.stringify(entry()), reason: 'not_jws' },
    { name: 'invalid UTF-8', raw: () => new Uint8Array([0xff, 0xfe, 0x2e, 0x2e]), reason: 'not_jws' },
    { name: 'oversized (refused before parsing)', raw: () => 'x'.repeat(17 * 1024), reason: 'oversized' },
    {
      name: 'alg none',
      raw: () => `${b64('{"alg":"none"}')}.${b64(JSON.stringify(entry()))}.`,
      reason: 'bad_header',
    },
    { name: 'header not JSON', raw: () => `${b64('{')}.${b64('{}')}.AA`, reason: 'bad_header' },
    {
      name: 'x5c not certificates',
      raw: () => `${b64('{"alg":"ES256","x5c":["AAAA"]}')}.${b64('{}')}.AA`,
      reason: 'bad_header',
    },
    {
      name: 'signed under a foreign root',
      raw: () => signer(foreignEast).sign(entry()),
      reason: 'untrusted_chain',
    },
    {
      name: 'signed by cluster west for cluster east',
      raw: () => signer(pki.leaves.get('west')!).sign(entry()),
      reason: 'wrong_cluster',
    },
    {
      name: 'signed by a gateway identity',
      raw: () => signer(gatewayEast).sign(entry()),
      reason: 'wrong_identity',
    },
    {
      name: 'signed by an expired certificate',
      raw: () => signer(expiredEast).sign(entry()),
      reason: 'certificate_expired',
    },
    {
      name: 'an entry expired longer ago than maxClockSkew',
      raw: () => signer(pki.leaves.get('east')!).sign(entry({ expiresAt: Date.now() - 30_001 })),
      reason: 'expired',
    },
    {
      name: 'a field of the wrong type',
      raw: () => signer(pki.leaves.get('east')!).sign({ ...entry(), weight: 'many' }),
      reason: 'bad_payload',
    },
    {
      name: 'an unknown field',
      raw: () => signer(pki.leaves.get('east')!).sign({ ...entry(), admin: true }),
      reason: 'bad_payload',
    },
    {
      name: 'a future schema version',
      raw: () => signer(pki.leaves.get('east')!).sign({ ...entry(), v: 2 }),
      reason: 'unsupported_version',
    },
    {
      name: 'a payload swapped under a valid signature',
      raw: () => {
        const [h, , s] = signer(pki.leaves.get('east')!).sign(entry()).split('.');
        return `${h}.${b64(JSON.stringify(entry({ weight: 1000 })))}.${s}`;
      },
      reason: 'bad_signature',
    },
    {
      name: 'alg RS256 on an ECDSA key',
      raw: () => {
        const [h, p, s] = signer(pki.leaves.get('east')!).sign(entry()).split('.');
        const header = JSON.parse(Buffer.from(h!, 'base64url').toString());
        return `${b64(JSON.stringify({ ...header, alg: 'RS256' }))}.${p}.${s}`;
      },
      reason: 'bad_header',
    },
  ];

  test.each(cases)('refuses $name ($reason)', ({ raw, reason }) => {
    const v = verifier().verify(raw());
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.reason).toBe(reason);
  });

  test('an expiry is capped at issuedAt + maxEntryTtl and at the signer certificate’s notAfter', async () => {
    const now = Date.now();
    const far = verifier().verify(
      signer(pki.leaves.get('east')!).sign(entry({ issuedAt: now, expiresAt: 8.64e15 })),
    );
    expect(far).toMatchObject({ ok: true, msg: { expiresAt: now + 3_600_000 } });
    const shortLeaf = await issueLeaf(pki.intermediates.get('east')!, {
      kind: 'federation',
      ttlMs: 20 * 60_000,
    });
    const v = verifier().verify(
      signer(shortLeaf).sign(entry({ issuedAt: now, expiresAt: now + 50 * 60_000 })),
    );
    expect(v.ok).toBe(true);
    if (v.ok) expect(v.msg.expiresAt).toBe(shortLeaf.notAfter.getTime());
  });

  test('a revision or issuedAt ahead of our clock by more than maxClockSkew is refused', () => {
    const now = Date.now();
    const east = signer(pki.leaves.get('east')!);
    const at = (msg: EntryMessage) => verifier({ now: () => now }).verify(east.sign(msg));
    expect(at(entry({ revision: (now + 29_000) * 1000 }))).toMatchObject({ ok: true });
    expect(at(entry({ revision: (now + 31_000) * 1000 }))).toMatchObject({ reason: 'revision_in_future' });
    expect(at(entry({ revision: Number.MAX_SAFE_INTEGER }))).toMatchObject({ reason: 'revision_in_future' });
    expect(at(entry({ issuedAt: now + 31_000, expiresAt: now + 90_000 }))).toMatchObject({
      reason: 'issued_in_future',
    });
  });

  test('gateway addresses outside the allow-list are refused', () => {
    const policy = new GatewayAddressPolicy({ allow: ['10.0.0.0/8'], clusters: { west: ['192.0.2.0/24'] } });
    const east = signer(pki.leaves.get('east')!);
    const check = (address: string) =>
      verifier({ gatewayAddresses: policy }).verify(
        east.sign(entry({ gateways: [{ name: 'gw', address }] })),
      );
    expect(check('10.1.2.3:15443')).toMatchObject({ ok: true });
    expect(check('127.0.0.1:22')).toMatchObject({ reason: 'gateway_not_allowed' });
    expect(check('gateway.internal:15443')).toMatchObject({ reason: 'gateway_not_allowed' });
    expect(policy.check('west', [{ name: 'gw', address: '10.1.2.3:15443' }])).toBeDefined();
    expect(policy.check('west', [{ name: 'gw', address: '192.0.2.9:15443' }])).toBeUndefined();
  });

  test('a message on another cluster’s subject is refused', () => {
    const v = verifier().verify(signer(pki.leaves.get('east')!).sign(entry()), { subjectCluster: 'west' });
    expect(v).toMatchObject({ ok: false, reason: 'wrong_cluster' });
  });
});

describe('CatalogStore revision rules', () => {
  test('only strictly newer revisions win; tombstones keep older entries out', () => {
    const store = new CatalogStore({ self: 'west', staleAfter: 10_000, maxClockSkew: 0 });
    const now = Date.now();
    const e1 = entry({ revision: 100 });
    const e2 = entry({ revision: 200, weight: 9 });
    expect(store.applyEntry(e2, undefined, now)).toBe('applied');
    expect(store.applyEntry(e1, undefined, now)).toBe('stale_revision');
    expect(store.applyEntry(e2, undefined, now)).toBe('duplicate');
    expect(store.instances('shop', 'orders')[0]!.weight).toBe(9);
    const tomb = {
      v: 1 as const,
      type: 'tombstone' as const,
      cluster: 'east',
      namespace: 'shop',
      name: 'orders',
    };
    expect(
      store.applyTombstone({ ...tomb, revision: 150, issuedAt: now, expiresAt: now + 1000 }, undefined, now),
    ).toBe('stale_revision');
    expect(
      store.applyTombstone({ ...tomb, revision: 300, issuedAt: now, expiresAt: now + 1000 }, undefined, now),
    ).toBe('applied');
    expect(store.instances('shop', 'orders')).toHaveLength(0);
    expect(store.applyEntry(e2, undefined, now)).toBe('stale_revision'); // a replay after the withdrawal
    expect(store.applyEntry(entry({ revision: 400 }), undefined, now)).toBe('applied'); // a real re-export
  });

  test('a cluster silent past the bound is stale only while we are connected', () => {
    const store = new CatalogStore({ self: 'west', staleAfter: 1000, maxClockSkew: 0 });
    store.applyEntry(entry(), undefined, 0);
    store.tick(5000, false);
    expect(store.clusters()[0]!.stale).toBe(false);
    store.tick(5000, true);
    expect(store.clusters()[0]!.stale).toBe(true);
    expect(store.instances('shop', 'orders')[0]!.stale).toBe(true);
  });
});

describe('RejectionRecorder', () => {
  test('counts every rejection and logs once per signer and reason', async () => {
    const registry = createRegistry();
    const { log, lines } = captureLogger();
    const r = new RejectionRecorder(registry, log);
    for (let i = 0; i < 5; i++)
      r.record({ ok: false, reason: 'bad_signature', signer: 'a', detail: 'x' }, { source: 'nats' });
    r.record({ ok: false, reason: 'bad_signature', signer: 'b', detail: 'x' }, { source: 'nats' });
    r.record({ ok: false, reason: 'expired', signer: 'a', detail: 'x' }, { source: 'nats' });
    expect(await counterValue(registry, 'bad_signature')).toBe(6);
    expect(await counterValue(registry, 'expired')).toBe(1);
    expect(lines.filter((l) => l.reason !== undefined)).toHaveLength(3);
  });
});
