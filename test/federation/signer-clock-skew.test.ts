import { issueLeaf } from '../../ca/index.ts';
import { createRegistry, silentLogger } from '../../core/index.ts';
import { JwsSigner, MessageVerifier, SCHEMA_VERSION } from '../../federation/index.ts';
import { SyncResponder } from '../../federation/sync-responder.ts';
import { makePki, TD } from './helpers.ts';

// Found by the chaos suite (clock skew): a cluster whose clock ran 5 min ahead signed with certificates
// that start 5 min in the receiver's future, and the receiver refused them (certificate_expired) even
// with federation.maxClockSkew set to 10 min: the allowed skew covered the message, not its signer.

const FIVE_MIN = 5 * 60_000;

/** a verifier whose clock stands at `now`, allowing `maxClockSkew` */
function verifierAt(pki: Awaited<ReturnType<typeof makePki>>, now: number, maxClockSkew: number) {
  return new MessageVerifier({
    trustDomain: TD,
    bundle: () => pki.bundle,
    maxMessageBytes: 16 * 1024,
    maxSnapshotBytes: 1024 * 1024,
    maxEntryTtl: 3_600_000,
    maxClockSkew,
    now: () => now,
  });
}

async function aheadSigned() {
  const pki = await makePki(['east']);
  const now = Date.now();
  // what a signer 5 min ahead issues for itself: valid from its now minus ca's 60 s backdate
  const leaf = await issueLeaf(pki.intermediates.get('east')!, {
    kind: 'federation',
    notBefore: new Date(now + FIVE_MIN - 60_000),
    ttlMs: 3_600_000,
  });
  const text = new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem }).sign({
    v: SCHEMA_VERSION,
    type: 'entry',
    cluster: 'east',
    namespace: 'shop',
    name: 'orders',
    revision: (now + FIVE_MIN) * 1000,
    issuedAt: now + FIVE_MIN,
    expiresAt: now + FIVE_MIN + 600_000,
    ports: [{ name: 'http', port: 8080, protocol: 'http' }],
    locality: { region: 'us-east', zone: 'us-east-1a' },
    gateways: [{ name: 'gw-1', address: '127.0.0.1:15443' }],
    weight: 1,
  });
  const verifier = (maxClockSkew: number) => verifierAt(pki, now, maxClockSkew);
  return { text, verifier };
}

test('a signer 5 min ahead is accepted when maxClockSkew allows 10 min', async () => {
  const { text, verifier } = await aheadSigned();
  expect(verifier(10 * 60_000).verify(text)).toMatchObject({ ok: true });
});

test('a signer 5 min ahead is refused under the default 30 s skew', async () => {
  const { text, verifier } = await aheadSigned();
  expect(verifier(30_000).verify(text)).toMatchObject({ ok: false });
});

// Found by the chaos suite (clock skew): an anti-entropy sync request lives syncTimeout (seconds), and a
// responder whose clock ran 5 min ahead refused it as expired under maxClockSkew: 10m, since the expiry
// check allowed no skew at all (issuedAt in the future did). Every expiry now gets the same allowance.

async function syncRequestFromBehind(behindMs: number) {
  const pki = await makePki(['east']);
  const now = Date.now();
  const leaf = await issueLeaf(pki.intermediates.get('east')!, {
    kind: 'federation',
    notBefore: new Date(now - behindMs - 60_000),
    ttlMs: 3_600_000,
  });
  const reply = '_INBOX.east.req1';
  const text = new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem }).sign({
    v: SCHEMA_VERSION,
    type: 'sync',
    cluster: 'east',
    req: 'req1',
    reply,
    issuedAt: now - behindMs,
    expiresAt: now - behindMs + 5_000,
  });
  const responder = (maxClockSkew: number) =>
    new SyncResponder({
      verifier: verifierAt(pki, now, maxClockSkew),
      limits: { perRequester: 10, perRequesterBurst: 10, total: 100, totalBurst: 100 },
      inboxPrefix: '_INBOX',
      syncAllSubject: 'meshfed.sync.all',
      log: silentLogger(),
      registry: createRegistry(),
      now,
    });
  return { text, reply, now, responder };
}

test('a sync request from a cluster 5 min behind is answered when maxClockSkew allows 10 min', async () => {
  const { text, reply, now, responder } = await syncRequestFromBehind(FIVE_MIN);
  const r = responder(10 * 60_000);
  expect(r.handle('meshfed.sync.east', reply, Buffer.from(text), now)).toMatchObject({ requester: 'east' });
  // and it is still remembered as answered: a replay within the allowed skew is refused
  expect(r.handle('meshfed.sync.east', reply, Buffer.from(text), now)).toBeUndefined();
});

test('a sync request from a cluster 5 min behind is refused under the default 30 s skew', async () => {
  const { text, reply, now, responder } = await syncRequestFromBehind(FIVE_MIN);
  expect(responder(30_000).handle('meshfed.sync.east', reply, Buffer.from(text), now)).toBeUndefined();
});

test('an entry expired by less than maxClockSkew is accepted, by more refused as expired', async () => {
  const pki = await makePki(['east']);
  const now = Date.now();
  const sign = (expiresAt: number) =>
    new JwsSigner({
      chainPem: pki.leaves.get('east')!.chainPem,
      keyPem: pki.leaves.get('east')!.keyPem,
    }).sign({
      v: SCHEMA_VERSION,
      type: 'tombstone',
      cluster: 'east',
      namespace: 'shop',
      name: 'orders',
      revision: (now - 60_000) * 1000,
      issuedAt: now - 60_000,
      expiresAt,
    });
  const v = verifierAt(pki, now, 30_000);
  expect(v.verify(sign(now - 29_000))).toMatchObject({ ok: true });
  expect(v.verify(sign(now - 31_000))).toMatchObject({ ok: false, reason: 'expired' });
});
