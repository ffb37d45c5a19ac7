// 10,000 idle mTLS connections + 200 slowloris clients + an HTTP/2 rapid-reset flood against one
// gateway (east, the load's entry) while it serves the legitimate load. The attacker is its own
// process (bench/chaos/attacker.ts) with a gateway certificate of cluster eu, as a compromised or
// broken peer would hold. East's RSS is sampled from /proc every 500 ms.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { issueLeaf } from '../../../ca/index.ts';
import { round, sleep } from '../../figures.ts';
import { CHILDREN, Federation, threeClusters } from '../federation.ts';
import {
  loadFigures,
  lossCheck,
  lossNotes,
  type Scenario,
  summarize,
  withFederation,
  sourceLoad,
} from '../scenario.ts';

const ATTACKER = fileURLToPath(new URL('../attacker.ts', import.meta.url));
/** the RSS bound this scenario holds the attacked gateway to */
const RSS_BOUND_MB = 1024;
const LEAD_MS = 8000;

function rssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

export const flood: Scenario = {
  name: 'flood',
  criterion: `10,000 idle mTLS connections + 200 slowloris + HTTP/2 rapid reset against one gateway: legitimate success ≥ 99%, its RSS ≤ ${RSS_BOUND_MB} MB, p99 of legitimate requests stated`,
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters());
    return withFederation(fed, async () => {
      const east = fed.source;
      const pid = east.child!.pid!;
      const leaf = await issueLeaf(fed.intermediates.get('eu')!, { kind: 'gateway', name: 'attacker' });
      const files = {
        cert: join(ctx.dir, 'attacker.crt'),
        key: join(ctx.dir, 'attacker.key'),
        ca: join(ctx.dir, 'ca.crt'),
      };
      writeFileSync(files.cert, leaf.chainPem);
      writeFileSync(files.key, leaf.keyPem, { mode: 0o600 });
      writeFileSync(files.ca, fed.root!.certPem);
      const rssBefore = rssMb(pid);
      let rssMax = rssBefore;
      const sampler = setInterval(() => {
        rssMax = Math.max(rssMax, rssMb(pid));
      }, 500);
      const seconds = Math.ceil((LEAD_MS + ctx.durationMs) / 1000) + 2;
      const attacker = spawn(
        process.execPath,
        [
          ATTACKER,
          '--east-west',
          east.addresses.eastWest,
          '--egress',
          east.addresses.egress,
          '--cert',
          files.cert,
          '--key',
          files.key,
          '--ca',
          files.ca,
          '--seconds',
          String(seconds),
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      CHILDREN.add(attacker);
      const lines = createInterface({ input: attacker.stdout! });
      const counts = once(lines, 'line').then(([l]) => JSON.parse(l as string) as Record<string, number>);
      await sleep(LEAD_MS);
      const load = sourceLoad(fed, ctx);
      const s = summarize(await load.run());
      await load.close();
      const attack = await Promise.race([counts, once(attacker, 'exit').then(() => ({}))]);
      clearInterval(sampler);
      const metrics = await east.metrics();
      const refused = metrics
        .split('\n')
        .filter(
          (l) =>
            l.startsWith('meshfed_connections_refused_total') ||
            (l.includes('refused') && !l.startsWith('#') && !l.endsWith(' 0')),
        )
        .slice(0, 12);
      const loss = await lossCheck(fed, load);
      const notes = lossNotes(loss);
      if (s.successPct < 99) notes.push(`legitimate success ${s.successPct}% < 99%`);
      if (rssMax > RSS_BOUND_MB) notes.push(`RSS reached ${round(rssMax)} MB > ${RSS_BOUND_MB} MB`);
      return {
        pass: notes.length === 0,
        figures: {
          successPct: s.successPct,
          p99Ms: s.p99Ms,
          rssBeforeMb: round(rssBefore),
          rssMaxMb: round(rssMax),
          rssBoundMb: RSS_BOUND_MB,
          attack,
          refusedSeries: refused,
          ...loadFigures(s),
        },
        notes,
      };
    });
  },
};
