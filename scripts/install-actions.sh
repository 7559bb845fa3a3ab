# Sourced by install.sh, uninstall.sh and wheelhouse.sh: how an action is announced, counted and
# (not) run, and the decisions the installer and the wheelhouse builder must take the same way.
# Needs DRY_RUN (0/1) and ROOT (a staging root, or empty for the real system).
CHANGES=0
say() { printf '%s\n' "$*"; }

# A change to the filesystem under the (staging) root: printed, counted, skipped in dry-run.
change() {
    CHANGES=$((CHANGES + 1))
    if [ "$DRY_RUN" = 1 ]; then say "  would run: $*"; return 0; fi
    say "  run: $*"
    "$@"
}

# A change to the running system (accounts, ownership, systemd): never run into a staging root.
system_change() {
    if [ -n "$ROOT" ]; then say "  not run (staging root): $*"; return 0; fi
    change "$@"
}

# L4T release of the (staging) root, e.g. 36.4.3, or nothing off-Jetson.
l4t_release() {
    [ -r "$ROOT/etc/nv_tegra_release" ] || return 0
    # "# R36 (release), REVISION: 4.3, GCID: ..." -> 36.4.3
    sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\).*/\1.\2/p' "$ROOT/etc/nv_tegra_release" | head -n 1
}

# The pip constraints for this machine, on stdout. JetPack's OpenCV and TensorRT bindings are built
# against NumPy 1.x, so wherever L4T is present numpy stays below 2. pip reads the file through
# $PIP_CONSTRAINT, which (unlike --constraint) also binds the isolated environments that build sdists
# such as pycuda, so nothing gets compiled against a NumPy the venv will not have.
constraints_for() {  # $1: "jetson" or ""
    if [ "$1" = jetson ]; then
        printf '# written by edge-agent install.sh: JetPack OpenCV/TensorRT need NumPy 1.x\nnumpy<2\n'
    else
        printf '# written by edge-agent install.sh: no constraint needed on this machine\n'
    fi
}

# The CUDA toolkit directory: $1 when given, else /usr/local/cuda or $CUDA_HOME (the first with nvcc).
cuda_dir() {
    if [ -n "$1" ]; then printf '%s\n' "$1"; return 0; fi
    local dir
    for dir in /usr/local/cuda "${CUDA_HOME:-}"; do
        if [ -n "$dir" ] && [ -x "$dir/bin/nvcc" ]; then printf '%s\n' "$dir"; return 0; fi
    done
}

# What building pycuda with Python $1 against CUDA in $2 lacks, one "what (fix)" per line; nothing
# when everything is there. Checked before anything is built, so a missing header is one sentence,
# not 11,000 lines of compiler output.
pycuda_missing() {
    local include
    include="$(cd / && "$1" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null || true)"
    if [ -z "$include" ] || [ ! -f "$include/Python.h" ]; then
        echo "Python.h (sudo apt install python3-dev)"
    fi
    command -v g++ >/dev/null 2>&1 || echo "g++ (sudo apt install g++)"
    if [ -z "$2" ] || [ ! -x "$2/bin/nvcc" ]; then
        echo "nvcc in ${2:-/usr/local/cuda}/bin (sudo apt install nvidia-jetpack on a Jetson, the CUDA toolkit elsewhere, or pass --cuda DIR)"
    elif [ ! -f "$2/include/curand.h" ]; then
        echo "curand.h in $2/include (sudo apt install nvidia-jetpack on a Jetson, the CUDA toolkit's libcurand-dev elsewhere)"
    fi
}

# Environment for a pip that may only read the wheelhouse $1: no index, no pip.conf, no retries
# against an unreachable network. A missing wheel then fails at once with "No matching distribution".
offline_pip_env() {
    unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS
    export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_FIND_LINKS="$1" PIP_RETRIES=0
}
