// The catalog's state directory fills up under load: east's federation.stateDir sits on a 1 MiB tmpfs
// of our own; we fill it, make the catalog change, and check that east keeps routing, logs the failure
// once, leaves the last good catalog file whole, and persists again once the space comes back.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from '../../../core/index.ts';
import { sleep } from '../../figures.ts';
import { Federation, threeClusters } from '../federation.ts';
import {
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  summarize,
  withFederation,
  sourceLoad,
} from '../scenario.ts';

const PERSIST_ERROR = 'cannot persist the catalog';

function mountTmpfs(dir: string): string | undefined {
  try {
    mkdirSync(dir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'meshfed-chaos', dir], {
      stdio: 'pipe',
    });
    return undefined;
  } catch (err) {
    return `cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]})`;
  }
}

/** the catalog file parses (nothing half-written) and nothing else is left beside it */
function catalogWhole(dir: string): { whole: boolean; files: string[]; bytes: number } {
  const files = readdirSync(dir).filter((f) => f !== 'filler');
  try {
    const text = readFileSync(join(dir, 'catalog.json'), 'utf8');
    JSON.parse(text);
    return { whole: files.length === 1, files, bytes: text.length };
  } catch {
    return { whole: false, files, bytes: 0 };
  }
}

export const stateDiskFull: Scenario = {
  name: 'state-disk-full',
  criterion:
    'disk full under the catalog state dir: routing goes on, the error is logged once, the catalog file is never half-written, persistence resumes when space returns',
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters());
    const stateDir = join(ctx.dir, 'fed', 'east-gw1', 'state', 'catalog');
    let mounted = false;
    let skipped: string | undefined;
    try {
      return await withFederation(fed, ctx, async () => {
        // the gateway already wrote its catalog: move it onto the tmpfs by restarting east on it
        const east = fed.source;
        await east.stop();
        const saved = readdirSync(stateDir).map((f) => [f, readFileSync(join(stateDir, f))] as const);
        skipped = mountTmpfs(stateDir);
        if (skipped) return { pass: false, skipped, figures: {}, notes: [] };
        mounted = true;
        for (const [f, data] of saved) writeFileSync(join(stateDir, f), data);
        east.start();
        await east.ready();
        await fed.converged();
        const load = sourceLoad(fed, ctx);
        const done = load.run();
        await sleep(ctx.durationMs * 0.2);
        const before = catalogWhole(stateDir);
        // fill the disk, then change the catalog (west withdraws and re-adds `extra` twice)
        try {
          writeFileSync(join(stateDir, 'filler'), Buffer.alloc(2 << 20));
        } catch {
          // ENOSPC: the filler took what there was
        }
        const fullAt = load.now();
        for (const only of [
          ['hello', 'greeter', 'echo'],
          ['hello', 'greeter', 'echo', 'extra'],
        ]) {
          fed.setServices('west', only);
          await waitFor(
            async () => (await fed.offers(east, 'extra')).includes('west') === only.includes('extra'),
            {
              timeoutMs: 20_000,
              intervalMs: 100,
              what: 'east to see the change',
            },
          );
          await sleep(1500);
        }
        const errorsWhileFull = east.log.split('\n').filter((l) => l.includes(PERSIST_ERROR)).length;
        const during = catalogWhole(stateDir);
        rmSync(join(stateDir, 'filler'), { force: true });
        const freedAt = performance.now();
        fed.setServices('west', ['hello', 'greeter', 'echo']);
        const recovered = await waitFor(
          async () => {
            const c = catalogWhole(stateDir);
            return c.whole && statSync(join(stateDir, 'catalog.json')).mtimeMs > freedAt - 1;
          },
          { timeoutMs: 20_000, intervalMs: 100, what: 'the catalog to be persisted again' },
        )
          .then(() => Math.round(performance.now() - freedAt))
          .catch(() => Number.POSITIVE_INFINITY);
        const outcomes = await done;
        await load.close();
        const s = summarize(outcomes);
        const afterFull = summarize(outcomes.filter((o) => o.due >= fullAt));
        const loss = await lossCheck(fed, load, [east]);
        const notes = lossNotes(loss);
        if (afterFull.failed > 0) notes.push(`${afterFull.failed} requests failed once the disk was full`);
        if (errorsWhileFull !== 1)
          notes.push(`the persistence error was logged ${errorsWhileFull} times (want once)`);
        if (!before.whole || !during.whole)
          notes.push(`catalog file not whole: ${JSON.stringify({ before, during })}`);
        if (!Number.isFinite(recovered))
          notes.push('the catalog was not persisted again after space returned');
        return {
          pass: notes.length === 0,
          figures: {
            errorLogLines: errorsWhileFull,
            catalogWholeWhileFull: during.whole,
            filesWhileFull: during.files,
            persistedAgainMs: recovered,
            failedAfterFull: afterFull.failed,
            ...loadFigures(s),
          },
          notes,
        };
      });
    } finally {
      if (mounted) execFileSync('umount', ['-l', stateDir], { stdio: 'pipe' });
    }
  },
};
