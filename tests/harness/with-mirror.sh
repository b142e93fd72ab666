#!/usr/bin/env bash
# Runs a command while the rebuilt upstream archives are served on 127.0.0.1 (see upstream_archives.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=${ARCHIVE_MIRROR_PORT:-18081}
python=${PYTHON:-python3}
"$python" "$here/upstream_archives.py" build --port "$port" >/dev/null
"$python" "$here/upstream_archives.py" serve --port "$port" 2>/dev/null &
mirror=$!
trap 'kill $mirror 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
"$@"
