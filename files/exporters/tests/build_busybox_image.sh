#!/usr/bin/env bash
# Build the tiny local image llm-monitor-test/busybox:1 used by the exporter tests and benchmarks.
# No registry is reachable: the rootfs is Debian's busybox-static plus its applet symlinks, imported
# with `docker import`. Builds only when the image is missing. Usage: build_busybox_image.sh [DOCKER_HOST]
set -euo pipefail
IMAGE="${LMX_TEST_IMAGE:-llm-monitor-test/busybox:1}"
if [ -n "${1:-}" ]; then export DOCKER_HOST="$1"; fi
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  exit 0
fi
BUSYBOX="$(command -v busybox || true)"
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked"; then
  if [ -x /bin/busybox ] && ldd /bin/busybox 2>&1 | grep -q "not a dynamic"; then
    BUSYBOX=/bin/busybox
  else
    apt-get install -y --no-install-recommends busybox-static >/dev/null
    BUSYBOX=/bin/busybox
  fi
fi
ROOT="$(mktemp -d)"
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$ROOT/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$ROOT/bin/$applet"
done
echo "root:x:0:0:root:/:/bin/sh" > "$ROOT/etc/passwd"
echo "root:x:0:" > "$ROOT/etc/group"
tar -C "$ROOT" -c . | docker import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' - "$IMAGE" >/dev/null
echo "built $IMAGE"
