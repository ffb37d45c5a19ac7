// The catalog view's own heap per entry (issue #15: several gateways per cluster must not multiply it), without
// NATS or signatures: one CatalogStore fed 50 clusters × 2,000 services as a view with persistence holds them
// (a Proof per 100 entries, as snapshot parts give), each entry listing `--gateways` gateways. Prints the heap the
// store holds after a full GC, in MB and bytes per entry. Deterministic; the RSS of a real view is
// `npm run bench:catalog` ("Catalog view memory" in docs/performance.md).
//   node --expose-gc bench/catalog-store-heap.ts                  one gateway per cluster
//   node --expose-gc bench/catalog-store-heap.ts --gateways 2     two, both listed in every entry
//   node --expose-gc bench/catalog-store-heap.ts --gateways 2 --split   two, each publishing its own entries
import { parseArgs } from 'node:util';
import { CatalogStore } from '../federation/catalog-store.ts';
import { type EntryMessage, SCHEMA_VERSION } from '../federation/messages.ts';
import { type Proof, ProofMaker } from '../federation/proof.ts';

const { values: args } = parseArgs({
  options: {
    clusters: { type: 'string', default: '50' },
    services: { type: 'string', default: '2000' },
    gateways: { type: 'string', default: '1' },
    split: { type: 'boolean', default: false },
  },
});
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const clusters = Number(args.clusters);
const services = Number(args.services);
const gateways = Number(args.gateways);

gc();
gc();
const base = process.memoryUsage().heapUsed;
const store = new CatalogStore({ self: 'view', staleAfter: 30_000, maxClockSkew: 30_000 });
const maker = new ProofMaker();
const now = Date.now();
let proof: Proof = maker.make('h.p.s');
const all = Array.from({ length: gateways }, (_, g) => g);
// with --split each gateway publishes its own entries (revisions of its own clock); otherwise one entry lists all
for (const publishers of args.split ? all.map((g) => [g]) : [all]) {
  for (let c = 0; c < clusters; c++) {
    for (let s = 0; s < services; s++) {
      if (s % 100 === 0) proof = maker.make(`h.${c}-${s}-${publishers.join('-')}.s`);
      // parsed from JSON, as a verified message is: its numbers and strings are its own
      const msg = JSON.parse(
        JSON.stringify({
          v: SCHEMA_VERSION,
          type: 'entry',
          cluster: `c${c}`,
          namespace: 'bench',
          name: `svc-${s}`,
          revision: (now + publishers[0]!) * 1000 + s,
          issuedAt: now,
          expiresAt: now + 1_800_000,
          ports: [{ name: 'http', port: 8080, protocol: 'http' }],
          locality: { region: `region-${c % 5}`, zone: `zone-${c}` },
          gateways: publishers.map((g) => ({ name: `gw-${g + 1}`, address: `10.1.${c}.${g + 1}:15443` })),
          weight: 1 + (s % 5),
        }),
      ) as EntryMessage;
      store.applyEntry(msg, proof, now);
    }
  }
}
gc();
gc();
const used = process.memoryUsage().heapUsed - base;
console.log(
  JSON.stringify({
    entries: store.size,
    gateways,
    split: args.split,
    heapMB: Math.round(used / 1e5) / 10,
    bytesPerEntry: Math.round(used / store.size),
  }),
);
