#!/usr/bin/env bash
# Puts the command-line tools the tests call into .cache/tools/bin: promtool (and the prometheus binary, which
# bench/rules.py evaluates the rules on), unpacked from Debian's prometheus package (downloaded, never
# installed, so no service is set up on this machine).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/.cache/tools/bin"
mkdir -p "$bin"
if [ ! -x "$bin/promtool" ] || [ ! -x "$bin/prometheus" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download -q prometheus >/dev/null 2>&1) || { apt-get update -qq && (cd "$work" && apt-get download -q prometheus >/dev/null); }
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  install -m 0755 "$work/root/usr/bin/promtool" "$bin/promtool"
  install -m 0755 "$work/root/usr/bin/prometheus" "$bin/prometheus"
fi
# amtool, the same way, from Debian's prometheus-alertmanager (the unit tests check rendered configs with it).
if [ ! -x "$bin/amtool" ]; then
  amwork=$(mktemp -d)
  trap 'rm -rf "${work:-}" "$amwork"' EXIT
  (cd "$amwork" && apt-get download -q prometheus-alertmanager >/dev/null 2>&1) || { apt-get update -qq && (cd "$amwork" && apt-get download -q prometheus-alertmanager >/dev/null); }
  dpkg-deb -x "$amwork"/prometheus-alertmanager_*.deb "$amwork/root"
  install -m 0755 "$amwork/root/usr/bin/amtool" "$bin/amtool"
fi
"$bin/promtool" --version 2>&1 | head -1
"$bin/amtool" --version 2>&1 | head -1
