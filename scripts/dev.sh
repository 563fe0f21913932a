#!/usr/bin/env bash
# One entry point for a fresh clone:  bash scripts/dev.sh demo | test | setup
#   setup        create .venv (if missing) and install logitscope with its dev extras, at the exact
#                versions of requirements/lock.txt (the versions the tests run on, on every machine)
#   demo         setup, then run the logit lens on the bundled demo model (writes ./logitscope-demo/)
#   test         setup, then run the test suite
# Maintainers:
#   test-latest  a separate venv (.venv-latest) with the newest release of every dependency (the lock
#                ignored), the whole suite and the architecture sweep, ending in one summary line
#   lock         rewrite requirements/lock.txt from .venv-latest (run test-latest first)
#   test-min     a separate venv (.venv-min) with every direct dependency at its declared lower bound
#                (requirements/min.txt), then the suite
# TORCH_SPEC overrides the torch requirement installed first (default: torch==2.13.0 as locked, the CPU
# build on this project's machines; elsewhere pip picks the build for the platform).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
LOCK=requirements/lock.txt

locked_torch() { sed -n 's/^torch==\(.*\)$/torch==\1/p' "$LOCK"; }

# install into venv $1: torch first ($2), then logitscope[dev] with pip args $3...
install() {
    local venv=$1 torch=$2
    shift 2
    if [ ! -x "$venv/bin/python" ]; then
        "$PY" -m venv "$venv"
    fi
    if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
        "$venv/bin/pip" install -q "$torch"
    fi
    "$venv/bin/pip" install -q "$@" -e ".[dev]"
}

setup() {
    local stamp="$VENV/.installed"
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import logitscope, pytest" 2>/dev/null ||
        [ pyproject.toml -nt "$stamp" ] || [ "$LOCK" -nt "$stamp" ]; then
        install "$VENV" "${TORCH_SPEC:-$(locked_torch)}" -c "$LOCK"
        touch "$stamp"
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

versions() {
    "$1/bin/python" -c "import importlib.metadata as m; print(', '.join(f'{p} {m.version(p)}' for p in ('torch', 'transformers', 'tokenizers', 'accelerate', 'numpy', 'datasets')))"
}

# run the suite in venv $1 (pytest args after), then print one summary line
suite() {
    local venv=$1 label=$2
    shift 2
    local log sweep rc
    log=$(mktemp)
    sweep=$(mktemp)
    set +e
    ARCH_SWEEP_SUMMARY=$sweep HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    echo "$label: $(grep -E '^[0-9]+ (passed|failed)|no tests ran' "$log" | tail -1); sweep: $(cat "$sweep" 2>/dev/null || true); $(versions "$venv")"
    rm -f "$log" "$sweep"
    return "$rc"
}

case "${1:-}" in
    setup) setup ;;
    demo) setup; shift; exec "$VENV/bin/logitscope" demo "$@" ;;
    test) setup; browser; shift; HF_HUB_OFFLINE=1 exec "$VENV/bin/python" -m pytest -q "$@" ;;
    test-latest)
        shift
        # `pip install torch` (no pin) here: on this project's machines that is the newest build on disk
        install .venv-latest "${TORCH_SPEC:-torch}" --upgrade --upgrade-strategy eager
        browser
        suite .venv-latest "test-latest" "$@"
        ;;
    lock)
        [ -x .venv-latest/bin/python ] || { echo "run: bash scripts/dev.sh test-latest (first)" >&2; exit 2; }
        {
            echo "# The exact versions the test suite runs on (scripts/dev.sh setup/test/demo install with -c this file)."
            echo "# Regenerate: bash scripts/dev.sh test-latest && bash scripts/dev.sh lock"
            .venv-latest/bin/pip freeze --exclude-editable | sed 's/+cpu$//' | grep -v '^#' |
                grep -Ev '^(nvidia-|cuda-|triton==)'  # the platform's torch build brings its own
        } > "$LOCK.tmp" && mv "$LOCK.tmp" "$LOCK"
        echo "wrote $LOCK from .venv-latest ($(versions .venv-latest))"
        ;;
    test-min)
        shift
        rm -rf .venv-min  # fresh each time: downgrading in place can leave a mix of two releases' files
        install .venv-min "${TORCH_SPEC:-$(sed -n 's/^torch==/torch==/p' requirements/min.txt)}" -c requirements/min.txt
        browser
        suite .venv-min "test-min" "$@"
        ;;
    *) echo "usage: bash scripts/dev.sh demo|test|setup|test-latest|lock|test-min" >&2; exit 2 ;;
esac
