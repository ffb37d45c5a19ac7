// 10,000 idle mTLS connections (from 64 loopback source addresses) + 200 slowloris clients + an HTTP/2
// rapid-reset flood against one gateway (east, the load's entry) while it serves the legitimate load. The attacker is its own
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
import { Federation, threeClusters } from '../federation.ts';
import { CHILDREN, cpuProfileFlags, procCpuSeconds } from '../processes.ts';
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

/**
 * MESHFED_CHAOS_FLOOD_ONLY=idle|slowloris|reset runs that attack alone (the others at 0), to tell what
 * each one costs the gateway; unset, all three run.
 */
function onlyOneAttack(only: string | undefined): string[] {
  if (!only) return [];
  const off = { idle: ['--idle', '0'], slowloris: ['--slowloris', '0'], reset: ['--resets-per-second', '0'] };
  if (!(only in off)) throw new Error(`MESHFED_CHAOS_FLOOD_ONLY: idle, slowloris or reset, not ${only}`);
  return Object.entries(off).flatMap(([k, v]) => (k === only ? [] : v));
}

/**
 * CPU of each process over the load, in % of one core (user + system): the attacker's is part of the
 * scene, since it shares the host's cores with the gateways and the load client (this process).
 */
function cpuMeter(fed: Federation, attackerPid: number) {
  const sample = (): Record<string, number> => {
    const self = process.cpuUsage();
    return {
      ...fed.cpuSeconds(),
      attacker: procCpuSeconds(attackerPid) ?? 0,
      loadClient: (self.user + self.system) / 1e6,
    };
  };
  const before = sample();
  const t0 = performance.now();
  return {
    read(): Record<string, number> {
      const after = sample();
      const wall = (performance.now() - t0) / 1000;
      const out: Record<string, number> = {};
      for (const [k, v] of Object.entries(after)) out[k] = round(((v - (before[k] ?? 0)) / wall) * 100);
      return out;
    },
  };
}

export const flood: Scenario = {
  name: 'flood',
  criterion: `10,000 idle mTLS connections + 200 slowloris + HTTP/2 rapid reset against one gateway: legitimate success ≥ 99%, its RSS ≤ ${RSS_BOUND_MB} MB, p99 of legitimate requests stated`,
  async run(ctx) {
    const fed = new Federation(join(ctx.dir, 'fed'), threeClusters());
    return withFederation(fed, ctx, async () => {
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
      // an upper bound: the attack is ended (SIGTERM) once the load's last request has its outcome
      const seconds = Math.ceil((LEAD_MS + ctx.durationMs) / 1000) + 30;
      const attacker = spawn(
        process.execPath,
        [
          ...cpuProfileFlags(process.env, 'attacker'),
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
          ...onlyOneAttack(process.env.MESHFED_CHAOS_FLOOD_ONLY),
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      CHILDREN.add(attacker);
      // a spawn error ('error' instead of 'exit') ends the wait as well
      const exited = once(attacker, 'exit').catch(() => undefined);
      const lines = createInterface({ input: attacker.stdout! });
      const counts = once(lines, 'line').then(([l]) => JSON.parse(l as string) as Record<string, number>);
      counts.catch(() => undefined);
      let s: ReturnType<typeof summarize>;
      let cpuPct: Record<string, number>;
      let attack: Record<string, number>;
      let load: ReturnType<typeof sourceLoad>;
      try {
        await sleep(LEAD_MS);
        load = sourceLoad(fed, ctx);
        const cpu = cpuMeter(fed, attacker.pid!);
        s = summarize(await load.run());
        cpuPct = cpu.read();
        await load.close();
      } finally {
        // ended and gone before the federation stops, whatever happened: an attacker left running would
        // redial the dead listeners (64 at a time, every 50 ms) through the next scenario of the suite
        if (attacker.exitCode === null && attacker.signalCode === null) attacker.kill('SIGTERM');
        attack = await Promise.race([counts, exited.then(() => ({}))]);
        const kill = setTimeout(() => attacker.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(kill);
        clearInterval(sampler);
      }
      // every gateway's refusals: a reset relayed by east may trip a peer's guard on east's own tunnel
      const refused: string[] = [];
      for (const g of fed.gateways) {
        for (const l of (await g.metrics()).split('\n'))
          if (l.startsWith('meshfed_refused_total') && !l.endsWith(' 0')) refused.push(`${g.name} ${l}`);
      }
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
          cpuPct,
          refusedSeries: refused,
          ...loadFigures(s),
        },
        notes,
      };
    });
  },
};
