#!/usr/bin/env bash
# Installs (if missing) and starts a Docker engine on this machine, then waits until it answers.
# PID 1 is not systemd here, so dockerd is started in the background with setsid.
set -euo pipefail

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  echo "docker-engine: installing docker.io and debootstrap from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

echo "docker-engine: starting dockerd" >&2
# The VM's interface has MTU 1400; containers must not send larger packets.
setsid dockerd --mtu 1400 >/var/log/dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
tail -20 /var/log/dockerd.log >&2 || true
exit 1
