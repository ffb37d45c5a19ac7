import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { Readable } from 'node:stream';

// 128 MiB up and 128 MiB down through two gateways (egress → mTLS tunnel → local endpoint) that run in
// their own process, whose memory is sampled every 5 ms: bodies must stream, never be buffered.

const SIZE = 128 * 1024 * 1024;
const CHUNK = 64 * 1024;
/**
 * Far below the transfer: what the pipes, TLS records and HTTP/2 windows may hold at once, plus socket
 * chunks not yet collected when the 5 ms sampler reads the peak (measured 5-12 MB on the HTTP/2 tunnel,
 * 20-34 MB on the HTTP/1.1 fast path, which hands every socket chunk on without copying but leaves more
 * of them to the collector); a gateway that buffered a body would grow by the body's 128 MiB
 */
const MAX_ARRAY_BUFFER_GROWTH = 40 * 1024 * 1024;
const MAX_RSS_GROWTH = 48 * 1024 * 1024;

type Usage = { rss: number; arrayBuffers: number };

let backend: http.Server;
let child: ChildProcess;
let lines: Interface;
let egress: string;

/** Yields `size` bytes in chunks as the consumer asks for them. */
function body(size: number): Readable {
  const chunk = Buffer.alloc(CHUNK, 0x61);
  let left = size;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(CHUNK, left);
      left -= n;
      this.push(n === CHUNK ? chunk : chunk.subarray(0, n));
    },
  });
}

async function command(c: string): Promise<Record<string, Usage>> {
  const answer = once(lines, 'line');
  child.stdin?.write(`${c}\n`);
  return JSON.parse((await answer)[0] as string) as Record<string, Usage>;
}

beforeAll(async () => {
  backend = http.createServer((req, res) => {
    if (req.method === 'POST') {
      let size = 0;
      req.on('data', (d: Buffer) => {
        size += d.length;
      });
      req.on('end', () => res.end(JSON.stringify({ size })));
      return;
    }
    res.writeHead(200, { 'content-length': SIZE });
    body(SIZE).pipe(res);
  });
  backend.listen(0, '127.0.0.1');
  await once(backend, 'listening');
  const address = `127.0.0.1:${(backend.address() as AddressInfo).port}`;
  child = spawn(
    process.execPath,
    ['--expose-gc', join(process.cwd(), 'test', 'gateway', 'fixtures', 'two-gateways.ts'), address],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  lines = createInterface({ input: child.stdout! });
  const [first] = await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(([code]) => Promise.reject(new Error(`the gateways exited with ${code}`))),
  ]);
  egress = (JSON.parse(first as string) as { egress: string }).egress;
  // warm up: sessions, pools and JIT before the baseline
  await upload(1024 * 1024);
  await download();
}, 30_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    const exited = once(child, 'exit');
    child.stdin?.end();
    await exited;
  }
  backend?.close();
});

function target() {
  const i = egress.lastIndexOf(':');
  return { host: egress.slice(0, i), port: Number(egress.slice(i + 1)) };
}

function upload(size: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        ...target(),
        method: 'POST',
        path: '/upload',
        headers: { host: 'bulk.shop.svc.clusterset.local', 'content-length': size },
        agent: false,
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => resolve((JSON.parse(text) as { size: number }).size));
      },
    );
    req.on('error', reject);
    body(size).pipe(req);
  });
}

function download(): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(
        { ...target(), path: '/download', headers: { host: 'bulk.shop.svc.clusterset.local' }, agent: false },
        (res) => {
          let size = 0;
          res.on('data', (d: Buffer) => {
            size += d.length;
          });
          res.on('end', () => resolve(size));
          res.on('error', reject);
        },
      )
      .on('error', reject);
  });
}

function growth(r: Record<string, Usage>): Usage {
  return {
    rss: r.peak!.rss - r.baseline!.rss,
    arrayBuffers: r.peak!.arrayBuffers - r.baseline!.arrayBuffers,
  };
}

test('a 128 MiB upload crosses both gateways intact while their process grows far less than the body', async () => {
  await command('baseline');
  expect(await upload(SIZE)).toBe(SIZE);
  const g = growth(await command('report'));
  expect(g.arrayBuffers).toBeLessThan(MAX_ARRAY_BUFFER_GROWTH);
  expect(g.rss).toBeLessThan(MAX_RSS_GROWTH);
}, 120_000);

test('a 128 MiB download crosses both gateways intact while their process grows far less than the body', async () => {
  await command('baseline');
  expect(await download()).toBe(SIZE);
  const g = growth(await command('report'));
  expect(g.arrayBuffers).toBeLessThan(MAX_ARRAY_BUFFER_GROWTH);
  expect(g.rss).toBeLessThan(MAX_RSS_GROWTH);
}, 120_000);
