"""Reading a YAML config into an `AgentConfig`, with errors a technician can act on.

`load_config(path)` turns a YAML file into an `AgentConfig` or raises `ConfigError` whose text
names each bad key path, its YAML line, the value, what is allowed and, for unknown keys, the
nearest known key. File checks live here, not in the models; `dump_config` prints the effective
config with secrets masked.
"""

import difflib
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml
from pydantic import ValidationError
from typing_extensions import Annotated, get_args, get_origin

from edge_agent.config import AgentConfig
from edge_agent.config_yaml import read_yaml, top_level_mapping
from edge_agent.errors import ConfigError


def load_config(path: Optional[Union[str, Path]] = None, overrides: Optional[Dict[str, Any]] = None) -> AgentConfig:
    """Read, validate and check a YAML config; no path gives the defaults (the demo)."""
    data: Dict[str, Any] = {}
    lines: Dict[Tuple[Any, ...], int] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        raw, lines = read_yaml(Path(path))
        data = top_level_mapping(raw, Path(path))
    if overrides:
        data = merge_overrides(data, overrides)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, where, lines)) from None
    _check_files(config, where, lines, base=Path(path).parent if path is not None else Path.cwd())
    return config


def merge_overrides(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    """`extra` over `base`, nested mappings merged key by key (neither is changed)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
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
    for source in config.sources:
        path = getattr(source, "path", None)
        if path is not None:
            # A missing folder or video is not a config error: like an unplugged camera, the
            # source retries until it appears, and the other sources keep inspecting.
            source.path = resolve(path)
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
