import { spawnSync } from 'node:child_process';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { V8_WORKER_NICE, v8WorkerNice } from '../../cli/thread-priority.ts';

// With MESHFED_V8_WORKER_NICE, `meshfed gateway` lowers the scheduling priority of V8's worker threads (compiler,
// GC) below its event loop's: each case runs in a fresh Node and reads every thread's nice value back from /proc.

const MODULE = pathToFileURL(join(process.cwd(), 'cli', 'thread-priority.ts')).href;
const linux = process.platform === 'linux' ? test : test.skip;

/** in a fresh Node: lowerV8WorkerPriority(nice), then each thread's name and nice value */
function threadsAfter(nice: number): { changed: number; threads: { name: string; nice: number }[] } {
  const script = `
    import { readdirSync, readFileSync } from 'node:fs';
    const { lowerV8WorkerPriority } = await import(${JSON.stringify(MODULE)});
    const changed = lowerV8WorkerPriority(${nice});
    const threads = readdirSync('/proc/self/task').flatMap((tid) => {
      try {
        return [{
          name: readFileSync('/proc/self/task/' + tid + '/comm', 'utf8').trim(),
          // field 19 of stat, counted after the command name's closing parenthesis
          nice: Number(readFileSync('/proc/self/task/' + tid + '/stat', 'utf8').split(') ')[1].split(' ')[16]),
        }];
      } catch {
        return []; // a short-lived thread that ended after it was listed
      }
    });
    console.log(JSON.stringify({ changed, threads }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

linux("V8's worker threads get the nice value, the event loop's thread keeps its own", () => {
  const { changed, threads } = threadsAfter(V8_WORKER_NICE);
  const workers = threads.filter((t) => t.name.startsWith('V8Worker'));
  expect(workers.length).toBeGreaterThan(0);
  expect(changed).toBe(workers.length);
  expect(workers.map((t) => t.nice)).toEqual(workers.map(() => 19));
  // the child starts at this process's nice value; its event loop keeps it
  expect(threads.find((t) => t.name === 'MainThread')?.nice).toBe(getPriority());
});

linux('0 leaves every thread as it was', () => {
  const { changed, threads } = threadsAfter(0);
  expect(changed).toBe(0);
  expect(threads.every((t) => t.nice === getPriority())).toBe(true);
});

test("by default V8's threads keep the process's priority: at 19 a host with every CPU busy starves them", () => {
  expect(v8WorkerNice({})).toBe(0);
  expect(v8WorkerNice({ MESHFED_V8_WORKER_NICE: '' })).toBe(0);
});

test('MESHFED_V8_WORKER_NICE chooses the value, and a wrong one is refused with what to write', () => {
  expect(v8WorkerNice({ MESHFED_V8_WORKER_NICE: '5' })).toBe(5);
  expect(v8WorkerNice({ MESHFED_V8_WORKER_NICE: '0' })).toBe(0);
  expect(v8WorkerNice({ MESHFED_V8_WORKER_NICE: '19' })).toBe(V8_WORKER_NICE);
  for (const bad of ['20', '-1', 'low', '2.5'])
    expect(() => v8WorkerNice({ MESHFED_V8_WORKER_NICE: bad })).toThrow(
      /MESHFED_V8_WORKER_NICE: expected a whole number from 0 .* to 19/,
    );
});
