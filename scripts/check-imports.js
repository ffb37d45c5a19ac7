#!/usr/bin/env node
// Enforces DESIGN.md's one-way import rule between meshfed's top-level folders, so the
// architecture holds without anyone remembering it. Exit 1 with one line per violation.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** folder → the folders it may import from (itself is always allowed). */
export const ALLOWED = {
  core: [],
  ca: ['core'],
  federation: ['core', 'ca'],
  discovery: ['core'],
  gateway: ['core', 'ca'],
  cli: ['core', 'ca', 'federation', 'discovery', 'gateway'],
  test: ['core', 'ca', 'federation', 'discovery', 'gateway', 'cli', 'scripts'],
  bench: ['core', 'ca', 'federation', 'discovery', 'gateway', 'cli', 'test', 'scripts'],
  scripts: ['core'],
};
const FOLDERS = Object.keys(ALLOWED);
/** folders whose imports of another folder must go through that folder's one public index.ts */
const THROUGH_INDEX = new Set(['ca', 'federation', 'discovery', 'gateway', 'cli']);
const IMPORT =
  /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;

function* files(dir) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (/\.(ts|js|mjs)$/.test(name)) yield p;
  }
}

export function violations(rootDir = root) {
  const out = [];
  for (const folder of FOLDERS) {
    let st;
    try {
      st = statSync(join(rootDir, folder));
    } catch {
      continue;
    }
    if (!st.isDirectory()) continue;
    for (const file of files(join(rootDir, folder))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(IMPORT)) {
        const spec = m[1] ?? m[2] ?? m[3];
        if (!spec?.startsWith('.')) continue;
        const path = relative(rootDir, resolve(dirname(file), spec)).split(sep);
        const target = path[0];
        if (target === folder || !FOLDERS.includes(target)) continue;
        const line = text.slice(0, m.index).split('\n').length;
        if (!ALLOWED[folder].includes(target)) {
          out.push(
            `${relative(rootDir, file)}:${line}: ${folder}/ may not import ${target}/ (see DESIGN.md "Folders"): ${spec}`,
          );
        } else if (THROUGH_INDEX.has(folder) && !(path.length === 2 && path[1] === 'index.ts')) {
          out.push(
            `${relative(rootDir, file)}:${line}: ${folder}/ imports ${target}/ past its public index (import ${target}/index.ts): ${spec}`,
          );
        }
      }
    }
  }
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const v = violations();
  for (const line of v) process.stderr.write(`${line}\n`);
  if (v.length > 0) {
    process.stderr.write(`check-imports: ${v.length} import(s) break the one-way rule\n`);
    process.exit(1);
  }
}
