import { join } from 'node:path';
import { MeshfedError } from '../../core/index.ts';
import type { Command, CommandContext } from '../command.ts';
import { parseFlags } from '../command.ts';
import { Demo, dashboardUrl } from '../demo/demo.ts';
import { CANARY_STEPS, DENIED_CLUSTER, LEDGER_HOST } from '../demo/policy-phase.ts';
import { PolicyTour } from '../demo/policy-tour.ts';
import { bar, percent } from '../demo/screen.ts';
import { greeterClient, HttpCaller, sayHello, Tally, waitAbort } from '../demo/traffic.ts';

const HELLO = 'hello.demo.svc.clusterset.local';

interface Phase {
  name: string;
  seconds: number;
  explain: string;
  /** runs when the phase starts; lines it returns are printed once (non-TTY) or kept on screen */
  enter?: () => Promise<string[] | undefined>;
}

function phases(demo: Demo, tour: PolicyTour): Phase[] {
  return [
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
      enter: async () => {
        await demo.stopService('east', 'hello');
        return undefined;
      },
    },
    {
      name: 'recovery',
      seconds: 15,
      explain: "east's hello instance is back: once its ejection ends, traffic returns to the local zone.",
      enter: async () => {
        await demo.startService('east', 'hello');
        return undefined;
      },
    },
    ...CANARY_STEPS.map(
      (p, i): Phase => ({
        name: `canary ${p}%`,
        seconds: 12,
        explain: `a signed TrafficSplit (step ${i + 1} of ${CANARY_STEPS.length}) sends ${p}% of east's gRPC calls to greeter.demo to greeter-v2 (eu); the gateway picks the backend per call.`,
        enter: () => tour.enterCanary(p),
      }),
    ),
    {
      name: 'authorization',
      seconds: 12,
      explain: `a signed AuthorizationPolicy denies cluster ${DENIED_CLUSTER}'s calls to ledger.demo: eu's gateway refuses them (403, x-meshfed-policy names the rule); east's still go through.`,
      enter: () => tour.enterAuthorization(),
    },
  ];
}

async function live(ctx: CommandContext, demo: Demo, o: { phaseSeconds?: number }): Promise<void> {
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
      `gRPC greeter.demo from east: "${g.message}" served by greeter ${g.version} in ${g.cluster} (greeter runs only in west and eu)`,
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

  const tour = new PolicyTour(demo, { signal: ctx.signal });
  await tour.prepare();
  const PHASES = phases(demo, tour).map((p) => ({ ...p, seconds: o.phaseSeconds ?? p.seconds }));
  let phaseIndex = 0;
  let phaseStart = Date.now();
  let phaseNotes: string[] = [];
  let running = true;
  const load = (async () => {
    while (running && !ctx.signal.aborted) {
      const batch = await Promise.all(Array.from({ length: 5 }, () => caller.call()));
      for (const b of batch) tally.add(b);
      await waitAbort(ctx.signal, 100);
    }
  })();
  // a little traffic of west's own, to ledger (served by eu alone): every dashboard then also draws a link
  // between two other clusters (west → eu on east's page), and its failures once west is denied
  const westLedger = new HttpCaller(demo.cluster(DENIED_CLUSTER).addresses.egress, LEDGER_HOST);
  const background = (async () => {
    while (running && !ctx.signal.aborted) {
      await westLedger.call();
      await waitAbort(ctx.signal, 500);
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
    `  npx meshfed policy list --config ${east.configFile}`,
    `  curl -s -H 'Host: ${HELLO}' http://${east.addresses.egress}/`,
    `  curl -s http://${east.addresses.admin}/metrics | grep meshfed_`,
    `  curl -si -H 'Host: ${LEDGER_HOST}' http://${demo.cluster(DENIED_CLUSTER).addresses.egress}/   (from ${DENIED_CLUSTER}: 403 once the authorization phase applies)`,
    `Policy files and the commands that apply them: ${join(tour.policy.policyDir, 'README.md')}`,
    `Logs: ${join(demo.dir, '<cluster>', 'gateway.log')}.  Ctrl-C stops everything.`,
  ];
  if (!tty) out(`${notes.join('\n')}\n${hint.join('\n')}\n`);
  let lastPlain = '';
  let lastPolicy = '';
  try {
    while (!ctx.signal.aborted) {
      const phase = PHASES[phaseIndex]!;
      const elapsed = (Date.now() - phaseStart) / 1000;
      if (elapsed >= phase.seconds && phaseIndex < PHASES.length - 1) {
        phaseIndex++;
        const next = PHASES[phaseIndex]!;
        if (tty && next.enter) out(`\n… ${next.name}: applying\n`);
        phaseNotes = (await next.enter?.()) ?? [];
        if (!tty) for (const l of phaseNotes) out(`[${next.name}] ${l}\n`);
        // the phase's time starts once what it changes is in force (a policy apply waits for every gateway)
        phaseStart = Date.now();
        continue;
      }
      await tour.tick();
      const shares = tally.shares();
      const total = Object.values(shares).reduce((a, b) => a + b, 0);
      const rows = ['east', 'west', 'eu', 'FAILED'].map(
        (k) =>
          `  ${k.padEnd(7)} ${bar(shares[k] ?? 0, total)} ${String(percent(shares[k] ?? 0, total)).padStart(3)}%`,
      );
      const status =
        phaseIndex === PHASES.length - 1 && elapsed >= phase.seconds
          ? 'steady (Ctrl-C to stop)'
          : `${Math.max(0, Math.ceil(phase.seconds - elapsed))}s left`;
      if (tty) {
        const policy = tour.screen();
        out('\x1b[2J\x1b[H');
        out(
          `meshfed demo: three clusters (east us-east-1a, west us-west-2a, eu eu-central-1a), NATS supercluster, mTLS between gateways\n\n`,
        );
        out(`Phase ${phaseIndex + 1}/${PHASES.length}: ${phase.name} — ${status}\n  ${phase.explain}\n\n`);
        out(`Who serves east's calls to ${HELLO} (last 4 s, ${total} calls):\n${rows.join('\n')}\n`);
        out(`  total ${tally.total} calls, ${tally.failures} failed\n\n`);
        if (policy.length > 0) out(`${policy.join('\n')}\n\n`);
        out(`${notes.join('\n')}\n\n${hint.join('\n')}\n`);
      } else {
        const line = `[${phase.name}] ${Object.entries(shares)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')} (total ${tally.total}, failed ${tally.failures})`;
        if (line !== lastPlain) out(`${line}\n`);
        lastPlain = line;
        const policyLine = tour.line();
        if (policyLine !== undefined && policyLine !== lastPolicy) out(`[${phase.name}] ${policyLine}\n`);
        lastPolicy = policyLine ?? '';
      }
      await waitAbort(ctx.signal, 1000);
    }
  } finally {
    running = false;
    await load;
    await background;
    await caller.close();
    await westLedger.close();
    await tour.close();
  }
}

export const demoCommand: Command = {
  path: ['demo'],
  summary:
    'run a three-cluster federation on loopback and watch locality, failover, recovery, a canary and a denial',
  usage: [
    'meshfed demo [--dir DIR] [--headless] [--phase-seconds N]',
    '',
    'Creates a trust root, three clusters (east us-east/us-east-1a, west us-west/us-west-2a,',
    'eu eu-central/eu-central-1a), each with its own nats-server (joined as a NATS supercluster),',
    'a gateway and demo services, then shows cross-cluster calls live: locality preference, failover,',
    'recovery, then traffic policy signed by an admin identity (a greeter canary shifted 10 → 50 → 100 %,',
    'and an AuthorizationPolicy that refuses one cluster). Ctrl-C stops everything.',
    '',
    '  --dir DIR           work directory (default .meshfed-demo); wiped at start',
    '  --headless          no live view: print one JSON object describing the federation once ready,',
    '                      then run until SIGINT/SIGTERM',
    '  --phase-seconds N   every phase lasts N seconds (default 12–15 s each)',
  ].join('\n'),
  async run(outer) {
    const { values } = parseFlags(
      outer,
      { dir: { type: 'string' }, headless: { type: 'boolean' }, 'phase-seconds': { type: 'string' } },
      'demo',
    );
    const headless = values.headless === true;
    const phaseSeconds = values['phase-seconds'] === undefined ? undefined : Number(values['phase-seconds']);
    if (
      phaseSeconds !== undefined &&
      !(Number.isInteger(phaseSeconds) && phaseSeconds >= 1 && phaseSeconds <= 600)
    ) {
      throw new MeshfedError(
        'MESHFED_USAGE',
        `demo: --phase-seconds must be a whole number of seconds from 1 to 600, got "${values['phase-seconds']}"`,
      );
    }
    // Closing the terminal sends SIGHUP, on which the gateways and nats-servers reload rather than exit: the
    // demo stops them itself, and writes to the terminal that went away (EIO) must not end it before that.
    const hangup = new AbortController();
    const onHangup = () => {
      outer.stdout.on('error', () => undefined);
      outer.stderr.on('error', () => undefined);
      hangup.abort(new Error('SIGHUP'));
    };
    process.once('SIGHUP', onHangup);
    const ctx = { ...outer, signal: AbortSignal.any([outer.signal, hangup.signal]) };
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
        await live(ctx, demo, phaseSeconds === undefined ? {} : { phaseSeconds });
      }
    } finally {
      if (!headless) ctx.stdout.write('\nstopping the demo: gateways, services and nats-servers…\n');
      await demo.stop();
      process.off('SIGHUP', onHangup);
    }
    return 0;
  },
};
