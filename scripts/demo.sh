#!/usr/bin/env bash
# Sets up .venv and runs the demo: the bundled defect model on the synthetic camera.
# Any arguments go to `edge-agent demo` (default: --duration 20). Examples:
#   scripts/demo.sh --frames 300 --json
#   scripts/demo.sh --mqtt localhost:1883
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
ensure_venv
[ "$#" -gt 0 ] || set -- --duration 20
exec .venv/bin/edge-agent demo "$@"
