#!/usr/bin/env bash
# Sets up everything the tests need and runs them: the README's test command, also run by CI.
#   - mosquitto (the real MQTT broker the telemetry tests start) from the distribution's packages
#   - a virtual environment in .venv with edge-agent and its dev extra from PyPI
#   - Python 3.8 compatibility of edge_agent/ (vermin), lint (ruff), then pytest
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    echo "== installing mosquitto (Debian package) for the MQTT tests"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
echo "== installing edge-agent[dev] into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"

echo "== Python 3.8 compatibility (vermin)"
.venv/bin/vermin -q -t=3.8- --no-tips --violations --eval-annotations edge_agent
echo "== lint (ruff)"
.venv/bin/ruff check edge_agent tests scripts
echo "== tests (pytest)"
.venv/bin/python -m pytest "$@"
