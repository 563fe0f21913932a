#!/usr/bin/env bash
# One entry point for a fresh clone:  bash scripts/dev.sh demo | test | setup
#   setup  create .venv (if missing) and install logitscope with its dev extras
#   demo   setup, then run the logit lens on the bundled demo model (writes ./logitscope-demo/)
#   test   setup, then run the test suite
# TORCH_SPEC overrides the torch requirement installed first (default: torch==2.13.0, the CPU
# build on this project's machines; elsewhere pip picks the right build for the platform).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
        "$VENV/bin/pip" install -q "${TORCH_SPEC:-torch==2.13.0}"
    fi
    if ! "$VENV/bin/python" -c "import logitscope, pytest" 2>/dev/null || [ pyproject.toml -nt "$VENV/.installed" ]; then
        "$VENV/bin/pip" install -q -e ".[dev]"
        touch "$VENV/.installed"
    fi
}

# The browser tests drive Debian's chromium headless (never a downloaded browser).
browser() {
    if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
        SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
        $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null || \
            echo "warning: could not install chromium; browser tests will be skipped" >&2
    fi
}

case "${1:-}" in
    setup) setup ;;
    demo) setup; shift; exec "$VENV/bin/logitscope" demo "$@" ;;
    test) setup; browser; shift; HF_HUB_OFFLINE=1 exec "$VENV/bin/python" -m pytest -q "$@" ;;
    *) echo "usage: bash scripts/dev.sh demo|test|setup" >&2; exit 2 ;;
esac
