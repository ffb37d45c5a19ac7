// jest's globalSetup: brings the build (scripts/build.js) up to date once, before any test spawns
// bin/meshfed.js, so the gateways that tests start run JavaScript built from the sources under test and
// do not race one another to build it, or spend a test's time budget on it.
import { ensureBuilt } from '../scripts/build.js';

export default function buildBeforeTests() {
  const r = ensureBuilt();
  if (!r.ok)
    process.stderr.write(`meshfed: spawned gateways run the .ts sources: the build failed: ${r.reason}\n`);
}
