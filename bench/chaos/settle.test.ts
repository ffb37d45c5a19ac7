import type { Outcome } from './load.ts';
import { settleMs } from './load.ts';
import { allowedAfter, settledWindow, settleVerdict } from './settle.ts';

// The chaos suite's failover measure on made-up loads: 100 requests a second for 30 s, 20 ms each, a fault at
// 10 s. What the measure before the settled window got wrong (gateway-kill, 2026-12-06): one request of
// 1.25 s, 16.8 s after the kill, was reported as a failover of 16.8 s.

const AT = 10_000;

/** a request every 10 ms for `ms`, each answered in 20 ms; `bad` changes those it names */
function load(ms = 30_000, bad: (due: number) => Partial<Outcome> | undefined = () => undefined): Outcome[] {
  const out: Outcome[] = [];
  for (let due = 0; due < ms; due += 10)
    out.push({ kind: 'http-get', due, latency: 20, ok: true, ...bad(due) });
  return out;
}

const failed = { ok: false, error: 'http 503', latency: 30 };
const slow = { latency: 1250 };

test('a burst after the fault, then quiet: failover ends at the burst’s last bad request', () => {
  const s = settledWindow(
    load(30_000, (d) => (d >= AT && d < AT + 800 ? (d % 20 === 0 ? failed : slow) : undefined)),
    { at: AT },
  );
  expect(s).toMatchObject({ settled: true, settleMs: 790, bad: 80, slowAfterSettled: 0, slowMs: 1000 });
  expect(settleVerdict(s, 'failover', 3000)).toBeUndefined();
});

test('an isolated slow request long after the burst is reported apart, not as failover', () => {
  const outcomes = load(30_000, (d) => ((d >= AT && d < AT + 500) || d === AT + 16_800 ? slow : undefined));
  const s = settledWindow(outcomes, { at: AT });
  expect(s.settleMs).toBe(490);
  expect(s.slowAfterSettled).toBe(1);
  expect(s.slowAfterSettledAtMs).toEqual([16_800]);
  // one slow request in 2,000 is within what a quiet load has: the criterion holds
  expect(s.allowedAfterSettled).toBe(1);
  expect(settleVerdict(s, 'failover', 3000)).toBeUndefined();
  // the measure it replaces (kept beside it for one release) called that a failover of 16.8 s
  expect(settleMs(outcomes, AT).settleMs).toBe(16_800);
});

test('bad requests less than the quiet window apart belong to one disturbance', () => {
  // bad at +0, +1.9 s, +3.8 s: each within 2 s of the one before
  const s = settledWindow(
    load(30_000, (d) => ([AT, AT + 1900, AT + 3800].includes(d) ? failed : undefined)),
    { at: AT },
  );
  expect(s).toMatchObject({ settled: true, settleMs: 3800, bad: 3 });
  expect(settleVerdict(s, 'failover', 3000)).toBe('failover took 3800 ms');
});

test('no disturbance at all: settled at once', () => {
  const s = settledWindow(load(), { at: AT });
  expect(s).toMatchObject({ settled: true, settleMs: 0, bad: 0, slowAfterSettled: 0 });
  expect(settleVerdict(s, 'failover', 3000)).toBeUndefined();
});

test('a disturbance that lasts to the end is not settled, and fails the criterion', () => {
  // bad every 1.5 s from the fault to the end: never 2 s of quiet
  const s = settledWindow(
    load(30_000, (d) => (d >= AT && (d - AT) % 1500 === 0 ? failed : undefined)),
    { at: AT },
  );
  expect(s.settled).toBe(false);
  expect(s.settleMs).toBeNull();
  expect(settleVerdict(s, 'failover', 3000)).toMatch(/never settled/);
});

test('a disturbance still going at `until` (the heal) is not settled', () => {
  const outcomes = load(30_000, (d) => (d >= AT && d < AT + 4200 ? failed : undefined));
  // the window closes 1 s after the last bad request: too short to call it settled
  expect(settledWindow(outcomes, { at: AT, until: AT + 5200 })).toMatchObject({
    settled: false,
    settleMs: null,
  });
  // a wider one has the quiet window
  const wide = settledWindow(outcomes, { at: AT, until: AT + 8000 });
  expect(wide).toMatchObject({ settled: true, settleMs: 4190, bad: 420 });
});

test('a burst that starts only after a quiet window is no part of the fault’s disturbance', () => {
  const s = settledWindow(
    load(30_000, (d) => (d >= AT + 3000 && d < AT + 4200 ? failed : undefined)),
    { at: AT },
  );
  expect(s).toMatchObject({ settled: true, settleMs: 0, slowAfterSettled: 120 });
  expect(settleVerdict(s, 'failover', 3000)).toMatch(/^120 failed or slow requests after failover settled/);
});

test('the slow threshold is the pre-fault p99.9 when that is above the floor', () => {
  // before the fault one request in 200 takes 1.5 s: p99.9 is 1.5 s, so 1.25 s is not slow afterwards
  const outcomes = load(30_000, (d) =>
    d < AT && d % 2000 === 0 ? { latency: 1500 } : d === AT + 16_800 ? slow : undefined,
  );
  const s = settledWindow(outcomes, { at: AT });
  expect(s.slowMs).toBe(1500);
  expect(s).toMatchObject({ settled: true, settleMs: 0, slowAfterSettled: 0, badPerMilleBefore: 0 });
});

test('bad requests after settling are judged against the pre-fault rate', () => {
  // pre-fault: 5 failures in 1,000 (5 per mille); after: 2,000 requests allow 2 × 10 = 20
  expect(allowedAfter(2000, 0.005)).toBe(20);
  expect(allowedAfter(2000, 0)).toBe(1);
  const outcomes = load(30_000, (d) =>
    (d < AT && d % 2000 === 0) || (d > AT + 5000 && d % 500 === 0) ? failed : undefined,
  );
  const s = settledWindow(outcomes, { at: AT });
  expect(s.badPerMilleBefore).toBe(5);
  // one failed request every 500 ms after +5 s: 29 of them, over the 20 allowed
  expect(s.slowAfterSettled).toBe(29);
  expect(settleVerdict(s, 'failover', 3000)).toMatch(/more than the 20 the pre-fault rate allows/);
});

test('the control can end before the fault (the settling after a heal is judged against the load before the cut)', () => {
  // 1.5 s requests all through a partition from 5 s to 10 s: as the control they would hide a slow return
  const outcomes = load(30_000, (d) =>
    (d >= 5000 && d < AT) || (d >= AT && d < AT + 300) ? { latency: 1500 } : undefined,
  );
  expect(settledWindow(outcomes, { at: AT }).settleMs).toBe(0);
  expect(settledWindow(outcomes, { at: AT, controlUntil: 5000 })).toMatchObject({
    settleMs: 290,
    slowMs: 1000,
  });
});
