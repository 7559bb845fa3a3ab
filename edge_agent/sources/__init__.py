"""Frame sources: synthetic camera, image folder, video file, USB/V4L2 camera, RTSP, GStreamer."""

from edge_agent.sources.board import Frame, FrameBoard
from edge_agent.sources.readers import EndOfStream, Reader, SourceError, UndecodableFrame, open_reader
from edge_agent.sources.runner import SourceRunner

__all__ = ["EndOfStream", "Frame", "FrameBoard", "Reader", "SourceError", "SourceRunner", "UndecodableFrame",
           "open_reader"]
