#!/usr/bin/env bash
# Builds the systemd-booting Debian images the molecule scenarios and the demo fleet run on.
# No image can be pulled here, so each is made with debootstrap and `docker import`, then given
# STOPSIGNAL SIGRTMIN+3 by a local build so `docker stop` shuts systemd down at once.
# An image that already exists is kept: delete it (make clean-images) to rebuild.
set -euo pipefail

IMAGE_REPO=${IMAGE_REPO:-llm-monitor-test/debian}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,curl,gnupg

build_one() {
  local suite=$1 image="$IMAGE_REPO:$1"
  if docker image inspect "$image" >/dev/null 2>&1; then
    echo "build-images: $image exists" >&2
    return 0
  fi
  local root
  root=$(mktemp -d "/tmp/rootfs-$suite.XXXXXX")
  echo "build-images: debootstrap $suite (about 2 minutes)" >&2
  debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { tail -30 "$root.log" >&2; return 1; }
  : >"$root/etc/machine-id"
  cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb $SECURITY_MIRROR $suite-security main
SOURCES
  # Units that only make sense on real machines slow the boot or fail in a container.
  for unit in getty@tty1.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
    rm -f "$root/etc/systemd/system/"*.wants/"$unit"
  done
  apt_clean="$root/var/cache/apt/archives"
  rm -f "$apt_clean"/*.deb
  tar -C "$root" -c . | docker import --change 'CMD ["/sbin/init"]' --change 'ENV container=docker' - "$image-base" >/dev/null
  rm -rf "$root" "$root.log"
  printf "FROM %s\nSTOPSIGNAL SIGRTMIN+3\n" "$image-base" | docker build -q -t "$image" - >/dev/null 2>&1
  echo "build-images: built $image" >&2
}

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)
pids=()
for suite in "${suites[@]}"; do
  build_one "$suite" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
exit $status
