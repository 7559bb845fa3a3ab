"""`Pipeline.swap_backend`: the backend changes between two batches of the running frame loop; every
frame is processed exactly once, each by the backend that served when its batch was taken."""

import threading
import time

from edge_agent.agent import load_backend, running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.metrics import Registry

from onnx_models import dark_spot_model


class Recorder:
    def __init__(self):
        self.pipeline = None
        self.seen = []

    def on_result(self, result):
        self.seen.append((result.frame.source, result.frame.index, result.batch_size,
                          self.pipeline.backend.model.source.name))


def config_for(tmp_path, model, max_batch, slots):
    return load_config(None, {
        "model": {"path": str(model), "input": {"width": 64, "height": 64},
                  "output": {"classes": ["background", "dark"]}},
        # unpaced synthetic cameras wait for the pipeline: a missing index is a lost frame
        "sources": [{"type": "synthetic", "name": "a", "width": 96, "height": 72},
                    {"type": "synthetic", "name": "b", "width": 96, "height": 72, "seed": 7}],
        "pipeline": {"max_batch": max_batch},
        "memory": {"slots": slots},
        "paths": {"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")},
    })


def run_with_swaps(tmp_path, max_batch, slots, swaps=6):
    old = dark_spot_model(tmp_path / "old.onnx")
    new = dark_spot_model(tmp_path / "new.onnx", gain=25.0)
    config = config_for(tmp_path, old, max_batch, slots)
    new_config = config.model_copy(update={"model": config.model.model_copy(update={"path": new})})
    recorder = Recorder()
    stop = threading.Event()
    boundaries = []
    with running_pipeline(config, Registry(), [recorder]) as pipeline:
        recorder.pipeline = pipeline
        loop = threading.Thread(target=pipeline.run, args=(stop,))
        loop.start()
        try:
            targets = [(new_config, "new.onnx"), (config, "old.onnx")]
            for k in range(swaps):
                time.sleep(0.15)
                target, _ = targets[k % 2]
                backend = load_backend(target)
                old_backend = pipeline.swap_backend(backend, target, timeout_s=10)
                boundaries.append(pipeline.swapped_at_frame)
                old_backend.close()
            time.sleep(0.15)
        finally:
            stop.set()
            loop.join(30)
    return recorder.seen, boundaries


def check(seen, boundaries):
    for source in ("a", "b"):
        indices = [i for s, i, _, _ in seen if s == source]
        assert indices == list(range(len(indices))), "source {}: a frame lost or processed twice".format(source)
    models = [m for _, _, _, m in seen]
    changes = [n for n in range(1, len(models)) if models[n] != models[n - 1]]
    assert changes == boundaries  # the model changes exactly where each swap said, and nowhere else
    assert models[0] == "old.onnx" and len(boundaries) == 6
    assert all(b > 0 for b in boundaries) and boundaries == sorted(boundaries)


def test_swaps_in_a_running_loop_lose_and_repeat_no_frame(tmp_path):
    seen, boundaries = run_with_swaps(tmp_path, max_batch=1, slots=1)
    check(seen, boundaries)


def test_swaps_with_batches_in_flight_on_an_overlapping_backend(tmp_path):
    seen, boundaries = run_with_swaps(tmp_path, max_batch=2, slots=2)
    check(seen, boundaries)
    assert any(size == 2 for _, _, size, _ in seen)  # batches of two really flowed


def test_a_swap_with_the_loop_stopped_applies_at_once(tmp_path):
    old = dark_spot_model(tmp_path / "old.onnx")
    new = dark_spot_model(tmp_path / "new.onnx", gain=25.0)
    config = config_for(tmp_path, old, 1, 1)
    new_config = config.model_copy(update={"model": config.model.model_copy(update={"path": new})})
    with running_pipeline(config, Registry()) as pipeline:
        first = pipeline.backend
        previous = pipeline.swap_backend(load_backend(new_config), new_config, timeout_s=1)
        assert previous is first and pipeline.backend.model.source.name == "new.onnx"
        previous.close()
