// Preloaded with `node --import` into the processes of one cluster by the clock-skew scenario: moves
// this process's wall clock (Date.now, new Date(), Date()) by MESHFED_CHAOS_CLOCK_OFFSET_MS, as a
// host with a drifting clock would. Monotonic clocks (performance.now, timers) are left alone, as
// NTP leaves them. OpenSSL's own clock (TLS certificate validity) cannot be moved from here.
const offset = Number(process.env.MESHFED_CHAOS_CLOCK_OFFSET_MS ?? 0);
if (offset !== 0) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  class SkewedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(realNow() + offset);
      else super(...(args as [number]));
    }
    static override now(): number {
      return realNow() + offset;
    }
  }
  const callable = new Proxy(SkewedDate, {
    apply: () => new RealDate(realNow() + offset).toString(),
  });
  globalThis.Date = callable as DateConstructor;
}
