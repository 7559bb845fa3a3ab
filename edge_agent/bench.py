"""`edge-agent bench`: backend-only throughput vs end-to-end pipeline throughput, in one run.

Backend only: one preprocessed batch fed to `infer` in a tight loop. End to end: the same open
backend behind the full pipeline (a synthetic video file decoded by OpenCV in its source thread,
preprocess, infer, postprocess, metrics). The two alternate for several rounds so that both see
the same machine load. The ratio is the share of the model's speed the pipeline keeps.
"""

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import cv2

from edge_agent.agent import running_pipeline
from edge_agent.config import AgentConfig
from edge_agent.errors import EdgeAgentError
from edge_agent.metrics import Registry
from edge_agent.preprocess import Preprocessor
from edge_agent.sources.config import VideoSourceConfig
from edge_agent.synthetic import SyntheticGenerator

WARMUP = 20


def write_synthetic_video(path: Path, frames: int, width: int = 320, height: int = 240, seed: int = 7) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    if not writer.isOpened():
        raise EdgeAgentError("OpenCV cannot write {} (no MJPG encoder in this build)".format(path))
    generator = SyntheticGenerator(width=width, height=height, seed=seed)
    try:
        for index in range(frames):
            writer.write(generator.sample(index).image)
    finally:
        writer.release()
    return path


def run_bench(config: AgentConfig, frames: int, rounds: int = 3) -> Dict[str, Any]:
    """Alternate `rounds` backend-only and end-to-end measurements of `frames` frames each on the same
    open backend, so both see the same machine load; report the medians and their ratio."""
    batch = config.pipeline.max_batch
    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as folder:
        video = write_synthetic_video(Path(folder) / "parts.avi", 200)
        sources = [VideoSourceConfig(name="bench{}".format(i), path=video, loop=True) for i in range(batch)]
        pipeline_config = config.model_copy(update={"sources": sources})
        stop = threading.Event()
        backend_fps: List[float] = []
        pipeline_fps: List[float] = []
        with running_pipeline(pipeline_config, Registry()) as pipeline, pipeline.backend.bind_thread():
            backend = pipeline.backend
            frame = SyntheticGenerator(seed=7).sample(0).image
            preprocess = Preprocessor(config.model.input)
            for _ in range(max(1, backend.slots)):  # every ring slot holds a real frame
                for i in range(batch):
                    preprocess(frame, backend.input_buffer[i])
                backend.infer(batch)
            pipeline.run(stop, max_frames=WARMUP * batch)
            for _ in range(rounds):
                calls = max(1, frames // batch)
                started = time.perf_counter()
                for _ in range(calls):
                    backend.infer(batch)
                backend_fps.append(calls * batch / (time.perf_counter() - started))
                before = pipeline.frames
                started = time.perf_counter()
                done = pipeline.run(stop, max_frames=before + calls * batch) - before
                pipeline_fps.append(done / (time.perf_counter() - started))
    backend_median, pipeline_median = statistics.median(backend_fps), statistics.median(pipeline_fps)
    return {
        "backend": config.backend.type,
        "precision": config.backend.precision,
        "batch": batch,
        "frames": frames,
        "rounds": rounds,
        "source": "video file 320x240 MJPG, {} source(s)".format(batch),
        "backend_fps": round(backend_median, 2),
        "pipeline_fps": round(pipeline_median, 2),
        "ratio": round(pipeline_median / backend_median, 4),
        "backend_fps_rounds": [round(v, 2) for v in backend_fps],
        "pipeline_fps_rounds": [round(v, 2) for v in pipeline_fps],
    }
