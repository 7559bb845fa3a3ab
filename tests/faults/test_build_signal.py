"""SIGTERM during a model build (here: ONNX Runtime INT8 calibration, which runs in a child
process like a TensorRT build) stops the service within seconds and leaves no child behind."""

import signal
import time

import psutil
from service.service_helpers import config_data, write_yaml


def test_sigterm_during_an_int8_build_is_not_held_back(short_tmp, notify, start_daemon):
    data = config_data(short_tmp, backend={"type": "onnxruntime", "precision": "int8"},
                       paths={"cache_dir": str(short_tmp / "cache"), "state_dir": str(short_tmp / "state")})
    del data["model"]  # the demo model and its bundled calibration images: a build of a minute here
    path = write_yaml(short_tmp / "config.yaml", data)
    daemon = start_daemon(path)
    deadline = time.monotonic() + 60
    while not any("INT8 ONNX" in s for s in notify.statuses()):
        assert time.monotonic() < deadline and daemon.process.poll() is None, daemon.log
        time.sleep(0.05)
    children = psutil.Process(daemon.process.pid).children(recursive=True)
    signalled = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0, daemon.log
    assert time.monotonic() - signalled < 12, daemon.log  # the progress heartbeat is 5 s
    assert "the build was interrupted" in daemon.log
    assert "exiting with status 0" in daemon.log
    assert not notify.having("READY")
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], children
