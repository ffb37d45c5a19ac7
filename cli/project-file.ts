import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * A file of the meshfed checkout (package.json, bin/meshfed.js), by its path from the root. The CLI runs
 * either from its sources (cli/) or from the build in node_modules/.cache/meshfed/cli/ (scripts/build.js),
 * so the root is found, not assumed: the nearest folder above this module that holds bin/meshfed.js.
 */
export function projectFile(rel: string): string {
  for (let dir = new URL('..', import.meta.url); ; dir = new URL('..', dir)) {
    if (existsSync(new URL('bin/meshfed.js', dir))) return fileURLToPath(new URL(rel, dir));
    if (dir.pathname === '/') throw new Error(`meshfed: no bin/meshfed.js above ${import.meta.url}`);
  }
}
