"""Config model of model rollouts (the `rollout:` section): download, build share, gate, rollback."""

from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DownloadConfig(_Strict):
    proxy: Optional[str] = Field(
        None, description="HTTP(S) proxy URL for model downloads (e.g. http://proxy.plant:3128); null: direct, "
                          "whatever the environment says.")
    ca_file: Optional[Path] = Field(
        None, description="CA certificate (PEM) that signed the model server's certificate; null: the system CAs.")
    timeout_s: float = Field(30.0, gt=0, le=600, description="Seconds without a byte from the server before a "
                                                              "download attempt is abandoned (then resumed).")
    attempts: int = Field(5, ge=1, le=100, description="Download attempts (each resumes where the last stopped) "
                                                       "before the rollout is rejected.")
    max_bytes: int = Field(512 * 2**20, ge=1024, description="Largest model accepted, in bytes.")
    min_free_mb: int = Field(256, ge=0, description="Disk space that must stay free in the cache directory after "
                                                    "the download; checked before the first byte is fetched.")


class RolloutGateConfig(_Strict):
    recent_frames: int = Field(
        16, ge=0, le=256, description="Recent line frames on which the candidate is compared with the serving "
                                      "model's verdicts (0: no comparison, only the FP32-reference gate and the "
                                      "sanity check).")
    agreement_floor: Optional[float] = Field(
        0.5, ge=0, le=1, description="Lowest defect-mask IoU agreement with the serving model on the recent frames "
                                     "that passes; null reports the agreement without gating on it.")
    frames_timeout_s: float = Field(10.0, gt=0, le=600, description="Longest wait for the recent frames; fewer "
                                                                     "are used when the line is slow.")


class RolloutConfig(_Strict):
    enabled: bool = Field(True, description="Accept model rollouts (desired state over MQTT, `edge-agent deploy`).")
    public_key_file: Optional[Path] = Field(
        None, description="Ed25519 public key (PEM or 32 raw bytes) that must have signed every model's bytes; "
                          "null: signatures are not required (a broker account alone can then push a model). "
                          "Needs the `signing` extra (the cryptography package).")
    keep_models: int = Field(3, ge=2, le=50, description="Models kept on disk (the serving one, the previous one "
                                                         "for rollback, and older); older ones are pruned.")
    build_nice: int = Field(15, ge=0, le=19, description="Niceness of the build child, so the frame loop keeps "
                                                          "its CPU share while the candidate is built and gated.")
    build_threads: int = Field(1, ge=1, le=64, description="Inference threads the build child uses for the gate.")
    max_fps_drop: float = Field(0.2, ge=0, le=1, description="Largest fraction of the line's fps a build may cost; "
                                                              "measured during every build and reported.")
    rollback_window_s: float = Field(
        600.0, ge=0, le=86400, description="For this long after a swap, a crashed frame loop (a backend error) or "
                                           "a finding of the sanity watch on the new model's outputs (NaN/Inf, "
                                           "scores outside 0-1, defects over most of the frame; needs "
                                           "sanity.enabled) rolls back to the previous model.")
    download: DownloadConfig = Field(DownloadConfig(), description="Where and how models are fetched.")
    gate: RolloutGateConfig = Field(RolloutGateConfig(), description="Comparison with the serving model.")
