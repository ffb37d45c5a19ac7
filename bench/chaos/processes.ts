// The processes of a chaos federation that scenarios drive one by one: `meshfed gateway` processes
// (GatewayProc), the registry of every child process so an interrupted run can end them, and what reads a
// process from outside (its admin endpoints, its metrics text, its CPU time in /proc).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../core/index.ts';
import { LIBFAKETIME } from '../../test/helpers/skewed-clock.ts';

const BIN = fileURLToPath(new URL('../../bin/meshfed.js', import.meta.url));
export const CLOCK_OFFSET_HOOK = fileURLToPath(new URL('./clock-offset.ts', import.meta.url));
/**
 * How a cluster's clock is moved: libfaketime where it is installed (the whole process, OpenSSL's
 * certificate checks included, monotonic clock untouched: what a host with a wrong clock looks like), else a
 * preloaded hook that moves Date alone (TLS handshakes then see the real time).
 */
export const CLOCK_INJECTION: 'libfaketime' | 'date-hook' = LIBFAKETIME ? 'libfaketime' : 'date-hook';

/** every process a federation started, so an interrupted run can end them (see run.ts) */
export const CHILDREN = new Set<ChildProcess>();

/** `child`, kept in CHILDREN until it exits */
export function track(child: ChildProcess): ChildProcess {
  CHILDREN.add(child);
  child.once('exit', () => CHILDREN.delete(child));
  return child;
}

/** `argv` under `wrap` (e.g. `ip netns exec NAME`), as spawn() takes it */
export function wrapped(wrap: readonly string[] | undefined, argv: string[]): [string, string[]] {
  const all = [...(wrap ?? []), ...argv];
  return [all[0]!, all.slice(1)];
}

export class GatewayProc {
  readonly cluster: string;
  readonly name: string;
  readonly dir: string;
  readonly configFile: string;
  readonly addresses: { eastWest: string; egress: string; admin: string; tcpEcho?: string };
  child: ChildProcess | undefined;
  /** pids this gateway ran under, in order: more than one means it was restarted */
  readonly pids: number[] = [];
  env: NodeJS.ProcessEnv;
  /** the command the gateway runs under (ClusterPlan.net) */
  readonly wrap: string[] | undefined;

  constructor(o: {
    cluster: string;
    name: string;
    dir: string;
    configFile: string;
    addresses: GatewayProc['addresses'];
    env: NodeJS.ProcessEnv;
    wrap?: string[];
  }) {
    this.cluster = o.cluster;
    this.name = o.name;
    this.dir = o.dir;
    this.configFile = o.configFile;
    this.addresses = o.addresses;
    this.env = o.env;
    this.wrap = o.wrap;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get log(): string {
    try {
      return readFileSync(join(this.dir, 'gateway.log'), 'utf8');
    } catch {
      return '';
    }
  }

  start(): void {
    const out = openSync(join(this.dir, 'gateway.log'), 'a');
    const hook =
      this.env.MESHFED_CHAOS_CLOCK_OFFSET_MS && CLOCK_INJECTION === 'date-hook'
        ? ['--import', CLOCK_OFFSET_HOOK]
        : [];
    const [command, args] = wrapped(this.wrap, [
      process.execPath,
      ...hook,
      ...cpuProfileFlags(this.env, this.name),
      BIN,
      'gateway',
      '--config',
      this.configFile,
    ]);
    this.child = track(spawn(command, args, { stdio: ['ignore', out, out], cwd: this.dir, env: this.env }));
    closeSync(out);
    this.pids.push(this.child.pid!);
  }

  async ready(timeoutMs = 60_000): Promise<void> {
    await waitFor(
      async () => {
        if (!this.running) throw new Error(`${this.cluster}/${this.name} exited: ${this.log.slice(-2000)}`);
        return (await httpStatus(this.addresses.admin, '/readyz')) === 200;
      },
      { timeoutMs, intervalMs: 100, what: `${this.cluster}/${this.name} to be ready` },
    );
  }

  /** SIGTERM (drain) and the exit; SIGKILL after `graceMs` */
  async stop(graceMs = 20_000): Promise<void> {
    const c = this.child;
    if (!c || !this.running) return;
    const exited = once(c, 'exit');
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(t);
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (!c || !this.running) return;
    const exited = once(c, 'exit');
    c.kill('SIGKILL');
    await exited;
  }

  async metrics(): Promise<string> {
    const r = await fetch(`http://${this.addresses.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
    return r.text();
  }
}

/** The status of GET http://<address><path>, or 0 when it does not answer within 3 s. */
export async function httpStatus(address: string, path: string): Promise<number> {
  try {
    const r = await fetch(`http://${address}${path}`, { signal: AbortSignal.timeout(3000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}

/** The sum of the samples of a Prometheus counter whose labels contain every `match` pair. */
export function metricSum(text: string, name: string, match: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (!(rest.startsWith('{') || rest.startsWith(' '))) continue;
    if (!Object.entries(match).every(([k, v]) => rest.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/**
 * `node` flags that write a CPU profile of process `name` when it exits, into the directory
 * MESHFED_CHAOS_CPU_PROF_DIR names (none when unset): where a gateway's time went during a scenario,
 * for bench/cpu-profile-summary.ts.
 */
export function cpuProfileFlags(env: NodeJS.ProcessEnv, name: string): string[] {
  const dir = env.MESHFED_CHAOS_CPU_PROF_DIR;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
}

/** Linux's clock ticks per second (sysconf(_SC_CLK_TCK)), the unit of /proc/<pid>/stat's times */
const CLK_TCK = 100;

/** user + system CPU seconds of a live process, from /proc/<pid>/stat; undefined when unreadable */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the fields after the command name (which may hold spaces), from field 3 (state) on
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}
