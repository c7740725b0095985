#!/usr/bin/env bash
# Deployment tests: three `lume serve` replicas behind LiteLLM's proxy (deploy/litellm.yaml),
# the Kubernetes manifests of deploy/k8s and the Dockerfile's lint.
#
#   bash tests/gateway/run.sh [pytest args...]
#   bash tests/gateway/run.sh --setup-only    # only create/update the venv, run nothing
#
# Creates target/gateway-venv when missing, installs requirements.txt into it (skipped when
# already installed), then runs `pytest -q tests/gateway` with that venv's python. The binary is
# $LUME_BIN (default target/release/lume). smollm2-135m is pulled into the cache first when
# missing. Logs: target/gateway-tests/*.log; figures: target/gateway-tests/figures.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

VENV="target/gateway-venv"
REQ="tests/gateway/requirements.txt"

# shellcheck source=../venv.sh
source tests/venv.sh
if [ "${1:-}" = "--setup-only" ]; then
    exit 0
fi

"$LUME_BIN" pull smollm2-135m >/dev/null

# LiteLLM offline: its bundled price list, no telemetry.
export LITELLM_LOCAL_MODEL_COST_MAP=True
export LITELLM_TELEMETRY=False
export PYTHONDONTWRITEBYTECODE=1
exec "$PY" -m pytest -q tests/gateway "$@"
