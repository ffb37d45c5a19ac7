/**
 * Milliseconds on the monotonic clock: what every duration, timeout, back-off, ejection and schedule is measured
 * on. The wall clock (Date.now) may be wrong by minutes and is stepped when NTP or an operator sets it right; a
 * deadline on it fires minutes late or at once after such a step. The wall clock is only for validity checks
 * against times stamped elsewhere (certificates, signed messages). Never compare the two.
 */
export function monotonicNow(): number {
  return performance.now();
}
