"""Frame sources: synthetic camera, image folder, video file, USB/V4L2 camera, RTSP, GStreamer."""

from edge_agent.sources.readers import EndOfStream, Reader, SourceError, open_reader
from edge_agent.sources.runner import Frame, FrameBoard, SourceRunner

__all__ = ["EndOfStream", "Frame", "FrameBoard", "Reader", "SourceError", "SourceRunner", "open_reader"]
