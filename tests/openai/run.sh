#!/usr/bin/env bash
# OpenAI-compatibility tests for `lume serve` (the official `openai` Python client + httpx).
#
#   bash tests/openai/run.sh [pytest args...]
#   bash tests/openai/run.sh --setup-only    # only create/update the venv, run nothing
#
# Creates target/openai-venv when missing, installs requirements.txt into it (skipped when
# already installed), then runs `pytest -q tests/openai` with that venv's python. The binary is
# $LUME_BIN (default target/release/lume; build it with `cargo build --release`). The models
# (smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b) are pulled into the cache first when missing (a no-op otherwise).
# Server logs: target/openai-tests/*.log. Exits non-zero when anything fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

VENV="target/openai-venv"
REQ="tests/openai/requirements.txt"

# shellcheck source=../venv.sh
source tests/venv.sh
if [ "${1:-}" = "--setup-only" ]; then
    exit 0
fi

# Make sure both models are in the cache (instant when they are).
"$LUME_BIN" pull smollm2-135m gemma3-270m qwen2.5-coder-0.5b minilm-l6 >/dev/null

export PYTHONDONTWRITEBYTECODE=1
exec "$PY" -m pytest -q tests/openai "$@"
