// Network namespaces of the chaos suite's own, so that a scenario can cut the network between two
// clusters the way a real partition does: packets silently lost, not refused.
//
// Each cluster gets a namespace holding its processes, with one address on its loopback (10.250.0.N) that
// all of them listen on. Every pair of clusters is joined by its own link: a veth from each of the two
// namespaces into a "wire" namespace, bridged there. Cutting a pair takes the wire's two ports down: both
// clusters keep their routes (the kernel keeps a route through a device that lost its carrier, and uses it),
// so what they send to each other is dropped without an error, while a third cluster still reaches both.
// The namespace that runs the suite reaches each cluster through a veth of its own (a /30 in 10.250.10+N.0),
// which no partition touches. No namespace has a default route and forwarding stays off everywhere, so no
// packet can leave these namespaces and their links. 10.250.0.0/16 must be unused on the host (checked).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';

const PREFIX = 'mfchaos';
const run = promisify(execFile);

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** namespaces an earlier run of this suite left behind when it was killed outright */
function sweepOrphans(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${PREFIX}-(\\d+)-`).exec(name);
    if (m && !alive(Number(m[1]))) ip('netns', 'del', name);
  }
}

/**
 * Why network namespaces cannot be used here (not root, no `ip`, a sandbox without CAP_NET_ADMIN, or
 * 10.250.0.0/16 already in use), or undefined when they can.
 */
export function netnsUnavailable(): string | undefined {
  const probe = `${PREFIX}-${process.pid}-probe`;
  try {
    ip('netns', 'add', probe);
    ip('netns', 'del', probe);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return `cannot create a network namespace (ip netns add needs root or CAP_SYS_ADMIN + CAP_NET_ADMIN): ${(e.stderr || e.message).trim()}`;
  }
  const used = ip('-4', '-o', 'addr', 'show')
    .split('\n')
    .concat(ip('-4', 'route', 'show').split('\n'))
    .filter((l) => /\b10\.250\./.test(l));
  if (used.length) return `10.250.0.0/16 is already in use on this host: ${used.join('; ')}`;
  return undefined;
}

interface Pair {
  a: string;
  b: string;
  /** the wire namespace's two ports of this pair's link */
  ports: [string, string];
}

export class NetLab {
  readonly #clusters: string[];
  readonly #pairs: Pair[] = [];
  readonly #namespaces: string[] = [];
  readonly #wire: string;
  readonly #onExit = () => this.destroy();

  private constructor(clusters: string[]) {
    this.#clusters = clusters;
    this.#wire = `${PREFIX}-${process.pid}-wire`;
  }

  /** the namespaces and links for `clusters` (at most 50); throws, having removed what it made, on failure */
  static create(clusters: string[]): NetLab {
    if (clusters.length > 50) throw new Error(`NetLab: ${clusters.length} clusters, at most 50`);
    sweepOrphans();
    const lab = new NetLab(clusters);
    // whatever ends this process, the namespaces go with it (synchronous: 'exit' runs no more I/O)
    process.on('exit', lab.#onExit);
    try {
      lab.#build();
    } catch (err) {
      lab.destroy();
      throw err;
    }
    return lab;
  }

  #ns(cluster: string): string {
    const i = this.#clusters.indexOf(cluster);
    if (i < 0) throw new Error(`NetLab: no cluster ${cluster}; there are ${this.#clusters.join(', ')}`);
    return `${PREFIX}-${process.pid}-${i}`;
  }

  /** the address every process of `cluster` listens on */
  host(cluster: string): string {
    return `10.250.0.${this.#clusters.indexOf(cluster) + 1}`;
  }

  /** the address the suite's own connections to `cluster` come from (its egress must trust it) */
  suiteAddress(cluster: string): string {
    return `10.250.${10 + this.#clusters.indexOf(cluster)}.1`;
  }

  /** what ClusterPlan.net takes: the cluster's address and the command that starts a process in it */
  net(cluster: string): { host: string; wrap: string[] } {
    return { host: this.host(cluster), wrap: ['ip', 'netns', 'exec', this.#ns(cluster)] };
  }

  /** the suite's end of its link into the i-th cluster */
  #outside(i: number): string {
    return `${PREFIX}${process.pid}h${i}`;
  }

  #add(ns: string): void {
    ip('netns', 'add', ns);
    this.#namespaces.push(ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }

  #build(): void {
    this.#add(this.#wire);
    this.#clusters.forEach((c, i) => {
      const ns = this.#ns(c);
      this.#add(ns);
      ip('-n', ns, 'addr', 'add', `${this.host(c)}/32`, 'dev', 'lo');
      // the suite's own link into the cluster: 10.250.(10+i).1 here, .2 there
      const outside = this.#outside(i);
      ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', 'suite', 'netns', ns);
      ip('addr', 'add', `10.250.${10 + i}.1/30`, 'dev', outside);
      ip('link', 'set', outside, 'up');
      ip('-n', ns, 'addr', 'add', `10.250.${10 + i}.2/30`, 'dev', 'suite');
      ip('-n', ns, 'link', 'set', 'suite', 'up');
      ip('route', 'add', `${this.host(c)}/32`, 'via', `10.250.${10 + i}.2`, 'dev', outside);
    });
    let k = 0;
    for (let i = 0; i < this.#clusters.length; i++) {
      for (let j = i + 1; j < this.#clusters.length; j++, k++) {
        const [a, b] = [this.#clusters[i]!, this.#clusters[j]!];
        const ports: [string, string] = [`p${k}a`, `p${k}b`];
        ip('-n', this.#wire, 'link', 'add', `br${k}`, 'type', 'bridge');
        ip('-n', this.#wire, 'link', 'set', `br${k}`, 'up');
        // 10.250.(100+k).1 on a's side, .2 on b's
        for (const [side, cluster, peer, port] of [
          [1, a, b, ports[0]],
          [2, b, a, ports[1]],
        ] as const) {
          const ns = this.#ns(cluster);
          ip('-n', ns, 'link', 'add', `to-${k}`, 'type', 'veth', 'peer', 'name', port, 'netns', this.#wire);
          ip('-n', this.#wire, 'link', 'set', port, 'master', `br${k}`);
          ip('-n', this.#wire, 'link', 'set', port, 'up');
          ip('-n', ns, 'addr', 'add', `10.250.${100 + k}.${side}/30`, 'dev', `to-${k}`);
          ip('-n', ns, 'link', 'set', `to-${k}`, 'up');
          const via = `10.250.${100 + k}.${3 - side}`;
          ip('-n', ns, 'route', 'add', `${this.host(peer)}/32`, 'via', via, 'src', this.host(cluster));
        }
        this.#pairs.push({ a, b, ports });
      }
    }
  }

  #pair(a: string, b: string): Pair {
    const p = this.#pairs.find((x) => (x.a === a && x.b === b) || (x.a === b && x.b === a));
    if (!p) throw new Error(`NetLab: no link between ${a} and ${b}`);
    return p;
  }

  /**
   * The partition: the link between `a` and `b` loses its carrier on both sides. Asynchronous, so that a
   * load driven from this process is not held up meanwhile (`ip` can take a while on a busy host).
   */
  async cut(a: string, b: string): Promise<void> {
    await this.#setPorts(a, b, 'down');
  }

  /** the partition heals */
  async heal(a: string, b: string): Promise<void> {
    await this.#setPorts(a, b, 'up');
  }

  async #setPorts(a: string, b: string, state: 'up' | 'down'): Promise<void> {
    await Promise.all(
      this.#pair(a, b).ports.map((port) =>
        run('ip', ['-n', this.#wire, 'link', 'set', port, state], { timeout: 10_000 }),
      ),
    );
  }

  /**
   * Removes every namespace, their veths and the routes through them. The suite's ends of its links are
   * deleted first: a namespace with a process still in it lives on, unnamed, until that process exits, and
   * its links with it, but no longer connected to anything here.
   */
  destroy(): void {
    process.removeListener('exit', this.#onExit);
    for (let i = 0; i < this.#clusters.length; i++) {
      try {
        ip('link', 'del', this.#outside(i));
      } catch {
        // never made, or gone
      }
    }
    for (const ns of this.#namespaces.splice(0).reverse()) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // already gone
      }
    }
  }
}
