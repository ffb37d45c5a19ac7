import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import {
  type MeshfedError,
  parseConfigText,
  parsePolicyDocuments,
  unloadYaml,
  yaml,
  z,
} from '../../core/index.ts';

const schema = z.object({ name: z.string() });
const CORE = pathToFileURL(`${process.cwd()}/core/index.ts`).href;

/** Runs an ES module in a fresh Node (with --expose-gc) and returns what its last line printed, as JSON. */
function inNode(script: string): unknown {
  const child = spawnSync(
    process.execPath,
    ['--expose-gc', '--input-type=module', '-e', `${script}\nprocess.exit(0);`],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  expect(child.stderr).not.toMatch(/Error/);
  return JSON.parse(child.stdout.trim().split('\n').pop()!);
}

afterEach(() => unloadYaml());

test('the YAML library is loaded by a parse and dropped from the require cache after UNLOAD_AFTER_MS', () => {
  // in a child (jest's require cache is its own, and ignores deletions), on node:test's mock clock
  const seen = inNode(`
    import { mock } from 'node:test';
    import { parseConfigText, UNLOAD_AFTER_MS, yamlLoaded, z } from '${CORE}';
    mock.timers.enable({ apis: ['setTimeout'] });
    const schema = z.object({ name: z.string() });
    const seen = [yamlLoaded()];
    parseConfigText(schema, 'name: a\\n', { source: 'a.yaml' });
    seen.push(yamlLoaded());
    // a burst of parses keeps it: each use restarts the wait
    mock.timers.tick(UNLOAD_AFTER_MS - 1);
    parseConfigText(schema, 'name: b\\n', { source: 'b.yaml' });
    mock.timers.tick(UNLOAD_AFTER_MS - 1);
    seen.push(yamlLoaded());
    mock.timers.tick(1);
    seen.push(yamlLoaded());
    parseConfigText(schema, 'name: c\\n', { source: 'c.yaml' });
    seen.push(yamlLoaded());
    console.log(JSON.stringify(seen));`);
  expect(seen).toEqual([false, true, true, false, true]);
});

test('after an unload the next parse loads it again, errors with their line and column included', () => {
  expect(parseConfigText(schema, 'name: a\n', { source: 'a.yaml' })).toEqual({ name: 'a' });
  unloadYaml();
  expect(() => parseConfigText(schema, 'name: [a\n', { source: 'bad.yaml' })).toThrow(
    /bad\.yaml: line \d+ column \d+/,
  );
  unloadYaml();
  let err: MeshfedError | undefined;
  try {
    parsePolicyDocuments('kind: NotAKind\n---\na: [b\n', 'p.yaml');
  } catch (e) {
    err = e as MeshfedError;
  }
  const problems = (err!.details as { problems: { document: string; path: string }[] }).problems;
  expect(problems.map((p) => p.document)).toEqual(['p.yaml#2', 'p.yaml#1 (NotAKind)']);
  expect(problems.find((p) => p.document === 'p.yaml#2')?.path).toMatch(/^line \d+ column \d+$/);
});

test('a document kept past the unload stays usable', () => {
  const doc = yaml().parseDocument('a: 1\n');
  unloadYaml();
  doc.set('a', 2);
  expect(String(doc)).toBe('a: 2\n');
});

test('once dropped, the library is collected (nothing of meshfed keeps it alive)', () => {
  // in a child with --expose-gc: the library's exports object is watched through a WeakRef across a real
  // config parse; `unload` says whether the test drops it first (the control run shows the check can fail)
  const run = (unload: boolean) =>
    inNode(`
      import { parseConfigText, unloadYaml, yaml, z } from '${CORE}';
      const ref = new WeakRef(yaml());
      parseConfigText(z.object({ name: z.string() }), 'name: a\\n', { source: 'a.yaml' });
      if (${unload}) unloadYaml();
      for (let i = 0; i < 10 && ref.deref(); i++) {
        await new Promise((r) => setTimeout(r, 10));
        gc();
      }
      console.log(JSON.stringify(ref.deref() === undefined));`);
  expect(run(true)).toBe(true);
  expect(run(false)).toBe(false);
});
