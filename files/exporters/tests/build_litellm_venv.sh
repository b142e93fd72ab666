#!/usr/bin/env bash
# Build the LiteLLM proxy virtualenv used by test_litellm_proxy.py (its own venv: litellm's pins
# conflict with the main .venv). Builds only when the venv is missing or incomplete.
# Usage: build_litellm_venv.sh [VENV_DIR]   (default: <repo>/.cache/litellm-venv)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${1:-${LMX_LITELLM_VENV:-$HERE/../../../.cache/litellm-venv}}"
PY="${LMX_LITELLM_PYTHON:-python3}"
if [ -x "$VENV/bin/litellm" ] && [ -f "$VENV/.complete" ]; then
  exit 0
fi
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
start=$(date +%s)
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  "litellm[proxy]==1.106.2" "prometheus_client==0.26.0" "prisma==0.15.0"
touch "$VENV/.complete"
echo "built $VENV in $(( $(date +%s) - start ))s"
