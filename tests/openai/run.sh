#!/usr/bin/env bash
# OpenAI-compatibility tests for `lume serve` (the official `openai` Python client + httpx).
#
#   bash tests/openai/run.sh [pytest args...]
#
# Creates target/openai-venv when missing, installs requirements.txt into it (skipped when
# already installed), then runs `pytest -q tests/openai` with that venv's python. The binary is
# $LUME_BIN (default target/release/lume; build it with `cargo build --release`). The models
# (smollm2-135m, gemma3-270m) are pulled into the cache first when missing (a no-op otherwise).
# Server logs: target/openai-tests/*.log. Exits non-zero when anything fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

VENV="target/openai-venv"
REQ="tests/openai/requirements.txt"

LUME_BIN="${LUME_BIN:-target/release/lume}"
case "$LUME_BIN" in /*) ;; *) LUME_BIN="$ROOT/$LUME_BIN" ;; esac
export LUME_BIN
if [ ! -x "$LUME_BIN" ]; then
    echo "run.sh: lume binary not found at $LUME_BIN (run \`cargo build --release\` or set LUME_BIN)" >&2
    exit 1
fi

# python3 -m venv needs the venv module and ensurepip (Debian ships them as python3-venv).
if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        echo "run.sh: python3 venv/ensurepip missing: installing python3-venv" >&2
        if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
        export DEBIAN_FRONTEND=noninteractive
        if ! $SUDO apt-get install -y -qq python3-venv >/dev/null; then
            $SUDO apt-get update -qq
            $SUDO apt-get install -y -qq python3-venv >/dev/null
        fi
    fi
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! python3 -m venv "$VENV"; then
        rm -rf "$VENV"
        echo "run.sh: could not create the virtual environment $VENV" >&2
        exit 1
    fi
fi
PY="$VENV/bin/python"

# Install only when requirements.txt changed since the last successful install.
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$PY" -m pip install -q --disable-pip-version-check -r "$REQ"
    echo "$WANT" > "$STAMP"
fi

# Make sure both models are in the cache (instant when they are).
"$LUME_BIN" pull smollm2-135m gemma3-270m >/dev/null

export PYTHONDONTWRITEBYTECODE=1
exec "$PY" -m pytest -q tests/openai "$@"
