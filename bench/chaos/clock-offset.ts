// The fallback of the clock-skew scenario where libfaketime is missing (test/helpers/skewed-clock.ts is
// what it uses otherwise): preloaded with `node --import` into one cluster's gateways, it moves this
// process's wall clock (Date.now, new Date(), Date()) by MESHFED_CHAOS_CLOCK_OFFSET_MS. Monotonic clocks
// (performance.now, timers) are left alone, as NTP leaves them. OpenSSL's own clock (TLS certificate
// validity) cannot be moved from here: the handshakes see the real time.
const offset = Number(process.env.MESHFED_CHAOS_CLOCK_OFFSET_MS ?? 0);
if (offset !== 0) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  const skewedNow = () => realNow() + offset;
  // a Proxy of Date itself, not a subclass: `x instanceof Date` stays true for the dates node makes itself
  globalThis.Date = new Proxy(RealDate, {
    construct: (target, args, newTarget) =>
      Reflect.construct(target, args.length === 0 ? [skewedNow()] : args, newTarget),
    apply: () => new RealDate(skewedNow()).toString(),
    get: (target, key, receiver) => (key === 'now' ? skewedNow : Reflect.get(target, key, receiver)),
  });
}
