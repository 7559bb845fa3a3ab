"""GStreamer pipelines: the Jetson hardware strings checked for shape, the software fallbacks run
here on streams that gst-launch-1.0 encodes in the test, through the agent's `gstreamer` source."""

import shutil
import subprocess
import threading

import pytest

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.metrics import Registry
from edge_agent.sources.config import GstreamerSourceConfig
from edge_agent.sources.gstreamer import (
    GstLaunchReader,
    csi_pipeline,
    element_status,
    fdsink_pipeline,
    file_pipeline,
    rtsp_pipeline,
    usb_mjpg_pipeline,
)

GST = shutil.which("gst-launch-1.0")
needs_gstreamer = pytest.mark.skipif(GST is None, reason="gst-launch-1.0 is not installed; scripts/test.sh installs "
                                                         "gstreamer1.0-tools and the plugins from Debian")
TAIL_HW = ["nvvidconv", "video/x-raw,format=BGRx", "videoconvert", "video/x-raw,format=BGR",
           "appsink drop=true max-buffers=1 sync=false"]


def _elements(pipeline):
    return [part.strip() for part in pipeline.split(" ! ")]


def test_hardware_pipelines_have_the_jetson_shape():
    assert _elements(rtsp_pipeline("rtsp://cam/1")) == [
        "rtspsrc location=rtsp://cam/1 latency=200 protocols=tcp", "rtph264depay", "h264parse",
        "nvv4l2decoder"] + TAIL_HW
    assert _elements(rtsp_pipeline("rtsp://cam/1", codec="h265"))[1:4] == ["rtph265depay", "h265parse",
                                                                           "nvv4l2decoder"]
    assert _elements(csi_pipeline(1, 1280, 720, 60)) == [
        "nvarguscamerasrc sensor-id=1",
        "video/x-raw(memory:NVMM),width=1280,height=720,framerate=60/1,format=NV12"] + TAIL_HW
    assert _elements(usb_mjpg_pipeline("/dev/video2", 1920, 1080, 30)) == [
        "v4l2src device=/dev/video2", "image/jpeg,width=1920,height=1080,framerate=30/1", "nvjpegdec",
        "video/x-raw"] + TAIL_HW
    scaled = _elements(rtsp_pipeline("rtsp://cam/1", size=(960, 540)))
    assert scaled[4:6] == ["nvvidconv", "video/x-raw,format=BGRx,width=960,height=540"]  # scaled on the VIC


def test_software_fallbacks_swap_only_the_decoder():
    assert _elements(rtsp_pipeline("rtsp://cam/1", hardware=False))[3:] == [
        "avdec_h264", "videoconvert", "video/x-raw,format=BGR", "appsink drop=true max-buffers=1 sync=false"]
    assert "avdec_h265" in _elements(rtsp_pipeline("rtsp://cam/1", codec="h265", hardware=False))
    assert _elements(usb_mjpg_pipeline(hardware=False))[2:4] == ["jpegdec", "videoconvert"]
    for pipeline in (rtsp_pipeline("rtsp://c/1", hardware=False), usb_mjpg_pipeline(hardware=False),
                     csi_pipeline(), file_pipeline("/x.mp4")):
        GstreamerSourceConfig(name="cam", pipeline=pipeline)  # each is a valid `gstreamer` source


def test_the_appsink_becomes_an_fdsink_for_gst_launch():
    assert fdsink_pipeline("videotestsrc ! videoconvert ! appsink drop=true max-buffers=1", 7) == (
        "videotestsrc ! videoconvert ! fdsink fd=7 sync=false")
    with pytest.raises(Exception, match="must end in an appsink"):
        fdsink_pipeline("videotestsrc ! appsink ! fakesink", 7)


@needs_gstreamer
def test_check_sees_which_elements_are_installed():
    status = element_status(("avdec_h264", "nvv4l2decoder"))
    assert status == {"avdec_h264": True, "nvv4l2decoder": False}  # software decoder here, no Jetson


def _encode(path, encoder, parse):
    subprocess.run([GST, "-q", "videotestsrc", "num-buffers=30", "pattern=smpte", "!",
                    "video/x-raw,width=160,height=120,framerate=30/1", "!"] + encoder + ["!", parse, "!", "mp4mux",
                                                                                       "!", "filesink",
                                                                                       "location=" + str(path)],
                   check=True, timeout=60)
    return path


@needs_gstreamer
@pytest.mark.parametrize("codec,encoder", [("h264", ["x264enc", "speed-preset=ultrafast", "key-int-max=10"]),
                                           ("h265", ["x265enc", "speed-preset=ultrafast", "key-int-max=10"])])
def test_software_pipeline_decodes_a_stream_made_by_gst_launch(tmp_path, codec, encoder):
    if subprocess.run([shutil.which("gst-inspect-1.0"), "--exists", encoder[0]]).returncode != 0:
        pytest.skip("{} is not installed (gstreamer1.0-plugins-ugly / -bad)".format(encoder[0]))
    clip = _encode(tmp_path / "clip.mp4", encoder, codec + "parse")
    reader = GstLaunchReader(file_pipeline(str(clip), codec=codec, hardware=False), "test clip")
    reader.open()
    try:
        frames = [reader.retrieve(reader.grab())[0] for _ in range(30)]
    finally:
        reader.close()
    assert all(f.shape == (120, 160, 3) for f in frames)
    assert frames[0][:, :20].mean() > 150  # SMPTE bars: the left bar is light grey


@needs_gstreamer
def test_the_agent_runs_a_gstreamer_source_without_opencv_gstreamer(tmp_path, dark_model):
    clip = _encode(tmp_path / "clip.mp4", ["x264enc", "speed-preset=ultrafast"], "h264parse")
    config = load_config(None, {
        "model": {"path": str(dark_model), "input": {"width": 64, "height": 64},
                  "output": {"classes": ["background", "dark"]}},
        "sources": [{"type": "gstreamer", "name": "line", "fps": 30,
                     "pipeline": file_pipeline(str(clip), hardware=False)}]})
    registry = Registry()
    with running_pipeline(config, registry) as pipeline:
        assert pipeline.run(threading.Event(), max_frames=10, duration_s=20) == 10
    assert registry.counter("frames_processed", source="line").value == 10



@needs_gstreamer
def test_check_reports_the_hardware_decode_elements():
    from edge_agent.check.platform import _gstreamer

    here = _gstreamer(None)  # not a Jetson: information, not a warning
    assert here.status == "info" and "missing nvv4l2decoder, nvvidconv, nvjpegdec, nvarguscamerasrc" in here.detail
    on_jetson = _gstreamer("36.4.3")
    assert on_jetson.status == "warn" and "nvidia-l4t-gstreamer" in on_jetson.fix
