"""The configuration schema: the only source of defaults, validated with pydantic v2.

Models hold no I/O and read no environment; reading YAML, error messages and file checks live in
`edge_agent.config_loader`, directories in `edge_agent.paths`.
"""

from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from typing_extensions import Annotated

from edge_agent.backends.onnxruntime import OnnxRuntimeConfig
from edge_agent.engine.config import EngineConfig, TensorRTConfig
from edge_agent.ids import NAME_MAX_LENGTH, NAME_PATTERN
from edge_agent.inspection_config import EvidenceConfig, SanityConfig, SinksConfig
from edge_agent.rollout.config import RolloutConfig
from edge_agent.sources.config import SourceConfig, SyntheticSourceConfig
from edge_agent.telemetry.config import MqttConfig, PrometheusConfig, TelemetryConfig
from edge_agent.tiling import TilingConfig
from edge_agent.view.config import ViewConfig

DEMO_MODEL = Path(__file__).resolve().parent / "models" / "defect_unet.onnx"
# the demo model's input normalization, from its model card (edge_agent/models/MODEL_CARD.md)
DEMO_MEAN, DEMO_STD = 0.5, 0.25


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DeviceConfig(StrictModel):
    id: str = Field("edge-agent-demo", pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH,
                    description="Device id, used in MQTT topics and the client id ([a-z0-9_-]).")
    site: str = Field("site", pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH,
                      description="Plant or site id ([a-z0-9_-]).")
    line: str = Field("line", pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH,
                      description="Production line id ([a-z0-9_-]).")


class InputConfig(StrictModel):
    name: Optional[str] = Field(None, description="Input tensor name; null takes the model's first input.")
    width: int = Field(256, ge=8, le=8192, description="Model input width in pixels.")
    height: int = Field(256, ge=8, le=8192, description="Model input height in pixels.")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Input tensor layout.")
    color: Literal["RGB", "BGR", "GRAY"] = Field("RGB", description="Channel order the model expects.")
    resize: Literal["stretch", "letterbox", "center_crop"] = Field(
        "stretch", description="How a frame is fitted to the input size: stretch, letterbox (pad) or center_crop."
    )
    scale: Optional[float] = Field(
        None, gt=0, description="Pixel values are multiplied by this before mean/std; null: 1/255 for a float "
                                "input (pixels 0-1), 1 for a uint8 input (raw pixels).")
    mean: Optional[List[float]] = Field(
        None, description="Per-channel mean subtracted after scaling; null: 0 (none), except for the bundled demo "
                          "model, which gets its model card's 0.5.")
    std: Optional[List[float]] = Field(
        None, description="Per-channel std divided by after the mean; null: 1 (none), except for the bundled demo "
                          "model, which gets its model card's 0.25.")
    tiling: Optional[TilingConfig] = Field(None, description=(
        "Run each frame as overlapping tiles (all tiles of a frame in one batch, regions stitched across tile "
        "borders, boxes in frame pixels), so small defects keep their size; null: the whole frame in one pass. "
        "pipeline.max_batch must hold every tile of a frame."))

    @property
    def channels(self) -> int:
        return 1 if self.color == "GRAY" else 3

    def normalization(self, raw_pixels: bool = False) -> Tuple[float, List[float], List[float]]:
        """(scale, mean, std) as applied: unset values are neutral. `raw_pixels`: the model takes uint8."""
        scale = self.scale if self.scale is not None else (1.0 if raw_pixels else 1 / 255)
        mean = self.mean if self.mean is not None else [0.0] * self.channels
        std = self.std if self.std is not None else [1.0] * self.channels
        return scale, mean, std

    @property
    def normalizes(self) -> bool:
        """True when any of scale, mean or std is configured (a uint8-input model takes none)."""
        return self.scale is not None or self.mean is not None or self.std is not None

    @model_validator(mode="after")
    def _check_normalization(self) -> "InputConfig":
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is not None and len(values) != self.channels:
                raise ValueError(
                    "{} has {} values but color {} has {} channel(s)".format(
                        key, len(values), self.color, self.channels)
                )
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ValueError("std values must all be > 0, got {}".format(self.std))
        return self


class OutputConfig(StrictModel):
    name: Optional[str] = Field(None,
                                description="Output tensor name; null takes the model's first output.")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Output tensor layout.")
    kind: Literal["scores", "class_index"] = Field(
        "scores",
        description="scores: one float channel per class (logits or probabilities, see activation); class_index: "
                    "one integer per pixel, the index of its class in classes (an argmax map).")
    activation: Literal["softmax", "sigmoid", "none"] = Field(
        "softmax",
        description="softmax: N-class logits; sigmoid: one-channel logit; none: output holds probabilities "
                    "(ignored for kind class_index).",
    )
    classes: List[str] = Field(
        ["background", "scratch", "spot", "crack", "pit"],
        min_length=1,
        description="One name per output channel, in channel order.",
    )
    background: Optional[str] = Field(
        "background", description="Name of the background class; null when every channel is a defect class."
    )

    @model_validator(mode="after")
    def _check_classes(self) -> "OutputConfig":
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("class names must be unique, got {}".format(self.classes))
        if self.background is not None and self.background not in self.classes:
            raise ValueError("background {!r} is not one of classes {}".format(self.background, self.classes))
        if self.kind == "scores" and self.activation == "sigmoid" and len(self.classes) != 1:
            raise ValueError("activation sigmoid needs exactly one class (one output channel)")
        if self.defect_classes == []:
            raise ValueError("classes must name at least one defect class besides the background")
        return self

    @property
    def defect_classes(self) -> List[str]:
        return [c for c in self.classes if c != self.background]


class ClassThreshold(StrictModel):
    score: Optional[float] = Field(None, ge=0, le=1, description="Minimum pixel score for this class; null inherits.")
    min_area_px: Optional[int] = Field(None, ge=1, description="Minimum region area in frame pixels; null inherits.")


class ThresholdConfig(StrictModel):
    score: float = Field(0.5, ge=0, le=1, description="Minimum per-pixel class probability for a defect pixel.")
    min_area_px: int = Field(20, ge=1, description="Smallest defect region reported, in frame pixels.")
    per_class: Dict[str, ClassThreshold] = Field({}, description="Overrides per class name.")

    def for_class(self, name: str) -> Tuple[float, int]:
        override = self.per_class.get(name, ClassThreshold())
        score = self.score if override.score is None else override.score
        area = self.min_area_px if override.min_area_px is None else override.min_area_px
        return score, area


class ModelConfig(StrictModel):
    path: Path = Field(DEMO_MODEL, description="ONNX model file; the default is the bundled demo model.")
    input: InputConfig = Field(InputConfig(), description="How frames become the input tensor.")
    output: OutputConfig = Field(OutputConfig(), description="What the output tensor means.")
    thresholds: ThresholdConfig = Field(ThresholdConfig(), description="When a region counts as a defect.")

    @model_validator(mode="after")
    def _demo_normalization(self) -> "ModelConfig":
        """The bundled model keeps its card's normalization; anyone else's model gets none unless configured."""
        if self.path == DEMO_MODEL and not self.input.normalizes:
            channels = self.input.channels
            self.input = self.input.model_copy(update={"mean": [DEMO_MEAN] * channels, "std": [DEMO_STD] * channels})
        return self

    @model_validator(mode="after")
    def _check_threshold_classes(self) -> "ModelConfig":
        unknown = sorted(set(self.thresholds.per_class) - set(self.output.defect_classes))
        if unknown:
            raise ValueError(
                "thresholds.per_class names {} which are not defect classes {}".format(
                    unknown, self.output.defect_classes
                )
            )
        return self


BackendConfig = Annotated[Union[OnnxRuntimeConfig, TensorRTConfig], Field(discriminator="type")]


class PipelineConfig(StrictModel):
    max_batch: int = Field(1, ge=1, le=64, description=(
        "Most frames (from different sources, or tiles of one frame) in one inference call. The batcher asks "
        "this many sources at a time, round-robin, to decode their newest frame; the others drop theirs undecoded."))
    max_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="How long a partial batch waits for more sources' frames."
    )
    latency_target_ms: float = Field(120.0, ge=0, le=60000, description=(
        "Capture-to-result latency the batcher aims at: a batch holds at most as many frames (up to max_batch) "
        "as the measured inference and decode times let finish within it, never fewer than one. With 10 1080p "
        "cameras on a 2-core CPU it kept p99 under 210 ms at no measurable cost in frames per second "
        "(docs/benchmarks.md, 'Many sources'). 0: always up to max_batch, throughput first."))
    decode_threads: int = Field(0, ge=0, le=64, description=(
        "Most frames decoded at the same time across all sources; 0: as many as the CPU has cores, so however "
        "many cameras there are, decoding never runs more threads than cores."))
    decode_nice: int = Field(0, ge=0, le=19, description=(
        "How much lower the source threads' CPU priority is than inference's (Linux nice steps), so decoding "
        "yields to the frame loop when the CPU is short. 0 keeps it equal: on a board shared with other busy "
        "services a lower priority can starve decoding instead."))


class MemoryConfig(StrictModel):
    limit_mb: int = Field(2048, ge=16, description="Memory the agent may use for model, buffers and runtime, in MB.")
    margin_mb: int = Field(
        64, ge=0, description="Headroom added to the planned memory before admission (allocator slack, CUDA context).")
    slots: int = Field(
        2, ge=1, le=8,
        description="I/O buffer sets in the ring: 2 lets the next batch run while the last one is postprocessed and "
                    "the one after is preprocessed; 1 runs strictly in turn. Each slot costs one input and output set.")


class PathsConfig(StrictModel):
    state_dir: Optional[Path] = Field(
        None, description="Outbox and state; null: $STATE_DIRECTORY (systemd), else /var/lib/edge-agent for root and "
                          "the service user where it exists (the service's), else ~/.local/state/edge-agent."
    )
    cache_dir: Optional[Path] = Field(
        None, description="Engine cache; null: $CACHE_DIRECTORY (systemd), else /var/cache/edge-agent for root and "
                          "the service user where it exists (the service's), else ~/.cache/edge-agent."
    )


class LoggingConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")


class AgentConfig(StrictModel):
    device: DeviceConfig = Field(DeviceConfig(), description="Who this board is.")
    model: ModelConfig = Field(ModelConfig(), description="The segmentation model and its pre/post-processing.")
    backend: BackendConfig = Field(OnnxRuntimeConfig(), description="Inference backend and precision.")
    pipeline: PipelineConfig = Field(PipelineConfig(), description="Batching across sources.")
    sources: List[SourceConfig] = Field(
        [SyntheticSourceConfig()], min_length=1, description="Frame sources (cameras, files, synthetic)."
    )
    memory: MemoryConfig = Field(MemoryConfig(), description="Memory budget.")
    engine: EngineConfig = Field(EngineConfig(), description="Model preparation: calibration, accuracy gate, cache.")
    mqtt: MqttConfig = Field(MqttConfig(), description="Telemetry broker.")
    telemetry: TelemetryConfig = Field(TelemetryConfig(), description="What telemetry reports, whatever the transport.")
    prometheus: PrometheusConfig = Field(PrometheusConfig(), description="Prometheus /metrics (off by default).")
    paths: PathsConfig = Field(PathsConfig(), description="Where state and caches live.")
    sinks: SinksConfig = Field(SinksConfig(), description="Local result sinks besides MQTT (the jsonl file).")
    evidence: EvidenceConfig = Field(EvidenceConfig(), description="Saved NG frames with overlay and verdict.")
    sanity: SanityConfig = Field(SanityConfig(), description="Warnings when the model's outputs look wrong.")
    view: ViewConfig = Field(ViewConfig(), description="The technician's live view in a browser (off by default).")
    rollout: RolloutConfig = Field(RolloutConfig(), description="Model rollouts: download, build beside the "
                                                                "serving model, gate, swap, rollback (docs/fleet.md).")
    logging: LoggingConfig = Field(LoggingConfig(), description="Logging.")

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: List[Any]) -> List[Any]:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError("source names must be unique; repeated: {}".format(", ".join(duplicates)))
        return sources
