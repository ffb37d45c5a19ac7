// Builds meshfed's runnable JavaScript from its TypeScript sources, into node_modules/.cache/meshfed/.
//
// Why: a gateway that loads its .ts sources pays for Node's type-stripping loader (about 17 MB of resident
// memory that never goes away) and strips every module again at each start. bin/meshfed.js runs this
// build when it is up to date, builds it first when it is not, and runs the sources when it cannot.
//
// How: each file goes through Node's own type stripper (module.stripTypeScriptTypes, mode "strip"), the
// one Node uses to run the sources, so the build runs exactly the code the sources run. Types become
// blanks, so every line of a stack trace is the same as in the .ts file, and every column on a line without
// a character above U+00FF (below). Relative imports of `./x.ts` become `./x.js` (same length: positions are
// kept). Files that are not TypeScript (protos, the dashboard's page) are copied beside the modules that read
// them.
//
// Sources are kept one byte per character: V8 holds every module's source for as long as the process runs,
// and one character above U+00FF (a dash or an arrow in a comment) makes it hold the whole file at two bytes
// per character. The build writes such characters as \uXXXX escapes, which mean the same in comments,
// strings, templates and regular expressions; only the columns after one, on its line, move.
//
// Freshness: manifest.json records the size and mtime of every source file and of this script, and Node's
// version. The build is used only when the manifest matches them exactly (a file changed, added or
// removed makes it stale), so stale output never runs. Every file is written to a temporary name and renamed,
// so builds started at the same moment by parallel processes (tests spawn
// gateways side by side) cannot tear a file.
//
//   npm run build        (bin/meshfed.js also runs it on demand)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** the folders of runnable code (tests and benchmarks keep running from their sources) */
const SOURCE_DIRS = ['core', 'ca', 'federation', 'discovery', 'gateway', 'cli'];
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
export const BUILD_DIR = join(ROOT, 'node_modules', '.cache', 'meshfed');
const MANIFEST = join(BUILD_DIR, 'manifest.json');

/** every file under the source folders, as paths relative to the root, with "/" separators */
function sourceFiles() {
  const files = [];
  const walk = (dir) => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.isFile() && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts')) files.push(rel);
    }
  };
  for (const d of SOURCE_DIRS) walk(d);
  return files.sort();
}

/** what the manifest records of a file: enough to notice any edit, checkout or replacement */
function signature(path) {
  const s = statSync(path);
  return `${s.size}:${s.mtimeMs}`;
}

/** what the whole build depends on besides the source files: this script, Node */
function buildInputs() {
  return { builder: signature(SELF), node: process.version };
}

function currentState() {
  const files = {};
  for (const f of sourceFiles()) files[f] = signature(join(ROOT, f));
  return { ...buildInputs(), files };
}

function sameState(a, b) {
  if (a.builder !== b.builder || a.node !== b.node) return false;
  const ka = Object.keys(a.files);
  if (ka.length !== Object.keys(b.files).length) return false;
  return ka.every((k) => a.files[k] === b.files[k]);
}

function readManifest() {
  try {
    return JSON.parse(readFileSync(MANIFEST, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The URL of the built module for `rel` (e.g. "cli/main.ts") when the build matches the sources, else undefined. */
export function builtModule(rel) {
  const manifest = readManifest();
  if (!manifest || !sameState(manifest, currentState())) return undefined;
  return new URL(`file://${join(BUILD_DIR, outputName(rel))}`).href;
}

function outputName(rel) {
  return rel.endsWith('.ts') ? `${rel.slice(0, -3)}.js` : rel;
}

// `from './x.ts'`, `import './x.ts'`, `import('./x.ts')`: relative specifiers only (packages keep theirs)
const RELATIVE_TS_IMPORT = /(\bfrom\s*|\bimport\s*\(?\s*)(['"])(\.\.?\/[^'"\n]*?)\.ts\2/g;

function outputsUnder(dir) {
  let entries;
  try {
    entries = readdirSync(join(BUILD_DIR, dir), { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => (e.isDirectory() ? outputsUnder(`${dir}/${e.name}`) : [`${dir}/${e.name}`]));
}

/** Unicode's spaces above U+00FF: what Node's type stripper puts where it blanks a multi-byte character */
const WIDE_SPACE = /[\u1680\u2000-\u200a\u202f\u205f\u3000\ufeff]/;
const WIDE_SPACES = new RegExp(WIDE_SPACE, 'g');

/**
 * `code` with every character above U+00FF written as a \uXXXX escape (a surrogate pair as two): one byte per
 * character for V8. When `code` is the type stripper's output and `source` what it stripped, its wide spaces
 * become plain ones first: they blank a type's characters and are whitespace, where an escape would not be.
 * Unchanged when such a character follows a backslash (`'\—'` would become a different string), or when
 * `source` has wide spaces of its own: that file keeps two bytes per character rather than risk its meaning.
 */
function oneByte(code, source) {
  if (source !== undefined) {
    if (WIDE_SPACE.test(source)) return code;
    code = code.replace(WIDE_SPACES, ' ');
  }
  if (/\\[\u0100-\uffff]/.test(code)) return code;
  return code.replace(/[\u0100-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function writeAtomically(path, data) {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/** Brings node_modules/.cache/meshfed up to date with the sources; returns how many files it wrote. */
export async function build() {
  const { stripTypeScriptTypes } = await import('node:module');
  const before = readManifest();
  const state = { ...buildInputs(), files: {} };
  const rebuildAll = !before || before.builder !== state.builder || before.node !== state.node;
  // earlier builds carried a copy of a validator package here; nothing loads it any more
  if (rebuildAll) rmSync(join(BUILD_DIR, 'node_modules'), { recursive: true, force: true });
  let written = 0;
  for (const rel of sourceFiles()) {
    const src = join(ROOT, rel);
    // the signature is taken before reading: an edit made meanwhile leaves the manifest stale, never wrong
    const sig = signature(src);
    state.files[rel] = sig;
    if (!rebuildAll && before.files[rel] === sig) continue;
    const out = join(BUILD_DIR, outputName(rel));
    if (rel.endsWith('.ts')) {
      const source = readFileSync(src, 'utf8');
      const code = stripTypeScriptTypes(source, { mode: 'strip' });
      writeAtomically(out, oneByte(code.replace(RELATIVE_TS_IMPORT, '$1$2$3.js$2'), source));
    } else {
      writeAtomically(out, readFileSync(src));
    }
    written++;
  }
  // outputs whose source is gone must not stay importable
  const wanted = new Set(Object.keys(state.files).map(outputName));
  for (const rel of SOURCE_DIRS.flatMap((d) => outputsUnder(d)))
    if (!wanted.has(rel) && !rel.endsWith('.tmp')) rmSync(join(BUILD_DIR, rel), { force: true });
  // the build's own package scope: its .js files are ES modules (node_modules has no scope of ours)
  writeAtomically(join(BUILD_DIR, 'package.json'), '{ "type": "module", "private": true }\n');
  writeAtomically(MANIFEST, `${JSON.stringify(state)}\n`);
  return written;
}

/**
 * Makes the build match the sources when it does not, in a child process (so the type stripper never
 * loads into a gateway's own process); says whether the build is now up to date, and why not.
 */
export function ensureBuilt() {
  if (builtModule('cli/main.ts')) return { ok: true };
  const r = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', SELF], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status === 0 && builtModule('cli/main.ts')) return { ok: true };
  return { ok: false, reason: (r.stderr || r.error?.message || `exit ${r.status}`).trim() };
}

/**
 * The module bin/meshfed.js runs for `rel` (e.g. "cli/main.ts"): the built one, built first when stale,
 * or the source when the build cannot be made (no write access to node_modules, say).
 */
export function runnableModule(rel) {
  return (ensureBuilt().ok && builtModule(rel)) || new URL(`../${rel}`, import.meta.url).href;
}

if (process.argv[1] === SELF) {
  const started = performance.now();
  const written = await build();
  const ms = Math.round(performance.now() - started);
  process.stdout.write(
    `meshfed: built ${written} file(s) into ${relative(ROOT, BUILD_DIR).split(sep).join('/')} in ${ms} ms\n`,
  );
}
