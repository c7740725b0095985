# Sourced by tests/*/run.sh: the lume binary and a pinned Python virtual environment.
#
#   VENV=target/NAME-venv REQ=tests/NAME/requirements.txt; source tests/venv.sh
#
# Needs ROOT (the repository root, the working directory), VENV and REQ. Sets and exports
# LUME_BIN (default target/release/lume, made absolute; exits when it is not built), creates
# VENV when missing (installing Debian's python3-venv when the venv module is absent), installs
# REQ into it when REQ changed since the last successful install, and sets PY to its python.

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

# Install only when the requirements changed since the last successful install.
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$PY" -m pip install -q --disable-pip-version-check -r "$REQ"
    echo "$WANT" > "$STAMP"
fi
