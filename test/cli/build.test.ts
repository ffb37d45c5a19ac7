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
import { dirname, join } from 'node:path';
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

  test('the build keeps one byte per character and the same values: escapes, and the stripper blanks as spaces', () => {
    const root = project();
    roots.push(root);
    // a dash and an arrow in a comment, in strings, a template and a regular expression; an emoji; a type whose
    // comment the stripper blanks with a wide space
    const text = [
      '// a comment \u2014 with a dash \u2192 and an arrow',
      'interface Port {',
      '  /** name \u2192 number */',
      '  n: number;',
      '}',
      "export const s: string = '\u2014\u2192 \u{1f600}';",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the text of a template literal, for the build
      'export const t = `\u2716 ${1 + 1}`;',
      "export const r: boolean = /^[\u2013\u2014]+$/u.test('\u2014\u2013');",
      "export const e: boolean = /\u{1f600}/u.test('x\u{1f600}');",
      'export const p: Port = { n: 1 };',
      '',
    ].join('\n');
    writeFileSync(join(root, 'core', 'wide.ts'), text);
    buildIn(root);
    const built = readFileSync(out(root, 'core/wide.js'), 'utf8');
    expect(built).not.toMatch(/[\u0100-\uffff]/);
    expect(built.split('\n')).toHaveLength(text.split('\n').length);
    const wide = pathToFileURL(out(root, 'core/wide.js')).href;
    expect(
      evaluate(root, `(async () => { const m = await import('${wide}'); return [m.s, m.t, m.r, m.e]; })()`),
    ).toEqual(['\u2014\u2192 \u{1f600}', '\u2716 2', true, true]);
  });

  test('a character above U+00FF after a backslash leaves the file as it is', () => {
    const root = project();
    roots.push(root);
    writeFileSync(join(root, 'core', 'odd.ts'), "export const odd: string = '\\\u2014';\n");
    buildIn(root);
    expect(readFileSync(out(root, 'core/odd.js'), 'utf8')).toContain('\\\u2014');
    const odd = pathToFileURL(out(root, 'core/odd.js')).href;
    expect(evaluate(root, `(await import('${odd}')).odd`)).toBe('\u2014');
  });

  test('a full rebuild removes the validator package copy that earlier builds wrote beside the modules', () => {
    const root = project();
    roots.push(root);
    const leftover = out(root, 'node_modules/a-package/index.js');
    mkdirSync(dirname(leftover), { recursive: true });
    writeFileSync(leftover, 'export {};\n');
    buildIn(root);
    expect(existsSync(out(root, 'node_modules'))).toBe(false);
    expect(existsSync(out(root, 'cli/main.js'))).toBe(true);
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
