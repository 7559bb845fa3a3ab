"""The configuration schema: the only source of defaults, validated with pydantic v2.

`load_config(path)` turns a YAML file into an `AgentConfig` or raises `ConfigError` whose text
names each bad key path, its YAML line, the value, what is allowed and, for unknown keys, the
nearest known key. Models hold no I/O and read no environment; file checks live in the loader.
"""

import difflib
import os
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from typing_extensions import Annotated, get_args, get_origin

from edge_agent.backends.onnxruntime import OnnxRuntimeConfig
from edge_agent.engine.config import EngineConfig, TensorRTConfig
from edge_agent.errors import ConfigError
from edge_agent.ids import NAME_PATTERN
from edge_agent.sources.config import SourceConfig, SyntheticSourceConfig
from edge_agent.telemetry.config import MqttConfig

DEMO_MODEL = Path(__file__).resolve().parent / "models" / "defect_unet.onnx"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DeviceConfig(StrictModel):
    id: str = Field("edge-agent-demo", pattern=NAME_PATTERN,
                    description="Device id, used in MQTT topics and the client id ([a-z0-9_-]).")
    site: str = Field("site", pattern=NAME_PATTERN, description="Plant or site id ([a-z0-9_-]).")
    line: str = Field("line", pattern=NAME_PATTERN, description="Production line id ([a-z0-9_-]).")


class InputConfig(StrictModel):
    name: Optional[str] = Field(None, description="Input tensor name; null takes the model's first input.")
    width: int = Field(256, ge=8, le=8192, description="Model input width in pixels.")
    height: int = Field(256, ge=8, le=8192, description="Model input height in pixels.")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Input tensor layout.")
    color: Literal["RGB", "BGR", "GRAY"] = Field("RGB", description="Channel order the model expects.")
    resize: Literal["stretch", "letterbox", "center_crop"] = Field(
        "stretch", description="How a frame is fitted to the input size: stretch, letterbox (pad) or center_crop."
    )
    scale: float = Field(1 / 255, gt=0, description="Pixel values are multiplied by this before mean/std.")
    mean: List[float] = Field([0.5, 0.5, 0.5], description="Per-channel mean subtracted after scaling.")
    std: List[float] = Field([0.25, 0.25, 0.25], description="Per-channel std divided by after the mean.")

    @property
    def channels(self) -> int:
        return 1 if self.color == "GRAY" else 3

    @model_validator(mode="after")
    def _check_normalization(self) -> "InputConfig":
        for key in ("mean", "std"):
            values = getattr(self, key)
            if len(values) != self.channels:
                raise ValueError(
                    "{} has {} values but color {} has {} channel(s)".format(
                        key, len(values), self.color, self.channels)
                )
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must all be > 0, got {}".format(self.std))
        return self


class OutputConfig(StrictModel):
    name: Optional[str] = Field(None,
                                description="Output tensor name; null takes the model's first output.")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="Output tensor layout.")
    activation: Literal["softmax", "sigmoid", "none"] = Field(
        "softmax",
        description="softmax: N-class logits; sigmoid: one-channel logit; none: output holds probabilities.",
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
        if self.activation == "sigmoid" and len(self.classes) != 1:
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
    max_batch: int = Field(1, ge=1, le=64, description="Most frames (from different sources) in one inference call.")
    max_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="How long a partial batch waits for more sources' frames."
    )


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
        None, description="Outbox and state; null: $STATE_DIRECTORY (systemd) or ~/.local/state/edge-agent."
    )
    cache_dir: Optional[Path] = Field(
        None, description="Engine cache; null: $CACHE_DIRECTORY (systemd) or ~/.cache/edge-agent."
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
    paths: PathsConfig = Field(PathsConfig(), description="Where state and caches live.")
    logging: LoggingConfig = Field(LoggingConfig(), description="Logging.")

    @field_validator("sources")
    @classmethod
    def _unique_source_names(cls, sources: List[Any]) -> List[Any]:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError("source names must be unique; repeated: {}".format(", ".join(duplicates)))
        return sources


def load_config(path: Optional[Union[str, Path]] = None, overrides: Optional[Dict[str, Any]] = None) -> AgentConfig:
    """Read, validate and check a YAML config; no path gives the defaults (the demo)."""
    data: Dict[str, Any] = {}
    lines: Dict[Tuple[Any, ...], int] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        data, lines = _read_yaml(Path(path))
    if overrides:
        data = _merge(data, overrides)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, where, lines)) from None
    _check_files(config, where, lines, base=Path(path).parent if path is not None else Path.cwd())
    return config


def _read_yaml(path: Path) -> Tuple[Dict[str, Any], Dict[Tuple[Any, ...], int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("{}: config file not found. Pass an existing file with --config.".format(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("{}: cannot read config file: {}".format(path, exc)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = " line {}, column {}".format(mark.line + 1, mark.column + 1) if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("{}:{}: YAML syntax error: {}. Check indentation and quoting there.".format(
            path, at, problem)) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError("{}: the top level must be a mapping of keys (device:, model:, ...), got {}".format(
            path, type(data).__name__))
    lines: Dict[Tuple[Any, ...], int] = {}
    _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: Any, prefix: Tuple[Any, ...], out: Dict[Tuple[Any, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            loc = prefix + (key_node.value,)
            out[loc] = key_node.start_mark.line + 1
            _collect_lines(value_node, loc, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            loc = prefix + (index,)
            out[loc] = item.start_mark.line + 1
            _collect_lines(item, loc, out)


def _merge(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_validation_error(exc: ValidationError, where: str, lines: Dict[Tuple[Any, ...], int]) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        loc = _data_loc(error["loc"])
        key = format_key(loc)
        line = _nearest_line(loc, lines)
        prefix = "{}{}: {}".format(where, ":{}".format(line) if line else "", key or "(top level)")
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            text = "unknown key."
            if hint:
                text += " Did you mean '{}'?".format(hint[0])
            if allowed:
                text += " Allowed here: {}.".format(", ".join(allowed))
        elif error["type"] == "union_tag_not_found":
            tags = (error.get("ctx") or {}).get("discriminator", "'type'")
            text = "needs a {} key saying which kind it is; got {}.".format(tags, _show_value(key, error.get("input")))
        else:
            text = "{}; got {}.".format(error["msg"], _show_value(key, error.get("input")))
        problems.append("{} {}".format(prefix, text))
    head = "invalid configuration ({} problem{}):".format(len(problems), "" if len(problems) == 1 else "s")
    return "\n  ".join([head] + problems)


def _data_loc(loc: Tuple[Any, ...]) -> Tuple[Any, ...]:
    """Drop the discriminator tags pydantic inserts (e.g. sources.0.synthetic.fps -> sources.0.fps)."""
    out: List[Any] = []
    node: Any = AgentConfig
    for part in loc:
        if isinstance(node, list) and isinstance(part, str):
            node = next((m for m in node if _tag(m) == part), None)
            continue
        out.append(part)
        node = _step(node, part)
    return tuple(out)


def format_key(loc: Tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += "[{}]".format(part) if isinstance(part, int) else ("." if text else "") + str(part)
    return text


def _nearest_line(loc: Tuple[Any, ...], lines: Dict[Tuple[Any, ...], int]) -> Optional[int]:
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _is_secret(key: str) -> bool:
    return any(word in key for word in ("password", "secret", "token"))


def _show_value(key: str, value: Any) -> str:
    if _is_secret(key):
        return "'***'"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _tag(model: Any) -> Optional[str]:
    field = getattr(model, "model_fields", {}).get("type")
    return field.default if field is not None else None


def _unwrap(annotation: Any) -> Any:
    """Reduce an annotation to a model class, a list of union members, or a container marker."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin is Union:
        members = [_unwrap(a) for a in get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else members
    if origin in (list, List, dict, Dict):
        return ("container", _unwrap(get_args(annotation)[-1]))
    return annotation


def _step(node: Any, part: Any) -> Any:
    if isinstance(node, tuple) and node and node[0] == "container":
        return node[1]
    fields = getattr(node, "model_fields", None)
    if fields is not None and part in fields:
        return _unwrap(fields[part].annotation)
    return None


def _allowed_keys(loc: Tuple[Any, ...]) -> List[str]:
    node: Any = AgentConfig
    data_node = node
    for part in loc:
        data_node = _step(data_node, part)
    if isinstance(data_node, list):
        return sorted({k for m in data_node for k in getattr(m, "model_fields", {})})
    return sorted(getattr(data_node, "model_fields", {}))


def _check_files(config: AgentConfig, where: str, lines: Dict[Tuple[Any, ...], int], base: Path) -> None:
    """Checks that need the filesystem, kept out of the models."""
    problems = []

    def resolve(value: Path) -> Path:
        return value if value.is_absolute() else (base / value)

    model_path = resolve(config.model.path)
    if not model_path.is_file():
        problems.append((("model", "path"), "model file {} does not exist. Point model.path at an ONNX file.".format(
            model_path)))
    else:
        config.model.path = model_path
    for index, source in enumerate(config.sources):
        path = getattr(source, "path", None)
        if path is None:
            continue
        full = resolve(path)
        if source.type == "folder" and not full.is_dir():
            problems.append((("sources", index, "path"), "folder {} does not exist.".format(full)))
        elif source.type == "video" and not full.is_file():
            problems.append((("sources", index, "path"), "video file {} does not exist.".format(full)))
        else:
            source.path = full
    for name in ("state_dir", "cache_dir"):
        value = getattr(config.paths, name)
        if value is not None:
            setattr(config.paths, name, resolve(value))
    for section, name in ((config.mqtt, "password_file"), (config.mqtt.tls, "ca_file"), (config.mqtt.tls, "cert_file"),
                          (config.mqtt.tls, "key_file")):
        value = getattr(section, name)
        if value is not None:  # relative to the config file, like every other path
            setattr(section, name, resolve(value))
    if problems:
        text = ["invalid configuration ({} problem{}):".format(len(problems), "" if len(problems) == 1 else "s")]
        for loc, message in problems:
            line = _nearest_line(loc, lines)
            text.append("{}{}: {} {}".format(where, ":{}".format(line) if line else "", format_key(loc), message))
        raise ConfigError("\n  ".join(text))


def state_dir(config: AgentConfig) -> Path:
    if config.paths.state_dir is not None:
        return config.paths.state_dir
    return _systemd_dir("STATE_DIRECTORY", Path.home() / ".local" / "state" / "edge-agent")


def cache_dir(config: AgentConfig) -> Path:
    if config.paths.cache_dir is not None:
        return config.paths.cache_dir
    return _systemd_dir("CACHE_DIRECTORY", Path.home() / ".cache" / "edge-agent")


def _systemd_dir(variable: str, fallback: Path) -> Path:
    value = os.environ.get(variable)
    # systemd may pass several colon-separated directories; the first is ours.
    return Path(value.split(":")[0]) if value else fallback


def dump_config(config: AgentConfig) -> str:
    """YAML of the effective config with secrets masked."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(_mask(data), sort_keys=False)


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if value is not None and _is_secret(key):
        return "***"
    return value
