import fc from 'fast-check';
import { createRoot, issueIntermediate, issueLeaf } from '../../ca/index.ts';
import {
  CatalogStore,
  type EntryMessage,
  ingestCatalogMessage,
  JwsSigner,
  MessageVerifier,
  SCHEMA_VERSION,
  type TombstoneMessage,
} from '../../federation/index.ts';
import { makePki, type Pki, TD } from './helpers.ts';

/**
 * Thousands of mutated messages thrown at the receiver: whatever the mix and the order, the view holds exactly
 * the newest correctly signed message per key, and nothing else.
 */

let pki: Pki;
const signers: Record<string, JwsSigner> = {};
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

beforeAll(async () => {
  pki = await makePki(['east', 'west']);
  const foreign = await createRoot({ trustDomain: TD });
  const foreignEast = await issueLeaf(await issueIntermediate(foreign, { cluster: 'east' }), {
    kind: 'federation',
  });
  const gatewayEast = await issueLeaf(pki.intermediates.get('east')!, { kind: 'gateway', name: 'gw' });
  for (const [name, leaf] of [
    ['east', pki.leaves.get('east')!],
    ['west', pki.leaves.get('west')!],
    ['foreign', foreignEast],
    ['gateway', gatewayEast],
  ] as const) {
    signers[name] = new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
  }
});

type Legit = { cluster: 'east' | 'west'; name: string; revision: number; tombstone: boolean; weight: number };

function payload(l: Legit, now: number): EntryMessage | TombstoneMessage {
  const base = {
    v: SCHEMA_VERSION,
    cluster: l.cluster,
    namespace: 'shop',
    name: l.name,
    revision: l.revision,
    issuedAt: now,
    expiresAt: now + 600_000,
  };
  if (l.tombstone) return { ...base, type: 'tombstone' };
  return {
    ...base,
    type: 'entry',
    ports: [{ name: 'http', port: 8080, protocol: 'http' }],
    locality: { region: 'r', zone: 'z' },
    gateways: [{ name: 'gw', address: '127.0.0.1:15443' }],
    weight: l.weight,
  };
}

const legitArb = fc.record({
  cluster: fc.constantFrom<'east' | 'west'>('east', 'west'),
  name: fc.constantFrom('a', 'b', 'c'),
  revision: fc.integer({ min: 1, max: 50 }),
  tombstone: fc.boolean(),
  weight: fc.integer({ min: 0, max: 100 }),
});

/** How to damage a legitimately signed message (by index into the legit list). */
const mutationArb = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), ch: fc.nat(63), of: fc.nat() }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(), of: fc.nat() }),
  fc.record({ kind: fc.constant('splice' as const), of: fc.nat(), with: fc.nat(), seg: fc.nat(2) }),
  fc.record({
    kind: fc.constant('resign' as const),
    of: fc.nat(),
    by: fc.constantFrom('other-cluster', 'foreign', 'gateway'),
    weight: fc.integer({ min: 101, max: 200 }),
  }),
  fc.record({
    kind: fc.constant('badfield' as const),
    of: fc.nat(),
    field: fc.constantFrom('weight', 'ports', 'revision', 'cluster'),
  }),
  fc.record({ kind: fc.constant('expired' as const), of: fc.nat() }),
  fc.record({ kind: fc.constant('garbage' as const), text: fc.string({ maxLength: 200 }) }),
);

describe('receiver under mutated input (fast-check)', () => {
  test('the view only ever holds correctly signed, newest entries', () => {
    let delivered = 0;
    fc.assert(
      fc.property(
        fc.array(legitArb, { minLength: 1, maxLength: 25 }),
        fc.array(mutationArb, { minLength: 20, maxLength: 80 }),
        fc.infiniteStream(fc.nat()),
        (legit, mutations, order) => {
          const now = Date.now();
          const signed = legit.map((l) => signers[l.cluster]!.sign(payload(l, now)));
          const bad: string[] = mutations.map((m) => {
            if (m.kind === 'garbage') return m.text;
            const i = m.of % legit.length;
            const jws = signed[i]!;
            const l = legit[i]!;
            switch (m.kind) {
              case 'flip': {
                const at = m.at % jws.length;
                const ch = B64URL[m.ch]!;
                return jws.slice(0, at) + (jws[at] === ch ? B64URL[(m.ch + 1) % 64] : ch) + jws.slice(at + 1);
              }
              case 'truncate':
                return jws.slice(0, m.at % jws.length);
              case 'splice': {
                const other = signed[m.with % signed.length]!.split('.');
                const parts = jws.split('.');
                parts[m.seg] = other[m.seg]!;
                return parts.join('.');
              }
              case 'resign':
                // a valid key, but not this cluster's federation identity under our root
                return signers[
                  m.by === 'other-cluster' ? (l.cluster === 'east' ? 'west' : 'east') : m.by
                ]!.sign({
                  ...payload(l, now),
                  weight: m.weight,
                  revision: l.revision + 100,
                });
              case 'badfield':
                return signers[l.cluster]!.sign({
                  ...payload(l, now),
                  revision: l.revision + 100,
                  [m.field]: 'x',
                });
              default:
                // 'expired': correctly signed but past its expiry by more than the allowed clock skew
                return signers[l.cluster]!.sign({
                  ...payload(l, now),
                  expiresAt: now - 30_001,
                  revision: l.revision + 100,
                });
            }
          });
          const all = [...signed, ...bad];
          // a random delivery order
          const it = order[Symbol.iterator]();
          for (let i = all.length - 1; i > 0; i--) {
            const j = it.next().value! % (i + 1);
            [all[i], all[j]] = [all[j]!, all[i]!];
          }
          const store = new CatalogStore({ self: 'north', staleAfter: 60_000, maxClockSkew: 0 });
          const verifier = new MessageVerifier({
            trustDomain: TD,
            bundle: () => pki.bundle,
            maxMessageBytes: 16_384,
            maxSnapshotBytes: 1024 * 1024,
            maxEntryTtl: 3_600_000,
            maxClockSkew: 30_000,
            now: Date.now,
          });
          for (const raw of all) {
            ingestCatalogMessage(verifier, store, raw, { now });
            delivered++;
          }
          // expected: per key, the legit message with the highest revision (ties: first signed of that revision wins
          // only if identical, so a tie between different legit messages is excluded from the check)
          const newest = new Map<string, Legit[]>();
          for (const l of legit) {
            const k = `${l.cluster}/${l.name}`;
            const cur = newest.get(k);
            if (!cur || cur[0]!.revision < l.revision) newest.set(k, [l]);
            else if (cur[0]!.revision === l.revision) cur.push(l);
          }
          const held = new Map<string, { weight: number; revision: number }>();
          for (const name of ['a', 'b', 'c']) {
            for (const inst of store.instances('shop', name)) {
              held.set(`${inst.cluster}/${inst.name}`, { weight: inst.weight, revision: inst.revision });
            }
          }
          for (const k of held.keys()) expect(newest.has(k)).toBe(true);
          for (const [k, ls] of newest) {
            const h = held.get(k);
            if (ls.every((l) => l.tombstone)) {
              expect(h).toBeUndefined();
            } else if (ls.every((l) => !l.tombstone)) {
              expect(h).toBeDefined();
              expect(h!.revision).toBe(ls[0]!.revision);
              expect(ls.map((l) => l.weight)).toContain(h!.weight);
            } else if (h) {
              // entry and tombstone with the same revision: whichever came first holds, but only a legit one
              expect(ls.some((l) => !l.tombstone && l.weight === h.weight)).toBe(true);
            }
          }
        },
      ),
      { numRuns: 60 },
    );
    expect(delivered).toBeGreaterThan(2000);
  });
});
