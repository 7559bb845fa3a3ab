"""Zero allocations in the steady state, on the ONNX Runtime path this machine can run: no I/O
buffer is created after warm-up (counted by the buffer layer) and Python-level memory stays flat
(tracemalloc) over thousands of frames through the whole pipeline."""

import gc
import json
import subprocess
import sys
import threading
import tracemalloc

import cv2
from runtime_images import write_images

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.metrics import Registry
from edge_agent.pipeline import ResultSink

WARMUP_FRAMES = 300
MEASURED_FRAMES = 3000
# Flat: less than one pointer (8 bytes) per frame over the second half of the measured frames. The
# pipeline, warm, grows by about 4 KB in total there (caches settling); a list that keeps one
# reference per frame would add 12 KB and fail.
FLAT_BYTES = 8 * MEASURED_FRAMES // 2


class CountingSink(ResultSink):
    def __init__(self):
        self.count = 0
        self.regions = 0

    def on_result(self, result):
        self.count += 1
        self.regions += len(result.regions)


def test_pipeline_allocates_nothing_per_frame(tmp_path, dark_model):
    folder = write_images(tmp_path / "images", cv2)
    config = load_config(None, {
        "model": {"path": str(dark_model), "input": {"width": 64, "height": 64},
                  "output": {"classes": ["background", "dark"]}, "thresholds": {"min_area_px": 50}},
        "pipeline": {"max_batch": 2},
        "sources": [{"type": "folder", "name": "a", "path": str(folder), "loop": True},
                    {"type": "folder", "name": "b", "path": str(folder), "loop": True}]})
    sink = CountingSink()
    stop = threading.Event()
    with running_pipeline(config, Registry(), [sink]) as pipeline:
        pool = pipeline.backend.pool
        pipeline.run(stop, max_frames=WARMUP_FRAMES)
        allocations_after_warmup = (pool.stats.host_allocations, pool.stats.device_allocations)
        gc.collect()
        tracemalloc.start()
        try:
            pipeline.run(stop, max_frames=WARMUP_FRAMES + MEASURED_FRAMES // 2)
            gc.collect()
            middle = tracemalloc.get_traced_memory()[0]
            pipeline.run(stop, max_frames=WARMUP_FRAMES + MEASURED_FRAMES)
            gc.collect()
            end = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    assert sink.count == WARMUP_FRAMES + MEASURED_FRAMES
    assert sink.regions >= sink.count  # every image has a dark square: the frames were really inferred
    assert pool.stats.after_seal == 0
    # input + output for each of memory.slots (2) ring slots, all made at load
    assert (pool.stats.host_allocations, pool.stats.device_allocations) == allocations_after_warmup == (4, 0)
    growth = end - middle
    assert growth < FLAT_BYTES, "Python memory grew {} bytes over {} frames".format(growth, MEASURED_FRAMES // 2)


RINGS = """
import json
from edge_agent.metrics import Registry
from edge_agent.status import rss_mb

registry = Registry()
made_at = rss_mb()
rings = [registry.histogram("stage_ms", stage="s{}".format(n)) for n in range(10)]
filled_at = rss_mb()
for ring in rings:
    for _ in range(65536):  # one full turn of every ring
        ring.observe(1.5)
print(json.dumps({"made": filled_at - made_at, "filled": rss_mb() - filled_at}))
"""


def test_metric_rings_are_resident_from_the_start():
    """A histogram's sample ring (512 kB) is written through when it is made: zeroed pages that
    became resident only as the ring filled made the daemon's RSS creep up for its first hour
    (the 60-minute soak's growth), which looks like a leak on every dashboard. In a fresh
    interpreter: in this one, freed pages already resident would hide the difference."""
    done = subprocess.run([sys.executable, "-c", RINGS], capture_output=True, text=True, timeout=120, check=True)
    grown = json.loads(done.stdout)
    assert grown["made"] > 4.0, grown  # 10 x 512 kB, resident now
    assert grown["filled"] < 1.0, grown  # and nothing more as they fill
