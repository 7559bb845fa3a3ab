#!/usr/bin/env bash
# Sets up everything the tests need and runs them: the README's test command, also run by CI.
#   - mosquitto (the real MQTT broker the telemetry tests start) from the distribution's packages
#   - systemd's systemd-analyze (tests/service verifies systemd/edge-agent.service with it)
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
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "== installing systemd (systemd-analyze verifies the unit file offline)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq systemd >/dev/null
fi

. scripts/venv.sh
ensure_venv dev

# tests/test_code_quality.py runs vermin (Python 3.8 compatibility of edge_agent/) and ruff
echo "== tests (pytest)"
.venv/bin/python -m pytest "$@"
