// Benchmark of ca/: leaf issuance, verify() cold and cached, and mutual-TLS handshakes per core for ECDSA P-256 vs
// RSA-2048 gateway certificates. Prints figures only (no pass/fail). The machine is shared: quote medians.
//   npm run bench:ca            (BENCH_SECONDS=3 by default per measurement)
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { availableParallelism, cpus } from 'node:os';
import { connect, createServer } from 'node:tls';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import {
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  type KeyType,
  peerCertificateChain,
  TrustBundle,
  verify,
} from '../ca/index.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const KEY_TYPES: KeyType[] = ['ecdsa-p256', 'rsa-2048'];

interface Stats {
  n: number;
  perSec: number;
  medianUs: number;
  p99Us: number;
}

function stats(samplesNs: number[], elapsedMs: number): Stats {
  const s = [...samplesNs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))]! / 1000;
  return {
    n: s.length,
    perSec: Math.round((s.length / elapsedMs) * 1000),
    medianUs: Math.round(at(0.5)),
    p99Us: Math.round(at(0.99)),
  };
}

/** Runs `op` until `SECONDS` pass or `maxOps` are done (every loop bounded in count and time). */
async function measure(op: (i: number) => unknown, maxOps: number): Promise<Stats> {
  const samples: number[] = [];
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  for (let i = 0; i < maxOps && performance.now() < deadline; i++) {
    const t = process.hrtime.bigint();
    await op(i);
    samples.push(Number(process.hrtime.bigint() - t));
  }
  return stats(samples, performance.now() - start);
}

async function tlsServerWorker(): Promise<void> {
  const { leaf, bundlePem, intermediatesPem } = workerData as {
    leaf: IssuedLeaf;
    bundlePem: string;
    intermediatesPem: string;
  };
  const bundle = TrustBundle.fromPem(bundlePem);
  bundle.addIntermediates(intermediatesPem);
  let refused = 0;
  const server = createServer(
    { cert: leaf.chainPem, key: leaf.keyPem, ca: bundlePem, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      try {
        verify(peerCertificateChain(socket), bundle, { kinds: ['gateway'], usage: 'client' });
        socket.end('ok');
      } catch {
        refused++;
        socket.destroy();
      }
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  parentPort!.postMessage({ port: (server.address() as AddressInfo).port });
  parentPort!.on('message', () => {
    server.close();
    parentPort!.postMessage({ refused });
  });
}

/** Full mutual-TLS handshakes (no resumption) against a server in a worker thread: one core each side. */
async function handshakes(keyType: KeyType): Promise<Stats & { concurrency: number }> {
  const root = await createRoot({ trustDomain: 'bench.example', keyType });
  const east = await issueIntermediate(root, { cluster: 'east' });
  const west = await issueIntermediate(root, { cluster: 'west' });
  const serverLeaf = await issueLeaf(west, { kind: 'gateway', name: 'gw' });
  const clientLeaf = await issueLeaf(east, { kind: 'gateway', name: 'gw' });
  const bundle = TrustBundle.fromPem(root.certPem);
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { leaf: serverLeaf, bundlePem: root.certPem, intermediatesPem: east.certPem },
  });
  const [{ port }] = (await once(worker, 'message')) as [{ port: number }];
  const one = async (): Promise<void> => {
    const s = connect({
      host: '127.0.0.1',
      port,
      cert: clientLeaf.chainPem,
      key: clientLeaf.keyPem,
      ca: root.certPem,
      checkServerIdentity: () => undefined,
    });
    await once(s, 'secureConnect');
    verify(peerCertificateChain(s), bundle, { cluster: 'west', kinds: ['gateway'], usage: 'server' });
    s.resume(); // drain the server's reply so 'end' can fire
    await once(s, 'end');
    s.destroy();
  };
  // warm up: worker module loading and the first TLS context are not handshake costs
  for (let i = 0; i < 5; i++) await one();
  const concurrency = 4;
  const samples: number[] = [];
  const start = performance.now();
  const deadline = start + SECONDS * 1000;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline && done < 20_000) {
        const t = process.hrtime.bigint();
        await one();
        samples.push(Number(process.hrtime.bigint() - t));
        done++;
      }
    }),
  );
  const elapsed = performance.now() - start;
  worker.postMessage('stop');
  const [{ refused }] = (await once(worker, 'message')) as [{ refused: number }];
  if (refused > 0) throw new Error(`${refused} handshakes were refused by verify()`);
  await worker.terminate();
  return { ...stats(samples, elapsed), concurrency };
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = {};
  const rows: string[][] = [];
  const row = (what: string, keyType: string, s: Stats, note = ''): void => {
    rows.push([what, keyType, String(s.perSec), String(s.medianUs), String(s.p99Us), String(s.n), note]);
    results[`${what} ${keyType}`] = s;
  };
  for (const keyType of KEY_TYPES) {
    const root = await createRoot({ trustDomain: 'bench.example', keyType });
    const east = await issueIntermediate(root, { cluster: 'east' });
    const bundle = TrustBundle.fromPem(root.certPem);
    await issueLeaf(east, { kind: 'gateway', name: 'warm' });
    const issued: IssuedLeaf[] = [];
    row(
      'issue leaf',
      keyType,
      await measure(
        async () => {
          issued.push(await issueLeaf(east, { kind: 'gateway', name: 'gw' }));
        },
        keyType === 'ecdsa-p256' ? 5000 : 200,
      ),
      'key generation + signing',
    );
    // cold: every chain is new to the process (parse, extensions, signatures); cached: the same peer again
    row(
      'verify cold',
      keyType,
      await measure((i) => verify(issued[i]!.chainPem, bundle), issued.length),
      'distinct chains',
    );
    const chain = issued[0]!.chainPem;
    row(
      'verify cached',
      keyType,
      await measure(() => verify(chain, bundle, { cluster: 'east' }), 1_000_000),
      'same chain, PEM',
    );
    const der = [issued[0]!.certPem, east.certPem].map((p) =>
      Buffer.from(p.replace(/-----[^-]+-----|\s/g, ''), 'base64'),
    );
    row(
      'verify cached',
      `${keyType} DER`,
      await measure(() => verify(der, bundle), 1_000_000),
      'same chain, DER buffers',
    );
    const hs = await handshakes(keyType);
    row('mTLS handshake', keyType, hs, `server 1 worker thread, ${hs.concurrency} client conns`);
  }
  const header = ['operation', 'key', 'per s', 'median us', 'p99 us', 'n', 'note'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  process.stdout.write(
    `meshfed ca benchmark — node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? '?'}), ${SECONDS}s per figure; shared machine: noisy, compare medians\n`,
  );
  process.stdout.write(`${[line(header), ...rows.map(line)].join('\n')}\n`);
  const e = results['mTLS handshake ecdsa-p256'] as Stats;
  const r = results['mTLS handshake rsa-2048'] as Stats;
  process.stdout.write(`ECDSA/RSA handshake ratio (per s): ${(e.perSec / r.perSec).toFixed(2)}x\n`);
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(
    new URL('./results/ca.json', import.meta.url),
    `${JSON.stringify({ date: new Date().toISOString(), node: process.version, cores: availableParallelism(), seconds: SECONDS, results }, null, 2)}\n`,
  );
}

if (isMainThread) await main();
else await tlsServerWorker();
