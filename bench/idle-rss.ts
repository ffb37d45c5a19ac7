// Idle resident memory of one meshfed gateway process (issue 5's goal: at most 80 MB), beside haproxy's
// measured in the same run. The gateways are the real ones: `meshfed demo --headless` starts three clusters
// (nats-servers, gateways, demo services); once every gateway is up and the demo's traffic is idle, each
// gateway's RSS is sampled once a second and the median is kept. Then one `meshfed status` asks the first
// gateway over its admin API, which loads the gRPC server there (cli/admin/admin-server.ts), and that
// gateway is sampled again: what an operator's first admin call adds, and 45 s after the call, once the idle
// heap shrink the call re-armed has run (cli/idle-heap.ts).
//   npm run bench:idle-rss                       (samples for 10 s)
//   npm run bench:idle-rss -- --seconds 30
//   npm run bench:idle-rss -- --after 150         (starts sampling 150 s after the demo is ready, once V8's
//                                                 memory reducer has run in an idle process: the steady figure)
// Writes bench/results/idle-rss.json. Whatever way it ends (done, failed, Ctrl-C), it leaves no process behind:
// the demo runs in its own process group, which is stopped as a whole.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { type AddressInfo, createServer } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { median, round } from './figures.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '10' }, after: { type: 'string', default: '3' } },
});
const seconds = Number(values.seconds);
if (!Number.isInteger(seconds) || seconds < 1)
  throw new Error(`--seconds must be a positive integer, got ${values.seconds}`);
const after = Number(values.after);
if (!Number.isInteger(after) || after < 0 || after > 600)
  throw new Error(`--after must be a whole number of seconds from 0 to 600, got ${values.after}`);

/** when the gateway sampled right after `meshfed status` is sampled again: past its idle shrink (30 s + one check) */
const ADMIN_SETTLE_S = 45;

interface Memory {
  rss_mb: number;
  anon_mb: number;
  file_mb: number;
}

/** VmRSS and its anonymous / file-backed parts (file pages are mostly the shared executable). */
function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss_mb: kb('VmRSS') / 1024, anon_mb: kb('RssAnon') / 1024, file_mb: kb('RssFile') / 1024 };
}

async function sample(pids: number[]): Promise<Memory[]> {
  const per = pids.map(() => [] as Memory[]);
  for (let i = 0; i < seconds; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    for (const [k, pid] of pids.entries()) per[k]!.push(memoryOf(pid));
  }
  return per.map((xs) => ({
    rss_mb: median(xs.map((x) => x.rss_mb)),
    anon_mb: median(xs.map((x) => x.anon_mb)),
    file_mb: median(xs.map((x) => x.file_mb)),
  }));
}

/** `meshfed demo --headless`, leading a process group of its own: its nats-servers, gateways and services */
function spawnDemo(dir: string): ChildProcess {
  return spawn(process.execPath, ['bin/meshfed.js', 'demo', '--headless', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: true,
  });
}

/** The demo's gateways, once it says it is ready. */
async function demoReady(child: ChildProcess): Promise<{ cluster: string; pid: number; config: string }[]> {
  const lines = createInterface({ input: child.stdout! });
  const deadline = setTimeout(() => child.kill('SIGTERM'), 240_000);
  for await (const line of lines) {
    if (!line.startsWith('{')) continue;
    clearTimeout(deadline);
    const info = JSON.parse(line) as { clusters: { name: string; pid: number; config: string }[] };
    return info.clusters.map((c) => ({ cluster: c.name, pid: c.pid, config: c.config }));
  }
  clearTimeout(deadline);
  throw new Error('meshfed demo exited before it was ready (its stderr is above)');
}

/** haproxy as an idle east-west passthrough gateway: one thread, the peers harness's setup. */
function startHaproxy(dir: string, port: number): ChildProcess {
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'global',
      '  nbthread 1',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend eastwest',
      `  bind 127.0.0.1:${port}`,
      '  tcp-request inspect-delay 5s',
      '  tcp-request content accept if { req.ssl_hello_type 1 }',
      '  use_backend echo if { req.ssl_sni -i echo.bench.svc.clusterset.local }',
      'backend echo',
      '  server be 127.0.0.1:1',
      '',
    ].join('\n'),
  );
  return spawn('haproxy', ['-db', '-f', cfg], { stdio: 'ignore' });
}

const work = mkdtempSync(join(tmpdir(), 'meshfed-idle-rss-'));
let demo: ChildProcess | undefined;
let haproxy: ChildProcess | undefined;
let cleaned = false;

const running = (c: ChildProcess | undefined): c is ChildProcess =>
  c !== undefined && c.exitCode === null && c.signalCode === null;

/** What must not outlive this process, at once: the demo's whole process group, haproxy, the work folder. */
function killLeftovers(): void {
  if (cleaned) return;
  cleaned = true;
  if (demo?.pid !== undefined) {
    try {
      process.kill(-demo.pid, 'SIGKILL');
    } catch {
      // the group is gone already: the demo stopped everything it started
    }
  }
  if (running(haproxy)) haproxy.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}

/** Asks the demo (which stops its own processes) and haproxy to stop, waits a bounded time, then kills the rest. */
async function stopAll(): Promise<void> {
  if (cleaned) return;
  if (running(haproxy)) haproxy.kill('SIGTERM');
  if (running(demo)) {
    const exited = once(demo, 'exit');
    demo.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000).unref())]);
  }
  killLeftovers();
}

// an exit for any reason still kills what is left; a signal first stops everything the usual way
process.once('exit', killLeftovers);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    void stopAll().finally(() => process.exit(128 + constants.signals[signal]));
  });
}

try {
  const hasHaproxy = spawnSync('haproxy', ['-v'], { stdio: 'ignore' }).status === 0;
  if (hasHaproxy) {
    // haproxy wants a real port: borrow a free one from the kernel
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    haproxy = startHaproxy(work, port);
  }
  demo = spawnDemo(join(work, 'demo'));
  const started = { gateways: await demoReady(demo) };
  // the demo's own start-up traffic ends once it is ready; let the gateways settle before sampling
  await new Promise((r) => setTimeout(r, after * 1000));
  if (haproxy && haproxy.exitCode !== null)
    throw new Error('haproxy exited at start (run haproxy -c on the config)');
  const pids = [...started.gateways.map((g) => g.pid), ...(haproxy?.pid ? [haproxy.pid] : [])];
  const mem = await sample(pids);
  const gateways = started.gateways.map((g, i) => ({ cluster: g.cluster, ...mem[i]! }));
  const first = started.gateways[0]!;
  const status = spawnSync(
    process.execPath,
    ['bin/meshfed.js', 'status', '--config', first.config, '--json'],
    {
      encoding: 'utf8',
    },
  );
  if (status.status !== 0) throw new Error(`meshfed status failed: ${status.stderr}`);
  const [afterAdmin] = await sample([first.pid]);
  // the call re-arms the gateway's idle shrink (idleHeapShrink, 30 s by default, checked every 10 s): sampled
  // again once that has had its time, counted from the call
  await new Promise((r) => setTimeout(r, Math.max(0, ADMIN_SETTLE_S - seconds) * 1000));
  const [adminSettled] = await sample([first.pid]);
  const ours = median(gateways.map((g) => g.rss_mb));
  const peer = haproxy ? mem[mem.length - 1] : undefined;
  for (const g of gateways)
    console.log(
      `meshfed gateway ${g.cluster}: rss ${round(g.rss_mb)} MB (anonymous ${round(g.anon_mb)}, file-backed ${round(g.file_mb)})`,
    );
  console.log(
    `meshfed gateway ${first.cluster} after one \`meshfed status\`: rss ${round(afterAdmin!.rss_mb)} MB (anonymous ${round(afterAdmin!.anon_mb)}); ${ADMIN_SETTLE_S}-${ADMIN_SETTLE_S + seconds} s after it: ${round(adminSettled!.rss_mb)} MB`,
  );
  if (peer)
    console.log(
      `haproxy (one thread, idle): rss ${round(peer.rss_mb)} MB (anonymous ${round(peer.anon_mb)})`,
    );
  console.log(
    `median idle gateway rss ${round(ours)} MB; goal <= 80 MB${peer ? `; ratio to haproxy ${round(ours / peer.rss_mb)}x` : ''}`,
  );
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/idle-rss.json',
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        command: `npm run bench:idle-rss -- --seconds ${seconds} --after ${after}`,
        sampled_after_ready_s: after,
        node: process.version,
        gateway_rss_mb: round(ours),
        gateways: gateways.map((g) => ({
          ...g,
          rss_mb: round(g.rss_mb),
          anon_mb: round(g.anon_mb),
          file_mb: round(g.file_mb),
        })),
        after_admin_call: {
          cluster: first.cluster,
          rss_mb: round(afterAdmin!.rss_mb),
          anon_mb: round(afterAdmin!.anon_mb),
          // the median of the samples from ADMIN_SETTLE_S to ADMIN_SETTLE_S + seconds after the call
          settled_after_s: ADMIN_SETTLE_S,
          settled_rss_mb: round(adminSettled!.rss_mb),
        },
        haproxy_rss_mb: peer ? round(peer.rss_mb) : null,
        goal_mb: 80,
      },
      null,
      2,
    )}\n`,
  );
} finally {
  await stopAll();
}
