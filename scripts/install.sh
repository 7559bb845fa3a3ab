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
(groups video, render and jtop where they exist); builds a new virtual environment with
--system-site-packages (JetPack's TensorRT lives there) under /opt/edge-agent/venvs, upgrading its
pip and setuptools first and keeping numpy<2 wherever L4T is present; on L4T builds pycuda against
the local CUDA; installs the package; proves it works (edge-agent version, pip check, a 5-frame
demo) and only then points /opt/edge-agent/venv at it, so a failed install or upgrade leaves the
previous one running; writes /etc/edge-agent/config.yaml only if it is absent; installs, enables
and starts edge-agent.service. Needs the network (PyPI) unless --wheelhouse is given.

Options:
  --dry-run          print every action without doing any of them
  --root DIR         install into the staging root DIR (for tests and image builds): files go under
                     DIR; user creation, chown and systemctl are printed, not run
  --wheelhouse DIR   install offline, only from the wheels in DIR (made by scripts/wheelhouse.sh on
                     a machine of the same JetPack); the network is never used
  --package SPEC     what pip installs (default: this source tree, $SRC, or the edge_agent wheel of
                     --wheelhouse); a wheel path works
  --use-venv DIR     use this existing virtual environment instead of building one (a symlink
                     /opt/edge-agent/venv -> DIR; no pip run); for tests
  --python PATH      the Python for the venv (default: python3, i.e. JetPack's system Python)
  --cuda DIR         the CUDA toolkit pycuda is built against (default: /usr/local/cuda or $CUDA_HOME)
  --pycuda           build pycuda even off-Jetson (default: only where L4T is present)
  --no-pycuda        never build pycuda (TensorRT then cannot run; ONNX Runtime is used)
  --no-start         install and enable the service but do not start it
  -h, --help         this text
EOF
}

DRY_RUN=0
ROOT=""
PACKAGE=""
WHEELHOUSE=""
USE_VENV=""
PYTHON="python3"
CUDA_OPTION=""
PYCUDA=auto
START=1
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a directory}"; shift ;;
        --package) PACKAGE="${2:?--package needs a path or requirement}"; shift ;;
        --use-venv) USE_VENV="${2:?--use-venv needs a directory}"; shift ;;
        --python) PYTHON="${2:?--python needs a path}"; shift ;;
        --cuda) CUDA_OPTION="${2:?--cuda needs a directory}"; shift ;;
        --pycuda) PYCUDA=yes ;;
        --no-pycuda) PYCUDA=no ;;
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
absolute() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$(pwd)" "$1" ;; esac; }
if [ -n "$WHEELHOUSE" ]; then
    [ -d "$WHEELHOUSE" ] || { echo "install.sh: --wheelhouse $WHEELHOUSE is not a directory" >&2; exit 2; }
    WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
fi
case "$PACKAGE" in ""|*[=\<\>]*) ;; *) [ -e "$PACKAGE" ] && PACKAGE="$(absolute "$PACKAGE")" ;; esac
case "$PYTHON" in */*) PYTHON="$(absolute "$PYTHON")" ;; esac

PREFIX=/opt/edge-agent
SERVICE_USER=edge-agent
UNIT=/etc/systemd/system/edge-agent.service
DROPIN_DIR=/etc/systemd/system/edge-agent.service.d
CONFIG=/etc/edge-agent/config.yaml
. "$HERE/install-actions.sh"
UNIT_CHANGED=0
section() { printf '\n== %s\n' "$*"; }
fail() { echo "install.sh: $*" >&2; exit 1; }

# install_file SOURCE DEST MODE: copy when absent or different
install_file() {
    local dest="$ROOT$2"
    if [ -f "$dest" ] && cmp -s "$1" "$dest"; then
        say "  ok: $2 is up to date"
        return 1
    fi
    change install -D -m "$3" "$1" "$dest"
}

# Probes run from / so that a source tree in the current directory is never what they find.
python_version() { (cd / && "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') 2>/dev/null; }
python_module_version() {
    (cd / && "$PYTHON" -c "import $1; print(getattr($1, '__version__', 'present'))") 2>/dev/null | tail -n 1
}

# ---------------------------------------------------------------------------------------------
section "what this machine has"
L4T="$(l4t_release)"
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

CUDA_ROOT_DIR="$(cuda_dir "$CUDA_OPTION")"
if [ -n "$CUDA_ROOT_DIR" ] && [ -x "$CUDA_ROOT_DIR/bin/nvcc" ]; then
    say "  CUDA: $("$CUDA_ROOT_DIR/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p') ($CUDA_ROOT_DIR)"
else
    say "  CUDA: no nvcc in ${CUDA_ROOT_DIR:-/usr/local/cuda}/bin"
fi

TRT_VERSION="$(python_module_version tensorrt || true)"
say "  TensorRT (Python): ${TRT_VERSION:-not importable by $PYTHON (on JetPack: apt install python3-libnvinfer)}"
SYS_NUMPY="$(python_module_version numpy || true)"
SYS_CV2="$(python_module_version cv2 || true)"
say "  system numpy: ${SYS_NUMPY:-none}; system OpenCV: ${SYS_CV2:-none}"

CONSTRAINTS_TEXT="$(constraints_for "${L4T:+jetson}")"
say "  numpy in the venv: $(if [ -n "$L4T" ]; then echo "numpy<2 (L4T: JetPack's OpenCV/TensorRT need NumPy 1.x)"; else echo "no constraint"; fi)"

if [ -n "$WHEELHOUSE" ] && [ -f "$WHEELHOUSE/wheelhouse.txt" ]; then
    BUILT_FOR="$(sed -n 's/^python //p' "$WHEELHOUSE/wheelhouse.txt") $(sed -n 's/^machine //p' "$WHEELHOUSE/wheelhouse.txt")"
    case "$BUILT_FOR" in
        "${PY_VERSION%.*}".*" $(uname -m)") say "  wheelhouse: $WHEELHOUSE (built for Python $BUILT_FOR)" ;;
        *) fail "the wheelhouse $WHEELHOUSE was built for Python $BUILT_FOR, this machine has Python $PY_VERSION $(uname -m): build one with scripts/wheelhouse.sh on a machine of this JetPack." ;;
    esac
fi

# pycuda serves the TensorRT backend, which exists only on L4T (or when asked for with --pycuda).
BUILD_PYCUDA=0
case "$PYCUDA" in
    no) say "  pycuda: not built (--no-pycuda)" ;;
    yes) BUILD_PYCUDA=1 ;;
    auto) if [ -n "$L4T" ]; then BUILD_PYCUDA=1; else
              say "  pycuda: skipped (not a Jetson: TensorRT is not used here; --pycuda builds it anyway)"; fi ;;
esac
if [ "$BUILD_PYCUDA" = 1 ] && [ -z "$USE_VENV" ]; then
    if [ -n "$WHEELHOUSE" ] && ls "$WHEELHOUSE"/pycuda-*.whl >/dev/null 2>&1; then
        say "  pycuda: from the wheelhouse ($(basename "$(ls "$WHEELHOUSE"/pycuda-*.whl | head -n 1)"))"
    else
        MISSING="$(pycuda_missing "$PYTHON" "$CUDA_ROOT_DIR")"
        if [ -n "$MISSING" ] && [ "$DRY_RUN" = 1 ]; then
            say "  warning: pycuda cannot be built here: it needs $(printf '%s\n' "$MISSING" | paste -sd ';' - | sed 's/;/; /g') (a real run stops here)"
        elif [ -n "$MISSING" ]; then
            fail "pycuda cannot be built here: it needs $(printf '%s\n' "$MISSING" | paste -sd ';' - | sed 's/;/; /g'); install what is missing and run install.sh again, or pass --no-pycuda to install without TensorRT support. Nothing was changed."
        fi
        say "  pycuda: will be built against $CUDA_ROOT_DIR (Python.h, g++ and nvcc found; a few minutes)"
    fi
fi

# What gets installed, and its identity: "installed" means this exact content, not a version string.
WANT_VERSION=""
if [ -z "$PACKAGE" ] && [ -n "$WHEELHOUSE" ]; then
    set -- "$WHEELHOUSE"/edge_agent-*.whl
    [ -f "$1" ] || fail "the wheelhouse $WHEELHOUSE has no edge_agent-*.whl; build it with scripts/wheelhouse.sh."
    [ $# -eq 1 ] || fail "the wheelhouse $WHEELHOUSE holds $# edge_agent wheels; keep only the one to install."
    PACKAGE="$1"
fi
[ -n "$PACKAGE" ] || PACKAGE="$SRC"
if [ -d "$PACKAGE" ] && [ -f "$PACKAGE/edge_agent/__init__.py" ]; then
    WANT_VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$PACKAGE/edge_agent/__init__.py")"
    # the files the wheel is built from, hashed in a fixed order; build outputs and caches left out
    PACKAGE_ID="$(cd "$PACKAGE" && find pyproject.toml README.md edge_agent -type f ! -name '*.pyc' \
        ! -path '*/__pycache__/*' 2>/dev/null | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64)"
elif [ -f "$PACKAGE" ]; then
    case "$(basename "$PACKAGE")" in edge_agent-*.whl) WANT_VERSION="$(basename "$PACKAGE" | cut -d- -f2)" ;; esac
    PACKAGE_ID="$(sha256sum "$PACKAGE" | cut -c1-64)"
else
    PACKAGE_ID="$PACKAGE"  # a requirement such as edge-agent==0.2.0: pip decides
fi
INSTALL_ID="$(printf 'package %s\npython %s\npycuda %s\n%s\n' "$PACKAGE_ID" "$PY_VERSION" "$BUILD_PYCUDA" \
    "$CONSTRAINTS_TEXT" | sha256sum | cut -c1-12)"

# ---------------------------------------------------------------------------------------------
section "service user"
if getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
    say "  ok: user $SERVICE_USER exists"
else
    system_change useradd --system --user-group --home-dir /var/lib/edge-agent --no-create-home \
        --shell /usr/sbin/nologin --comment "edge-agent service" "$SERVICE_USER"
fi
# video: cameras and the Jetson GPU; render: /dev/dri/renderD* (JetPack 6+); jtop: jetson-stats' socket
OPTIONAL_GROUPS=""
for group in render jtop; do
    if getent group "$group" >/dev/null 2>&1; then OPTIONAL_GROUPS="$OPTIONAL_GROUPS $group"; fi
done
OPTIONAL_GROUPS="${OPTIONAL_GROUPS# }"
GROUPS_WANTED="video${OPTIONAL_GROUPS:+ $OPTIONAL_GROUPS}"
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
printf '%s\n' "$CONSTRAINTS_TEXT" > "${TMPDIR:-/tmp}/edge-agent-constraints.$$"
install_file "${TMPDIR:-/tmp}/edge-agent-constraints.$$" "$PREFIX/constraints.txt" 0644 || true
rm -f "${TMPDIR:-/tmp}/edge-agent-constraints.$$"

# switch_venv TARGET: point $PREFIX/venv at TARGET in one rename, so the service sees the old venv or
# the new one, never a mix. An old-style venv (a real directory) is replaced.
switch_venv() {
    if [ -L "$VENV" ] && [ "$(readlink "$VENV")" = "$1" ]; then return 0; fi
    change ln -sfn "$1" "$VENV.new"
    if [ -d "$VENV" ] && [ ! -L "$VENV" ]; then change rm -rf "$VENV"; fi
    change mv -T "$VENV.new" "$VENV"
}

if [ -n "$USE_VENV" ]; then
    if [ -L "$VENV" ] && [ "$(readlink "$VENV")" = "$USE_VENV" ]; then
        say "  ok: $PREFIX/venv -> $USE_VENV"
    else
        change mkdir -p "$ROOT$PREFIX"
        switch_venv "$USE_VENV"
    fi
else
    NEW_NAME="venvs/$INSTALL_ID"
    NEW="$ROOT$PREFIX/$NEW_NAME"
    MARKER="$NEW/edge-agent-install.txt"  # written only once the venv passed every check
    PREVIOUS="$(readlink "$VENV" 2>/dev/null || true)"
    if [ -f "$MARKER" ] && [ "$PREVIOUS" = "$NEW_NAME" ]; then
        say "  ok: edge-agent ${WANT_VERSION:+$WANT_VERSION }installed and verified (install $INSTALL_ID)"
    elif [ -f "$MARKER" ]; then
        say "  install $INSTALL_ID was built and verified before: switching back to it"
        switch_venv "$NEW_NAME"
    else
        say "  new install $INSTALL_ID in $PREFIX/$NEW_NAME${PREVIOUS:+ (the current one stays in service until it passes its checks)}"
        LOG=""
        if [ "$DRY_RUN" = 0 ]; then LOG="$(mktemp "${TMPDIR:-/tmp}/edge-agent-install.XXXXXX.log")"; fi
        # step TITLE FIX COMMAND...: one step of the new venv, its output in $LOG. On failure the new
        # venv is deleted (the previous one is untouched) and one sentence names the step and the fix.
        step() {
            local title="$1" fix="$2"; shift 2
            CHANGES=$((CHANGES + 1))
            if [ "$DRY_RUN" = 1 ]; then say "  would run: $*"; return 0; fi
            say "  $title"
            printf '\n$ %s\n' "$*" >> "$LOG"
            if ! (cd / && "$@") >> "$LOG" 2>&1; then
                rm -rf "$NEW"
                local why
                why="$(grep -E '^(ERROR|error|[A-Za-z]*Error):' "$LOG" | grep -v 'subprocess-exited-with-error' \
                       | tail -n 1 | cut -c1-240 || true)"
                fail "$title failed${why:+ ($why)}: $fix. The new venv was removed and the previous install (if any) is unchanged; full output in $LOG."
            fi
        }
        if [ -n "$WHEELHOUSE" ]; then
            offline_pip_env "$WHEELHOUSE"
            NET_FIX="the wheelhouse $WHEELHOUSE lacks a wheel for Python $PY_VERSION: rebuild it with scripts/wheelhouse.sh on a machine of this JetPack"
        else
            NET_FIX="check that this machine reaches https://pypi.org (proxy: export https_proxy), or install offline with --wheelhouse"
        fi
        export PIP_CONSTRAINT="$ROOT$PREFIX/constraints.txt" PIP_DISABLE_PIP_VERSION_CHECK=1
        venv_pip() { "$NEW/bin/python" -m pip "$@"; }
        [ -e "$NEW" ] && change rm -rf "$NEW"  # the remains of an interrupted build
        step "creating the venv" "install the venv module (sudo apt install python3-venv)" \
            "$PYTHON" -m venv --system-site-packages "$NEW"
        # The distribution's pip (20.0.2 on JetPack 5, 22.0.2 on 6) would let the system's setuptools
        # < 61 build edge-agent (installing "UNKNOWN-0.0.0") and keep the system's numpy 1.17.
        step "upgrading pip and setuptools in the venv" "$NET_FIX" \
            venv_pip install --upgrade "pip>=23.1" "setuptools>=61" wheel
        if [ "$BUILD_PYCUDA" = 1 ]; then
            step "installing pycuda (built against $CUDA_ROOT_DIR unless the wheelhouse has a wheel; minutes)" \
                "read the log's first error; pass --no-pycuda to install without TensorRT support" \
                env CUDA_ROOT="$CUDA_ROOT_DIR" PATH="$CUDA_ROOT_DIR/bin:$PATH" "$NEW/bin/python" -m pip install "pycuda>=2022.1"
        fi
        TARGET="$PACKAGE"
        if [ -d "$PACKAGE" ]; then
            # build from a clean copy: an in-tree build/ could slip stale modules into the wheel
            TARGET="$(mktemp -d "${TMPDIR:-/tmp}/edge-agent-source.XXXXXX")"
            (cd "$PACKAGE" && find pyproject.toml README.md edge_agent -type f ! -name '*.pyc' \
                ! -path '*/__pycache__/*' | tar -cf - -T - | tar -xf - -C "$TARGET") \
                || fail "cannot copy the source tree $PACKAGE to $TARGET."
        fi
        step "installing edge-agent and its dependencies" "$NET_FIX" venv_pip install "$TARGET"
        [ "$TARGET" = "$PACKAGE" ] || rm -rf "$TARGET"
        # JetPack's OpenCV has GStreamer (CSI cameras, hardware decoding); the PyPI wheel has not.
        if [ -n "$SYS_CV2" ] && (cd / && "$PYTHON" -c 'import cv2,sys; sys.exit("GStreamer:                   YES" not in cv2.getBuildInformation())') 2>/dev/null; then
            step "using the system OpenCV $SYS_CV2 (with GStreamer) instead of PyPI's" "see the log" \
                venv_pip uninstall --yes opencv-python-headless
        fi
        # Proof before the service is pointed at it: the command runs, pip's metadata is consistent
        # (numpy satisfies every dependency), and the bundled model runs five frames.
        step "checking: edge-agent version" "the package did not install its command; see the log" \
            sh -c "\"\$1\" version | tee /dev/stderr | grep -q \"^edge-agent ${WANT_VERSION:-[0-9]}\"" sh "$NEW/bin/edge-agent"
        step "checking: pip check" "a dependency has the wrong version (see the log); report it with the log attached" \
            venv_pip check
        step "checking: edge-agent demo --frames 5 --json" "the agent cannot run here (see the log's last lines)" \
            "$NEW/bin/edge-agent" demo --frames 5 --json
        if [ "$DRY_RUN" = 0 ]; then
            printf 'install %s\npackage %s\nversion %s\npython %s\npycuda %s\nverified %s\n' "$INSTALL_ID" "$PACKAGE" \
                "${WANT_VERSION:-?}" "$PY_VERSION" "$BUILD_PYCUDA" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$MARKER"
            rm -f "$LOG"
        fi
        switch_venv "$NEW_NAME"
    fi
    # keep the install in service and the one before it (to switch back by hand); drop older ones
    for old in "$ROOT$PREFIX"/venvs/*; do
        [ -d "$old" ] || continue
        name="venvs/$(basename "$old")"
        if [ "$name" != "$NEW_NAME" ] && [ "$name" != "$PREVIOUS" ]; then change rm -rf "$old"; fi
    done
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

# Drop-ins carry what depends on this board and this config; the unit itself stays as shipped, and a
# technician's own `systemctl edit` (override.conf) is never touched.
# dropin NAME TEXT: write (or, with empty TEXT, remove) $DROPIN_DIR/NAME
dropin() {
    if [ -z "$2" ]; then
        if [ -e "$ROOT$DROPIN_DIR/$1" ]; then change rm -f "$ROOT$DROPIN_DIR/$1"; UNIT_CHANGED=1; fi
        return 0
    fi
    printf '%s\n' "$2" > "${TMPDIR:-/tmp}/edge-agent-dropin.$$"
    if install_file "${TMPDIR:-/tmp}/edge-agent-dropin.$$" "$DROPIN_DIR/$1" 0644; then UNIT_CHANGED=1; fi
    rm -f "${TMPDIR:-/tmp}/edge-agent-dropin.$$"
}
dropin jtop.conf ""  # replaced by groups.conf
dropin groups.conf "${OPTIONAL_GROUPS:+# written by install.sh: these groups exist on this board (a missing one fails the start)
[Service]
SupplementaryGroups=$OPTIONAL_GROUPS}"

# MemoryMax from the config's memory.limit_mb plus the runtime's share (edge_agent.budget), so the
# kernel never kills the service inside the budget the agent admitted.
if [ "$DRY_RUN" = 1 ] && [ ! -x "$VENV/bin/python" ]; then
    say "  would write $DROPIN_DIR/memory.conf: MemoryHigh/MemoryMax from memory.limit_mb in $CONFIG"
else
    MEMORY="$(cd / && "$VENV/bin/python" - "$ROOT$CONFIG" <<'EOF' 2>/dev/null
import sys

import yaml

from edge_agent.budget import service_memory_limits_mb
from edge_agent.config import AgentConfig

with open(sys.argv[1]) as handle:
    data = yaml.safe_load(handle) or {}
limit = int((data.get("memory") or {}).get("limit_mb", AgentConfig().memory.limit_mb))
print("%d %d %d" % ((limit,) + service_memory_limits_mb(limit)))
EOF
)" || MEMORY=""
    if [ -z "$MEMORY" ]; then
        say "  warning: memory.limit_mb not readable from $CONFIG (check it with: edge-agent check --config $CONFIG); MemoryMax left as it was"
    else
        set -- $MEMORY
        dropin memory.conf "# written by install.sh from memory.limit_mb $1 in $CONFIG: run install.sh again after changing it
[Service]
MemoryHigh=$2M
MemoryMax=$3M"
    fi
fi

# A growing delay between restarts where systemd knows RestartSteps= (254+); older ones keep 10 s.
SYSTEMD_VERSION="$(systemctl --version 2>/dev/null | sed -n '1s/^systemd \([0-9]*\).*/\1/p')"
if [ "${SYSTEMD_VERSION:-0}" -ge 254 ]; then
    dropin restart.conf "# written by install.sh: systemd $SYSTEMD_VERSION backs off from 10 s to 5 min between restarts
[Service]
RestartSteps=5
RestartMaxDelaySec=300"
else
    dropin restart.conf ""
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
