"""Frame readers, one per source type. A reader opens, reads frames and closes; the runner
around it (runner.py) does threads, pacing, retries and hand-off."""

import abc
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any, List, Optional, Tuple

import cv2
import numpy as np

from edge_agent.sources.config import (
    CameraSourceConfig,
    FolderSourceConfig,
    GstreamerSourceConfig,
    RtspSourceConfig,
    SyntheticSourceConfig,
    VideoSourceConfig,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class SourceError(Exception):
    """The source cannot deliver frames now; the text says why (the runner retries)."""


class EndOfStream(Exception):
    """A finite source (file, folder) has no more frames."""


class Reader(abc.ABC):
    live = False  # a live source drops old frames rather than holding the producer back

    def open(self) -> None:
        """Open the device or file; raise SourceError with the reason on failure."""
        return None

    @abc.abstractmethod
    def read(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The next frame (BGR uint8) and its ground-truth mask if known."""

    def close(self) -> None:
        return None


class SyntheticReader(Reader):
    def __init__(self, config: SyntheticSourceConfig) -> None:
        from edge_agent.synthetic import SyntheticGenerator

        self._generator = SyntheticGenerator(
            width=config.width, height=config.height, seed=config.seed, defect_rate=config.defect_rate,
            lighting=config.lighting, noise=config.noise)
        self._index = 0

    def read(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        sample = self._generator.sample(self._index)
        self._index += 1
        return sample.image, sample.mask


class FolderReader(Reader):
    def __init__(self, config: FolderSourceConfig) -> None:
        self._folder = Path(config.path)
        self._loop = config.loop
        self._files: List[Path] = []
        self._next = 0

    def open(self) -> None:
        try:
            self._files = sorted(p for p in self._folder.iterdir()
                                 if p.suffix.lower() in IMAGE_SUFFIXES and regular_file(p))
        except OSError as exc:
            raise SourceError("cannot list folder {}: {}".format(self._folder, exc.strerror or exc)) from None
        if not self._files:
            raise SourceError("folder {} holds no images ({})".format(self._folder, ", ".join(IMAGE_SUFFIXES)))

    def read(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        for _ in range(len(self._files)):
            if self._next >= len(self._files):
                if not self._loop:
                    raise EndOfStream()
                self._next = 0
            path = self._files[self._next]
            self._next += 1
            # checked again at read time: a FIFO or device swapped in under an image's name would
            # block imread (and this source) forever
            image = cv2.imread(str(path), cv2.IMREAD_COLOR) if regular_file(path) else None
            if image is not None:
                return image, None
            # one unreadable file must not stop the folder
            log.warning("source folder %s: cannot decode %s (corrupt or not an image); skipped", self._folder, path)
        if self._next >= len(self._files) and not self._loop:
            raise EndOfStream()
        raise SourceError("no image in {} could be decoded".format(self._folder))


class CaptureReader(Reader):
    """OpenCV VideoCapture for video files, USB cameras, RTSP and GStreamer pipelines."""

    def __init__(self, target: Any, backend: int, describe: str, live: bool, loop: bool = False,
                 size: Tuple[Optional[int], Optional[int]] = (None, None), file: bool = False) -> None:
        self._target = target
        self._file = file
        self._backend = backend
        self._describe = describe
        self.live = live
        self._loop = loop
        self._size = size
        self._capture: Any = None

    def open(self) -> None:
        if self._file and not regular_file(Path(self._target)):
            what = "does not exist" if not os.path.lexists(self._target) else "is not a regular file"
            raise SourceError("{} {}".format(self._describe, what))
        capture = cv2.VideoCapture(self._target, self._backend)
        if not capture.isOpened():
            capture.release()
            raise SourceError("cannot open {}".format(self._describe) + _open_hint(self._target, self._backend))
        width, height = self._size
        if width:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self._capture = capture

    def read(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        ok, image = self._capture.read()
        if not ok and not self.live and self._loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
        if not ok:
            if not self.live:
                raise EndOfStream()
            raise SourceError("{} stopped delivering frames".format(self._describe))
        return image, None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def open_reader(config: Any) -> Reader:
    if isinstance(config, SyntheticSourceConfig):
        return SyntheticReader(config)
    if isinstance(config, FolderSourceConfig):
        return FolderReader(config)
    if isinstance(config, VideoSourceConfig):
        return CaptureReader(str(config.path), cv2.CAP_ANY, "video file {}".format(config.path),
                             live=False, loop=config.loop, file=True)
    if isinstance(config, CameraSourceConfig):
        target = config.device
        return CaptureReader(target, cv2.CAP_V4L2 if isinstance(target, str) else cv2.CAP_ANY,
                             "camera {}".format(target), live=True, size=(config.width, config.height))
    if isinstance(config, RtspSourceConfig):
        return CaptureReader(config.url, cv2.CAP_FFMPEG, "RTSP stream {}".format(mask_url(config.url)), live=True)
    if isinstance(config, GstreamerSourceConfig):
        return CaptureReader(config.pipeline, cv2.CAP_GSTREAMER, "GStreamer pipeline", live=True)
    raise TypeError("unknown source config {!r}".format(config))


def regular_file(path: Path) -> bool:
    """True for a regular file (through symlinks); FIFOs, sockets and devices would block a read."""
    try:
        return stat.S_ISREG(os.stat(str(path)).st_mode)
    except OSError:
        return False


def mask_url(url: str) -> str:
    """rtsp://user:secret@host/ -> rtsp://user:***@host/ for logs."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def _open_hint(target: Any, backend: int) -> str:
    if backend == cv2.CAP_GSTREAMER and "GStreamer:                   YES" not in cv2.getBuildInformation():
        return ": this OpenCV has no GStreamer support (use the system OpenCV on Jetson)"
    if isinstance(target, str) and target.startswith("/dev/") and not Path(target).exists():
        return ": {} does not exist (is the camera plugged in? `ls /dev/video*`)".format(target)
    if isinstance(target, str) and target.startswith("/dev/"):
        return ": check that the user is in group 'video' and no other process holds it"
    return ""
