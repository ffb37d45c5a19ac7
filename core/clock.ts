/**
 * Milliseconds on the monotonic clock: what every duration, timeout, back-off, ejection and schedule is measured
 * on. The wall clock (Date.now) may be wrong by minutes and is stepped when NTP or an operator sets it right; a
 * deadline on it fires minutes late or at once after such a step. The wall clock is only for validity checks
 * against times stamped elsewhere (certificates, signed messages). Never compare the two.
 */
export function monotonicNow(): number {
  return performance.now();
}

/** the wall clock once, at start: steadyWallNow() runs on from it at the monotonic clock's pace */
const WALL_ORIGIN = Date.now() - performance.now();

/**
 * Wall-clock-like milliseconds that never step: the wall clock read once when the process started, advanced
 * by the monotonic clock. For what is bucketed by time and shown as a time (the traffic windows behind
 * `meshfed stat` and the dashboard): a step of the wall clock neither empties a window nor fills a future one.
 */
export function steadyWallNow(): number {
  return WALL_ORIGIN + performance.now();
}
