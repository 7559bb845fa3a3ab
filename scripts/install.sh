#!/usr/bin/env bash
# Installs edge-agent as a systemd service on a Jetson (JetPack 5, 6, 7) or any Linux with systemd.
# Run it again at any time: it only changes what differs (a second run changes nothing).
# See docs/install.md. `scripts/install.sh --help` lists the options.
set -eu

HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="$(cd "$HERE/.." && pwd)"

usage() {
    cat <<'EOF'
Usage: sudo scripts/install.sh [options]

Installs edge-agent: detects JetPack/L4T, Python, CUDA and TensorRT; creates the edge-agent user
(groups video, and jtop when present); creates /opt/edge-agent/venv with --system-site-packages
(JetPack's TensorRT lives there) keeping numpy<2 where JetPack's OpenCV/TensorRT need it; builds
pycuda against the local CUDA; installs the package; writes /etc/edge-agent/config.yaml only if it
is absent; installs, enables and starts edge-agent.service.

Options:
  --dry-run          print every action without doing any of them
  --root DIR         install into the staging root DIR (for tests and image builds): files go under
                     DIR; user creation, chown and systemctl are printed, not run
  --package SPEC     what pip installs (default: this source tree, $SRC); a wheel path works
  --use-venv DIR     use this existing virtual environment instead of creating one and installing
                     into it (a symlink /opt/edge-agent/venv -> DIR; no pip run); for tests
  --python PATH      the Python for the venv (default: python3, i.e. JetPack's system Python)
  --no-pycuda        do not build pycuda even when CUDA is present
  --no-start         install and enable the service but do not start it
  -h, --help         this text
EOF
}

DRY_RUN=0
ROOT=""
PACKAGE="$SRC"
USE_VENV=""
PYTHON="python3"
PYCUDA=1
START=1
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --package) PACKAGE="${2:?--package needs a path or requirement}"; shift ;;
        --use-venv) USE_VENV="${2:?--use-venv needs a directory}"; shift ;;
        --python) PYTHON="${2:?--python needs a path}"; shift ;;
        --no-pycuda) PYCUDA=0 ;;
        --no-start) START=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "$ROOT" ]; then
    if [ "$DRY_RUN" = 0 ]; then mkdir -p "$ROOT" || { echo "install.sh: cannot create --root $ROOT" >&2; exit 2; }; fi
    case "$ROOT" in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
    ROOT="${ROOT%/}"
elif [ "$DRY_RUN" = 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (sudo scripts/install.sh), or use --dry-run to see what it would do" >&2
    exit 1
fi

PREFIX=/opt/edge-agent
SERVICE_USER=edge-agent
UNIT=/etc/systemd/system/edge-agent.service
DROPIN_DIR=/etc/systemd/system/edge-agent.service.d
CONFIG=/etc/edge-agent/config.yaml
. "$HERE/install-actions.sh"
UNIT_CHANGED=0
section() { printf '\n== %s\n' "$*"; }

# install_file SOURCE DEST MODE: copy when absent or different
install_file() {
    local dest="$ROOT$2"
    if [ -f "$dest" ] && cmp -s "$1" "$dest"; then
        say "  ok: $2 is up to date"
        return 1
    fi
    change install -D -m "$3" "$1" "$dest"
}

python_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null; }
python_module_version() {
    "$PYTHON" -c "import $1; print(getattr($1, '__version__', 'present'))" 2>/dev/null | tail -n 1
}

# ---------------------------------------------------------------------------------------------
section "what this machine has"
L4T=""
if [ -r "$ROOT/etc/nv_tegra_release" ]; then
    # "# R36 (release), REVISION: 4.3, GCID: ..." -> 36.4.3
    L4T="$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' "$ROOT/etc/nv_tegra_release" | head -n 1)"
fi
JETPACK="$(dpkg-query -W -f='${Version}' nvidia-jetpack 2>/dev/null || true)"
if [ -n "$L4T" ]; then
    case "${L4T%%.*}" in
        35) GENERATION="JetPack 5" ;;
        36) GENERATION="JetPack 6" ;;
        38) GENERATION="JetPack 7" ;;
        *) GENERATION="an unknown JetPack" ;;
    esac
    say "  Jetson: L4T R$L4T ($GENERATION${JETPACK:+, nvidia-jetpack $JETPACK})"
else
    say "  Jetson: no (/etc/nv_tegra_release absent): ONNX Runtime on the CPU will be used"
fi

PY_VERSION="$(python_version "$PYTHON" || true)"
if [ -z "$PY_VERSION" ]; then
    say "  Python: '$PYTHON' not found. Install it (apt install python3 python3-venv) or pass --python." >&2
    exit 1
fi
case "$PY_VERSION" in
    3.[0-7].*) say "  Python: $PY_VERSION is too old; edge-agent needs 3.8 or newer (JetPack 5+)." >&2; exit 1 ;;
esac
say "  Python: $PY_VERSION ($(command -v "$PYTHON" || echo "$PYTHON"))"

CUDA_ROOT_DIR=""
for dir in /usr/local/cuda "${CUDA_HOME:-}"; do
    if [ -n "$dir" ] && [ -x "$dir/bin/nvcc" ]; then CUDA_ROOT_DIR="$dir"; break; fi
done
if [ -n "$CUDA_ROOT_DIR" ]; then
    say "  CUDA: $("$CUDA_ROOT_DIR/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p') ($CUDA_ROOT_DIR)"
else
    say "  CUDA: not found (no nvcc in /usr/local/cuda): pycuda will not be built"
fi

TRT_VERSION="$(python_module_version tensorrt || true)"
say "  TensorRT (Python): ${TRT_VERSION:-not importable by $PYTHON (on JetPack: apt install python3-libnvinfer)}"
SYS_NUMPY="$(python_module_version numpy || true)"
SYS_CV2="$(python_module_version cv2 || true)"
say "  system numpy: ${SYS_NUMPY:-none}; system OpenCV: ${SYS_CV2:-none}"

# JetPack's OpenCV and TensorRT bindings are built against NumPy 1.x: NumPy 2 in the venv breaks them.
NUMPY_PIN=""
case "$SYS_NUMPY" in
    1.*) if [ -n "$SYS_CV2" ] || [ -n "$TRT_VERSION" ]; then NUMPY_PIN="numpy<2"; fi ;;
esac
say "  numpy in the venv: ${NUMPY_PIN:-no constraint}"

# ---------------------------------------------------------------------------------------------
section "service user"
if getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
    say "  ok: user $SERVICE_USER exists"
else
    system_change useradd --system --user-group --home-dir /var/lib/edge-agent --no-create-home \
        --shell /usr/sbin/nologin --comment "edge-agent service" "$SERVICE_USER"
fi
GROUPS_WANTED="video"
if getent group jtop >/dev/null 2>&1; then GROUPS_WANTED="video jtop"; fi
for group in $GROUPS_WANTED; do
    if ! getent group "$group" >/dev/null 2>&1; then
        say "  warning: group $group does not exist; cameras may be unreadable (JetPack creates it)"
    elif id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
        say "  ok: $SERVICE_USER is in group $group"
    else
        system_change usermod --append --groups "$group" "$SERVICE_USER"
    fi
done

# ---------------------------------------------------------------------------------------------
section "virtual environment $PREFIX/venv"
VENV="$ROOT$PREFIX/venv"
if [ -n "$USE_VENV" ]; then
    if [ -L "$VENV" ] && [ "$(readlink "$VENV")" = "$USE_VENV" ]; then
        say "  ok: $PREFIX/venv -> $USE_VENV"
    else
        change mkdir -p "$ROOT$PREFIX"
        change ln -sfn "$USE_VENV" "$VENV"
    fi
else
    if [ -x "$VENV/bin/python" ]; then
        say "  ok: venv exists (Python $(python_version "$VENV/bin/python"))"
    else
        change "$PYTHON" -m venv --system-site-packages "$VENV"
    fi
    CONSTRAINTS="$ROOT$PREFIX/constraints.txt"
    if [ -n "$NUMPY_PIN" ]; then
        printf '# written by install.sh: JetPack OpenCV/TensorRT need NumPy 1.x\n%s\n' "$NUMPY_PIN" \
            > "${TMPDIR:-/tmp}/edge-agent-constraints.$$"
    else
        printf '# written by install.sh: no constraint needed on this machine\n' \
            > "${TMPDIR:-/tmp}/edge-agent-constraints.$$"
    fi
    install_file "${TMPDIR:-/tmp}/edge-agent-constraints.$$" "$PREFIX/constraints.txt" 0644 || true
    rm -f "${TMPDIR:-/tmp}/edge-agent-constraints.$$"

    WANT_VERSION=""
    if [ -d "$PACKAGE" ] && [ -f "$PACKAGE/edge_agent/__init__.py" ]; then
        WANT_VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$PACKAGE/edge_agent/__init__.py")"
    fi
    HAVE_VERSION="$("$VENV/bin/python" -m pip show edge-agent 2>/dev/null | sed -n 's/^Version: //p' || true)"
    if [ -n "$WANT_VERSION" ] && [ "$HAVE_VERSION" = "$WANT_VERSION" ] && "$VENV/bin/python" -c 'import edge_agent' 2>/dev/null; then
        say "  ok: edge-agent $HAVE_VERSION installed"
    else
        change "$VENV/bin/python" -m pip install --quiet --constraint "$CONSTRAINTS" "$PACKAGE"
    fi
    # JetPack's OpenCV has GStreamer (CSI cameras, hardware decoding); the PyPI wheel has not.
    if [ -n "$SYS_CV2" ] && "$PYTHON" -c 'import cv2,sys; sys.exit("GStreamer:                   YES" not in cv2.getBuildInformation())' 2>/dev/null; then
        if "$VENV/bin/python" -m pip show opencv-python-headless >/dev/null 2>&1; then
            change "$VENV/bin/python" -m pip uninstall --quiet --yes opencv-python-headless
        else
            say "  ok: the system OpenCV $SYS_CV2 (with GStreamer) is used"
        fi
    fi
    if [ "$PYCUDA" = 1 ] && [ -n "$CUDA_ROOT_DIR" ]; then
        if "$VENV/bin/python" -c 'import pycuda' 2>/dev/null; then
            say "  ok: pycuda importable"
        else
            say "  building pycuda against $CUDA_ROOT_DIR (a few minutes)"
            PATH="$CUDA_ROOT_DIR/bin:$PATH"
            change env CUDA_ROOT="$CUDA_ROOT_DIR" "$VENV/bin/python" -m pip install --quiet --constraint "$CONSTRAINTS" "pycuda>=2022.1"
        fi
    fi
fi
if [ -e "$ROOT/usr/local/bin/edge-agent" ] || [ -L "$ROOT/usr/local/bin/edge-agent" ]; then
    say "  ok: /usr/local/bin/edge-agent exists"
else
    change mkdir -p "$ROOT/usr/local/bin"
    change ln -s "$PREFIX/venv/bin/edge-agent" "$ROOT/usr/local/bin/edge-agent"
fi

# ---------------------------------------------------------------------------------------------
section "files"
install_file "$SRC/docs/install.md" "$PREFIX/share/install.md" 0644 || true
[ -f "$SRC/docs/config.md" ] && { install_file "$SRC/docs/config.md" "$PREFIX/share/config.md" 0644 || true; }
[ -f "$SRC/examples/factory.yaml" ] && { install_file "$SRC/examples/factory.yaml" "$PREFIX/share/factory.yaml" 0644 || true; }
if [ -e "$ROOT$CONFIG" ]; then
    say "  ok: $CONFIG exists (kept as it is: install.sh never overwrites it)"
else
    DEVICE_ID="$(hostname 2>/dev/null | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_\n-' '-' | head -c 60)"
    sed "s/__DEVICE_ID__/${DEVICE_ID:-edge-agent}/" "$SRC/systemd/config.yaml" > "${TMPDIR:-/tmp}/edge-agent-config.$$"
    change install -D -m 0640 "${TMPDIR:-/tmp}/edge-agent-config.$$" "$ROOT$CONFIG"
    rm -f "${TMPDIR:-/tmp}/edge-agent-config.$$"
    system_change chown "root:$SERVICE_USER" "$CONFIG"
fi
if install_file "$SRC/systemd/edge-agent.service" "$UNIT" 0644; then UNIT_CHANGED=1; fi
if [ "$GROUPS_WANTED" = "video jtop" ]; then
    printf '# written by install.sh: jtop (jetson-stats) is installed; its socket is group jtop\n[Service]\nSupplementaryGroups=jtop\n' \
        > "${TMPDIR:-/tmp}/edge-agent-jtop.$$"
    if install_file "${TMPDIR:-/tmp}/edge-agent-jtop.$$" "$DROPIN_DIR/jtop.conf" 0644; then UNIT_CHANGED=1; fi
    rm -f "${TMPDIR:-/tmp}/edge-agent-jtop.$$"
fi

# ---------------------------------------------------------------------------------------------
section "service"
if [ -z "$ROOT" ] && [ ! -d /run/systemd/system ]; then
    say "  systemd is not running here: enable and start the service on the target with"
    say "    systemctl daemon-reload && systemctl enable --now edge-agent"
else
    if [ "$UNIT_CHANGED" = 1 ]; then system_change systemctl daemon-reload; fi
    if [ -z "$ROOT" ] && systemctl is-enabled --quiet edge-agent 2>/dev/null; then
        say "  ok: edge-agent is enabled"
    else
        system_change systemctl enable edge-agent
    fi
    if [ "$START" = 1 ]; then
        if [ -z "$ROOT" ] && systemctl is-active --quiet edge-agent 2>/dev/null; then
            if [ "$CHANGES" -gt 0 ]; then system_change systemctl restart edge-agent; else say "  ok: edge-agent is running"; fi
        else
            system_change systemctl start edge-agent
        fi
    fi
fi

section "done"
if [ "$DRY_RUN" = 1 ]; then
    say "  dry run: $CHANGES change(s) would be made; nothing was changed"
else
    say "  $CHANGES change(s) made${ROOT:+ under $ROOT}"
fi
say "  next: edit $CONFIG, then run: sudo edge-agent check --config $CONFIG"
say "        and watch the service:   journalctl -u edge-agent -f"
