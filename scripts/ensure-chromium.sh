#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for the dashboard's browser test (test/ui/).
# Installs the package when it can (root + apt-get). It never fails the run: where Chromium cannot be
# installed it says why, and the browser test skips with the same reason.
set -uo pipefail

if [ -x /usr/bin/chromium ] && /usr/bin/chromium --version >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "meshfed: installing chromium with apt-get (the dashboard's browser test drives it headless)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    if /usr/bin/chromium --version >/dev/null 2>&1; then
      exit 0
    fi
  fi
  echo "meshfed: apt-get could not install a working chromium; the browser test will be skipped" >&2
  exit 0
fi

echo "meshfed: /usr/bin/chromium is missing and this user cannot install it (needs root and apt-get);" >&2
echo "  the browser test will be skipped. Debian/Ubuntu: sudo apt-get install chromium" >&2
exit 0
