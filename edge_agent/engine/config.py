"""Config models of the engine builder.

`EngineConfig` (the top-level `engine:` section) holds what applies to every backend: the
calibration set, the accuracy gate and the cache. `TensorRTConfig` is the `backend:` entry with
`type: tensorrt`; its runtime lives in `edge_agent.backends.tensorrt`, its build options here.
"""

from pathlib import Path
from typing import Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

Precision = Literal["fp32", "fp16", "int8"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class CalibrationConfig(_Strict):
    folder: Optional[Path] = Field(
        None, description="Folder of representative images (PNG/JPEG/BMP, any size; see calibration/README.md). "
                          "null: the bundled demo model uses its synthetic set; other models must set a folder.")
    method: Literal["entropy", "percentile", "minmax"] = Field(
        "entropy", description="How activation ranges are chosen from the calibration images: entropy (KL "
                               "divergence, TensorRT's default), percentile (99.999th) or minmax.")
    min_images: int = Field(100, ge=1, description="Fewer calibration images than this is an error: INT8 from too "
                                                   "few images loses accuracy.")
    max_images: int = Field(500, ge=1, description="At most this many images are used (evenly spaced by name).")

    @model_validator(mode="after")
    def _check_range(self) -> "CalibrationConfig":
        if self.max_images < self.min_images:
            raise ValueError("max_images ({}) is below min_images ({})".format(self.max_images, self.min_images))
        return self


class GateConfig(_Strict):
    enabled: bool = Field(True, description="Check every FP16/INT8 model against the FP32 reference before it "
                                            "serves. Turning this off lets an inaccurate model serve unnoticed.")
    iou_floor: float = Field(0.95, ge=0, le=1, description="Lowest mask IoU agreement with the FP32 reference "
                                                          "that passes; below it precision falls back "
                                                          "INT8 -> FP16 -> FP32.")
    max_probability_drift: float = Field(
        1.0, ge=0, le=1, description="Largest allowed absolute difference of any pixel's class probability "
                                     "from the FP32 reference; 1.0 does not check it.")
    validation_folder: Optional[Path] = Field(
        None, description="Held-out images for the gate. null: the demo model's synthetic validation set, or "
                          "every n-th image of the calibration folder, kept out of calibration.")
    validation_images: int = Field(32, ge=1, le=2000, description="How many validation images the gate runs.")


class CacheConfig(_Strict):
    keep_last: int = Field(3, ge=1, le=100, description="Engines and prepared models kept per model; older "
                                                        "ones are deleted after a successful build.")


class EngineConfig(_Strict):
    calibration: CalibrationConfig = Field(CalibrationConfig(), description="INT8 calibration images.")
    gate: GateConfig = Field(GateConfig(), description="Accuracy gate for reduced precision.")
    cache: CacheConfig = Field(CacheConfig(), description="Engine cache (in paths.cache_dir).")


class ShapeProfile(_Strict):
    batch: Tuple[int, int, int] = Field(
        (1, 0, 0), description="min, opt, max batch of the optimization profile. A 0 takes: min 1; opt the typical "
                               "batch (one frame, every tile of it, from each source, as many as pipeline.max_batch "
                               "holds); max pipeline.max_batch.")
    height: Tuple[int, int, int] = Field(
        (0, 0, 0), description="min, opt, max input height; a 0 takes model.input.height.")
    width: Tuple[int, int, int] = Field(
        (0, 0, 0), description="min, opt, max input width; a 0 takes model.input.width.")


class TensorRTConfig(_Strict):
    type: Literal["tensorrt"] = "tensorrt"
    precision: Precision = Field("fp16", description="Numeric precision served: fp32, fp16 or int8 (int8 and fp16 "
                                                     "pass the accuracy gate first).")
    dla_core: Optional[int] = Field(None, ge=0, le=7, description="Run on this DLA core, layers DLA cannot run fall "
                                                                  "back to the GPU; ignored with a warning when the "
                                                                  "device has no DLA.")
    optimization_level: int = Field(3, ge=0, le=5, description="Builder optimization level (0-5): higher builds "
                                                               "longer and may run faster; TensorRT's default is 3.")
    profile: ShapeProfile = Field(ShapeProfile(), description="Shapes the engine accepts.")
    workspace_mb: Optional[int] = Field(None, ge=16, description="Builder workspace; null: half of memory.limit_mb, "
                                                                 "so a build cannot take the whole board.")
    timing_cache: bool = Field(True, description="Keep a timing cache per TensorRT version: rebuilds take a "
                                                 "fraction of the time.")
    calibration_cache: Optional[Path] = Field(
        None, description="Existing INT8 calibration table (DeepStream/trtexec) for the implicit calibrator, "
                          "TensorRT < 11 only; null: INT8 from the Q/DQ ONNX.")
