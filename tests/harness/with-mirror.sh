#!/usr/bin/env bash
# Runs a command while the rebuilt upstream archives are served on 127.0.0.1 (see upstream_archives.py).
# The mirror takes a free port, so runs side by side do not share (or stop) each other's mirror; the
# command finds the versions, checksums and URLs in the file named by LLM_MONITOR_ARCHIVE_VARS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
port=${ARCHIVE_MIRROR_PORT:-$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
vars=$(mktemp --suffix=.yml)
"$python" "$here/upstream_archives.py" build --port "$port" --vars "$vars" >/dev/null
"$python" "$here/upstream_archives.py" serve --port "$port" 2>/dev/null &
mirror=$!
trap 'kill $mirror 2>/dev/null || true; rm -f "$vars"' EXIT
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
export LLM_MONITOR_ARCHIVE_VARS=$vars
"$@"
