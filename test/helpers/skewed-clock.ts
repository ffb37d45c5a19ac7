// A process whose wall clock is off by a fixed offset while its monotonic clock is right, as on a host
// whose clock drifted or was set wrong: Debian's libfaketime, preloaded with FAKETIME_DONT_FAKE_MONOTONIC=1,
// moves gettimeofday, clock_gettime(CLOCK_REALTIME) and time() for the whole process — Date, and OpenSSL's
// certificate validity checks in TLS handshakes — and leaves CLOCK_MONOTONIC (libuv's timers,
// performance.now, process.hrtime) alone, as NTP does. scripts/ensure-faketime.sh installs it.
import { existsSync } from 'node:fs';
import { arch } from 'node:os';

const TRIPLET: Record<string, string> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };

/** the preloadable library (the thread-safe build: node runs threads), or undefined where it is missing */
export const LIBFAKETIME: string | undefined = [
  `/usr/lib/${TRIPLET[arch()] ?? ''}/faketime/libfaketimeMT.so.1`,
  `/usr/lib/${TRIPLET[arch()] ?? ''}/faketime/libfaketime.so.1`,
  '/usr/lib/faketime/libfaketimeMT.so.1',
].find((p) => existsSync(p));

/** why a skewed process cannot be started here, or undefined when it can */
export function skewedClockMissing(): string | undefined {
  return LIBFAKETIME
    ? undefined
    : 'libfaketime is not installed (Debian: apt-get install libfaketime; scripts/ensure-faketime.sh does it as root)';
}

/**
 * The environment variables that start a process (and its children) with its wall clock `offsetMs` off
 * (whole seconds), its monotonic clock untouched. Throws where libfaketime is missing.
 */
export function skewedClockEnv(offsetMs: number): Record<string, string> {
  if (!LIBFAKETIME) throw new Error(skewedClockMissing());
  const seconds = Math.round(offsetMs / 1000);
  return {
    LD_PRELOAD: LIBFAKETIME,
    FAKETIME: `${seconds >= 0 ? '+' : ''}${seconds}`,
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  };
}
