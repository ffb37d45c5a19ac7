import { waitFor } from '../../core/index.ts';
import { IntakeQueue } from '../../federation/intake-queue.ts';

// The queue between the NATS subscriptions and the verification of what they deliver: per-cluster FIFO,
// one job per cluster in turn, a bounded backlog per cluster, and work off the caller's stack.

function queue(maxPerKey = 100) {
  const dropped: string[] = [];
  const errors: unknown[] = [];
  const q = new IntakeQueue({
    maxPerKey,
    sliceMs: 50,
    onError: (err) => errors.push(err),
    onDrop: (k) => dropped.push(k),
  });
  return { q, dropped, errors };
}

test('push only enqueues: nothing runs on the caller’s stack (the NATS client keeps reading)', async () => {
  const { q } = queue();
  const ran: number[] = [];
  q.push('east', () => ran.push(1));
  expect(ran).toEqual([]);
  await waitFor(() => ran.length === 1, { timeoutMs: 2_000 });
});

test('a flooding cluster delays another by one job, not by its backlog; each cluster stays in order', async () => {
  const { q } = queue(10_000);
  const ran: string[] = [];
  for (let i = 0; i < 1_000; i++) q.push('evil', () => ran.push(`evil-${i}`));
  q.push('east', () => ran.push('east-0'));
  q.push('east', () => ran.push('east-1'));
  await waitFor(() => q.size === 0, { timeoutMs: 5_000 });
  expect(ran.indexOf('east-0')).toBeLessThanOrEqual(1);
  expect(ran.indexOf('east-1')).toBeLessThanOrEqual(3);
  const evil = ran.filter((r) => r.startsWith('evil-'));
  expect(evil).toEqual(Array.from({ length: 1_000 }, (_, i) => `evil-${i}`));
});

test('a cluster’s backlog is bounded: past it its oldest jobs are dropped and counted, nobody else’s', async () => {
  const { q, dropped } = queue(10);
  const ran: string[] = [];
  for (let i = 0; i < 25; i++) q.push('evil', () => ran.push(`evil-${i}`));
  q.push('east', () => ran.push('east'));
  expect(q.size).toBe(11);
  expect(dropped).toEqual(Array(15).fill('evil'));
  await waitFor(() => q.size === 0, { timeoutMs: 2_000 });
  expect(ran).toContain('east');
  expect(ran.filter((r) => r.startsWith('evil-'))).toEqual(
    Array.from({ length: 10 }, (_, i) => `evil-${i + 15}`),
  );
});

test('a long backlog is worked off in slices: the event loop gets turns in between', async () => {
  const { q } = queue(100_000);
  let done = 0;
  const spin = () => {
    const until = performance.now() + 1;
    while (performance.now() < until) {
      // a job that costs about a millisecond, like a signature check
    }
    done++;
  };
  for (let i = 0; i < 400; i++) q.push('evil', spin);
  let turns = 0;
  const tick = setInterval(() => turns++, 0);
  await waitFor(() => done === 400, { timeoutMs: 10_000 });
  clearInterval(tick);
  // 400 ms of work in 50 ms slices: timers ran between the slices
  expect(turns).toBeGreaterThanOrEqual(3);
});

test('a job that throws is reported with its key, and the queue goes on', async () => {
  const { q, errors } = queue();
  const ran: string[] = [];
  q.push('east', () => {
    throw new Error('a bug');
  });
  q.push('east', () => ran.push('after'));
  await waitFor(() => ran.length === 1, { timeoutMs: 2_000 });
  expect(errors).toHaveLength(1);
});
