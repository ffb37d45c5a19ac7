import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from '../../cli/command.ts';
import { parseFlags, requireFlag } from '../../cli/command.ts';
import { runCli } from '../../cli/main.ts';
import { io } from '../helpers/cli-io.ts';
import { MeshfedError } from '../../core/index.ts';
import { violations } from '../../scripts/check-imports.js';

const fake: Command[] = [
  {
    path: ['demo-ok'],
    summary: 'ok',
    usage: 'meshfed demo-ok [--name N]',
    async run(ctx) {
      const { values } = parseFlags(ctx, { name: { type: 'string' } }, 'demo-ok');
      const name = requireFlag(values, 'name', 'demo-ok');
      ctx.stdout.write(ctx.json ? JSON.stringify({ name }) : `hello ${name}\n`);
    },
  },
  {
    path: ['grp', 'fail'],
    summary: 'fails',
    usage: 'meshfed grp fail',
    async run() {
      throw new MeshfedError('MESHFED_CA_EXPIRED', 'root.crt: expired on 2020-01-01; re-issue it');
    },
  },
];

describe('meshfed CLI', () => {
  test('--help lists commands, exit 0', async () => {
    const s = io();
    expect(await runCli(['--help'], { ...s, commands: fake })).toBe(0);
    expect(s.out()).toContain('demo-ok');
    expect(s.out()).toContain('grp fail');
  });

  test('--version prints the package version', async () => {
    const s = io();
    expect(await runCli(['--version'], { ...s, commands: fake })).toBe(0);
    expect(s.out()).toMatch(/^meshfed \d+\.\d+\.\d+\n$/);
  });

  test('routes to a sub-command, with --json', async () => {
    const s = io();
    expect(await runCli(['demo-ok', '--name', 'x', '--json'], { ...s, commands: fake })).toBe(0);
    expect(JSON.parse(s.out())).toEqual({ name: 'x' });
  });

  test('usage errors exit 2 with one line naming the flag', async () => {
    const s = io();
    expect(await runCli(['demo-ok'], { ...s, commands: fake })).toBe(2);
    expect(s.err()).toBe('meshfed: demo-ok: --name is required (see: meshfed demo-ok --help)\n');
    const t = io();
    expect(await runCli(['demo-ok', '--nmae', 'x'], { ...t, commands: fake })).toBe(2);
    expect(t.err()).toContain("Unknown option '--nmae'");
    const u = io();
    expect(await runCli(['nosuch'], { ...u, commands: fake })).toBe(2);
  });

  test('failures exit 1 with one line; the stack only with --debug', async () => {
    const s = io();
    expect(await runCli(['grp', 'fail'], { ...s, commands: fake })).toBe(1);
    expect(s.err()).toBe('meshfed: root.crt: expired on 2020-01-01; re-issue it\n');
    const d = io();
    expect(await runCli(['grp', 'fail', '--debug'], { ...d, commands: fake })).toBe(1);
    expect(d.err()).toContain('at ');
    const j = io();
    expect(await runCli(['grp', 'fail', '--json'], { ...j, commands: fake })).toBe(1);
    expect(JSON.parse(j.err()).error.code).toBe('MESHFED_CA_EXPIRED');
  });

  test('the bin runs under the project Node and prints help', () => {
    const node = join(process.cwd(), 'node_modules', '.bin', 'node');
    const r = spawnSync(node, ['bin/meshfed.js', '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: meshfed <command>');
    expect(r.stderr).toBe('');
  });
});

describe('one-way import rule', () => {
  test('the repository has no violations', () => {
    expect(violations()).toEqual([]);
  });

  test('a gateway/ file importing federation/ is caught', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-imports-'));
    mkdirSync(join(dir, 'gateway'));
    mkdirSync(join(dir, 'federation'));
    writeFileSync(join(dir, 'federation', 'index.ts'), 'export const x = 1;\n');
    writeFileSync(
      join(dir, 'gateway', 'bad.ts'),
      "import { x } from '../federation/index.ts';\nexport const y = x;\n",
    );
    const v = violations(dir);
    expect(v).toHaveLength(1);
    expect(v[0]).toContain('gateway/bad.ts:1: gateway/ may not import federation/');
  });

  test('a cli/ file importing another folder past its index is caught; tests may reach inside', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshfed-imports-'));
    for (const d of ['cli', 'gateway/balancer', 'test']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'gateway', 'index.ts'), 'export const x = 1;\n');
    writeFileSync(join(dir, 'gateway', 'balancer', 'index.ts'), 'export const b = 1;\n');
    writeFileSync(
      join(dir, 'cli', 'ok.ts'),
      "import { x } from '../gateway/index.ts';\nexport const y = x;\n",
    );
    writeFileSync(
      join(dir, 'cli', 'deep.ts'),
      "import { b } from '../gateway/balancer/index.ts';\nexport const y = b;\n",
    );
    writeFileSync(
      join(dir, 'test', 'deep.ts'),
      "import { b } from '../gateway/balancer/index.ts';\nexport const y = b;\n",
    );
    const v = violations(dir);
    expect(v).toHaveLength(1);
    expect(v[0]).toContain('cli/deep.ts:1: cli/ imports gateway/ past its public index');
  });
});
