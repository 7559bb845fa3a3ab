import threading
import time

import cv2
import pytest

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.metrics import Registry
from edge_agent.pipeline import ResultSink

from conftest import dark_square_image
from onnx_models import dark_spot_model


class Collect(ResultSink):
    def __init__(self, delay_s=0.0):
        self.results = []
        self.delay_s = delay_s

    def on_result(self, result):
        self.results.append((result.frame.source, result.frame.index, result.regions, result.batch_size))
        if self.delay_s:
            time.sleep(self.delay_s)


def _run(config, max_frames=None, duration=None, delay_s=0.0):
    sink = Collect(delay_s)
    registry = Registry()
    with running_pipeline(config, registry, [sink]) as pipeline:
        pipeline.run(threading.Event(), max_frames, duration)
        states = {r.name: (r.state, r.reason) for r in pipeline.runners}
    return sink.results, registry, states


def _boxes(count):
    return [(20 + 10 * i, 30, 40, 30) for i in range(count)]


def _dark_config(model, sources, **extra):
    data = {"model": {"path": str(model), "input": {"width": 64, "height": 64},
                      "output": {"classes": ["background", "dark"]}, "thresholds": {"min_area_px": 50}},
            "sources": sources}
    data.update(extra)
    return load_config(None, data)


def test_folder_source_end_to_end(tmp_path, dark_model):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, box in enumerate(_boxes(6)):
        cv2.imwrite(str(folder / "{:03d}.png".format(i)), dark_square_image(box=box))
    (folder / "notes.txt").write_text("not an image")
    (folder / "zz-broken.png").write_bytes(b"\x89PNG truncated")
    results, registry, states = _run(_dark_config(dark_model, [{"type": "folder", "name": "bench", "path":
                                                               str(folder)}]))
    assert [r[1] for r in results] == list(range(6))  # every image, in name order, none dropped
    for (_, _, regions, _), box in zip(results, _boxes(6)):
        (region,) = regions
        assert region.cls == "dark"
        assert all(abs(a - b) <= 3 for a, b in zip(region.bbox, box)), (region.bbox, box)
        assert abs(region.area_px - 1200) <= 150
    assert states["bench"][0] == "finished"
    # the broken file is the only frame not processed, and it is counted with its reason
    assert registry.counter_total("frames_dropped") == 1
    assert registry.counter("frames_dropped", source="bench", reason="undecodable").value == 1
    assert registry.histogram("stage_ms", stage="infer").total == 6


def test_video_file_source_end_to_end(tmp_path, dark_model):
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (160, 120))
    for box in _boxes(10):
        writer.write(dark_square_image(box=box))
    writer.release()
    results, _, states = _run(_dark_config(dark_model, [{"type": "video", "name": "vid", "path": str(path)}]))
    assert len(results) == 10
    assert all(len(r[2]) == 1 for r in results)
    assert results[-1][2][0].bbox[0] == pytest.approx(110, abs=3)
    assert states["vid"][0] == "finished"


def test_foreign_model_runs_by_config_alone(tmp_path, write_config):
    """Different input name, size, layout, colour order, normalization and output kind."""
    dark_spot_model(tmp_path / "foreign.onnx", input_name="pixels", output_name="defect_logit",
                            size=(48, 80), layout="NHWC", activation="sigmoid")
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), dark_square_image(box=(40, 30, 40, 30)))
    path = write_config({
        "model": {"path": "foreign.onnx",
                  "input": {"name": "pixels", "width": 80, "height": 48, "layout": "NHWC", "color": "BGR",
                            "scale": 1.0, "mean": [128, 128, 128], "std": [64, 64, 64]},
                  "output": {"name": "defect_logit", "layout": "NHWC", "activation": "sigmoid",
                             "classes": ["defect"], "background": None},
                  "thresholds": {"min_area_px": 50}},
        "sources": [{"type": "folder", "path": "images"}]})
    results, _, _ = _run(load_config(path))
    (region,) = results[0][2]
    assert region.cls == "defect"
    assert all(abs(a - b) <= 3 for a, b in zip(region.bbox, (40, 30, 40, 30))), region.bbox


def test_a_failing_source_retries_without_stopping_the_others(tmp_path, dark_model):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / "{}.png".format(i)), dark_square_image())
    config = _dark_config(dark_model, [
        {"type": "camera", "name": "gone", "device": "/dev/video97", "retry_initial_s": 0.05, "retry_max_s": 0.1},
        {"type": "folder", "name": "ok", "path": str(folder)}])
    results, registry, states = _run(config, duration=1.5)
    assert [r[0] for r in results] == ["ok"] * 3
    assert states["gone"][0] == "retrying"
    assert "/dev/video97" in states["gone"][1]
    assert registry.counter_total("source_failures") >= 3  # backoff retries, not a busy loop
    assert registry.counter_total("source_failures") < 40


def test_live_source_drops_oldest_and_counts_it(dark_model):
    config = _dark_config(dark_model, [{"type": "synthetic", "name": "cam", "fps": 200}])
    results, registry, _ = _run(config, max_frames=10, delay_s=0.03)
    assert len(results) == 10
    dropped = registry.counter_total("frames_dropped")
    assert dropped > 10
    indices = [r[1] for r in results]
    assert indices == sorted(indices) and indices[-1] - indices[0] > 10  # newest frames, gaps between


def test_frames_from_several_sources_are_batched(tmp_path, dark_model):
    folders = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(4):
            cv2.imwrite(str(folder / "{}.png".format(i)), dark_square_image())
        folders.append({"type": "folder", "name": name, "path": str(folder)})
    config = _dark_config(dark_model, folders, pipeline={"max_batch": 2, "max_wait_ms": 200})
    results, registry, _ = _run(config)
    assert sorted((r[0], r[1]) for r in results) == [(s, i) for s in "ab" for i in range(4)]
    assert max(r[3] for r in results) == 2
    assert registry.counter_total("inference_items") == 8
    assert registry.counter_total("inference_batches") < 8


class TwoSlotBackend:
    """Wraps an open backend with a ring of two input/output slots and `overlaps = True`, the way
    the TensorRT backend behaves: the pipeline submits batch k+1 before postprocessing batch k."""

    def __init__(self, inner):
        import numpy as np

        self.inner = inner
        self.name, self.model, self.output_spec = inner.name, inner.model, inner.output_spec
        self.overlaps = True
        self.finished_at = None
        self._inputs = [np.zeros_like(inner.input_buffer) for _ in range(2)]
        self._outputs = [np.zeros(inner.output_spec.shape, inner.output_spec.dtype) for _ in range(2)]
        self._slot = 0
        self._pending = None
        self.input_buffer = self._inputs[0]

    def submit(self, n):
        assert self._pending is None, "one batch in flight at a time"
        self.inner.input_buffer[:n] = self._inputs[self._slot][:n]
        self._outputs[self._slot][:n] = self.inner.infer(n)
        self._pending = (self._slot, n)
        self._slot = 1 - self._slot
        self.input_buffer = self._inputs[self._slot]

    def wait(self):
        slot, n = self._pending
        self._pending = None
        return self._outputs[slot][:n]

    def memory(self):
        return self.inner.memory()

    def bind_thread(self):
        return self.inner.bind_thread()


def test_overlapping_backend_keeps_every_frame_with_its_own_result(tmp_path, dark_model):
    from edge_agent.agent import open_backend
    from edge_agent.pipeline import Pipeline

    folder = tmp_path / "images"
    folder.mkdir()
    boxes = _boxes(8)
    for i, box in enumerate(boxes):
        cv2.imwrite(str(folder / "{:03d}.png".format(i)), dark_square_image(box=box))
    config = _dark_config(dark_model, [{"type": "folder", "name": "f", "path": str(folder)}])
    sink = Collect()
    with open_backend(config) as inner:
        pipeline = Pipeline(config, TwoSlotBackend(inner), Registry(), [sink])
        pipeline.start()
        try:
            assert pipeline.run(threading.Event()) == 8
        finally:
            pipeline.stop()
    assert [r[1] for r in sink.results] == list(range(8))
    for (_, _, regions, _), box in zip(sink.results, boxes):
        (region,) = regions
        assert all(abs(a - b) <= 3 for a, b in zip(region.bbox, box)), (region.bbox, box)


def test_stop_finishes_the_frames_in_flight(dark_model):
    config = _dark_config(dark_model, [{"type": "synthetic", "name": "cam"}])
    registry = Registry()
    stop = threading.Event()

    class StopAfterThree(Collect):
        def on_result(self, result):
            super().on_result(result)
            if len(self.results) == 3:
                stop.set()

    sink = StopAfterThree()
    with running_pipeline(config, registry, [sink]) as pipeline:
        pipeline.run(stop)
    assert registry.counter_total("frames_processed") == len(sink.results) >= 3
    assert registry.counter_total("frames_captured") - registry.counter_total("frames_processed") <= 2


def test_a_fifo_named_png_does_not_block_its_folder(tmp_path, dark_model):
    import os

    folder = tmp_path / "images"
    folder.mkdir()
    os.mkfifo(str(folder / "a-fifo.png"))  # nobody ever writes it: opening it for reading blocks forever
    for i in range(3):
        cv2.imwrite(str(folder / "b{}.png".format(i)), dark_square_image())
    started = time.monotonic()
    results, _, states = _run(_dark_config(dark_model, [{"type": "folder", "name": "f", "path": str(folder)}]),
                              duration=20)
    assert len(results) == 3 and states["f"][0] == "finished"
    assert time.monotonic() - started < 10


def test_a_missing_folder_is_retried_until_it_appears(tmp_path, dark_model):
    folder = tmp_path / "later"
    config = _dark_config(dark_model, [{"type": "folder", "name": "late", "path": str(folder),
                                        "retry_initial_s": 0.05, "retry_max_s": 0.1},
                                       {"type": "video", "name": "novid", "path": str(tmp_path / "none.mp4"),
                                        "retry_initial_s": 0.05, "retry_max_s": 0.1}])

    def appear():
        time.sleep(0.5)
        staging = tmp_path / "staging"
        staging.mkdir()
        cv2.imwrite(str(staging / "a.png"), dark_square_image())
        staging.rename(folder)

    helper = threading.Thread(target=appear)
    helper.start()
    results, registry, states = _run(config, duration=2.5)
    helper.join()
    assert [r[0] for r in results] == ["late"]
    assert states["novid"][0] == "retrying" and "does not exist" in states["novid"][1]
    assert registry.counter_total("source_failures") >= 3


def test_a_source_whose_reader_crashes_is_restarted_by_the_supervisor():
    import numpy as np

    from edge_agent.sources.config import SyntheticSourceConfig
    from edge_agent.sources.readers import Reader
    from edge_agent.sources.runner import FrameBoard, SourceRunner
    from edge_agent.supervisor import Supervisor

    opened = []

    class Buggy(Reader):
        def grab(self):
            if len(opened) < 3:
                opened.append(1)
                raise KeyError("a reader bug")  # not a SourceError: a crash
            return None

        def retrieve(self, grabbed):
            return np.zeros((8, 8, 3), np.uint8), None

    registry = Registry()
    board = FrameBoard(["bug"], registry)
    supervisor = Supervisor()
    config = SyntheticSourceConfig(name="bug", retry_initial_s=0.02, retry_max_s=0.05)
    runner = SourceRunner(config, board, registry, lambda _c: Buggy(), supervisor=supervisor)
    runner.start()
    frames = []
    deadline = time.monotonic() + 5
    while not frames and time.monotonic() < deadline:
        board.take(1, 0, 0.1, frames)
    runner.stop()
    runner.join()
    assert frames and supervisor.failures() == {"source-bug": 3}
    assert registry.counter_total("source_failures") == 3


def test_many_live_sources_are_served_fairly_and_every_frame_is_accounted_for(dark_model):
    """Six 60 fps cameras and a slow sink: the pipeline cannot serve all frames, so it sheds
    undecoded frames, serves every camera about equally and counts each frame that it drops."""
    names = ["cam{}".format(i) for i in range(6)]
    config = _dark_config(dark_model, [{"type": "synthetic", "name": n, "fps": 60, "width": 64, "height": 48,
                                        "seed": i} for i, n in enumerate(names)],
                          pipeline={"max_batch": 3, "max_wait_ms": 5})
    results, registry, _ = _run(config, duration=1.5, delay_s=0.01)
    served = {n: registry.counter("frames_processed", source=n).value for n in names}
    assert min(served.values()) >= 0.7 * max(served.values()) > 0, served
    assert max(r[3] for r in results) == 3  # batches fill from several sources
    captured = registry.counter_total("frames_captured")
    dropped = registry.counter_total("frames_dropped")
    assert captured == registry.counter_total("frames_processed") + dropped
    shed = sum(registry.counter("frames_dropped", source=n, reason="shed").value for n in names)
    assert shed > len(results)  # most frames were dropped before decoding...
    assert registry.counter_total("frames_decoded") <= len(results) + len(names)  # ...and none decoded in vain
    assert all(registry.histogram("latency_ms", source=n).total == served[n] for n in names)


class SlowWorkerBackend(TwoSlotBackend):
    """Runs each batch in a worker thread that takes `seconds` (as ONNX Runtime's worker or a GPU
    stream does: the frame loop goes on meanwhile) and records when it ended."""

    def __init__(self, inner, seconds):
        super().__init__(inner)
        self.seconds = seconds
        self._done = threading.Event()

    def submit(self, n):
        assert self._pending is None, "one batch in flight at a time"
        slot = self._slot
        self.inner.input_buffer[:n] = self._inputs[slot][:n]
        self._done.clear()

        def work():
            self._outputs[slot][:n] = self.inner.infer(n)
            time.sleep(self.seconds)
            self.finished_at = time.monotonic()
            self._done.set()

        threading.Thread(target=work, daemon=True).start()
        self._pending = (slot, n)
        self._slot = 1 - slot
        self.input_buffer = self._inputs[slot ^ 1]

    def wait(self):
        self._done.wait()
        return super().wait()


def _latencies_with_slow_backend(dark_model, seconds, **pipeline):
    from edge_agent.agent import open_backend
    from edge_agent.pipeline import Pipeline

    names = ["cam{}".format(i) for i in range(6)]
    config = _dark_config(dark_model, [{"type": "synthetic", "name": n, "fps": 30, "width": 64, "height": 48,
                                        "seed": i} for i, n in enumerate(names)],
                          pipeline=dict(max_batch=4, max_wait_ms=5, **pipeline))
    registry = Registry()
    latencies = []

    class Latency(ResultSink):
        def on_result(self, result):
            latencies.append(result.latency_ms / 1000.0)

    with open_backend(config) as inner:
        pipeline = Pipeline(config, SlowWorkerBackend(inner, seconds), registry, [Latency()])
        pipeline.start()
        try:
            pipeline.run(threading.Event(), duration_s=3.0)
        finally:
            pipeline.stop()
    assert registry.counter_total("frames_captured") == (registry.counter_total("frames_processed")
                                                         + registry.counter_total("frames_dropped"))
    settled = latencies[len(latencies) // 3:]  # after the estimates settle
    return sorted(settled), [registry.counter("batches", size=str(n)).value for n in (4, 3, 2, 1)]


def test_sources_are_asked_just_in_time_for_the_running_batch_to_end(dark_model):
    """Six 30 fps cameras, a backend that takes 120 ms a batch in a worker thread. Asked when the
    previous batch was taken, a frame would wait for two running batches before its own (about
    three periods, 360 ms); asked shortly before the running batch ends, it waits for little but
    its own batch."""
    period = 0.12
    latencies, _ = _latencies_with_slow_backend(dark_model, period, latency_target_ms=0)
    median = latencies[len(latencies) // 2]
    assert period < median < 1.7 * period, latencies


def test_latency_target_bounds_the_batch(dark_model):
    """A 120 ms batch whatever its size cannot meet a 200 ms target once a frame waits for the
    running batch: the batcher learns that and takes one frame at a time, so a frame waits less."""
    _, batches = _latencies_with_slow_backend(dark_model, 0.12, latency_target_ms=200)
    assert batches[0] > 0  # the estimates came from a full batch
    assert batches[-1] >= 10 and batches[-1] > 3 * sum(batches[:-1]), batches
