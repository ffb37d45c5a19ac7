// Builds meshfed's runnable JavaScript from its TypeScript sources, into node_modules/.cache/meshfed/.
//
// Why: a gateway that loads its .ts sources pays for Node's type-stripping loader (about 17 MB of resident
// memory that never goes away) and strips every module again at each start. bin/meshfed.js runs this
// build when it is up to date, builds it first when it is not, and runs the sources when it cannot.
//
// How: each file goes through Node's own type stripper (module.stripTypeScriptTypes, mode "strip"), the
// one Node uses to run the sources, so the build runs exactly the code the sources run. Types become
// blanks, so every line and column of a stack trace is the same as in the .ts file. Relative imports of
// `./x.ts` become `./x.js` (same length: positions are kept). Files that are not TypeScript (protos, the
// dashboard's page) are copied beside the modules that read them.
//
// Freshness: manifest.json records the size and mtime of every source file and of this script. The build
// is used only when the manifest matches the sources exactly (a file changed, added or removed makes it
// stale), so stale output never runs. Every file is written to a temporary name and renamed, so builds
// started at the same moment by parallel processes (tests spawn gateways side by side) cannot tear a file.
//
// Bundle: the modules are then bundled (esbuild) into node_modules/.cache/meshfed/bundle/, one file per
// entry (cli/main.js, cli/node-flags.js, cli/commands/gateway.js) and shared chunks for what loads later.
// A gateway that loads a few large modules instead of ~500 small ones (meshfed's and its libraries') holds
// about 15 MB less for its whole life: no module record, scope and source per file, no unused exports
// (zod's ~40 locale modules), whitespace and comments gone, every source a one-byte string
// (docs/performance.md, "Idle memory, fourth round"). Names are kept (stack traces and logs name the
// functions); line numbers are the bundle's, and each bundle file has a source map to the modules above,
// whose lines and columns are the .ts sources' (`NODE_OPTIONS=--enable-source-maps` makes traces use it).
// `import.meta.url` in meshfed's modules becomes the URL of the module it was written in, so the files they
// read beside themselves (protos, the dashboard's page, the leaf child) are found where the per-file build
// put them. Libraries that load files, workers or native code at run time (gRPC, protobufjs, the Kubernetes
// and Consul clients, OpenTelemetry, undici, x509) stay outside the bundle and are imported from node_modules
// as before; they load only when a feature uses them. Without esbuild (an install that left it out), or with
// MESHFED_BUNDLE=0, the per-file build runs.
//
//   npm run build        (bin/meshfed.js also runs it on demand)
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** the folders of runnable code (tests and benchmarks keep running from their sources) */
const SOURCE_DIRS = ['core', 'ca', 'federation', 'discovery', 'gateway', 'cli'];
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
export const BUILD_DIR = join(ROOT, 'node_modules', '.cache', 'meshfed');
const MANIFEST = join(BUILD_DIR, 'manifest.json');
const BUNDLE_DIR = join(BUILD_DIR, 'bundle');
/** what bin/meshfed.js and tests load: each becomes a bundle file of its own */
const BUNDLE_ENTRIES = ['cli/main.ts', 'cli/node-flags.ts', 'cli/commands/gateway.ts'];
/** libraries loaded as they are: they read files beside themselves, start workers or load native code */
const EXTERNAL = [
  '@grpc/*',
  'protobufjs',
  '@kubernetes/*',
  'consul',
  '@opentelemetry/*',
  'undici',
  'undici/*',
  '@peculiar/*',
  'node-forge',
  'reflect-metadata',
  'pino',
];

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

function currentState() {
  const files = {};
  for (const f of sourceFiles()) files[f] = signature(join(ROOT, f));
  return { builder: signature(SELF), node: process.version, root: ROOT, files };
}

function sameState(a, b) {
  if (a.builder !== b.builder || a.node !== b.node || a.root !== b.root) return false;
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
  const bundled = process.env.MESHFED_BUNDLE !== '0' && manifest.bundle?.[rel];
  return pathToFileURL(join(BUILD_DIR, bundled || outputName(rel))).href;
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
  const state = { builder: signature(SELF), node: process.version, root: ROOT, files: {} };
  const rebuildAll =
    !before || before.builder !== state.builder || before.node !== state.node || before.root !== state.root;
  let written = 0;
  for (const rel of sourceFiles()) {
    const src = join(ROOT, rel);
    // the signature is taken before reading: an edit made meanwhile leaves the manifest stale, never wrong
    const sig = signature(src);
    state.files[rel] = sig;
    if (!rebuildAll && before.files[rel] === sig) continue;
    const out = join(BUILD_DIR, outputName(rel));
    if (rel.endsWith('.ts')) {
      const code = stripTypeScriptTypes(readFileSync(src, 'utf8'), { mode: 'strip' });
      writeAtomically(out, code.replace(RELATIVE_TS_IMPORT, '$1$2$3.js$2'));
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
  const bundled = await bundle(Object.keys(state.files));
  if (bundled) state.bundle = bundled;
  writeAtomically(MANIFEST, `${JSON.stringify(state)}\n`);
  return written;
}

/** `import.meta.url` of a module in the build, as the URL of that module (not of the chunk it lands in) */
const moduleUrlPlugin = {
  name: 'meshfed-module-url',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith(BUILD_DIR + sep) || args.path.startsWith(BUNDLE_DIR + sep)) return undefined;
      const code = readFileSync(args.path, 'utf8');
      return { contents: code.replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href)) };
    });
  },
};

/**
 * Bundles the per-file build's entries into BUNDLE_DIR; returns { [source entry]: bundle file } for the
 * manifest, or undefined when esbuild is missing or MESHFED_BUNDLE=0 (the per-file build then runs).
 */
async function bundle(sources) {
  if (process.env.MESHFED_BUNDLE === '0') return undefined;
  let esbuild;
  try {
    esbuild = await import('esbuild');
  } catch {
    return undefined;
  }
  const entries = BUNDLE_ENTRIES.filter((rel) => sources.includes(rel));
  if (entries.length === 0) return undefined;
  let result;
  try {
    result = await esbuild.build({
      entryPoints: entries.map((rel) => join(BUILD_DIR, outputName(rel))),
      outbase: BUILD_DIR,
      outdir: BUNDLE_DIR,
      entryNames: '[dir]/[name]',
      chunkNames: 'chunks/[name]-[hash]',
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node24',
      minifyWhitespace: true,
      minifySyntax: true,
      sourcemap: 'linked',
      sourcesContent: false,
      external: EXTERNAL,
      // the CommonJS libraries inside the bundle call require(); an ES module has none of its own
      banner: {
        js: "import{createRequire as __meshfedRequire}from'node:module';const require=__meshfedRequire(import.meta.url);",
      },
      plugins: [moduleUrlPlugin],
      write: false,
      logLevel: 'silent',
    });
  } catch (err) {
    // the per-file build is complete and runs; say why the bundle is not there
    process.stderr.write(`meshfed: the bundle was not made, the per-file build runs: ${err.message}\n`);
    return undefined;
  }
  const written = new Set();
  for (const f of result.outputFiles) {
    writeAtomically(f.path, f.contents);
    written.add(relative(BUNDLE_DIR, f.path).split(sep).join('/'));
  }
  // chunks of an earlier bundle (their names carry a content hash) must not pile up
  for (const rel of outputsUnder('bundle').map((r) => r.slice('bundle/'.length)))
    if (!written.has(rel) && !rel.endsWith('.tmp')) rmSync(join(BUNDLE_DIR, rel), { force: true });
  return Object.fromEntries(entries.map((rel) => [rel, `bundle/${outputName(rel)}`]));
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
