// The traffic windows behind `meshfed stat` and the dashboard bucket calls by time. On the wall clock, a step
// (NTP setting a clock right, a VM resumed) emptied them (a step forward: the calls look minutes old) or
// hid new calls (a step back: they land in a future bucket). They now run on steadyWallNow().
import { createRegistry } from '../../core/metrics.ts';
import { GoldenMetrics } from '../../gateway/golden-metrics.ts';

const realNow = Date.now;
afterEach(() => {
  Date.now = realNow;
});

function recordCalls(g: GoldenMetrics, n: number): void {
  const s = g.series(
    'outbound',
    'http',
    'east',
    'spiffe://mesh.example/ns/shop/sa/web',
    'west',
    'orders.shop',
  );
  for (let i = 0; i < n; i++) s.record(200, '', 0.01, 10, 20);
}

const requestsIn = (g: GoldenMetrics) => g.traffic(60_000).rows.reduce((a, r) => a + r.requests, 0);

test('a wall-clock step forward of an hour keeps the last minute of calls in the window', () => {
  const g = new GoldenMetrics({ registry: createRegistry() });
  recordCalls(g, 5);
  expect(requestsIn(g)).toBe(5);
  Date.now = () => realNow() + 3_600_000;
  expect(requestsIn(g)).toBe(5);
});

test('calls made after a wall-clock step back of an hour are counted at once', () => {
  const g = new GoldenMetrics({ registry: createRegistry() });
  recordCalls(g, 3);
  Date.now = () => realNow() - 3_600_000;
  recordCalls(g, 4);
  expect(requestsIn(g)).toBe(7);
});
