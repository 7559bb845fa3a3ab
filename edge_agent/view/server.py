"""The technician's live view: one page with the latest frame of each source (overlays drawn),
fps / latency / health, the last verdicts, and a button that saves the current frame as a
calibration image.

Three parties, so the frame loop never waits:
  frame loop   `on_result`: at most `max_fps` times a second per source, copies the frame, its
               regions and the small defect mask into that source's slot (no encoding); appends
               the verdict to a bounded deque; O(frame copy), never blocks.
  encoder      a thread ("view-encoder") that draws the overlay and JPEG-encodes each new slot.
  HTTP server  a ThreadingHTTPServer on its own thread ("view-http") serving the page,
               /frame/<source>.jpg, /api/state and POST /api/calibration/<source>.
Both threads are supervised (edge_agent.supervisor): a crash is logged, counted, shown in the
agent's health and the thread restarted with backoff; the listening socket stays open meanwhile.
"""

import collections
import json
import logging
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional
from urllib.parse import parse_qs, unquote, urlparse

import cv2
import numpy as np

from edge_agent.inspection import class_colours, draw_overlay, verdict
from edge_agent.metrics import Registry
from edge_agent.pipeline import InferenceResult, ResultSink
from edge_agent.supervisor import SUPERVISOR, Task, serve
from edge_agent.view.config import ViewConfig
from edge_agent.view.page import PAGE

log = logging.getLogger(__name__)

StateProvider = Callable[[], Dict[str, Any]]


class _Slot:
    """One source's latest frame for the view: raw copy (loop), then its JPEG (encoder)."""

    __slots__ = ("image", "regions", "mask", "geometry", "index", "fresh", "jpeg", "seq", "ts")

    def __init__(self) -> None:
        self.image: Optional[np.ndarray] = None
        self.regions: List[Any] = []
        self.mask: Optional[np.ndarray] = None
        self.geometry: Any = None
        self.index = -1
        self.fresh = False
        self.jpeg: Optional[bytes] = None
        self.seq = 0
        self.ts = 0.0


class LiveView(ResultSink):
    def __init__(self, config: ViewConfig, sources: List[str], classes: List[str], registry: Registry,
                 calibration_dir: Path, state: Optional[StateProvider] = None) -> None:
        self.config = config
        self.registry = registry
        self.calibration_dir = calibration_dir
        self.state = state or (lambda: {})
        self.colours = class_colours(classes)
        self._slots: Dict[str, _Slot] = {name: _Slot() for name in sources}
        self._last_copy: Dict[str, float] = {name: 0.0 for name in sources}
        self._verdicts: Deque[Dict[str, Any]] = collections.deque(maxlen=config.verdicts)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._period = 1.0 / config.max_fps
        self._server: Optional[ThreadingHTTPServer] = None
        self._tasks: List[Task] = []
        self._skipped = registry.counter("view_frames_skipped")
        self._encoded = registry.counter("view_frames_encoded")
        self._saved = registry.counter("calibration_images_saved")

    # ---- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "LiveView":
        host, port = self.config.address or ("127.0.0.1", 0)
        view = self

        class Handler(_Handler):
            owner = view

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            from edge_agent.errors import ConfigError

            raise ConfigError("view.listen {}: cannot listen there ({}); pick a free port or another address"
                              .format(self.config.listen, exc.strerror or exc)) from None
        self._server.daemon_threads = True
        self._tasks = [SUPERVISOR.spawn("view-encoder", self._encode_loop),
                       SUPERVISOR.spawn("view-http", serve(self._server))]
        log.info("live view on %s", self.url)
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2] if self._server else ("?", 0)
        token = "?token=" + self.config.token.get_secret_value() if self.config.token else ""
        return "http://{}:{}/{}".format(host, port, token)

    def close(self) -> None:
        for task in self._tasks:
            task.stop()
        self._wake.set()
        for task in self._tasks:
            task.join(5.0)
        if self._server is not None:
            self._server.server_close()

    # ---- frame loop ---------------------------------------------------------------------------
    def on_result(self, result: InferenceResult) -> None:
        frame = result.frame
        self._verdicts.append({"source": frame.source, "index": frame.index, "ts": round(frame.timestamp, 3),
                               "verdict": verdict(result.regions), "defects": len(result.regions),
                               "classes": sorted({r.cls for r in result.regions}),
                               "latency_ms": round(result.latency_ms, 1)})
        now = time.monotonic()
        if now - self._last_copy[frame.source] < self._period:
            return
        slot = self._slots[frame.source]
        if not self._lock.acquire(blocking=False):  # the encoder is reading this moment: skip, never wait
            self._skipped.inc()
            return
        try:
            if slot.image is None or slot.image.shape != frame.image.shape:
                slot.image = np.empty_like(frame.image)
            np.copyto(slot.image, frame.image)
            mask = result.defect_mask
            if mask is not None:
                if slot.mask is None or slot.mask.shape != mask.shape:
                    slot.mask = np.empty_like(mask)
                np.copyto(slot.mask, mask)
            slot.geometry = result.mask_geometry
            slot.regions = list(result.regions)
            slot.index = frame.index
            slot.fresh = True
        finally:
            self._lock.release()
        self._last_copy[frame.source] = now
        self._wake.set()

    # ---- encoder thread -----------------------------------------------------------------------
    def _encode_loop(self, stop: threading.Event) -> None:
        from edge_agent.postprocess import mask_in_frame

        while not stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            for slot in self._slots.values():
                with self._lock:
                    if not slot.fresh:
                        continue
                    image = slot.image.copy()
                    regions = slot.regions
                    mask = mask_in_frame(slot.mask, slot.geometry) if slot.mask is not None else None
                    slot.fresh = False
                overlay = draw_overlay(image, regions, self.colours, mask)
                ok, data = cv2.imencode(".jpg", overlay, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
                if ok:
                    slot.jpeg, slot.seq, slot.ts = data.tobytes(), slot.seq + 1, time.time()
                    self._encoded.inc()

    # ---- what the HTTP handler asks -----------------------------------------------------------
    def snapshot(self) -> Dict[str, Any]:
        state = dict(self.state())
        state["sources"] = {name: {"seq": slot.seq, "ts": slot.ts, "index": slot.index,
                                   "defects": len(slot.regions)} for name, slot in self._slots.items()}
        state["verdicts"] = list(reversed(self._verdicts))
        state["calibration_saved"] = int(self.registry.counter_total("calibration_images_saved"))
        return state

    def jpeg(self, source: str) -> Optional[bytes]:
        slot = self._slots.get(source)
        return slot.jpeg if slot is not None else None

    def save_calibration(self, source: str) -> Path:
        slot = self._slots.get(source)
        if slot is None or slot.image is None:
            raise KeyError(source)
        with self._lock:
            image = slot.image.copy()
            index = slot.index
        self.calibration_dir.mkdir(parents=True, exist_ok=True)
        path = self.calibration_dir / "{}-{}-{}.png".format(source, time.strftime("%Y%m%d-%H%M%S"), index)
        tmp = path.with_suffix(".tmp.png")
        if not cv2.imwrite(str(tmp), image):
            raise OSError("cannot write {}".format(tmp))
        tmp.replace(path)
        self._saved.inc()
        log.info("calibration image saved: %s", path)
        return path

    def authorized(self, query: Dict[str, List[str]], headers: Any) -> bool:
        if self.config.token is None:
            return True
        token = self.config.token.get_secret_value()
        given = (query.get("token") or [""])[0] or headers.get("X-Token", "")
        return secrets.compare_digest(given.encode(), token.encode())


class _Handler(BaseHTTPRequestHandler):
    owner: LiveView
    server_version = "edge-agent-view"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("view: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        if not self.owner.authorized(parse_qs(url.query), self.headers):
            self._send(403, b"forbidden: open the page with ?token=TOKEN (view.token)\n", "text/plain")
            return
        if url.path == "/":
            self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif url.path == "/api/state":
            self._send(200, json.dumps(self.owner.snapshot()).encode("utf-8"), "application/json")
        elif url.path.startswith("/frame/") and url.path.endswith(".jpg"):
            data = self.owner.jpeg(unquote(url.path[len("/frame/"):-len(".jpg")]))
            if data is None:
                self._send(404, b"no frame yet\n", "text/plain")
            else:
                self._send(200, data, "image/jpeg")
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        if not self.owner.authorized(parse_qs(url.query), self.headers):
            self._send(403, b"forbidden\n", "text/plain")
            return
        if not url.path.startswith("/api/calibration/"):
            self._send(404, b"not found\n", "text/plain")
            return
        source = unquote(url.path[len("/api/calibration/"):])
        try:
            path = self.owner.save_calibration(source)
        except KeyError:
            self._send(404, json.dumps({"error": "no frame from source {!r} yet".format(source)}).encode(),
                       "application/json")
            return
        except OSError as exc:
            self._send(500, json.dumps({"error": str(exc)}).encode(), "application/json")
            return
        self._send(200, json.dumps({"saved": str(path)}).encode(), "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)
