#!/usr/bin/env bash
# Makes sure a nats-server (2.9 or newer) is on PATH: tests and the demo start their own servers.
# Installs Debian's package when it can (root + apt-get); otherwise says exactly what to install.
set -euo pipefail

need_major=2
need_minor=9

version_ok() {
  local v
  v=$(nats-server --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1) || return 1
  [ -n "$v" ] || return 1
  local major minor
  major=${v%%.*}
  minor=${v#*.}
  minor=${minor%%.*}
  [ "$major" -gt "$need_major" ] || { [ "$major" -eq "$need_major" ] && [ "$minor" -ge "$need_minor" ]; }
}

if command -v nats-server >/dev/null 2>&1 && version_ok; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "meshfed: installing nats-server with apt-get (needed by the tests and the demo)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq nats-server >/dev/null
  if command -v nats-server >/dev/null 2>&1 && version_ok; then
    exit 0
  fi
fi

cat >&2 <<MSG
meshfed: nats-server ${need_major}.${need_minor} or newer is required and was not found on PATH.
  Debian/Ubuntu:  sudo apt-get install nats-server
  macOS:          brew install nats-server
  other:          the nats-server release for your platform, from the NATS project
Then run the command again.
MSG
exit 1
