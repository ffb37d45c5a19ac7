import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import {
  type CaMaterial,
  createRoot,
  type IssuedLeaf,
  issueIntermediate,
  issueLeaf,
} from '../../ca/index.ts';
import { runCli } from '../../cli/main.ts';
import { waitFor } from '../../core/index.ts';
import { startNatsServer } from '../../cli/demo/nats-topology.ts';
import type { NatsServerProcess } from '../../cli/demo/nats-server-process.ts';
import { type GatewayProcess, startGatewayProcess } from './daemon-process.ts';
import { echoServer, tunnelGet, tunnelSession } from './harness.ts';

// SIGHUP after `meshfed ca bundle add`: a real gateway daemon, in one process and with data-plane workers,
// accepts gateways of the added root on its east-west listener without a restart; after `bundle remove`,
// their established tunnels close. The daemon also notices a changed bundle file by itself.

async function cli(...argv: string[]): Promise<number> {
  const sink = new PassThrough();
  sink.resume();
  return runCli(argv, { stdout: sink, stderr: sink });
}

describe.each([
  ['one process', 1],
  ['two workers', 2],
])('trust bundle reload (%s)', (_mode, workers) => {
  let nats: NatsServerProcess;
  let gw: GatewayProcess;
  let backend: Awaited<ReturnType<typeof echoServer>>;
  let nextRoot: CaMaterial;
  let westNext: IssuedLeaf;

  /** one request over a new tunnel session as `leaf`: its status, 0 when the gateway refused us */
  async function fresh(leaf: IssuedLeaf): Promise<number> {
    const t = tunnelSession(gw.eastWest, leaf, gw.root.certPem);
    try {
      await t.connected;
      return await tunnelGet(t.session, leaf, { namespace: 'shop', name: 'web' });
    } catch {
      return 0;
    } finally {
      t.session.destroy();
    }
  }

  /** several fresh sessions, so that with workers each of them is asked */
  async function freshMany(leaf: IssuedLeaf, n = 8): Promise<number[]> {
    return Promise.all(Array.from({ length: n }, () => fresh(leaf)));
  }

  beforeAll(async () => {
    nats = await startNatsServer({ name: `trust-reload-${workers}` });
    backend = await echoServer('east-web');
    gw = await startGatewayProcess({
      natsUrl: nats.url,
      services: { web: backend.address },
      config: { workers, observability: { logLevel: 'info' } },
    });
    nextRoot = await createRoot({ trustDomain: 'mesh.example' });
    westNext = await issueLeaf(await issueIntermediate(nextRoot, { cluster: 'west' }), {
      kind: 'gateway',
      name: 'west-gw',
    });
  }, 90_000);

  afterAll(async () => {
    await gw?.stop();
    backend?.server.close();
    await nats?.stop();
  });

  test('regression: a gateway of a root added with `ca bundle add` is accepted after SIGHUP', async () => {
    expect(await freshMany(westNext)).toEqual(Array(8).fill(0));
    const rootFile = join(gw.dir, 'next-root.crt');
    writeFileSync(rootFile, nextRoot.certPem);
    expect(await cli('ca', 'bundle', 'add', join(gw.dir, 'ca', 'bundle.crt'), rootFile)).toBe(0);
    gw.child.kill('SIGHUP');
    await waitFor(async () => (await freshMany(westNext)).every((s) => s === 200), {
      timeoutMs: 15_000,
      intervalMs: 200,
      what: 'the added root to be trusted on every listener',
    });
  }, 60_000);

  test('a bundle file that cannot be parsed is refused with a logged code, and the bundle in use is kept', async () => {
    const file = join(gw.dir, 'ca', 'bundle.crt');
    const good = readFileSync(file, 'utf8');
    // what a reader sees of a file written in place and cut short: the last root's block begun, not ended
    writeFileSync(file, good.slice(0, good.lastIndexOf('-----BEGIN') + 100));
    try {
      gw.child.kill('SIGHUP');
      await waitFor(() => gw.output().includes('"code":"MESHFED_CA_MALFORMED"'), {
        timeoutMs: 15_000,
        what: 'the refused reload to be logged',
      });
      expect(await freshMany(westNext)).toEqual(Array(8).fill(200));
    } finally {
      writeFileSync(file, good);
    }
  }, 60_000);

  test('`ca bundle remove` + SIGHUP closes the established tunnels of that root and refuses new ones', async () => {
    const established = tunnelSession(gw.eastWest, westNext, gw.root.certPem);
    expect(await tunnelGet(established.session, westNext, { namespace: 'shop', name: 'web' })).toBe(200);
    const fingerprint = new X509Certificate(nextRoot.certPem).fingerprint256;
    expect(await cli('ca', 'bundle', 'remove', join(gw.dir, 'ca', 'bundle.crt'), fingerprint)).toBe(0);
    gw.child.kill('SIGHUP');
    await waitFor(() => established.session.closed || established.session.destroyed, {
      timeoutMs: 15_000,
      what: 'the tunnel of a gateway under the removed root to close',
    });
    expect(await freshMany(westNext)).toEqual(Array(8).fill(0));
  }, 60_000);

  test('a bundle file changed on disk is applied without SIGHUP', async () => {
    const rootFile = join(gw.dir, 'next-root.crt');
    expect(await freshMany(westNext)).toEqual(Array(8).fill(0));
    expect(await cli('ca', 'bundle', 'add', join(gw.dir, 'ca', 'bundle.crt'), rootFile)).toBe(0);
    await waitFor(async () => (await freshMany(westNext)).every((s) => s === 200), {
      timeoutMs: 15_000,
      intervalMs: 200,
      what: 'the changed bundle file to be applied',
    });
  }, 60_000);
});
