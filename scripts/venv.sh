# Sourced by demo.sh and test.sh: make sure .venv exists and holds edge-agent (with extras "$1").
# Progress goes to stderr, so that `scripts/demo.sh --json` prints only the demo's JSON on stdout.
# On a fresh Debian/Ubuntu the venv module may be missing (package python3-venv): install it.
ensure_venv() {
    local extras="${1:-}"
    local python="${PYTHON:-python3}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ ! -x .venv/bin/python ]; then
        if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c "import ensurepip" >/dev/null 2>&1; then
            echo "== installing the Python venv module (Debian package python3-venv)" >&2
            $sudo apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >&2
        fi
        echo "== creating .venv with $("$python" --version)" >&2
        "$python" -m venv .venv >&2
    fi
    echo "== installing edge-agent${extras:+[$extras]} into .venv (from PyPI)" >&2
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}" >&2
}
