#!/usr/bin/env bash
# Makes sure Debian's libfaketime is there for the clock-skew test and chaos scenario (a gateway process
# whose wall clock is off, monotonic clock untouched: test/helpers/skewed-clock.ts). Installs the package
# when it can (root + apt-get). It never fails the run: where it cannot be installed it says why, the
# test skips with the same reason, and the chaos scenario falls back to moving Date alone.
set -uo pipefail

if compgen -G '/usr/lib/*/faketime/libfaketime*.so.1' >/dev/null || compgen -G '/usr/lib/faketime/libfaketime*.so.1' >/dev/null; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "meshfed: installing libfaketime with apt-get (the clock-skew test runs gateways on a skewed clock)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -qq --no-install-recommends libfaketime >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends libfaketime >/dev/null; }; then
    exit 0
  fi
  echo "meshfed: apt-get could not install libfaketime; the clock-skew test will be skipped" >&2
  exit 0
fi

echo "meshfed: libfaketime is missing and this user cannot install it (needs root and apt-get);" >&2
echo "  the clock-skew test will be skipped. Debian/Ubuntu: sudo apt-get install libfaketime" >&2
exit 0
