import { createRequire } from 'node:module';
import { dirname, sep } from 'node:path';
import type * as Yaml from 'yaml';

/**
 * The YAML library, loaded when a file is parsed and dropped once parsing is over. A gateway parses YAML at
 * start and when an operator edits its config, services file or policies; in between, a resident copy of the
 * library (its source text, compiled functions and module records: 1.1 MB of a gateway's 80 MB budget,
 * docs/performance.md, "Eleventh round") serves nothing. An ES import cannot be unloaded, so the library (a
 * CommonJS package) is required, and once no parse has used it for UNLOAD_AFTER_MS its modules leave Node's
 * require cache and V8 collects them. A burst of parses (a test suite, a policy directory) loads it once.
 *
 * Whatever a caller keeps (a Document being edited) stays usable after the unload; only the memory of the
 * library itself waits for the caller to drop it.
 */

/** how long the library stays loaded after its last use */
export const UNLOAD_AFTER_MS = 2000;

const resolver = createRequire(import.meta.url);
/** the package's folder with a trailing separator: every require-cache key of its modules starts with it */
const PACKAGE_DIR = dirname(resolver.resolve('yaml/package.json')) + sep;

let loaded: typeof Yaml | undefined;
let unloadTimer: NodeJS.Timeout | undefined;

/** The YAML library, for one synchronous use: do not keep the returned object. */
export function yaml(): typeof Yaml {
  // a require function of its own each time: the module it requires from lists what it loaded as its
  // children, and would keep the library alive after the unload
  loaded ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  clearTimeout(unloadTimer);
  unloadTimer = setTimeout(unloadYaml, UNLOAD_AFTER_MS);
  // an idle process does not stay up for it
  unloadTimer.unref();
  return loaded;
}

/** Drops the library now (tests; the timer does it otherwise). Loaded again by the next use. */
export function unloadYaml(): void {
  clearTimeout(unloadTimer);
  unloadTimer = undefined;
  loaded = undefined;
  for (const key of Object.keys(resolver.cache)) if (key.startsWith(PACKAGE_DIR)) delete resolver.cache[key];
}

/** Whether the library is in the require cache (tests: that it was dropped). */
export function yamlLoaded(): boolean {
  return Object.keys(resolver.cache).some((key) => key.startsWith(PACKAGE_DIR));
}
