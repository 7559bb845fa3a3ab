#!/usr/bin/env bash
# Builds a wheelhouse: every wheel `scripts/install.sh --wheelhouse DIR` needs to install edge-agent
# with no network (factory floors rarely have internet). Run it on a board of the target JetPack (or a
# machine with the same Python, architecture and L4T), with internet; carry DIR to the stations.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$HERE/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: scripts/wheelhouse.sh [options] DIR

Fills DIR with wheels for this machine's Python and architecture: edge-agent (built from this source
tree), each of its dependencies, pip, setuptools and wheel (the installer upgrades the venv's own
first), and on L4T (or with --pycuda) a pycuda wheel compiled here against the local CUDA, so the
stations need neither a compiler nor the CUDA headers. Needs the network (PyPI); pip's cache is used.
Old edge_agent wheels in DIR are replaced; DIR/wheelhouse.txt records what it was built for.

Options:
  --python PATH   the Python the stations' venv will use (default: python3, JetPack's system Python)
  --package SPEC  what to build instead of this source tree (a wheel path or a requirement)
  --jetson        constrain numpy<2 as install.sh does on L4T (default: when /etc/nv_tegra_release
                  exists here)
  --pycuda        include a pycuda wheel even off-Jetson;  --no-pycuda  never include one
  --cuda DIR      the CUDA toolkit pycuda is built against (default: /usr/local/cuda or $CUDA_HOME)
  -h, --help      this text
EOF
}

PYTHON="python3"
PACKAGE="$SRC"
JETSON=""
PYCUDA=auto
CUDA_OPTION=""
DEST=""
while [ $# -gt 0 ]; do
    case "$1" in
        --python) PYTHON="${2:?--python needs a path}"; shift ;;
        --package) PACKAGE="${2:?--package needs a path or requirement}"; shift ;;
        --jetson) JETSON=jetson ;;
        --pycuda) PYCUDA=yes ;;
        --no-pycuda) PYCUDA=no ;;
        --cuda) CUDA_OPTION="${2:?--cuda needs a directory}"; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "wheelhouse.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) [ -z "$DEST" ] || { echo "wheelhouse.sh: one DIR only (see --help)" >&2; exit 2; }; DEST="$1" ;;
    esac
    shift
done
[ -n "$DEST" ] || { usage >&2; exit 2; }
DRY_RUN=0
ROOT=""
. "$HERE/install-actions.sh"
fail() { echo "wheelhouse.sh: $*" >&2; exit 1; }

[ -n "$(l4t_release)" ] && JETSON=jetson
PY_VERSION="$(cd / && "$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" \
    || fail "Python '$PYTHON' not found; pass --python."
BUILD_PYCUDA=0
case "$PYCUDA" in yes) BUILD_PYCUDA=1 ;; auto) [ "$JETSON" = jetson ] && BUILD_PYCUDA=1 ;; esac
CUDA_ROOT_DIR="$(cuda_dir "$CUDA_OPTION")"
if [ "$BUILD_PYCUDA" = 1 ]; then
    MISSING="$(pycuda_missing "$PYTHON" "$CUDA_ROOT_DIR")"
    [ -z "$MISSING" ] || fail "pycuda cannot be built here: it needs $(printf '%s\n' "$MISSING" | paste -sd ';' - | sed 's/;/; /g'); install what is missing, or pass --no-pycuda."
fi

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/edge-agent-wheelhouse.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
LOG="$DEST/wheelhouse.log"
: > "$LOG"
step() {  # step TITLE COMMAND...: output to the log; on failure one sentence and the log's last error
    local title="$1"; shift
    printf '  %s\n' "$title"
    printf '\n$ %s\n' "$*" >> "$LOG"
    if ! (cd / && "$@") >> "$LOG" 2>&1; then
        local why
        why="$(grep -E '^(ERROR|error):' "$LOG" | grep -v 'subprocess-exited-with-error' | tail -n 1 | cut -c1-240 || true)"
        fail "$title failed${why:+ ($why)}; full output in $LOG."
    fi
}

echo "== wheelhouse $DEST for Python $PY_VERSION ($(uname -m))${JETSON:+, L4T: numpy<2}"
constraints_for "$JETSON" > "$WORK/constraints.txt"
export PIP_CONSTRAINT="$WORK/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
# A venv of that Python with a current pip: the distribution's own (20.0.2 on JetPack 5) resolves
# dependencies without backtracking and may pick versions that do not fit together.
step "a build venv with a current pip" "$PYTHON" -m venv "$WORK/venv"
step "upgrading its pip" "$WORK/venv/bin/python" -m pip install --upgrade "pip>=23.1" "setuptools>=61" wheel
TARGET="$PACKAGE"
if [ -d "$PACKAGE" ]; then  # a clean copy: an in-tree build/ could slip stale modules into the wheel
    TARGET="$WORK/source"
    mkdir -p "$TARGET"
    (cd "$PACKAGE" && find pyproject.toml README.md edge_agent -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
        | tar -cf - -T - | tar -xf - -C "$TARGET")
fi
rm -f "$DEST"/edge_agent-*.whl
REQUIREMENTS=("pip>=23.1" "setuptools>=61" wheel "$TARGET")
if [ "$BUILD_PYCUDA" = 1 ]; then
    REQUIREMENTS+=("pycuda>=2022.1")
    echo "  pycuda will be compiled against $CUDA_ROOT_DIR (a few minutes)"
fi
WHAT="edge-agent, its dependencies"; [ "$BUILD_PYCUDA" = 0 ] || WHAT="$WHAT, pycuda"
step "downloading and building wheels ($WHAT)" \
    env CUDA_ROOT="${CUDA_ROOT_DIR:-}" PATH="${CUDA_ROOT_DIR:+$CUDA_ROOT_DIR/bin:}$PATH" \
    "$WORK/venv/bin/python" -m pip wheel --wheel-dir "$DEST" "${REQUIREMENTS[@]}"
{
    printf 'python %s\nmachine %s\nconstraints %s\npycuda %s\nbuilt %s\n' "$PY_VERSION" "$(uname -m)" \
        "$(grep -v '^#' "$WORK/constraints.txt" | paste -sd ' ' -)" "$BUILD_PYCUDA" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$DEST/wheelhouse.txt"
rm -f "$LOG"
echo "  $(ls "$DEST"/*.whl | wc -l) wheels in $DEST; install on a station with:"
echo "    sudo scripts/install.sh --wheelhouse $DEST"
