"""Config models for per-image results: the jsonl file sink, the evidence store and the sanity watch."""

from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class JsonlSinkConfig(_Strict):
    enabled: bool = Field(False, description="Append one JSON line per inspected frame (the `inspect` command's "
                                             "results.jsonl format) to a local file; needs no broker.")
    path: Optional[Path] = Field(None, description="The file; null: results.jsonl in the state directory.")
    max_mb: float = Field(64.0, gt=0, le=10240, description="Size at which the file is rotated (file.1, file.2, ...).")
    keep: int = Field(3, ge=1, le=100, description="Rotated files kept; the oldest beyond this is deleted.")
    defects_only: bool = Field(False, description="Write only frames with at least one defect (NG).")
    queue_size: int = Field(1000, ge=10, le=100000,
                            description="Lines waiting for the writer thread; beyond it lines are dropped and counted.")


class SinksConfig(_Strict):
    jsonl: JsonlSinkConfig = Field(JsonlSinkConfig(), description="Per-frame results to a local JSON-lines file.")


class EvidenceConfig(_Strict):
    enabled: bool = Field(False, description="Save NG frames (and a sample of OK frames) with their overlay and "
                                             "verdict JSON for review.")
    path: Optional[Path] = Field(None, description="Folder of the store; null: evidence/ in the state directory.")
    max_mb: float = Field(512.0, gt=0, le=1048576,
                          description="Size cap of the store; the oldest items are deleted first (and counted).")
    ok_sample_every: int = Field(100, ge=0, le=1000000,
                                 description="Also keep every Nth OK frame per source; 0 keeps no OK frames.")
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of the saved frame and overlay.")
    queue_size: int = Field(16, ge=1, le=1000,
                            description="Frames waiting to be written; beyond it frames are skipped and counted.")


class SanityConfig(_Strict):
    enabled: bool = Field(True, description="Warn when the model's outputs look wrong while running. Off also "
                                            "turns the start-up trial's 'defects cover most of the frame' failure "
                                            "into a warning (NaN and out-of-range scores still fail).")
    coverage: float = Field(0.5, gt=0, le=1, description="Share of the frame covered by defects that counts as "
                                                        "'most of the frame'.")
    coverage_frames: int = Field(30, ge=1, description="Frames in a row above `coverage` before warning.")
    quiet_frames: int = Field(
        2000, ge=1, description="Frames without any defect, after defects were found earlier, before warning that "
                                "nothing is found any more.")
    warn_interval_s: float = Field(60.0, ge=0, description="Least time between two log lines of the same warning.")
