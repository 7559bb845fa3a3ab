"""GStreamer pipelines for the `gstreamer` source: Jetson hardware decode, software fallbacks,
and a reader that runs a pipeline through `gst-launch-1.0` when OpenCV lacks GStreamer.

Hardware path (Jetson): `nvv4l2decoder` decodes H.264/H.265 on NVDEC, `nvjpegdec` decodes JPEG
on NVJPG, `nvarguscamerasrc` reads CSI sensors through the ISP, and `nvvidconv` converts and
scales on the VIC out of NVMM memory; only the last BGRx -> BGR step runs on the CPU. Software
path (any host): `avdec_h264` / `avdec_h265` / `jpegdec` and `videoconvert`, same shape.

Every pipeline ends in `appsink drop=true max-buffers=1 sync=false`: GStreamer keeps only the
newest frame, so a busy agent sheds stale frames inside GStreamer before any CPU conversion.
docs/sources.md lists the strings; tests/sources/test_gstreamer.py checks their shape and runs
the software ones on streams made by gst-launch.
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edge_agent.sources.readers import Decoded, Reader, SourceError

HARDWARE_ELEMENTS = ("nvv4l2decoder", "nvvidconv", "nvjpegdec", "nvarguscamerasrc")
APPSINK = "appsink drop=true max-buffers=1 sync=false"
BGR = "video/x-raw,format=BGR"
_DEPAY = {"h264": "rtph264depay ! h264parse", "h265": "rtph265depay ! h265parse"}
_SOFTWARE_DECODER = {"h264": "avdec_h264", "h265": "avdec_h265"}


def _to_bgr(hardware: bool, size: Optional[Tuple[int, int]]) -> str:
    """From the decoder's output to BGR system memory, optionally scaled to size (w, h)."""
    scale = ",width={},height={}".format(*size) if size else ""
    if hardware:
        # nvvidconv leaves NVMM memory and scales on the VIC; videoconvert only drops the X byte
        return "nvvidconv ! video/x-raw,format=BGRx{} ! videoconvert ! {}".format(scale, BGR)
    return "videoconvert ! videoscale ! {}{}".format(BGR, scale) if size else "videoconvert ! " + BGR


def rtsp_pipeline(url: str, codec: str = "h264", hardware: bool = True, latency_ms: int = 200,
                  size: Optional[Tuple[int, int]] = None) -> str:
    """An RTSP H.264/H.265 camera. `latency_ms`: rtspsrc's jitter buffer; TCP avoids UDP loss."""
    decoder = "nvv4l2decoder" if hardware else _SOFTWARE_DECODER[codec]
    return "rtspsrc location={} latency={} protocols=tcp ! {} ! {} ! {} ! {}".format(
        url, latency_ms, _DEPAY[codec], decoder, _to_bgr(hardware, size), APPSINK)


def file_pipeline(path: str, codec: str = "h264", hardware: bool = True,
                  size: Optional[Tuple[int, int]] = None) -> str:
    """A recorded H.264/H.265 file (MP4 or Matroska), e.g. to replay a line's footage."""
    demux = "matroskademux" if str(path).endswith((".mkv", ".webm")) else "qtdemux"
    decoder = "nvv4l2decoder" if hardware else _SOFTWARE_DECODER[codec]
    return "filesrc location={} ! {} ! {}parse ! {} ! {} ! {}".format(
        path, demux, codec, decoder, _to_bgr(hardware, size), APPSINK)


def csi_pipeline(sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: int = 30) -> str:
    """A CSI camera through the Jetson ISP (hardware only: there is no software nvarguscamerasrc)."""
    return ("nvarguscamerasrc sensor-id={} ! video/x-raw(memory:NVMM),width={},height={},framerate={}/1,"
            "format=NV12 ! {} ! {}".format(sensor_id, width, height, fps, _to_bgr(True, None), APPSINK))


def usb_mjpg_pipeline(device: str = "/dev/video0", width: int = 1920, height: int = 1080, fps: int = 30,
                      hardware: bool = True) -> str:
    """A USB camera sending MJPG, decoded by nvjpegdec (Jetson) or jpegdec."""
    decode = "nvjpegdec ! video/x-raw ! " + _to_bgr(True, None) if hardware else "jpegdec ! videoconvert ! " + BGR
    return "v4l2src device={} ! image/jpeg,width={},height={},framerate={}/1 ! {} ! {}".format(
        device, width, height, fps, decode, APPSINK)


def element_status(names: Tuple[str, ...] = HARDWARE_ELEMENTS) -> Dict[str, Optional[bool]]:
    """Whether each GStreamer element is installed (gst-inspect-1.0 --exists); None without GStreamer."""
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return dict.fromkeys(names)
    status: Dict[str, Optional[bool]] = {}
    for name in names:
        try:
            status[name] = subprocess.run([inspect, "--exists", name], timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            status[name] = None
    return status


_SINK = re.compile(r"appsink(\s+[\w-]+=\S+)*\s*$")
_CAPS = re.compile(r"GstFdSink:\w+\.GstPad:sink: caps = (video/x-raw,.*)")
_FIELD = r"\b{}=\((?:string|int)\)(\w+)"


def fdsink_pipeline(pipeline: str, fd: int) -> str:
    """The pipeline with its final appsink replaced by an fdsink writing raw frames to `fd`."""
    if not _SINK.search(pipeline.strip()):
        raise SourceError("the GStreamer pipeline must end in an appsink element, e.g. '... ! videoconvert ! appsink'")
    return _SINK.sub("fdsink fd={} sync=false".format(fd), pipeline.strip())


class GstLaunchReader(Reader):
    """Runs the pipeline in a `gst-launch-1.0` child and reads raw BGR frames from a pipe. Used when
    OpenCV was built without GStreamer (the PyPI wheels), so the same pipeline strings work with any
    OpenCV. Grab reads one frame's bytes from the pipe (GStreamer already decoded it); retrieve
    copies it into an image. The negotiated frame size comes from gst-launch's -v caps output."""

    live = True

    def __init__(self, pipeline: str, describe: str, open_timeout_s: float = 15.0) -> None:
        self._pipeline = pipeline
        self._describe = describe
        self._open_timeout_s = open_timeout_s
        self._process: Any = None
        self._pipe: Any = None
        self._log: Any = None
        self._shape = (0, 0, 3)
        self._buffer = bytearray()

    def open(self) -> None:
        launcher = shutil.which("gst-launch-1.0")
        if launcher is None:
            raise SourceError("{}: OpenCV has no GStreamer support and gst-launch-1.0 is not installed "
                              "(apt install gstreamer1.0-tools, or use JetPack's OpenCV)".format(self._describe))
        read_end, write_end = os.pipe()
        self._log = tempfile.TemporaryFile(mode="w+")
        try:
            self._process = subprocess.Popen(
                # gst-launch parses its arguments like a shell line: the string split as a shell would
                [launcher, "-v"] + shlex.split(fdsink_pipeline(self._pipeline, write_end)), stdout=self._log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, pass_fds=(write_end,), text=True)
        finally:
            os.close(write_end)  # the child holds it now: EOF reaches us when the child exits
        self._pipe = os.fdopen(read_end, "rb", buffering=0)
        fmt, width, height = self._negotiated()
        if fmt != "BGR":
            self.close()
            raise SourceError("{}: the pipeline delivers {} frames; end it in '! videoconvert ! {} ! appsink'".format(
                self._describe, fmt, BGR))
        self._shape = (height, width, 3)
        self._buffer = bytearray(width * height * 3)

    def _negotiated(self) -> Tuple[str, int, int]:
        deadline = time.monotonic() + self._open_timeout_s
        while time.monotonic() < deadline:
            self._log.seek(0)
            text = self._log.read()
            match = _CAPS.search(text)
            if match:
                fields = [re.search(_FIELD.format(key), match.group(1)) for key in ("format", "width", "height")]
                if all(fields):
                    return fields[0].group(1), int(fields[1].group(1)), int(fields[2].group(1))
            if self._process.poll() is not None:
                self.close()
                raise SourceError("{}: gst-launch-1.0 exited: {}".format(self._describe, _last_error(text)))
            time.sleep(0.05)
        self.close()
        raise SourceError("{}: no frame format negotiated within {:.0f} s".format(self._describe,
                                                                                self._open_timeout_s))

    def grab(self) -> bytearray:
        view = memoryview(self._buffer)
        filled = 0
        while filled < len(view):
            count = self._pipe.readinto(view[filled:])
            if not count:
                raise SourceError("{} stopped delivering frames".format(self._describe))
            filled += count
        return self._buffer

    def retrieve(self, grabbed: bytearray) -> Decoded:
        return np.frombuffer(grabbed, np.uint8).reshape(self._shape).copy(), None

    def close(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _last_error(text: str) -> str:
    lines: List[str] = [line for line in text.splitlines() if "ERROR" in line or "erroneous" in line]
    return (lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else "no output").strip()
