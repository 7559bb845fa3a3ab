"""`edge-agent bench`: backend-only throughput vs end-to-end pipeline throughput, in one run.

Backend only: one preprocessed batch fed to `infer` in a tight loop. End to end: the same model
behind the full pipeline (a synthetic video file decoded by OpenCV, preprocess, infer,
postprocess, metrics). The ratio is the share of the model's speed the pipeline keeps.
"""

import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict

import cv2

from edge_agent.agent import open_backend, running_pipeline
from edge_agent.config import AgentConfig
from edge_agent.errors import EdgeAgentError
from edge_agent.preprocess import Preprocessor
from edge_agent.sources.config import VideoSourceConfig
from edge_agent.synthetic import SyntheticGenerator
from edge_agent.telemetry.metrics import Registry

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


def run_bench(config: AgentConfig, frames: int) -> Dict[str, Any]:
    batch = config.pipeline.max_batch
    with open_backend(config) as backend:
        frame = SyntheticGenerator(seed=7).sample(0).image
        preprocess = Preprocessor(config.model.input)
        for i in range(batch):
            preprocess(frame, backend.input_buffer[i])
        for _ in range(WARMUP):
            backend.infer(batch)
        calls = max(1, frames // batch)
        started = time.perf_counter()
        for _ in range(calls):
            backend.infer(batch)
        backend_fps = calls * batch / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory(prefix="edge-agent-bench-") as folder:
        video = write_synthetic_video(Path(folder) / "parts.avi", frames + WARMUP)
        sources = [VideoSourceConfig(name="bench{}".format(i), path=video) for i in range(batch)]
        pipeline_config = config.model_copy(update={"sources": sources})
        registry = Registry()
        stop = threading.Event()
        with running_pipeline(pipeline_config, registry) as pipeline:
            pipeline.run(stop, max_frames=WARMUP * batch)
            started = time.perf_counter()
            done = pipeline.run(stop, max_frames=(WARMUP + frames) * batch) - WARMUP * batch
            pipeline_fps = done / (time.perf_counter() - started)
    return {
        "backend": config.backend.type,
        "precision": config.backend.precision,
        "batch": batch,
        "frames": frames,
        "source": "video file {}x{} MJPG, {} source(s)".format(320, 240, batch),
        "backend_fps": round(backend_fps, 2),
        "pipeline_fps": round(pipeline_fps, 2),
        "ratio": round(pipeline_fps / backend_fps, 4),
    }
