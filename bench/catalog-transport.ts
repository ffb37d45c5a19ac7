/**
 * The catalog's transport, chosen by measurement (issue 4): JetStream KV against plain subjects on the same real
 * nats-server (JetStream enabled), with the same entries, the same signatures and the same receiver (verify with
 * MessageVerifier, apply to a CatalogStore).
 *
 * - KV: every entry is its own signed JWS under key `<cluster>.<namespace>.<name>` (a KV value has to vouch for
 *   itself: anyone with write access to the bucket could put it). A new view loads the catalog by watching the
 *   bucket; a change is a put.
 * - Subjects (what meshfed does): a change is one signed entry published on `<p>.catalog.<cluster>`; a new view
 *   asks each cluster's responder for a snapshot, answered as signed parts of 64 KiB of entries, at most 8 at a time (as federation/ does).
 *
 *   npm run bench:catalog-transport                                   20,000 entries, 200 changes/s for 10 s
 *   npm run bench:catalog-transport -- --entries 100000 --clusters 50
 *
 * Prints both, the ratios (KV ÷ subjects), and writes bench/results/catalog-transport.json.
 */
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createRoot, issueIntermediate, issueLeaf, TrustBundle } from '../ca/index.ts';
import type { LocalService } from '../core/index.ts';
import { startNatsServer } from '../cli/demo/nats-topology.ts';
import {
  CatalogPublisher,
  CatalogStore,
  type EntryMessage,
  JwsSigner,
  MessageVerifier,
  type SnapshotMessage,
} from '../federation/index.ts';
import { benchService, mergeResults } from './catalog-common.ts';
import { percentile, round, sleep } from './figures.ts';

const TD = 'bench.example';
const { values: args } = parseArgs({
  options: {
    entries: { type: 'string', default: '20000' },
    clusters: { type: 'string', default: '10' },
    rate: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '10' },
  },
});
const ENTRIES = Number(args.entries);
const CLUSTERS = Number(args.clusters);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
const PER_CLUSTER = Math.ceil(ENTRIES / CLUSTERS);
const TOTAL = PER_CLUSTER * CLUSTERS;
const PART_BYTES = 64 * 1024;
const SYNC_CONCURRENCY = 8;

/** One simulated cluster: its publisher (entries, snapshots) and its source list. */
interface Cluster {
  name: string;
  publisher: CatalogPublisher;
  services: LocalService[];
}

async function makeClusters(bundleOut: { bundle?: TrustBundle }): Promise<Cluster[]> {
  const root = await createRoot({ trustDomain: TD });
  bundleOut.bundle = TrustBundle.fromPem(root.certPem);
  const out: Cluster[] = [];
  for (let c = 0; c < CLUSTERS; c++) {
    const name = `c${c}`;
    const leaf = await issueLeaf(await issueIntermediate(root, { cluster: name }), { kind: 'federation' });
    const jws = new JwsSigner({ chainPem: leaf.chainPem, keyPem: leaf.keyPem });
    const publisher = new CatalogPublisher({
      cluster: name,
      locality: { region: `region-${c % 5}`, zone: `zone-${c}` },
      gateways: [{ name: 'gw-1', address: `10.1.${c}.1:15443` }],
      entryTtl: 30 * 60_000,
      signer: () => jws,
      now: Date.now,
    });
    const services = Array.from({ length: PER_CLUSTER }, (_, j) => benchService(`svc-${j}`, 1 + (j % 5)));
    out.push({ name, publisher, services });
  }
  return out;
}

/** The receiving side, identical for both transports: verify, then apply by the newest-revision rule. */
function receiver(bundle: TrustBundle) {
  const verifier = new MessageVerifier({
    trustDomain: TD,
    bundle: () => bundle,
    maxMessageBytes: 64 * 1024,
    maxSnapshotBytes: 1024 * 1024,
    maxEntryTtl: 3_600_000,
    maxClockSkew: 30_000,
    now: Date.now,
  });
  const store = new CatalogStore({ self: 'bench-view', staleAfter: 60_000, maxClockSkew: 30_000 });
  let rejected = 0;
  return {
    store,
    get rejected() {
      return rejected;
    },
    /** one entry message; returns it when applied */
    entry(data: Uint8Array): EntryMessage | undefined {
      const v = verifier.verify(data);
      if (!v.ok || v.msg.type !== 'entry') {
        rejected++;
        return undefined;
      }
      return store.applyEntry(v.msg, undefined, Date.now()) === 'applied' ? v.msg : undefined;
    },
    /** one snapshot part; returns it */
    part(data: Uint8Array): SnapshotMessage | undefined {
      const v = verifier.verify(data, { snapshot: true });
      if (!v.ok || v.msg.type !== 'snapshot') {
        rejected++;
        return undefined;
      }
      const now = Date.now();
      for (const e of v.msg.entries) store.applyEntry(e as EntryMessage, undefined, now);
      return v.msg;
    },
  };
}

interface Figures {
  full_sync_s: number;
  propagation_p50_ms: number;
  propagation_p99_ms: number;
  changes: number;
  lost: number;
}

/** The change stream: `publish(cluster, index)` makes one change; the receiver reports what it applied. */
async function stream(
  clusters: Cluster[],
  publish: (c: Cluster, jws: string) => void,
  applied: Map<string, number>,
): Promise<{ p50: number; p99: number; count: number; lost: number }> {
  const sent = new Map<string, number>();
  const count = Math.round(RATE * SECONDS);
  let rng = 7;
  const rand = (n: number) => {
    rng = (rng * 1103515245 + 12345) & 0x7fffffff;
    return rng % n;
  };
  const start = performance.now();
  let k = 0;
  while (k < count) {
    const due = Math.min(count, Math.floor(((performance.now() - start) * RATE) / 1000) + 1);
    for (; k < due; k++) {
      const c = clusters[rand(clusters.length)]!;
      const j = rand(c.services.length);
      c.services = c.services.slice();
      c.services[j] = benchService(`svc-${j}`, c.services[j]!.endpoints.length + 1);
      const id = `${c.name}/svc-${j}@${c.services[j]!.endpoints.length}`;
      sent.set(id, performance.now());
      for (const jws of c.publisher.update(c.services)) publish(c, jws);
    }
    await sleep(start + (k * 1000) / RATE - performance.now());
  }
  const deadline = Date.now() + 10_000;
  while ([...sent.keys()].some((id) => !applied.has(id)) && Date.now() < deadline) await sleep(20);
  const lat: number[] = [];
  for (const [id, t] of sent) {
    const at = applied.get(id);
    if (at !== undefined) lat.push(at - t);
  }
  lat.sort((a, b) => a - b);
  return { p50: percentile(lat, 50), p99: percentile(lat, 99), count, lost: sent.size - lat.length };
}

function figures(
  deliveryS: number,
  syncS: number,
  s: { p50: number; p99: number; count: number; lost: number },
): Figures & { delivery_only_s: number } {
  return {
    delivery_only_s: round(deliveryS),
    full_sync_s: round(syncS),
    propagation_p50_ms: round(s.p50),
    propagation_p99_ms: round(s.p99),
    changes: s.count,
    lost: s.lost,
  };
}

const idOf = (m: EntryMessage) => `${m.cluster}/${m.name}@${m.weight}`;

async function measureKv(
  writer: NatsConnection,
  reader: NatsConnection,
  clusters: Cluster[],
  bundle: TrustBundle,
): Promise<Figures & { fill_s: number; delivery_only_s: number }> {
  const kv = await new Kvm(writer).create('meshfed-bench-catalog', { history: 1 });
  const t0 = performance.now();
  // every value signed on its own, as a KV-based catalog would need
  for (const c of clusters) {
    const signed = c.publisher.update(c.services);
    for (let i = 0; i < signed.length; i += 500) {
      await Promise.all(
        signed.slice(i, i + 500).map((jws, k) => kv.put(`${c.name}.bench.svc-${i + k}`, jws)),
      );
    }
  }
  const fillS = (performance.now() - t0) / 1000;
  console.log(`KV: ${TOTAL} signed values put in ${fillS.toFixed(1)} s`);
  const rkv = await new Kvm(reader).open('meshfed-bench-catalog');
  // the transport alone: a watcher that only counts what it is delivered
  const tRaw = performance.now();
  const rawWatch = await rkv.watch({ key: '>' });
  let delivered = 0;
  for await (const _e of rawWatch) {
    if (++delivered >= TOTAL) break;
  }
  rawWatch.stop();
  const rawS = (performance.now() - tRaw) / 1000;
  console.log(`KV: a watcher that does not verify was delivered ${TOTAL} values in ${rawS.toFixed(2)} s`);
  const r = receiver(bundle);
  const applied = new Map<string, number>();
  let synced = false;
  let loaded: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    loaded = resolve;
  });
  const t1 = performance.now();
  const watch = await rkv.watch({ key: '>' });
  void (async () => {
    for await (const e of watch) {
      const m = r.entry(e.value);
      // (the watcher's own isUpdate flag already marks the last initial value as an update)
      if (!synced) {
        if (r.store.size >= TOTAL) {
          synced = true;
          loaded();
        }
      } else if (m) applied.set(idOf(m), performance.now());
    }
  })();
  await done;
  const syncS = (performance.now() - t1) / 1000;
  console.log(`KV: a new watcher loaded and verified ${r.store.size} entries in ${syncS.toFixed(2)} s`);
  const s = await stream(clusters, (c, jws) => void kv.put(keyOf(c, jws), jws), applied);
  watch.stop();
  await kv.destroy();
  return { fill_s: round(fillS), ...figures(rawS, syncS, s) };
}

/** `<cluster>.bench.<name>` of a signed entry (the payload is read back, not trusted: this is the writer side) */
function keyOf(c: Cluster, jws: string): string {
  const payload = JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString()) as EntryMessage;
  return `${c.name}.bench.${payload.name}`;
}

async function measureSubjects(
  writer: NatsConnection,
  reader: NatsConnection,
  clusters: Cluster[],
  bundle: TrustBundle,
): Promise<Figures & { delivery_only_s: number }> {
  for (const c of clusters) {
    c.publisher.update(c.services, { sign: false });
    writer.subscribe(`bench.sync.${c.name}`, {
      callback: (_e, m) => {
        for (const part of c.publisher.snapshot('r', PART_BYTES)) writer.publish(m.reply!, part);
      },
    });
  }
  await writer.flush();
  const r = receiver(bundle);
  const applied = new Map<string, number>();
  reader.subscribe('bench.catalog.*', {
    callback: (_e, m) => {
      const msg = r.entry(m.data);
      if (msg) applied.set(idOf(msg), performance.now());
    },
  });
  await reader.flush();
  // what a new view does: snapshots of every cluster, a bounded number at a time
  const pullAll = async (onPart: (data: Uint8Array) => number | undefined): Promise<number> => {
    const t = performance.now();
    const queue = [...clusters];
    const pull = async (): Promise<void> => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        const inbox = `_INBOX.bench.${c.name}`;
        let got = 0;
        let parts = Number.POSITIVE_INFINITY;
        const done = new Promise<void>((resolve) => {
          const sub = reader.subscribe(inbox, {
            callback: (_e, m) => {
              const n = onPart(m.data);
              if (n === undefined) return;
              parts = n;
              if (++got >= parts) {
                sub.unsubscribe();
                resolve();
              }
            },
          });
        });
        reader.publish(`bench.sync.${c.name}`, '', { reply: inbox });
        await done;
      }
    };
    await Promise.all(Array.from({ length: SYNC_CONCURRENCY }, pull));
    return (performance.now() - t) / 1000;
  };
  // the transport alone: parts are only counted (their part count read from the payload, unverified)
  const rawS = await pullAll((data) => {
    const s = Buffer.from(data).toString('latin1');
    const payload = Buffer.from(s.slice(s.indexOf('.') + 1, s.lastIndexOf('.')), 'base64url').toString();
    return (JSON.parse(payload) as SnapshotMessage).parts;
  });
  console.log(`subjects: a view that does not verify was delivered ${TOTAL} entries in ${rawS.toFixed(2)} s`);
  const syncS = await pullAll((data) => r.part(data)?.parts);
  console.log(`subjects: a new view pulled and verified ${r.store.size} entries in ${syncS.toFixed(2)} s`);
  const s = await stream(clusters, (c, jws) => writer.publish(`bench.catalog.${c.name}`, jws), applied);
  return figures(rawS, syncS, s);
}

async function main(): Promise<void> {
  // a stuck transport must end the run with a message, not hang it
  setTimeout(() => {
    console.error('catalog-transport: gave up after 10 minutes');
    process.exit(1);
  }, 600_000).unref();
  console.log(
    `== transport: JetStream KV vs plain subjects, ${CLUSTERS} clusters × ${PER_CLUSTER} = ${TOTAL} entries, ${RATE} changes/s for ${SECONDS} s`,
  );
  const server = await startNatsServer({ name: 'transport', jetstream: true });
  const pki: { bundle?: TrustBundle } = {};
  try {
    const writer = await connect({ servers: server.url });
    const reader = await connect({ servers: server.url });
    // each transport gets its own clusters (same content), so revisions and change streams do not mix
    const kv = await measureKv(writer, reader, await makeClusters(pki), pki.bundle!);
    const subjects = await measureSubjects(writer, reader, await makeClusters(pki), pki.bundle!);
    await writer.close();
    await reader.close();
    const ratio = (a: number, b: number) => round(a / b);
    const out = {
      entries: TOTAL,
      clusters: CLUSTERS,
      rate_per_s: RATE,
      seconds: SECONDS,
      kv,
      subjects,
      ratio_kv_over_subjects: {
        full_sync: ratio(kv.full_sync_s, subjects.full_sync_s),
        delivery_only: ratio(kv.delivery_only_s, subjects.delivery_only_s),
        propagation_p50: ratio(kv.propagation_p50_ms, subjects.propagation_p50_ms),
        propagation_p99: ratio(kv.propagation_p99_ms, subjects.propagation_p99_ms),
      },
      meta: {
        date: new Date().toISOString(),
        node: process.version,
        cpus: cpus().length,
        nats_server: server.url,
        command: `npm run bench:catalog-transport -- ${process.argv.slice(2).join(' ')}`.trim(),
        note: 'one JetStream-enabled nats-server, writer and reader in one process; shared 2-core host',
      },
    };
    console.log(
      `KV:       full sync ${kv.full_sync_s} s, propagation p50 ${kv.propagation_p50_ms} ms p99 ${kv.propagation_p99_ms} ms (lost ${kv.lost})`,
    );
    console.log(
      `subjects: full sync ${subjects.full_sync_s} s, propagation p50 ${subjects.propagation_p50_ms} ms p99 ${subjects.propagation_p99_ms} ms (lost ${subjects.lost})`,
    );
    console.log(
      `KV ÷ subjects: full sync ×${out.ratio_kv_over_subjects.full_sync} (delivery alone ×${out.ratio_kv_over_subjects.delivery_only}), p50 ×${out.ratio_kv_over_subjects.propagation_p50}, p99 ×${out.ratio_kv_over_subjects.propagation_p99}`,
    );
    mergeResults('catalog-transport.json', { [`${TOTAL}`]: out });
    console.log('wrote bench/results/catalog-transport.json');
  } finally {
    await server.stop();
    server.cleanup();
  }
  process.exit(0);
}

await main();
