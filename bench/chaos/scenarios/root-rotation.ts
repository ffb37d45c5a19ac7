// The three-step root rotation of docs/ca.md under load, done with the real `meshfed ca` commands on the
// chaos federation's CA files while east's load crosses to west and eu: 1. `ca rotate --out` and
// `ca bundle add` on every gateway's CA dir; 2. `ca cluster --force` under the new root; 3. `ca rotate
// --retire` and `ca bundle remove`. The gateways pick every change up the way they do in production (their
// trust-file watch: no SIGHUP, no restart). Pass: not one request fails, and the certificate each gateway
// presents on its east-west listener has a new serial and chains to the new root only.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { TrustBundle, verify } from '../../../ca/index.ts';
import { waitFor } from '../../../core/index.ts';
import { TUNNEL_ALPN } from '../../../gateway/index.ts';
import { round } from '../../figures.ts';
import { Federation, threeClusters } from '../federation.ts';
import type { GatewayProc } from '../processes.ts';
import {
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  sourceLoad,
  summarize,
  withFederation,
} from '../scenario.ts';

const BIN = fileURLToPath(new URL('../../../bin/meshfed.js', import.meta.url));
/** a gateway polls its trust files every 2 s: each step is given far more than that */
const STEP_TIMEOUT_MS = 60_000;
/** load after the rotation has finished, so that sessions opened under the new root are exercised too */
const TAIL_MS = 5_000;

/** `meshfed <argv> --json`, its parsed output; rejects with the command's stderr when it fails */
async function meshfed(argv: string[]): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [BIN, ...argv, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    err += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  if (code !== 0) throw new Error(`meshfed ${argv.join(' ')} exited ${code}: ${err.trim().slice(0, 500)}`);
  return out.trim() ? (JSON.parse(out) as Record<string, unknown>) : {};
}

interface Presented {
  /** the leaf and its intermediate, DER, as any TLS client receives them */
  chain: [Buffer, Buffer];
  serial: string;
  /** the leaf's issuer and the issuer's issuer (the root), as distinguished names */
  issuer: string;
  /** the SHA-256 fingerprint of the intermediate that issued the leaf */
  issuerFingerprint: string;
  rootIssuer: string;
}

/** the certificate chain `g` presents on its east-west listener right now */
function presented(g: GatewayProc): Promise<Presented> {
  const at = g.addresses.eastWest.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: g.addresses.eastWest.slice(0, at),
      port: Number(g.addresses.eastWest.slice(at + 1)),
      // only read here; verify() below decides what the chain is worth
      rejectUnauthorized: false,
      ALPNProtocols: [TUNNEL_ALPN, 'h2'],
      timeout: 5000,
    });
    socket.once('timeout', () => socket.destroy(new Error(`${g.name}: no TLS handshake within 5 s`)));
    socket.once('secureConnect', () => {
      const leaf = socket.getPeerCertificate(true);
      const inter = leaf.issuerCertificate;
      socket.destroy();
      if (!inter?.raw) return reject(new Error(`${g.name} presented no intermediate`));
      const dn = (x: Record<string, unknown>) =>
        Object.entries(x)
          .map(([k, v]) => `${k}=${v}`)
          .join(',');
      resolve({
        chain: [leaf.raw, inter.raw],
        serial: leaf.serialNumber,
        issuer: dn(leaf.issuer as unknown as Record<string, unknown>),
        issuerFingerprint: inter.fingerprint256,
        rootIssuer: dn(inter.issuer as unknown as Record<string, unknown>),
      });
    });
    socket.once('error', reject);
  });
}

/** the root of the root directory `dir` alone */
function bundleOf(dir: string): TrustBundle {
  return TrustBundle.fromPem(readFileSync(join(dir, 'root.crt'), 'utf8'));
}

/** the root `chain` verifies to within `bundle`, or undefined when it does not verify there */
function rootOf(chain: Presented['chain'], bundle: TrustBundle): string | undefined {
  try {
    return verify(chain, bundle, { kinds: ['gateway'] }).chainRootFingerprint256;
  } catch {
    return undefined;
  }
}

export const rootRotation: Scenario = {
  name: 'root-rotation',
  criterion:
    'three-step root rotation (meshfed ca rotate + bundle add, ca cluster --force, rotate --retire + bundle remove) on every gateway under load: 0 failed requests; the certificate every gateway presents has a new serial and issuer and chains to the new root only',
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters());
    return withFederation(fed, ctx, async () => {
      const notes: string[] = [];
      // the federation's root, as `meshfed ca init` lays a root directory out
      const root1 = join(fed.dir, 'root1');
      const root2 = join(fed.dir, 'root2');
      mkdirSync(root1, { mode: 0o700 });
      writeFileSync(join(root1, 'root.crt'), fed.root!.certPem);
      writeFileSync(join(root1, 'bundle.crt'), fed.root!.certPem);
      writeFileSync(join(root1, 'root.key'), fed.root!.keyPem, { mode: 0o600 });
      const caDir = (g: GatewayProc) => join(g.dir, 'ca');
      const oldBundle = TrustBundle.fromPem(fed.root!.certPem);
      const before = await Promise.all(fed.gateways.map(presented));

      // bounded by the load's own count; stopped once the rotation is done and TAIL_MS more have run
      const load = sourceLoad(fed, ctx, ctx.durationMs + 3 * STEP_TIMEOUT_MS);
      const done = load.run();
      const rootsOf = async (g: GatewayProc) =>
        ((await meshfed(['status', '--config', g.configFile])).bundle_root_fingerprints as string[]) ?? [];
      const everyGateway = (what: string, ok: (g: GatewayProc) => Promise<boolean>) =>
        Promise.all(
          fed.gateways.map((g) =>
            waitFor(() => ok(g), {
              timeoutMs: STEP_TIMEOUT_MS,
              intervalMs: 500,
              what: `${g.cluster}/${g.name} ${what}`,
            }),
          ),
        );
      const steps: Record<string, number> = {};
      let rotatedAt = 0;
      /** when each step began, ms into the load: the failures are told apart by step below */
      const began: [string, number][] = [['before', 0]];
      try {
        await waitFor(() => load.now() >= ctx.durationMs * 0.2, {
          timeoutMs: ctx.durationMs,
          intervalMs: 50,
          what: 'the load to be under way',
        });
        const t0 = load.now();
        began.push(['trustBoth', t0]);
        ctx.log(`step 1 at ${Math.round(t0)} ms: new root, every bundle trusts both`);
        const rotated = await meshfed(['ca', 'rotate', '--ca', root1, '--out', root2]);
        const newRoot = String(rotated.newRoot);
        for (const g of fed.gateways)
          await meshfed(['ca', 'bundle', 'add', join(caDir(g), 'bundle.crt'), join(root2, 'root.crt')]);
        await everyGateway('to trust both roots', async (g) => (await rootsOf(g)).length === 2);
        steps.trustBothMs = round(load.now() - t0);

        const t1 = load.now();
        began.push(['reissue', t1]);
        ctx.log(`step 2 at ${Math.round(t1)} ms: every cluster's intermediate re-issued under the new root`);
        for (const g of fed.gateways)
          await meshfed([
            'ca',
            'cluster',
            '--ca',
            root2,
            '--cluster',
            g.cluster,
            '--out',
            caDir(g),
            '--force',
          ]);
        await everyGateway(
          'to present a certificate under the new root',
          async (g) => rootOf((await presented(g)).chain, bundleOf(root2)) === newRoot,
        );
        steps.reissueMs = round(load.now() - t1);

        const t2 = load.now();
        began.push(['retire', t2]);
        ctx.log(`step 3 at ${Math.round(t2)} ms: the old root retired from every bundle`);
        const retired = String((await meshfed(['ca', 'rotate', '--ca', root2, '--retire', root1])).retired);
        for (const g of fed.gateways)
          await meshfed(['ca', 'bundle', 'remove', join(caDir(g), 'bundle.crt'), retired]);
        await everyGateway('to trust the new root only', async (g) => {
          const roots = await rootsOf(g);
          return roots.length === 1 && roots[0] === newRoot;
        });
        steps.retireMs = round(load.now() - t2);
        rotatedAt = load.now();
        began.push(['after', rotatedAt]);
        steps.rotationMs = round(rotatedAt - t0);
      } catch (err) {
        notes.push(`the rotation did not complete: ${(err as Error).message.slice(0, 600)}`);
      }
      const stopAt = Math.max(ctx.durationMs, rotatedAt + TAIL_MS);
      await waitFor(() => load.now() >= stopAt, {
        timeoutMs: stopAt + 10_000,
        intervalMs: 100,
        what: 'the tail of the load',
      }).catch(() => undefined);
      load.stop();
      const outcomes = await done;
      await load.close();
      const s = summarize(outcomes);
      // failed requests by the step they were due in, and why (timeouts apart: those say the host was full)
      const failedByStep: Record<string, Record<string, number>> = {};
      for (const o of outcomes) {
        if (o.ok) continue;
        const step = began.filter(([, at]) => o.due >= at).at(-1)![0];
        failedByStep[step] ??= {};
        const by = failedByStep[step];
        const key = `${o.kind}: ${o.error}`;
        by[key] = (by[key] ?? 0) + 1;
      }

      const after = await Promise.all(fed.gateways.map(presented));
      const newBundle = bundleOf(root2);
      const certificates = fed.gateways.map((g, i) => {
        const [b, a] = [before[i]!, after[i]!];
        const c = {
          gateway: `${g.cluster}/${g.name}`,
          serialBefore: b.serial,
          serialAfter: a.serial,
          issuerBefore: b.issuer,
          issuerAfter: a.issuer,
          issuerChanged: a.issuerFingerprint !== b.issuerFingerprint,
          rootBefore: b.rootIssuer,
          rootAfter: a.rootIssuer,
          chainsToOldRoot: rootOf(a.chain, oldBundle) !== undefined,
          chainsToNewRoot: rootOf(a.chain, newBundle) !== undefined,
        };
        if (c.serialAfter === c.serialBefore)
          notes.push(`${c.gateway} still presents serial ${c.serialBefore}`);
        if (!c.issuerChanged)
          notes.push(`${c.gateway} still presents a leaf of intermediate ${b.issuerFingerprint}`);
        if (c.rootAfter === c.rootBefore)
          notes.push(`${c.gateway}'s intermediate is still issued by ${c.rootBefore}`);
        if (c.chainsToOldRoot) notes.push(`${c.gateway}'s certificate still chains to the retired root`);
        if (!c.chainsToNewRoot) notes.push(`${c.gateway}'s certificate does not chain to the new root`);
        return c;
      });
      // what each gateway refused meanwhile (a peer certificate it could not verify shows here)
      const refused: Record<string, string[]> = {};
      for (const g of fed.gateways) {
        const lines = (await g.metrics().catch(() => ''))
          .split('\n')
          .filter((l) => l.startsWith('meshfed_refused_total') && !l.endsWith(' 0'));
        if (lines.length) refused[`${g.cluster}/${g.name}`] = lines;
      }
      const loss = await lossCheck(fed, load);
      notes.push(...lossNotes(loss));
      if (s.failed > 0) notes.push(`${s.failed} requests failed during the rotation`);
      return {
        pass: notes.length === 0,
        figures: { ...steps, ...loadFigures(s), failedByStep, refused, certificates },
        notes,
      };
    });
  },
};
