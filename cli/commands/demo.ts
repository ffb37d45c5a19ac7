import { join } from 'node:path';
import type { Command, CommandContext } from '../command.ts';
import { parseFlags } from '../command.ts';
import { Demo, dashboardUrl } from '../demo/demo.ts';
import { greeterClient, HttpCaller, sayHello, Tally } from '../demo/traffic.ts';

const HELLO = 'hello.demo.svc.clusterset.local';

function waitAbort(signal: AbortSignal, ms?: number): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = ms === undefined ? undefined : setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        if (t) clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

function bar(n: number, total: number, width = 30): string {
  const w = total === 0 ? 0 : Math.round((n / total) * width);
  return `${'█'.repeat(w)}${'·'.repeat(width - w)}`;
}

interface Phase {
  name: string;
  seconds: number;
  explain: string;
  enter?: (demo: Demo) => Promise<void>;
}

const PHASES: Phase[] = [
  {
    name: 'locality preference',
    seconds: 12,
    explain:
      'east calls hello.demo: all three clusters serve it, east is nearest (same zone), so east serves.',
  },
  {
    name: 'failover',
    seconds: 15,
    explain:
      "east's hello instance is stopped: the gateway ejects it and spills to the next locality (west, eu).",
    enter: (d) => d.stopService('east', 'hello'),
  },
  {
    name: 'recovery',
    seconds: 15,
    explain: "east's hello instance is back: once its ejection ends, traffic returns to the local zone.",
    enter: (d) => d.startService('east', 'hello'),
  },
];

async function live(ctx: CommandContext, demo: Demo): Promise<void> {
  const east = demo.cluster('east');
  const caller = new HttpCaller(east.addresses.egress, HELLO);
  const tally = new Tally(4000);
  const tty = (ctx.stdout as NodeJS.WriteStream).isTTY === true;
  const out = (s: string) => ctx.stdout.write(s);
  const notes: string[] = [];

  // one-off calls that show the other demo services
  const greeter = greeterClient(east.addresses.egress);
  try {
    const g = await sayHello(greeter, 'meshfed');
    notes.push(
      `gRPC greeter.demo from east: "${g.message}" served by ${g.cluster} (greeter runs only in west and eu)`,
    );
  } catch (err) {
    notes.push(`gRPC greeter.demo from east failed: ${(err as Error).message}`);
  } finally {
    greeter.close();
  }
  const internal = new HttpCaller(
    demo.cluster('west').addresses.egress,
    'internal.demo.svc.clusterset.local',
  );
  const r = await internal.call();
  notes.push(
    r.ok
      ? 'internal.demo from west: reachable (it should not be!)'
      : `internal.demo from west: ${r.status ?? ''} refused as expected (not exported: export is opt-in)`,
  );
  await internal.close();

  let phaseIndex = 0;
  let phaseStart = Date.now();
  let running = true;
  const load = (async () => {
    while (running && !ctx.signal.aborted) {
      const batch = await Promise.all(Array.from({ length: 5 }, () => caller.call()));
      for (const b of batch) tally.add(b);
      await waitAbort(ctx.signal, 100);
    }
  })();
  const hint = [
    `Dashboard (watch the failover live): ${dashboardUrl(east.addresses.admin)}`,
    'Try, in another terminal (the demo keeps running):',
    `  npx meshfed clusters --config ${east.configFile}`,
    `  npx meshfed services --config ${east.configFile}`,
    `  npx meshfed routes hello.demo --config ${east.configFile}`,
    `  npx meshfed check --config ${east.configFile}`,
    `  npx meshfed stat --config ${east.configFile}`,
    `  npx meshfed top --config ${east.configFile}`,
    `  curl -s -H 'Host: ${HELLO}' http://${east.addresses.egress}/`,
    `  curl -s http://${east.addresses.admin}/metrics | grep meshfed_`,
    `Logs: ${join(demo.dir, '<cluster>', 'gateway.log')}.  Ctrl-C stops everything.`,
  ];
  if (!tty) out(`${notes.join('\n')}\n${hint.join('\n')}\n`);
  let lastPlain = '';
  try {
    while (!ctx.signal.aborted) {
      const phase = PHASES[phaseIndex]!;
      const elapsed = (Date.now() - phaseStart) / 1000;
      if (elapsed >= phase.seconds && phaseIndex < PHASES.length - 1) {
        phaseIndex++;
        phaseStart = Date.now();
        await PHASES[phaseIndex]!.enter?.(demo);
        continue;
      }
      const shares = tally.shares();
      const total = Object.values(shares).reduce((a, b) => a + b, 0);
      const rows = ['east', 'west', 'eu', 'FAILED'].map(
        (k) =>
          `  ${k.padEnd(7)} ${bar(shares[k] ?? 0, total)} ${String(Math.round(((shares[k] ?? 0) / (total || 1)) * 100)).padStart(3)}%`,
      );
      const status =
        phaseIndex === PHASES.length - 1 && elapsed >= phase.seconds
          ? 'steady (Ctrl-C to stop)'
          : `${Math.max(0, Math.ceil(phase.seconds - elapsed))}s left`;
      if (tty) {
        out('\x1b[2J\x1b[H');
        out(
          `meshfed demo: three clusters (east us-east-1a, west us-west-2a, eu eu-central-1a), NATS supercluster, mTLS between gateways\n\n`,
        );
        out(`Phase ${phaseIndex + 1}/${PHASES.length}: ${phase.name} — ${status}\n  ${phase.explain}\n\n`);
        out(`Who serves east's calls to ${HELLO} (last 4 s, ${total} calls):\n${rows.join('\n')}\n`);
        out(
          `  total ${tally.total} calls, ${tally.failures} failed\n\n${notes.join('\n')}\n\n${hint.join('\n')}\n`,
        );
      } else {
        const line = `[${phase.name}] ${Object.entries(shares)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')} (total ${tally.total}, failed ${tally.failures})`;
        if (line !== lastPlain) out(`${line}\n`);
        lastPlain = line;
      }
      await waitAbort(ctx.signal, 1000);
    }
  } finally {
    running = false;
    await load;
    await caller.close();
  }
}

export const demoCommand: Command = {
  path: ['demo'],
  summary: 'run a three-cluster federation on loopback and watch locality, failover and recovery',
  usage: [
    'meshfed demo [--dir DIR] [--headless]',
    '',
    'Creates a trust root, three clusters (east us-east/us-east-1a, west us-west/us-west-2a,',
    'eu eu-central/eu-central-1a), each with its own nats-server (joined as a NATS supercluster),',
    'a gateway and demo services, then shows cross-cluster calls live. Ctrl-C stops everything.',
    '',
    '  --dir DIR     work directory (default .meshfed-demo); wiped at start',
    '  --headless    no live view: print one JSON object describing the federation once ready,',
    '                then run until SIGINT/SIGTERM',
  ].join('\n'),
  async run(ctx) {
    const { values } = parseFlags(ctx, { dir: { type: 'string' }, headless: { type: 'boolean' } }, 'demo');
    const headless = values.headless === true;
    const demo = new Demo({
      dir: values.dir ?? '.meshfed-demo',
      log: headless ? (l) => ctx.stderr.write(`demo: ${l}\n`) : (l) => ctx.stdout.write(`• ${l}\n`),
    });
    try {
      await demo.start();
      const urls = demo.clusters.map((c) => `${c.name} ${dashboardUrl(c.addresses.admin)}`).join(', ');
      if (headless) ctx.stderr.write(`demo: dashboards: ${urls}\n`);
      else ctx.stdout.write(`• dashboards: ${urls}\n`);
      if (headless) {
        ctx.stdout.write(`${JSON.stringify(demo.describe())}\n`);
        await waitAbort(ctx.signal);
      } else {
        await live(ctx, demo);
      }
    } finally {
      if (!headless) ctx.stdout.write('\nstopping the demo: gateways, services and nats-servers…\n');
      await demo.stop();
    }
    return 0;
  },
};
