"""Config models for frame sources, discriminated on `type`."""

from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import Annotated

from edge_agent.ids import NAME_MAX_LENGTH, NAME_PATTERN


class _SourceBase(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    name: str = Field("cam0", pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH,
                      description="Source name, unique, used in events ([a-z0-9_-]).")
    fps: float = Field(0, ge=0, le=1000, description=(
        "Frames per second to deliver. 0: as fast as it reads; files and the synthetic camera then wait for the "
        "pipeline (no frame lost), live cameras deliver at their own rate. A paced or live source keeps only the "
        "newest frame and counts the ones it drops."))
    retry_initial_s: float = Field(1.0, gt=0, le=60, description="First wait before reopening a failed source.")
    retry_max_s: float = Field(30.0, gt=0, le=3600, description="Longest wait between reopen attempts (backoff cap).")


class SyntheticSourceConfig(_SourceBase):
    type: Literal["synthetic"] = Field("synthetic", description="Generated images with ground truth.")
    width: int = Field(320, ge=32, le=4096, description="Frame width in pixels.")
    height: int = Field(240, ge=32, le=4096, description="Frame height in pixels.")
    seed: int = Field(1000, ge=0, description="Generator seed; the same seed gives the same frames.")
    defect_rate: float = Field(0.7, ge=0, le=1, description="Share of frames that show at least one defect.")
    lighting: float = Field(0.3, ge=0, le=1, description="Strength of lighting variation.")
    noise: float = Field(0.03, ge=0, le=0.5, description="Sensor noise as a fraction of full scale.")


class FolderSourceConfig(_SourceBase):
    type: Literal["folder"] = Field("folder", description="Images from a folder.")
    path: Path = Field(..., description="Folder of images (png, jpg, jpeg, bmp, tif, tiff), read in name order.")
    loop: bool = Field(False, description="Start again from the first image after the last.")


class VideoSourceConfig(_SourceBase):
    type: Literal["video"] = Field("video", description="A video file.")
    path: Path = Field(..., description="Video file readable by OpenCV (mp4, avi, mkv...).")
    loop: bool = Field(False, description="Rewind and play again at the end.")


class CameraSourceConfig(_SourceBase):
    type: Literal["camera"] = Field("camera", description="A USB or V4L2 camera.")
    device: Union[int, str] = Field(0, description="USB camera index (0) or device path (/dev/video0).")
    width: Optional[int] = Field(None, ge=16, le=8192, description="Requested capture width; null: camera default.")
    height: Optional[int] = Field(None, ge=16, le=8192, description="Requested capture height; null: camera default.")

    @field_validator("device")
    @classmethod
    def _device_path(cls, value: Union[int, str]) -> Union[int, str]:
        if isinstance(value, str) and not value.startswith("/dev/"):
            raise ValueError("device must be an index like 0 or a path like /dev/video0")
        if isinstance(value, int) and value < 0:
            raise ValueError("camera index must be >= 0")
        return value


class RtspSourceConfig(_SourceBase):
    type: Literal["rtsp"] = Field("rtsp", description="An RTSP network camera.")
    url: str = Field(..., description="rtsp:// or rtsps:// URL; credentials in it are masked in logs.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("rtsp://", "rtsps://")):
            raise ValueError("url must start with rtsp:// or rtsps://")
        return value


class GstreamerSourceConfig(_SourceBase):
    type: Literal["gstreamer"] = Field("gstreamer", description="A GStreamer pipeline (CSI cameras).")
    pipeline: str = Field(
        ..., description="GStreamer pipeline string ending in 'appsink' (OpenCV must have GStreamer).")

    @field_validator("pipeline")
    @classmethod
    def _appsink(cls, value: str) -> str:
        if "appsink" not in value:
            raise ValueError("the pipeline must end in an appsink element, e.g. '... ! videoconvert ! appsink'")
        return value


SourceConfig = Annotated[
    Union[
        SyntheticSourceConfig,
        FolderSourceConfig,
        VideoSourceConfig,
        CameraSourceConfig,
        RtspSourceConfig,
        GstreamerSourceConfig,
    ],
    Field(discriminator="type"),
]
