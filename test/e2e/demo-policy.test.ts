import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parse } from 'yaml';
import { greeterClient, HttpCaller, sayHello } from '../../cli/demo/traffic.ts';
import { waitFor } from '../../core/index.ts';
import { parsePrometheusText } from '../helpers/prometheus.ts';

/**
 * `meshfed demo` as a newcomer watches it, with its output piped (the one-line-per-change form) and short
 * phases: after locality, failover and recovery, the policy phase signs and publishes a greeter canary in three
 * steps and an AuthorizationPolicy. We read the shares the demo measured at each step, then check from outside
 * that the last revisions are in force (policy list), enforced (our own calls) and counted (eu's metrics).
 */

const NODE = process.execPath;
const BIN = join(process.cwd(), 'bin', 'meshfed.js');
const PHASE_SECONDS = 6;
const LEDGER = 'ledger.demo.svc.clusterset.local';
/** the header value a refusal carries: the AuthorizationPolicy's name and the deciding rule */
const DENY_RULE = 'ledger/deny-west';

let dir: string;
let demo: ChildProcess;
const lines: string[] = [];
let stderr = '';
let reachedPolicy = false;
/** aborted when the demo exits, with its exit code as the reason */
const demoExited = new AbortController();

/** A cluster's listener addresses, from the gateway config the demo wrote. */
function listenersOf(cluster: string): { egress: string; admin: string } {
  const config = parse(readFileSync(join(dir, 'demo', cluster, 'gateway.yaml'), 'utf8')) as {
    gateway: { listeners: { egress: string; admin: string } };
  };
  return config.gateway.listeners;
}

async function lineMatching(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  // waitFor retries a check that throws, so the demo's exit ends the wait through its signal instead
  const found = waitFor(
    () => {
      for (const l of lines) {
        const m = l.match(re);
        if (m) return m;
      }
      return undefined;
    },
    { timeoutMs, intervalMs: 100, what: `a demo line matching ${re}`, signal: demoExited.signal },
  );
  // a timeout says where the demo was: its last lines and what it wrote to stderr
  return found.catch((err: Error) => {
    throw new Error(
      `${err.message} (demo directory ${dir})\nlast lines:\n${lines.slice(-30).join('\n')}\nstderr: ${stderr}`,
    );
  });
}

/** The last canary count the demo printed while `percent` was the split in force. */
function lastCounts(percent: number): { v1: number; v2: number; failed: number } {
  const re = new RegExp(
    `^\\[canary ${percent}%\\] greeter\\.demo from east: v1=(\\d+) v2=(\\d+) failed=(\\d+)`,
  );
  const found = lines.map((l) => l.match(re)).filter((m) => m !== null);
  const m = found.at(-1);
  if (!m) throw new Error(`no canary line for ${percent}%:\n${lines.join('\n')}`);
  return { v1: Number(m[1]), v2: Number(m[2]), failed: Number(m[3]) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfed-demo-policy-'));
  demo = spawn(NODE, [BIN, 'demo', '--dir', join(dir, 'demo'), '--phase-seconds', String(PHASE_SECONDS)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  demo.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 20_000) stderr += d.toString();
  });
  createInterface({ input: demo.stdout! }).on('line', (l) => lines.push(l));
  demo.once('close', (code, sig) => demoExited.abort(new Error(`the demo exited (${code ?? sig})`)));
  // start-up (up to a few minutes on a busy host), then seven phases and four applies
  await lineMatching(/^\[authorization\] ledger\.demo from east: .*; from west: /, 400_000);
  reachedPolicy = true;
}, 420_000);

afterAll(async () => {
  if (demo && demo.exitCode === null) {
    const exited = once(demo, 'exit');
    demo.kill('SIGTERM');
    await exited;
  }
  // a demo that never reached the policy phase keeps its directory (gateway logs) for a look
  if (dir && reachedPolicy) rmSync(dir, { recursive: true, force: true });
  else if (dir) console.log(`demo-policy: the demo's directory is kept: ${dir}`);
});

describe('the demo policy phase', () => {
  test('each canary step is one signed revision, in force at all three gateways before it is measured', () => {
    const revisions = [10, 50, 100].map((p) => {
      const applied = lines.find((l) => l.startsWith(`[canary ${p}%] applied `));
      expect(applied).toMatch(/: admin revision \d+ in force at 3 gateway\(s\)/);
      expect(lines).toContain(
        `[canary ${p}%] replay: npx meshfed policy apply -f ${join(dir, 'demo', 'policies', `greeter-canary-${p}.yaml`)} --config ${join(dir, 'demo', 'east', 'gateway.yaml')} --cert ${join(dir, 'demo', 'admin', 'operator', 'cert.pem')} --key ${join(dir, 'demo', 'admin', 'operator', 'key.pem')}`,
      );
      return Number(applied!.match(/revision (\d+)/)![1]);
    });
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    expect(new Set(revisions).size).toBe(3);
  });

  test("the measured share of greeter-v2 follows the split at each step, within the sample's binomial spread", () => {
    for (const p of [10, 50, 100]) {
      const c = lastCounts(p);
      const n = c.v1 + c.v2;
      // about 40 calls/s for the 6 s of a step; 50 is far below that, and still tells 10 from 50 from 100
      expect({ step: p, enough: n >= 50, failed: c.failed }).toEqual({ step: p, enough: true, failed: 0 });
      const expected = p / 100;
      // 4.5 standard deviations of a binomial proportion; by the exact binomial tail a false alarm is rarer
      // than 1 in 10,000 steps for every n ≥ 50 and split here (7e-5 at n = 50 and 10 %, 2e-5 at n = 200)
      const tolerance = 4.5 * Math.sqrt((expected * (1 - expected)) / n);
      const share = c.v2 / n;
      expect({ step: p, share, n, within: Math.abs(share - expected) <= tolerance + 1e-9 }).toEqual({
        step: p,
        share,
        n,
        within: true,
      });
    }
  });

  test('the denied caller gets 403 with the rule name while the allowed one is served, in the demo and from here', async () => {
    expect(lines).toContain('[authorization] before the policy, ledger.demo from west: 200 served by eu');
    const seen = await lineMatching(
      /^\[authorization\] ledger\.demo from east: (.+?) \(\d+ calls?\); from west: (.+?) \(\d+ calls?\)$/,
      5000,
    );
    expect([seen[1], seen[2]]).toEqual(['200 served by eu', `403 denied by rule ${DENY_RULE}`]);

    const west = new HttpCaller(listenersOf('west').egress, LEDGER);
    const east = new HttpCaller(listenersOf('east').egress, LEDGER);
    try {
      const [w, e] = await Promise.all([west.call(), east.call()]);
      expect({ ok: w.ok, status: w.status, rule: w.rule }).toEqual({
        ok: false,
        status: 403,
        rule: DENY_RULE,
      });
      expect({ ok: e.ok, status: e.status, cluster: e.cluster }).toEqual({
        ok: true,
        status: 200,
        cluster: 'eu',
      });
    } finally {
      await Promise.all([west.close(), east.close()]);
    }
    // eu's gateway decided, and counted the refusals under the rule
    const text = await (await fetch(`http://${listenersOf('eu').admin}/metrics`)).text();
    const samples =
      parsePrometheusText(
        text
          .split('\n')
          .filter((l) => l.includes('meshfed_policy_authorization_total'))
          .join('\n'),
      ).get('meshfed_policy_authorization_total')?.samples ?? [];
    const denied = samples.find((s) => s.labels.decision === 'deny' && s.labels.rule === DENY_RULE);
    expect(denied?.value).toBeGreaterThan(0);
  });

  test('the last canary step stays in force: every call from east is answered by greeter v2 in eu', async () => {
    const client = greeterClient(listenersOf('east').egress);
    try {
      const replies = await Promise.all(Array.from({ length: 20 }, () => sayHello(client, 'after')));
      expect(new Set(replies.map((r) => `${r.version}@${r.cluster}`))).toEqual(new Set(['v2@eu']));
      expect(replies[0]!.message).toBe('hello after (greeter v2)');
    } finally {
      client.close();
    }
  });

  test('policy list shows both documents in the admin scope, signed by the demo operator; the files are there to replay', () => {
    const r = spawnSync(
      NODE,
      [BIN, 'policy', 'list', '--config', join(dir, 'demo', 'east', 'gateway.yaml'), '--json'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect({ code: r.status, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    const list = JSON.parse(r.stdout) as {
      scopes: { scope: string; signer: string; documents: { kind: string; metadata: { name: string } }[] }[];
    };
    expect(list.scopes.map((s) => [s.scope, s.signer])).toEqual([
      ['admin', 'spiffe://mesh.example/admin/demo-operator'],
    ]);
    expect(list.scopes[0]!.documents.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual([
      'AuthorizationPolicy/ledger',
      'TrafficSplit/greeter-canary',
    ]);
    for (const f of [
      'greeter-canary-10.yaml',
      'greeter-canary-50.yaml',
      'greeter-canary-100.yaml',
      'ledger-deny-west.yaml',
      'README.md',
    ]) {
      expect({ f, exists: existsSync(join(dir, 'demo', 'policies', f)) }).toEqual({ f, exists: true });
    }
  });

  test('the demo stops cleanly on SIGTERM', async () => {
    const exited = once(demo, 'exit');
    demo.kill('SIGTERM');
    const [code] = await exited;
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  });
});
