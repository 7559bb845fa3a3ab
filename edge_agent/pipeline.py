"""The frame loop: take a batch from the sources' slots, preprocess into the backend's input
buffer, infer, postprocess, hand results to the sinks, record per-stage latencies.

One thread runs the loop; nothing in it allocates arrays per frame except OpenCV's connected
components label image, and nothing waits on the network (sinks must only enqueue).
"""

import logging
import os
import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from edge_agent.backends.base import Backend
from edge_agent.batch_timing import AskTiming
from edge_agent.config import AgentConfig
from edge_agent.errors import ConfigError
from edge_agent.metrics import Registry
from edge_agent.postprocess import DefectRegion, Postprocessor, mask_in_frame
from edge_agent.preprocess import Geometry, Preprocessor
from edge_agent.sanity import SanityWatch
from edge_agent.signal_event import StopEvent
from edge_agent.sources import Frame, FrameBoard, SourceRunner
from edge_agent.tiling import Stitcher, TilePlan, expected_tiles

log = logging.getLogger(__name__)

STAGES = ("preprocess", "infer", "postprocess", "sink")


class InferenceResult(NamedTuple):
    """One frame's outcome. `frame.image` and `defect_mask` are only valid during the sink call: copy
    what you keep. `notes` lets an earlier sink tell later ones about this frame (the evidence store
    names its file there for the MQTT event and the jsonl line)."""

    frame: Frame
    regions: List[DefectRegion]
    geometry: Geometry
    latency_ms: float  # capture to result
    batch_size: int
    defect_mask: Optional[np.ndarray] = None  # 1 where a reported defect lies, at the output's resolution
    mask_geometry: Optional[Geometry] = None  # frame <-> defect_mask pixels
    notes: Optional[Dict[str, Any]] = None

    def frame_mask(self) -> Optional[np.ndarray]:
        """The defect mask at the frame's size (allocates: for sinks off the live path or sampled)."""
        if self.defect_mask is None or self.mask_geometry is None:
            return None
        return mask_in_frame(self.defect_mask, self.mask_geometry)


class _Batch:
    """Frames taken together and where their pixels went; two alternate in the frame loop. Without
    tiling frame i fills input row i; with tiling it fills rows first[i] .. first[i] + tiles - 1."""

    __slots__ = ("frames", "geometries", "plans", "rows", "submitted")

    def __init__(self, max_batch: int) -> None:
        self.frames: List[Frame] = []
        self.geometries: List[Optional[Geometry]] = [None] * max_batch
        self.plans: List[Optional[TilePlan]] = [None] * max_batch
        self.rows = 0  # input rows used: frames, or tiles of all frames
        self.submitted = 0.0


class _Swap:
    """A backend waiting to replace the serving one at the next batch boundary."""

    __slots__ = ("backend", "config", "preprocess", "postprocess", "done", "old", "at_frame")

    def __init__(self, backend: Backend, config: AgentConfig) -> None:
        self.backend = backend
        self.config = config
        # built here, on the caller's thread: a model that does not fit fails before the loop waits
        self.preprocess = Preprocessor(config.model.input, backend.input_buffer.dtype)
        self.postprocess = Postprocessor(config.model, backend.output_spec.shape[1:])
        self.done = threading.Event()
        self.old: Optional[Backend] = None
        self.at_frame = -1


class ResultSink:
    """Receives every result on the frame loop's thread; must return quickly (enqueue, never block)."""

    def on_result(self, result: InferenceResult) -> None:
        pass


class Pipeline:
    def __init__(self, config: AgentConfig, backend: Backend, registry: Registry,
                 sinks: Sequence[ResultSink] = ()) -> None:
        if backend.output_spec is None or backend.input_buffer is None:
            raise ValueError("open the backend before building the pipeline")
        self.config = config
        self.backend = backend
        self.registry = registry
        self.sinks = list(sinks)
        self.preprocess = Preprocessor(config.model.input, backend.input_buffer.dtype)
        self.postprocess = Postprocessor(config.model, backend.output_spec.shape[1:])
        self._use_tiling(config, backend)
        self.sanity = SanityWatch(config.sanity, config.model, registry) if config.sanity.enabled else None
        self._notes: Dict[str, Any] = {}  # one dict, cleared per frame
        names = [s.name for s in config.sources]
        settings = config.pipeline
        decoders = settings.decode_threads or os.cpu_count() or 1
        self.board = FrameBoard(names, registry, demand=max(1, settings.max_batch // self._tiles),
                                decode_threads=decoders)
        self._timing = AskTiming(decoders)
        self.runners = [SourceRunner(s, self.board, registry, nice=settings.decode_nice) for s in config.sources]
        self._batches = (_Batch(config.pipeline.max_batch), _Batch(config.pipeline.max_batch))
        self._stage_ms = {s: registry.histogram("stage_ms", stage=s) for s in STAGES}
        self._latency = registry.histogram("latency_ms")
        self._source_latency = {n: registry.histogram("latency_ms", source=n) for n in names}
        self._processed = {n: registry.counter("frames_processed", source=n) for n in names}
        self._ng = {n: registry.counter("frames_ng", source=n) for n in names}  # frames with a defect
        self._inference_batches = registry.counter("inference_batches")
        self._batch_sizes = [registry.counter("batches", size=str(n)) for n in range(1, settings.max_batch + 1)]
        self._items = registry.counter("inference_items")
        self._defects = {c: registry.counter("defects", **{"class": c}) for c in config.model.output.defect_classes}
        self._truth_intersection = registry.counter("truth_intersection_px", unit="px")
        self._truth_union = registry.counter("truth_union_px", unit="px")
        self.frames = 0
        self._swap: Optional[_Swap] = None
        self._swaps = registry.counter("model_swaps")
        self._last_swap_frame = -1
        self._swap_lock = threading.Lock()
        self._looping = False
        # monotonic time of the loop's last iteration (idle ones too): the service's watchdog
        # feeds systemd only while this moves, so a stuck loop gets the service restarted
        self.heartbeat = time.monotonic()

    def start(self) -> None:
        for runner in self.runners:
            runner.start()

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        for runner in self.runners:
            runner.join()
        self.board.discard_unserved()

    def run(self, stop: StopEvent, max_frames: Optional[int] = None,
            duration_s: Optional[float] = None) -> int:
        """Process frames until `stop` is set, the sources are exhausted, or a limit is reached.

        Two batches alternate: while the backend runs one (`submit`), the loop takes and
        preprocesses the next into the backend's next input slot; a backend that `overlaps` gets
        that next batch submitted before the finished one is postprocessed. Frames in flight are
        always finished, so a stop never loses a frame that was taken from a source.

        The backend's device is bound to the calling thread for the whole loop (a CUDA context is
        per thread: the daemon opens the backend on its main thread and loops on another). A
        backend swapped in mid-loop binds itself call by call (BufferPool.bind_thread)."""
        with self._swap_lock:
            self._looping = True
        try:
            with self.backend.bind_thread():
                return self._loop(stop, max_frames, duration_s)
        finally:
            with self._swap_lock:
                self._looping = False
                if self._swap is not None:  # the loop ended with a swap pending: do it here
                    self._apply_swap()

    def _loop(self, stop: StopEvent, max_frames: Optional[int], duration_s: Optional[float]) -> int:
        end = time.monotonic() + duration_s if duration_s is not None else None
        staged = self._batches[0]
        in_flight: Optional[_Batch] = None
        while True:
            self.heartbeat = time.monotonic()
            swapping = self._swap is not None
            taken = self.frames + len(staged.frames) + (len(in_flight.frames) if in_flight else 0)
            limited = (max_frames is not None and taken >= max_frames) or (
                end is not None and time.monotonic() >= end)
            if not staged.frames and not stop.is_set() and not limited and not swapping:
                limit = self._batch_limit()
                if max_frames is not None:
                    limit = min(limit, max_frames - taken)
                self._stage(staged, limit, in_flight, stop)
            if in_flight is None:
                if swapping and not staged.frames:  # nothing taken, nothing in flight: the boundary
                    with self._swap_lock:
                        self._apply_swap()
                    continue
                if staged.frames:
                    self._submit(staged)
                    in_flight, staged = staged, self._other(staged)
                elif stop.is_set() or limited:
                    break
                elif self.board.exhausted:
                    log.info("every source has finished")
                    break
                continue
            outputs = self._wait(in_flight)
            done, in_flight = in_flight, None
            if staged.frames and self.backend.overlaps:
                self._submit(staged)
                in_flight, staged = staged, done
            self._finish(done, outputs)
        return self.frames

    def swap_backend(self, backend: Backend, config: AgentConfig, timeout_s: float = 30.0) -> Optional[Backend]:
        """Serve `backend` (open, for `config`'s model) from the next batch on; returns the previous
        backend, which the caller closes. The frame loop finishes the batches it took with the old
        backend, takes nothing new meanwhile, then switches: no frame is lost or processed twice.
        Raises TimeoutError (and serves on with the old backend) when the loop does not get there."""
        if backend.output_spec is None or backend.input_buffer is None:
            raise ValueError("open the new backend before swapping it in")
        request = _Swap(backend, config)
        with self._swap_lock:
            if self._swap is not None:
                raise RuntimeError("another backend swap is in progress")
            self._swap = request
            if not self._looping:
                self._apply_swap()
        if not request.done.wait(timeout_s):
            with self._swap_lock:
                if not request.done.is_set():
                    self._swap = None
                    raise TimeoutError("the frame loop did not reach a batch boundary within {:.0f} s".format(
                        timeout_s))
        return request.old

    @property
    def swapped_at_frame(self) -> int:
        """Frames processed before the last swap (-1: none yet)."""
        return self._last_swap_frame

    def _apply_swap(self) -> None:
        """On the frame loop's thread (or with the loop stopped), holding _swap_lock."""
        request, self._swap = self._swap, None
        if request is None:
            return
        config, backend = request.config, request.backend
        request.old, self.backend = self.backend, backend
        self.config, self.preprocess, self.postprocess = config, request.preprocess, request.postprocess
        self._use_tiling(config, backend)
        self.board.demand = max(1, config.pipeline.max_batch // self._tiles)
        if self.sanity is not None:
            self.sanity.close()  # the old model's warnings no longer hold
        self.sanity = SanityWatch(config.sanity, config.model, self.registry) if config.sanity.enabled else None
        for name in config.model.output.defect_classes:
            if name not in self._defects:
                self._defects[name] = self.registry.counter("defects", **{"class": name})
        self._last_swap_frame = request.at_frame = self.frames
        self._swaps.inc()
        log.info("backend swapped after frame %d: now %s %s (%s)", self.frames, backend.name,
                 backend.model.precision, backend.model.source.name)
        request.done.set()

    def _use_tiling(self, config: AgentConfig, backend: Backend) -> None:
        """Tiling state for a model (at start and when a new backend is swapped in)."""
        tiling = config.model.input.tiling
        self.stitcher = None if tiling is None else Stitcher(
            tiling, backend.output_spec.shape[1:], config.model.output.layout)
        self._tiled_post: Dict[Tuple[int, int], Postprocessor] = {}  # one per stitched size
        self._tiles = expected_tiles(config) or 1  # per frame; learnt from the first frame when unknown

    def _batch_limit(self) -> int:
        """Frames in the next batch: up to max_batch (all tiles of each), fewer when the measured
        times say a full batch would miss pipeline.latency_target_ms; the board asks as many."""
        settings = self.config.pipeline
        rows = self._timing.batch_limit(max(settings.max_batch, self._tiles), self._tiles,
                                        settings.latency_target_ms / 1000.0, self.board.decode_s)
        self.board.demand = max(1, rows // self._tiles)
        return self.board.demand

    def _other(self, batch: "_Batch") -> "_Batch":
        return self._batches[1] if batch is self._batches[0] else self._batches[0]

    def _stage(self, batch: "_Batch", limit: int, in_flight: Optional["_Batch"], stop: StopEvent) -> None:
        """Take up to `limit` frames and preprocess them into the backend's current input slot.
        While a batch is in flight the take still waits up to max_wait_ms for asked sources: the
        backend is busy anyway, and a fuller batch serves more cameras. While a batch runs on a
        backend that overlaps, the sources are asked just in time for the batch's end
        (batch_timing.py): the frames are grabbed later and wait less."""
        running = (in_flight.rows, in_flight.submitted) if in_flight is not None and self.backend.overlaps else None
        wait_s = self._timing.ask(self.board, running, limit, self.config.pipeline.max_wait_ms / 1000.0, stop)
        if wait_s is None:
            return
        if in_flight is None:
            wait_s = 0.1
        cost = None if self.stitcher is None else self._tile_count
        if self.board.take(limit, wait_s, wait_s, batch.frames, cost=cost,
                           capacity=self.config.pipeline.max_batch) == 0:
            return
        buffer = self.backend.input_buffer
        started = time.monotonic()
        row = 0
        for i, frame in enumerate(batch.frames):
            if self.stitcher is None:
                batch.geometries[i] = self.preprocess(frame.image, buffer[row])
                row += 1
                continue
            height, width = frame.image.shape[:2]
            plan = batch.plans[i] = self.stitcher.plan(width, height)
            for x, y, w, h in plan.windows:
                self.preprocess(frame.image[y:y + h, x:x + w], buffer[row])
                row += 1
        batch.rows = row
        elapsed = time.monotonic() - started
        self._timing.preprocessed(len(batch.frames), elapsed)
        self._stage_ms["preprocess"].observe(elapsed * 1000.0)

    def _tile_count(self, frame: Frame) -> int:
        """Input rows that `frame` needs (the board takes only frames whose tiles all fit)."""
        height, width = frame.image.shape[:2]
        tiles = len(self.stitcher.plan(width, height).windows)
        if tiles > self.config.pipeline.max_batch:
            raise ConfigError(
                "a {}x{} frame from source {} makes {} tiles of {}x{} (overlap {}) but pipeline.max_batch is {}: "
                "the tiles of one frame go in one batch, so set pipeline.max_batch to at least {} or use larger "
                "tiles (model.input.tiling.tile)".format(
                    width, height, frame.source, tiles, *self.stitcher.tiling.tile, self.stitcher.tiling.overlap,
                    self.config.pipeline.max_batch, tiles))
        if tiles != self._tiles:
            self._tiles = tiles
            self.board.demand = max(1, self.config.pipeline.max_batch // tiles)
        return tiles

    def _submit(self, batch: "_Batch") -> None:
        batch.submitted = time.monotonic()
        self.backend.submit(batch.rows)

    def _wait(self, batch: "_Batch") -> np.ndarray:
        waited_from = time.monotonic()
        outputs = self.backend.wait()
        self._timing.batch_ended(batch.rows, batch.submitted, waited_from, time.monotonic(),
                                 self.backend.finished_at)
        self._stage_ms["infer"].observe((time.monotonic() - batch.submitted) * 1000.0)
        self._inference_batches.inc()
        self._batch_sizes[batch.rows - 1].inc()
        self._items.inc(batch.rows)
        return outputs

    def _finish(self, batch: "_Batch", outputs: np.ndarray) -> None:
        started = time.monotonic()
        n = len(batch.frames)
        row = 0
        for i, frame in enumerate(batch.frames):
            t3 = time.monotonic()
            if self.stitcher is None:
                postprocess, output, geometry = self.postprocess, outputs[row], batch.geometries[i]
                row += 1
            else:
                postprocess, output, geometry = self._stitched(frame, batch.plans[i], outputs[row:])
                row += len(batch.plans[i].windows)
            regions = postprocess(output, geometry)
            if self.sanity is not None:
                self.sanity.observe(output, regions, frame.image.shape[0] * frame.image.shape[1])
            if frame.truth is not None:
                self._score_against_truth(frame, postprocess, geometry)
            t4 = time.monotonic()
            latency = (t4 - frame.captured) * 1000.0
            self._notes.clear()
            result = InferenceResult(frame, regions, geometry, latency, n, postprocess.defect_mask,
                                     postprocess.output_geometry(geometry), self._notes)
            for sink in self.sinks:
                sink.on_result(result)
            t5 = time.monotonic()
            self._stage_ms["postprocess"].observe((t4 - t3) * 1000.0)
            self._stage_ms["sink"].observe((t5 - t4) * 1000.0)
            self._latency.observe(latency)
            self._source_latency[frame.source].observe(latency)
            self._processed[frame.source].inc()
            if regions:
                self._ng[frame.source].inc()
            for region in regions:
                self._defects[region.cls].inc()
            self.frames += 1
        batch.frames.clear()
        self._timing.finished(time.monotonic() - started)

    def _stitched(self, frame: Frame, plan: TilePlan, outputs: np.ndarray) -> Tuple[Postprocessor, np.ndarray,
                                                                                     Geometry]:
        """The frame's tiles' outputs stitched into one, its postprocessor and its geometry."""
        height, width = frame.image.shape[:2]
        stitched = self.stitcher.stitch(outputs[:len(plan.windows)], plan, width, height)
        postprocess = self._tiled_post.get((width, height))
        if postprocess is None:
            # the stitched geometry maps stitched output pixels to frame pixels directly
            postprocess = self._tiled_post[(width, height)] = Postprocessor(self.config.model, stitched.shape,
                                                                            ratio=(1.0, 1.0))
        return postprocess, stitched, Geometry(plan.scale_x, plan.scale_y, 0, 0, 0, 0, width, height)

    def _score_against_truth(self, frame: Frame, postprocess: Postprocessor, geometry: Geometry) -> None:
        predicted = postprocess.frame_mask(geometry).astype(bool)
        truth = frame.truth > 0
        self._truth_intersection.inc(int((predicted & truth).sum()))
        self._truth_union.inc(int((predicted | truth).sum()))
