# Sourced by demo.sh and test.sh: make sure .venv exists and holds edge-agent (with extras "$1").
# On a fresh Debian/Ubuntu the venv module may be missing (package python3-venv): install it.
ensure_venv() {
    local extras="${1:-}"
    local python="${PYTHON:-python3}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if [ ! -x .venv/bin/python ]; then
        if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c "import ensurepip" >/dev/null 2>&1; then
            echo "== installing the Python venv module (Debian package python3-venv)"
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
        fi
        echo "== creating .venv with $("$python" --version)"
        "$python" -m venv .venv
    fi
    echo "== installing edge-agent${extras:+[$extras]} into .venv (from PyPI)"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
}
