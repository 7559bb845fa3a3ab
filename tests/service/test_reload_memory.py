"""A reload frees the old pipeline at its teardown, in the daemon itself (`edge-agent run`'s Daemon
on its own threads), not at a cyclic collection many reloads later: the soak's RSS growth came from
stopped pipelines' buffers that outlived them (docs/benchmarks.md, "Soak with faults")."""

import gc
import threading
import time
import weakref

import yaml

from edge_agent.config_loader import load_config
from edge_agent.service import Daemon

from onnx_models import dark_spot_model


def test_a_reload_frees_the_old_pipeline_at_its_teardown(tmp_path):
    model = dark_spot_model(tmp_path / "m.onnx", size=(16, 16))
    data = {"model": {"path": str(model), "input": {"width": 16, "height": 16},
                      "output": {"classes": ["background", "dark"]}},
            "sources": [{"type": "synthetic", "name": "cam0", "width": 48, "height": 32, "fps": 50}],
            "paths": {"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    daemon = Daemon(load_config(str(path)), str(path))
    seen = {}

    def wait_until(condition, what):
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, "timed out waiting for " + what
            time.sleep(0.02)

    def operator():
        try:
            wait_until(lambda: daemon.pipeline is not None and daemon.pipeline.frames > 5, "the first frames")
            first = daemon.pipeline
            seen["first"] = weakref.ref(first)
            del first
            data["sources"][0]["fps"] = 40  # a changed camera: the pipeline restarts on the same model
            path.write_text(yaml.safe_dump(data))
            daemon.reload_requested.set()  # what the SIGHUP handler does
            daemon.wake.set()
            wait_until(lambda: daemon.pipeline is not None and daemon.pipeline is not seen["first"]()
                       and daemon.pipeline.frames > 5, "the reloaded pipeline's frames")
            seen["freed"] = seen["first"]() is None
        finally:
            daemon.stop_requested.set()
            daemon.wake.set()

    enabled = gc.isenabled()
    gc.disable()  # only the teardown's own collection may free it
    try:
        threading.Thread(target=operator, daemon=True).start()
        assert daemon.run() == 0
    finally:
        if enabled:
            gc.enable()
    assert seen.get("freed") is True
