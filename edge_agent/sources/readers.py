"""Frame readers, one per source type. A reader opens, grabs frames, decodes the ones it is asked
to and closes; the runner around it (runner.py) does threads, pacing, shedding, retries and hand-off.

Grab and decode are split so that a frame the pipeline cannot serve is dropped before it costs a
decode: `grab()` takes the next frame as cheaply as the source allows (a file name, an encoded
JPEG packet, a camera buffer), `retrieve()` decodes the most recent grab. What a grab costs per
type is in docs/sources.md ("Load shedding")."""

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
# every frame of these is a complete JPEG, so a packet can be kept and decoded later or never
JPEG_FOURCCS = ("MJPG", "MJPA", "MJPB", "JPEG", "AVRN", "LJPG")


class SourceError(Exception):
    """The source cannot deliver frames now; the text says why (the runner retries)."""


class EndOfStream(Exception):
    """A finite source (file, folder) has no more frames."""


class UndecodableFrame(Exception):
    """One grabbed frame cannot be decoded (corrupt file or packet); the source goes on."""


Decoded = Tuple[np.ndarray, Optional[np.ndarray]]  # BGR uint8 image, ground-truth mask if known


class Reader(abc.ABC):
    live = False  # a live source drops old frames rather than holding the producer back

    def open(self) -> None:
        """Open the device or file; raise SourceError with the reason on failure."""
        return None

    @abc.abstractmethod
    def grab(self) -> Any:
        """Take the next frame without decoding it where the source allows; returns what
        `retrieve` needs. Raises EndOfStream or SourceError."""

    @abc.abstractmethod
    def retrieve(self, grabbed: Any) -> Decoded:
        """Decode the most recent grab (capture devices decode nothing older). Raises
        UndecodableFrame for a corrupt frame."""

    def origin(self, grabbed: Any) -> Optional[str]:
        """The file a grab came from, where that means something (folder images)."""
        return None

    def read(self) -> Decoded:
        """The next frame, decoded."""
        return self.retrieve(self.grab())

    def close(self) -> None:
        return None


class SyntheticReader(Reader):
    def __init__(self, config: SyntheticSourceConfig) -> None:
        from edge_agent.synthetic import SyntheticGenerator

        self._generator = SyntheticGenerator(
            width=config.width, height=config.height, seed=config.seed, defect_rate=config.defect_rate,
            lighting=config.lighting, noise=config.noise)
        self._index = 0

    def grab(self) -> int:
        self._index += 1
        return self._index - 1

    def retrieve(self, grabbed: int) -> Decoded:
        sample = self._generator.sample(grabbed)  # rendering is this source's "decode"
        return sample.image, sample.mask


class FolderReader(Reader):
    def __init__(self, config: FolderSourceConfig) -> None:
        self._folder = Path(config.path)
        self._loop = config.loop
        self._files: List[Path] = []
        self._next = 0
        self._undecodable = 0  # in a row: a folder of nothing but broken files is an error

    def open(self) -> None:
        try:
            self._files = sorted(p for p in self._folder.iterdir()
                                 if p.suffix.lower() in IMAGE_SUFFIXES and regular_file(p))
        except OSError as exc:
            raise SourceError("cannot list folder {}: {}".format(self._folder, exc.strerror or exc)) from None
        if not self._files:
            raise SourceError("folder {} holds no images ({})".format(self._folder, ", ".join(IMAGE_SUFFIXES)))

    def grab(self) -> Path:
        if self._next >= len(self._files):
            if not self._loop:
                raise EndOfStream()
            self._next = 0
        self._next += 1
        return self._files[self._next - 1]

    def origin(self, grabbed: Path) -> Optional[str]:
        return str(grabbed)

    def retrieve(self, grabbed: Path) -> Decoded:
        # checked again at read time: a FIFO or device swapped in under an image's name would
        # block imread (and this source) forever
        image = cv2.imread(str(grabbed), cv2.IMREAD_COLOR) if regular_file(grabbed) else None
        if image is not None:
            self._undecodable = 0
            return image, None
        self._undecodable += 1
        if self._undecodable >= len(self._files):
            raise SourceError("no image in {} could be decoded".format(self._folder))
        # one unreadable file must not stop the folder
        raise UndecodableFrame("cannot decode {} (corrupt or not an image); skipped".format(grabbed))


class CaptureReader(Reader):
    """OpenCV VideoCapture for video files, USB cameras, RTSP and GStreamer pipelines."""

    def __init__(self, target: Any, backend: int, describe: str, live: bool, loop: bool = False,
                 size: Tuple[Optional[int], Optional[int]] = (None, None), raw_packets: bool = False,
                 file: bool = False) -> None:
        self._target = target
        self._file = file
        self._backend = backend
        self._describe = describe
        self.live = live
        self._loop = loop
        self._size = size
        self.raw_packets = raw_packets
        self._capture: Any = None
        self._raw = False  # grab copies encoded JPEG packets; retrieve decodes them (MJPG files)

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
        self._raw = self.raw_packets and _fourcc(capture) in JPEG_FOURCCS and capture.set(cv2.CAP_PROP_FORMAT, -1)

    def grab(self) -> Any:
        ok = self._capture.grab()
        if not ok and not self.live and self._loop:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok = self._capture.grab()
        if not ok:
            if not self.live:
                raise EndOfStream()
            raise SourceError("{} stopped delivering frames".format(self._describe))
        if self._raw:
            # intra-only stream: copy the encoded packet out now (a few hundred kB), decode it later
            ok, packet = self._capture.retrieve()
            if not ok or packet is None:
                raise SourceError("{} returned no packet".format(self._describe))
            return packet.copy()
        return None

    def retrieve(self, grabbed: Any) -> Decoded:
        if self._raw:
            image = cv2.imdecode(grabbed, cv2.IMREAD_COLOR)
            if image is None:
                raise UndecodableFrame("{}: a corrupt JPEG frame; skipped".format(self._describe))
            return image, None
        ok, image = self._capture.retrieve()
        if not ok or image is None:
            raise UndecodableFrame("{}: cannot decode the grabbed frame; skipped".format(self._describe))
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
                             live=False, loop=config.loop, raw_packets=True, file=True)
    if isinstance(config, CameraSourceConfig):
        target = config.device
        return CaptureReader(target, cv2.CAP_V4L2 if isinstance(target, str) else cv2.CAP_ANY,
                             "camera {}".format(target), live=True, size=(config.width, config.height))
    if isinstance(config, RtspSourceConfig):
        return CaptureReader(config.url, cv2.CAP_FFMPEG, "RTSP stream {}".format(mask_url(config.url)), live=True)
    if isinstance(config, GstreamerSourceConfig):
        if not opencv_has_gstreamer():
            from edge_agent.sources.gstreamer import GstLaunchReader

            return GstLaunchReader(config.pipeline, "GStreamer pipeline of source {}".format(config.name))
        return CaptureReader(config.pipeline, cv2.CAP_GSTREAMER, "GStreamer pipeline", live=True)
    raise TypeError("unknown source config {!r}".format(config))


def opencv_has_gstreamer() -> bool:
    return re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()) is not None


def regular_file(path: Path) -> bool:
    """True for a regular file (through symlinks); FIFOs, sockets and devices would block a read."""
    try:
        return stat.S_ISREG(os.stat(str(path)).st_mode)
    except OSError:
        return False


def _fourcc(capture: Any) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).upper()


def mask_url(url: str) -> str:
    """rtsp://user:secret@host/ -> rtsp://user:***@host/ for logs."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def _open_hint(target: Any, backend: int) -> str:
    if isinstance(target, str) and target.startswith("/dev/") and not Path(target).exists():
        return ": {} does not exist (is the camera plugged in? `ls /dev/video*`)".format(target)
    if isinstance(target, str) and target.startswith("/dev/"):
        return ": check that the user is in group 'video' and no other process holds it"
    return ""
