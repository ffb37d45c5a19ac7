import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { IdleHeap, REARM_MS, type RequestActivity } from '../../cli/idle-heap.ts';
import { createLogger, Registry } from '../../core/index.ts';

const log = createLogger({ level: 'silent' });

/** `freed`: what each collection gives back, in bytes (negative: the process grew meanwhile) */
function subject(afterMs = 30_000, o: { registry?: Registry; freed?: () => number } = {}) {
  const clock = { now: 1_000 };
  const activity: { count: number; lastStart: number } = { count: 0, lastStart: 0 };
  let collections = 0;
  let resident = 90 * 1048576;
  const heap = new IdleHeap({
    afterMs,
    activity: activity as RequestActivity,
    collect: () => {
      collections++;
      resident -= o.freed?.() ?? 0;
    },
    log,
    now: () => clock.now,
    resident: () => resident,
    ...(o.registry ? { registry: o.registry } : {}),
  });
  /** a request that starts now and ends `ms` later */
  const request = (ms = 10) => {
    activity.count++;
    activity.lastStart = clock.now;
    clock.now += ms;
    activity.count--;
  };
  return { heap, clock, activity, request, collections: () => collections };
}

describe('idle heap shrink', () => {
  test('shrinks once the gateway has been quiet for afterMs after start, and not again while it stays quiet', () => {
    const s = subject();
    s.clock.now += 29_999;
    expect(s.heap.check()).toBe(false);
    s.clock.now += 1;
    expect(s.heap.check()).toBe(true);
    expect(s.collections()).toBe(1);
    s.clock.now += 60_000;
    expect(s.heap.check()).toBe(false);
    expect(s.collections()).toBe(1);
  });

  test('requests that came and went re-arm it, counted from the last one', () => {
    const s = subject();
    s.clock.now += 30_000;
    s.heap.check();
    s.clock.now += 5_000;
    s.request();
    s.clock.now += 29_000;
    expect(s.heap.check()).toBe(false);
    s.clock.now += 1_000;
    expect(s.heap.check()).toBe(true);
    expect(s.collections()).toBe(2);
  });

  test('an admin call (touch) re-arms it like a request, and delays it like one', () => {
    const s = subject();
    s.clock.now += 30_000;
    expect(s.heap.check()).toBe(true);
    s.clock.now += 60_000;
    expect(s.heap.check()).toBe(false);
    s.heap.touch();
    s.clock.now += 29_999;
    expect(s.heap.check()).toBe(false);
    s.clock.now += 1;
    expect(s.heap.check()).toBe(true);
    expect(s.collections()).toBe(2);
  });

  test('never while a request is in flight, however long it lasts', () => {
    const s = subject();
    s.activity.count = 1;
    s.activity.lastStart = s.clock.now;
    s.clock.now += 10 * REARM_MS;
    expect(s.heap.check()).toBe(false);
    s.activity.count = 0;
    expect(s.heap.check()).toBe(true);
  });

  test(`a gateway that stays quiet shrinks again after ${REARM_MS / 60_000} minutes`, () => {
    const s = subject();
    s.clock.now += 30_000;
    s.heap.check();
    s.clock.now += REARM_MS - 1;
    expect(s.heap.check()).toBe(false);
    s.clock.now += 1;
    expect(s.heap.check()).toBe(true);
  });

  test('each shrink is counted, with its pause and the resident memory it gave back', async () => {
    const registry = new Registry();
    let freed = 8 * 1048576;
    const s = subject(1_000, { registry, freed: () => freed });
    const value = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values[0]?.value;
    s.clock.now += 1_000;
    expect(s.heap.check()).toBe(true);
    expect(await value('meshfed_idle_heap_shrinks_total')).toBe(1);
    expect(await value('meshfed_idle_heap_released_bytes_total')).toBe(8 * 1048576);
    expect(await value('meshfed_idle_heap_shrink_pause_seconds_total')).toBeGreaterThanOrEqual(0);
    // a shrink after which the process holds more (it grew meanwhile) counts no negative release
    freed = -1048576;
    s.clock.now += REARM_MS;
    expect(s.heap.check()).toBe(true);
    expect(await value('meshfed_idle_heap_released_bytes_total')).toBe(8 * 1048576);
    freed = 8 * 1048576;
    s.clock.now += REARM_MS;
    expect(s.heap.check()).toBe(true);
    expect(await value('meshfed_idle_heap_shrinks_total')).toBe(3);
    expect(await value('meshfed_idle_heap_released_bytes_total')).toBe(16 * 1048576);
  });

  test('afterMs 0 turns it off; without a collection it does nothing and schedules nothing', () => {
    const off = subject(0);
    off.clock.now += REARM_MS;
    expect(off.heap.check()).toBe(false);
    const none = new IdleHeap({
      afterMs: 30_000,
      activity: { count: 0, lastStart: 0 },
      collect: undefined,
      log,
    });
    none.start();
    expect(none.check()).toBe(false);
    none.stop();
  });

  test('with --expose-gc the last-resort collection gives pooled heap pages back to the system', () => {
    const module = pathToFileURL(`${process.cwd()}/cli/idle-heap.ts`).href;
    // garbage of ~40 MB, then 8 MB kept: V8 keeps the freed pages pooled until a last-resort collection
    const script = `
      import { lastResortCollection } from '${module}';
      import { readFileSync } from 'node:fs';
      const anon = () => Number(/RssAnon:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
      const keep = [];
      for (let i = 0; i < 200; i++) {
        const a = [];
        for (let j = 0; j < 5000; j++) a.push({ i, j, s: 'x' + j });
        if (i % 25 === 0) keep.push(a);
      }
      const collect = lastResortCollection();
      const before = anon();
      collect();
      console.log(JSON.stringify({ before, after: anon(), kept: keep.length }));`;
    const run = (flags: string[]) =>
      spawnSync(
        process.execPath,
        [...flags, '--max-semi-space-size=4', '--input-type=module', '-e', script],
        {
          encoding: 'utf8',
        },
      );
    const withGc = run(['--expose-gc']);
    expect(withGc.stderr).not.toMatch(/Error/);
    const { before, after } = JSON.parse(withGc.stdout) as { before: number; after: number };
    expect(before - after).toBeGreaterThan(2);
    // without the flag there is no collection to run
    const without = run([]);
    expect(without.stderr).toMatch(/collect is not a function/);
  });
});
