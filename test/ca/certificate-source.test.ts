import { once } from 'node:events';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type CaMaterial,
  CertificateSource,
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
  TrustBundle,
  verify,
} from '../../ca/index.ts';
import { waitFor, silentLogger } from '../../core/index.ts';
import { scratchDir } from './helpers.ts';

let root: CaMaterial;
let east: CaMaterial;
let bundle: TrustBundle;

beforeAll(async () => {
  root = await createRoot({ trustDomain: 'mesh.example' });
  east = await issueIntermediate(root, { cluster: 'east' });
  bundle = TrustBundle.fromPem(root.certPem);
});

/** A short-lived gateway leaf that starts now (not backdated), so 2/3 of its life is about 2 s away. */
const shortLeaf = (): Promise<IssuedLeaf> =>
  issueLeaf(east, { kind: 'gateway', name: 'gw-1', ttlMs: 3000, notBefore: new Date() });

function rotated(src: CertificateSource, timeoutMs: number): Promise<IssuedLeaf> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no 'rotated' within ${timeoutMs} ms`)), timeoutMs);
    src.once('rotated', (leaf: IssuedLeaf) => {
      clearTimeout(t);
      resolve(leaf);
    });
  });
}

test('renews at 2/3 of the life, emits rotated, and the old leaf still verifies during the overlap', async () => {
  const calls: number[] = [];
  const src = new CertificateSource({
    logger: silentLogger(),
    issue: () => {
      calls.push(Date.now());
      return issueLeaf(east, { kind: 'gateway', name: 'gw-1', ttlMs: 4500, notBefore: new Date() });
    },
    bundle: () => bundle,
  });
  try {
    const first = await src.start();
    expect(src.current()).toBe(first);
    const next = await rotated(src, 15_000);
    const life = first.notAfter.getTime() - first.notBefore.getTime();
    // the renewal started at 2/3 of the life (not at once), while the old leaf was still valid
    expect(calls).toHaveLength(2);
    expect(calls[1]! - first.notBefore.getTime()).toBeGreaterThanOrEqual(life * 0.6);
    expect(calls[1]!).toBeLessThan(first.notAfter.getTime());
    expect(next.serial).not.toBe(first.serial);
    expect(src.current()).toBe(next);
    const during = new Date(calls[1]!);
    expect(verify(first.chainPem, bundle, { now: during }).serial).toBe(first.serial);
    expect(verify(next.chainPem, bundle, { now: new Date(next.notBefore.getTime() + 1000) }).serial).toBe(
      next.serial,
    );
  } finally {
    src.stop();
  }
});

test('a failed renewal emits error, keeps the current leaf, and is retried', async () => {
  let calls = 0;
  const src = new CertificateSource({
    logger: silentLogger(),
    issue: async () => {
      calls++;
      if (calls === 2) throw new Error('CA unreachable');
      return shortLeaf();
    },
    bundle: () => bundle,
    renewAt: 0.2,
  });
  const errors: unknown[] = [];
  src.on('error', (e) => errors.push(e));
  try {
    const first = await src.start();
    const next = await rotated(src, 15_000);
    expect(errors).toHaveLength(1);
    expect((errors[0] as { code: string }).code).toBe('MESHFED_INTERNAL');
    expect(calls).toBe(3);
    expect(next.serial).not.toBe(first.serial);
  } finally {
    src.stop();
  }
});

test('current() before start() and a bad renewAt are usage errors', () => {
  const src = new CertificateSource({ logger: silentLogger(), issue: shortLeaf, bundle: () => bundle });
  expect(() => src.current()).toThrow(expect.objectContaining({ code: 'MESHFED_INTERNAL' }));
  expect(
    () =>
      new CertificateSource({ logger: silentLogger(), issue: shortLeaf, bundle: () => bundle, renewAt: 1.5 }),
  ).toThrow(expect.objectContaining({ code: 'MESHFED_USAGE' }));
});

test('fromFiles re-reads files replaced by rename and ignores a half-written pair', async () => {
  const { dir, cleanup } = scratchDir();
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const bundleFile = join(dir, 'bundle.crt');
  const put = (path: string, text: string): void => {
    writeFileSync(`${path}.tmp`, text, { mode: 0o600 });
    renameSync(`${path}.tmp`, path);
  };
  const a = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
  put(certFile, a.chainPem);
  put(keyFile, a.keyPem);
  put(bundleFile, root.certPem);
  const src = CertificateSource.fromFiles({
    logger: silentLogger(),
    certFile,
    keyFile,
    bundleFile,
    pollMs: 50,
  });
  const errors: { code: string }[] = [];
  src.on('error', (e) => errors.push(e));
  try {
    const first = await src.start();
    expect(first.serial).toBe(a.serial);
    expect(first.spiffeId).toBe('spiffe://mesh.example/cluster/east/gateway/gw-1');
    expect(src.bundle().size).toBe(1);

    const b = await issueLeaf(east, { kind: 'gateway', name: 'gw-1' });
    const got = rotated(src, 10_000);
    put(certFile, b.chainPem); // the key is still a's: refused until it arrives
    await waitFor(() => errors.some((e) => e.code === 'MESHFED_CA_KEY_MISMATCH'), {
      timeoutMs: 10_000,
      what: 'key mismatch',
    });
    expect(src.current().serial).toBe(a.serial);
    put(keyFile, b.keyPem);
    expect((await got).serial).toBe(b.serial);
    expect(src.current().serial).toBe(b.serial);
  } finally {
    src.stop();
    cleanup();
  }
});

test('rotated fires for every renewal while listeners swap TLS contexts', async () => {
  const src = new CertificateSource({
    logger: silentLogger(),
    issue: shortLeaf,
    bundle: () => bundle,
    renewAt: 0.3,
  });
  try {
    await src.start();
    const [leaf] = (await Promise.race([
      once(src, 'rotated'),
      // unref'd: once the rotation is seen it must not keep jest's worker alive for the rest of the 15 s
      new Promise((_, reject) => setTimeout(() => reject(new Error('no rotation')), 15_000).unref()),
    ])) as [IssuedLeaf];
    expect(verify(leaf.chainPem, bundle, { kinds: ['gateway'] }).serial).toBe(leaf.serial);
  } finally {
    src.stop();
  }
});

test('a step of the wall clock past the renewal point renews within a recheck, not at the old timer', async () => {
  let offset = 0;
  let reads = 0;
  const calls: number[] = [];
  const src = new CertificateSource({
    logger: silentLogger(),
    issue: () => {
      calls.push(Date.now());
      // an hour of life: the renewal point is 40 min away on a clock that does not step
      return issueLeaf(east, { kind: 'gateway', name: 'gw-1', ttlMs: 3_600_000, notBefore: new Date() });
    },
    bundle: () => bundle,
    now: () => {
      reads++;
      return Date.now() + offset;
    },
    recheckMs: 50,
  });
  try {
    const first = await src.start();
    const next = rotated(src, 10_000);
    // nothing happens while the clock runs as it should: several rechecks read it, none renews
    const readsAtStart = reads;
    await waitFor(() => reads >= readsAtStart + 3, { timeoutMs: 5_000, what: 'three rechecks of the clock' });
    expect(calls).toHaveLength(1);
    // the clock steps 50 min forward (past 2/3 of the life): renewed at the next recheck
    offset = 50 * 60_000;
    const leaf = await next;
    expect(calls).toHaveLength(2);
    expect(leaf.serial).not.toBe(first.serial);
  } finally {
    src.stop();
  }
});
