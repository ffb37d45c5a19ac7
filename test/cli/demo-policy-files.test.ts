import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRoot, TrustBundle, verify } from '../../ca/index.ts';
import type { Demo } from '../../cli/demo/demo.ts';
import { CANARY_STEPS, PolicyPhase } from '../../cli/demo/policy-phase.ts';
import { runCli } from '../../cli/main.ts';
import { io } from '../helpers/cli-io.ts';

/**
 * What the demo's policy phase leaves for a newcomer, checked without a federation: an admin identity issued
 * from the admin intermediate, policy files that `meshfed policy apply --dry-run` accepts and that say what
 * the screen says, and a README that lists the commands in the order the demo ran them.
 */

let dir: string;
let phase: PolicyPhase;
let rootPem: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meshfed-demo-files-'));
  const root = await createRoot({ trustDomain: 'mesh.example' });
  rootPem = root.certPem;
  mkdirSync(join(dir, 'root'));
  writeFileSync(join(dir, 'root', 'root.crt'), root.certPem);
  writeFileSync(join(dir, 'root', 'root.key'), root.keyPem, { mode: 0o600 });
  // the phase needs only where the demo lives and east's gateway config (named in the replay commands)
  const demo = { dir, cluster: () => ({ configFile: join(dir, 'east', 'gateway.yaml') }) };
  phase = new PolicyPhase(demo as unknown as Demo, { signal: new AbortController().signal });
  await phase.prepare();
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the operator certificate is an admin identity that chains to the root through the admin intermediate', () => {
  const chain = readFileSync(join(dir, 'admin', 'operator', 'cert.pem'), 'utf8');
  const id = verify(chain, TrustBundle.fromPem(rootPem), {
    trustDomain: 'mesh.example',
    kinds: ['admin'],
    usage: 'signing',
  });
  expect(id.spiffeId).toBe('spiffe://mesh.example/admin/demo-operator');
});

test.each([
  ...CANARY_STEPS.map((p) => [`greeter-canary-${p}.yaml`, `TrafficSplit/greeter-canary`] as const),
  ['ledger-deny-west.yaml', 'AuthorizationPolicy/ledger'] as const,
])('%s is a valid policy (%s) by meshfed policy apply --dry-run', async (file, id) => {
  const s = io();
  const code = await runCli(['policy', 'apply', '--dry-run', '-f', join(dir, 'policies', file), '--json'], s);
  expect({ code, err: s.err() }).toEqual({ code: 0, err: '' });
  const plan = JSON.parse(s.out()) as { documents: number; changes: { id: string; change: string }[] };
  expect(plan.changes).toEqual([{ id, change: 'added', fields: [] }]);
});

test('each canary file sends its share to greeter-v2 and the rest to greeter', async () => {
  for (const p of CANARY_STEPS) {
    const s = io();
    expect(await runCli(['policy', 'apply', '--dry-run', '-f', phase.canaryFile(p), '--json'], s)).toBe(0);
    const text = readFileSync(phase.canaryFile(p), 'utf8');
    expect(text).toMatch(new RegExp(`service: demo/greeter\\n\\s+weight: ${100 - p}\\n`));
    expect(text).toMatch(new RegExp(`service: demo/greeter-v2\\n\\s+weight: ${p}\\n`));
  }
});

test('the README lists the identity commands, then every apply in the order the demo runs them', () => {
  const readme = readFileSync(join(dir, 'policies', 'README.md'), 'utf8');
  const commands = readme.split('\n').filter((l) => l.startsWith('npx meshfed '));
  expect(commands.map((c) => c.split(' ').slice(2, 4).join(' '))).toEqual([
    'ca admin',
    'ca issue',
    'policy apply',
    'policy apply',
    'policy apply',
    'policy apply',
    'policy list',
  ]);
  expect(commands.slice(2, 6)).toEqual([
    ...CANARY_STEPS.map((p) => phase.replay(phase.canaryFile(p))),
    phase.replay(phase.authorizationFile),
  ]);
  expect(commands[2]).toBe(
    `npx meshfed policy apply -f ${join(dir, 'policies', 'greeter-canary-10.yaml')} --config ${join(dir, 'east', 'gateway.yaml')} --cert ${join(dir, 'admin', 'operator', 'cert.pem')} --key ${join(dir, 'admin', 'operator', 'key.pem')}`,
  );
});

test('meshfed demo refuses a --phase-seconds that is not 1–600 whole seconds, naming the flag', async () => {
  for (const bad of ['0', '2.5', 'soon', '601']) {
    const s = io();
    expect(await runCli(['demo', '--phase-seconds', bad, '--dir', join(dir, 'never')], s)).toBe(2);
    expect(s.err()).toBe(
      `meshfed: demo: --phase-seconds must be a whole number of seconds from 1 to 600, got "${bad}"\n`,
    );
  }
});
