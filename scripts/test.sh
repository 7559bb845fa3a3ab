#!/usr/bin/env bash
# Sets up everything the tests need and runs them: the README's test command, also run by CI.
#   - mosquitto (the real MQTT broker the telemetry tests start) from the distribution's packages
#   - a virtual environment in .venv with edge-agent and its dev extra from PyPI
#   - pytest, which includes the Python 3.8 compatibility check (vermin) and lint (ruff)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    echo "== installing mosquitto (Debian package) for the MQTT tests"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
fi

. scripts/venv.sh
ensure_venv dev

# tests/test_code_quality.py runs vermin (Python 3.8 compatibility of edge_agent/) and ruff
echo "== real TensorRT Python bindings for the conformance tests (cached in .cache/trt-bindings)"
if ! command -v gcc >/dev/null 2>&1 || ! command -v nm >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gcc binutils >/dev/null || true
fi
.venv/bin/python scripts/fetch_trt_bindings.py || echo "   (not fetched: the TensorRT conformance tests will SKIP and say so)"

echo "== tests (pytest)"
.venv/bin/python -m pytest "$@"
