import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// What a gateway loads before it serves anything stays resident for its whole life (docs/performance.md,
// "Idle memory"). Things that cost a few MB each and that nothing at start needs: Node's bundled fetch
// (an ES import of node:http reads its lazy WebSocket/CloseEvent/MessageEvent exports, which load it), ICU's
// locale data (Number#toLocaleString, Intl formatters, localeCompare), undici (only requests to local
// HTTP/1.1 endpoints off the fast path use it; the gateway makes its Agent on the first one) and node:cluster
// (only a gateway with `workers` above 1 forks; cli/worker-protocol.ts). Each case runs
// in a fresh Node, importing the sources the way `meshfed gateway` does (cli/commands/gateway.ts and all
// under it).

const node = join(process.cwd(), 'node_modules', '.bin', 'node');
const GATEWAY_COMMAND = pathToFileURL(join(process.cwd(), 'cli', 'commands', 'gateway.ts')).href;
const BUNDLED_FETCH = 'NativeModule internal/deps/undici/undici';
const CLUSTER = 'NativeModule cluster';

/** What a fresh Node had loaded after a module's code ran. */
interface Loaded {
  icu: string[];
  bundledFetch: boolean;
  undici: boolean;
  cluster: boolean;
}

/** Runs `body` (an ES module's code) in a fresh Node after wrapping the ICU entry points; what it saw. */
function afterImport(body: string): Loaded {
  const script = `
    const icu = new Set();
    const wrap = (obj, key, name) => {
      const f = obj[key];
      obj[key] = function (...args) { icu.add(name); return f.apply(this, args); };
    };
    wrap(Number.prototype, 'toLocaleString', 'Number#toLocaleString');
    wrap(Date.prototype, 'toLocaleString', 'Date#toLocaleString');
    wrap(String.prototype, 'localeCompare', 'String#localeCompare');
    for (const k of ['NumberFormat', 'DateTimeFormat', 'Collator', 'PluralRules', 'RelativeTimeFormat']) {
      Intl[k] = new Proxy(Intl[k], { construct(t, a) { icu.add('Intl.' + k); return Reflect.construct(t, a); } });
    }
    ${body}
    const undici = Object.keys(process.getBuiltinModule('node:module')._cache).some((k) => k.includes('/node_modules/undici/'));
    console.log(JSON.stringify({ icu: [...icu], bundledFetch: process.moduleLoadList.includes(${JSON.stringify(BUNDLED_FETCH)}), undici, cluster: process.moduleLoadList.includes(${JSON.stringify(CLUSTER)}) }));
  `;
  const r = spawnSync(node, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Loaded;
}

test('the gateway command loads neither Node bundled fetch, ICU locale data, undici nor node:cluster when it is imported', () => {
  expect(afterImport(`await import(${JSON.stringify(GATEWAY_COMMAND)});`)).toEqual({
    icu: [],
    bundledFetch: false,
    undici: false,
    cluster: false,
  });
});

test('every check sees what it looks for (so the test above can fail)', () => {
  expect(
    afterImport(
      `await import('node:http'); (4096).toLocaleString('en-US'); await import('undici/lib/dispatcher/agent.js'); await import('node:cluster');`,
    ),
  ).toEqual({
    icu: ['Number#toLocaleString'],
    bundledFetch: true,
    undici: true,
    cluster: true,
  });
});
