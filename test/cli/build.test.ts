import { spawnSync } from 'node:child_process';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// Each case builds a small project of its own: scripts/build.js finds the sources and the build directory
// from where it lives, so a copy of it in a temporary folder builds that folder.
const SCRIPT = join(process.cwd(), 'scripts', 'build.js');
const SHAPE = [
  "import type { Sample } from './sample.ts';",
  "import { double } from './double.ts';",
  'interface Local {',
  '  n: number;',
  '}',
  'export function run(x: Local): number {',
  '  return double(x.n);',
  '}',
  'export function where(): string {',
  "  return new Error('here').stack!.split('\\n')[1]!;",
  '}',
  'export type { Sample };',
  '',
].join('\n');

function project(): string {
  const root = mkdtempSync(join(tmpdir(), 'meshfed-build-'));
  for (const d of ['core', 'ca', 'federation', 'discovery', 'gateway', 'cli', 'scripts'])
    mkdirSync(join(root, d));
  copyFileSync(SCRIPT, join(root, 'scripts', 'build.js'));
  writeFileSync(join(root, 'core', 'shape.ts'), SHAPE);
  writeFileSync(join(root, 'core', 'double.ts'), 'export const double = (n: number): number => n * 2;\n');
  writeFileSync(join(root, 'core', 'sample.ts'), 'export interface Sample {\n  at: Date;\n}\n');
  writeFileSync(join(root, 'cli', 'main.ts'), "export const main: string = 'built';\n");
  mkdirSync(join(root, 'cli', 'admin'));
  writeFileSync(join(root, 'cli', 'admin', 'admin.proto'), 'syntax = "proto3";\n');
  return root;
}

/** runs `expr` (with `b` = the project's build.js and `m` = its built core/shape.js) in a fresh Node */
function evaluate(root: string, expr: string): string {
  const build = pathToFileURL(join(root, 'scripts', 'build.js')).href;
  const code = `const b = await import(${JSON.stringify(build)}); console.log(JSON.stringify(await (async () => ${expr})()));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as string;
}

function buildIn(root: string): void {
  const r = spawnSync(
    process.execPath,
    ['--disable-warning=ExperimentalWarning', join(root, 'scripts', 'build.js')],
    {
      encoding: 'utf8',
    },
  );
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
}

const out = (root: string, rel: string) => join(root, 'node_modules', '.cache', 'meshfed', rel);
const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

describe('scripts/build.js', () => {
  test('the build runs what the sources run, on the same lines and columns', () => {
    const root = project();
    roots.push(root);
    buildIn(root);
    const built = readFileSync(out(root, 'core/shape.js'), 'utf8');
    expect(built.split('\n')).toHaveLength(SHAPE.split('\n').length);
    expect(built).toContain("from './double.js'");
    expect(built).not.toContain('.ts');
    const shape = pathToFileURL(out(root, 'core/shape.js')).href;
    expect(evaluate(root, `(await import('${shape}')).run({ n: 21 })`)).toBe(42);
    // the stack names the line and column of the .ts source
    expect(evaluate(root, `(await import('${shape}')).where()`)).toMatch(/shape\.js:10:10\)?$/);
    expect(readFileSync(out(root, 'cli/admin/admin.proto'), 'utf8')).toBe('syntax = "proto3";\n');
  });

  test('a changed, added or removed source makes the build stale until it is built again', () => {
    const root = project();
    roots.push(root);
    const main = pathToFileURL(out(root, 'cli/main.js')).href;
    expect(evaluate(root, "b.builtModule('cli/main.ts') ?? null")).toBeNull();
    buildIn(root);
    expect(evaluate(root, "b.builtModule('cli/main.ts')")).toBe(main);

    appendFileSync(join(root, 'core', 'double.ts'), 'export const triple = (n: number): number => n * 3;\n');
    expect(evaluate(root, "b.builtModule('cli/main.ts') ?? null")).toBeNull();
    expect(evaluate(root, "b.runnableModule('cli/main.ts')")).toBe(main);
    expect(readFileSync(out(root, 'core/double.js'), 'utf8')).toContain('triple');

    writeFileSync(join(root, 'gateway', 'added.ts'), 'export const added = 1;\n');
    expect(evaluate(root, "b.builtModule('cli/main.ts') ?? null")).toBeNull();
    buildIn(root);
    expect(existsSync(out(root, 'gateway/added.js'))).toBe(true);

    rmSync(join(root, 'gateway', 'added.ts'));
    expect(evaluate(root, "b.builtModule('cli/main.ts') ?? null")).toBeNull();
    buildIn(root);
    expect(existsSync(out(root, 'gateway/added.js'))).toBe(false);
    expect(evaluate(root, "b.builtModule('cli/main.ts')")).toBe(main);
  });

  test('when the build cannot be written, the sources run', () => {
    const root = project();
    roots.push(root);
    // a file where the build directory should be: every write under it fails
    mkdirSync(join(root, 'node_modules', '.cache'), { recursive: true });
    writeFileSync(join(root, 'node_modules', '.cache', 'meshfed'), '');
    expect(evaluate(root, 'b.ensureBuilt().ok')).toBe(false);
    expect(evaluate(root, "b.runnableModule('cli/main.ts')")).toBe(
      pathToFileURL(join(root, 'cli', 'main.ts')).href,
    );
  });
});
