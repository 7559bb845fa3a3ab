#!/usr/bin/env bash
# Sets up everything the tests need and runs them: the README's test command, also run by CI.
#   - mosquitto (the real MQTT broker the telemetry tests start) from the distribution's packages
#   - GStreamer's gst-launch-1.0 with the software H.264/H.265 plugins (tests/sources/test_gstreamer.py)
#   - chromium (headless: the report page is rendered and screenshotted in tests)
#   - prometheus (scrapes the agent), nodejs + npm (Node-RED, installed once into .cache/node-red)
#   - chromium (headless: tests/view loads the live view page in it)
#   - systemd's systemd-analyze (tests/service verifies systemd/edge-agent.service with it)
#   - a virtual environment in .venv with edge-agent and its dev extra from PyPI
#   - pytest, which includes the Python 3.8 compatibility check (vermin) and lint (ruff)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
APT_UPDATED=""
apt_install() {
    [ -n "$APT_UPDATED" ] || { $SUDO apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    echo "== installing mosquitto (Debian package) for the MQTT tests"
    apt_install mosquitto mosquitto-clients
fi
# gcc and nm build the stub libraries that let the real TensorRT bindings import without a GPU
if ! command -v gcc >/dev/null 2>&1 || ! command -v nm >/dev/null 2>&1; then
    echo "== installing gcc and binutils for the TensorRT conformance tests"
    apt_install gcc binutils || echo "   (not installed: the TensorRT conformance tests will SKIP and say so)"
fi
if ! command -v openssl >/dev/null 2>&1; then
    echo "== installing openssl (the MQTT TLS tests make a test CA with it)"
    apt_install openssl
fi
# GStreamer: tests/sources/test_gstreamer.py encodes H.264/H.265 clips with gst-launch-1.0 and runs the
# software fallbacks of the Jetson pipelines (avdec_h264/h265, h264parse, qtdemux, x264enc, x265enc)
if ! command -v gst-launch-1.0 >/dev/null 2>&1 || ! gst-inspect-1.0 --exists avdec_h264 || \
   ! gst-inspect-1.0 --exists x264enc || ! gst-inspect-1.0 --exists h264parse; then
    echo "== installing GStreamer (Debian packages) for the GStreamer source tests"
    apt_install gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
        gstreamer1.0-plugins-ugly gstreamer1.0-libav || echo "   (not installed: the GStreamer tests will SKIP and say so)"
fi
if ! command -v chromium >/dev/null 2>&1; then
    echo "== installing chromium (Debian package): the report page and the live view are tested in a real headless browser"
    apt_install chromium
fi
if ! command -v prometheus >/dev/null 2>&1; then
    echo "== installing prometheus (Debian package; tests/telemetry scrape the agent with a real server)"
    apt_install prometheus
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "== installing nodejs and npm (Debian packages; tests/telemetry run the Node-RED flow for real)"
    apt_install nodejs npm
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "== installing systemd (systemd-analyze verifies the unit file offline)"
    apt_install systemd
fi

. scripts/venv.sh
ensure_venv dev

echo "== real TensorRT Python bindings for the conformance tests (cached in .cache/trt-bindings)"
.venv/bin/python scripts/fetch_trt_bindings.py || echo "   (not fetched: the TensorRT conformance tests will SKIP and say so)"

# pytest includes tests/test_code_quality.py: vermin (Python 3.8 compatibility of edge_agent/) and ruff
echo "== tests (pytest)"
.venv/bin/python -m pytest "$@"
