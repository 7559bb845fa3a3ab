"""Reading a config file's YAML defensively, before any value is trusted.

`yaml.safe_load` alone accepts things that hurt a daemon later: a key written twice (YAML keeps
the last one silently), nested aliases that expand exponentially (a "billion laughs": nine lines
become 9^9 values as soon as anything walks them, e.g. a line-number collector or an error's
`repr`), nesting deep enough to exhaust Python's recursion, and files of any size. Each is
refused here with one message that names the file, the line and the fix.

The composed node graph is walked once, each node at most once (an alias is the same node
object, so it is counted but never walked twice).
"""

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import yaml

from edge_agent.errors import ConfigError

MAX_FILE_BYTES = 1 << 20  # a config is a few kB; 1 MiB leaves room for long comments
MAX_VALUES = 100_000  # scalars + collections after alias expansion; real configs hold a few hundred
MAX_DEPTH = 64  # mappings/lists inside each other; the schema is at most ~6 deep

Lines = Dict[Tuple[Any, ...], int]


def read_yaml(path: Path) -> Tuple[Any, Lines]:
    """(data, line of each key path) from a YAML file, or ConfigError with the reason."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError("{}: the config file is {:.1f} MB; a config is a few kB (the limit is {} kB). "
                              "Pass the right file with --config.".format(path, size / 2**20, MAX_FILE_BYTES // 1024))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("{}: config file not found. Pass an existing file with --config.".format(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("{}: cannot read config file: {}".format(path, exc)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = " line {}, column {}".format(mark.line + 1, mark.column + 1) if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("{}:{}: YAML syntax error: {}. Check indentation and quoting there.".format(
            path, at, problem)) from None
    except RecursionError:
        raise ConfigError("{}: YAML nested too deeply to read (more than {} levels of lists or mappings); a config "
                          "is at most a few levels deep.".format(path, MAX_DEPTH)) from None
    if node is None:
        return None, {}
    lines: Lines = {}
    _Walk(path, lines).visit(node, (), 0)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # constructor errors (e.g. a bad !!tag) after composing worked
        raise ConfigError("{}: YAML error: {}".format(path, getattr(exc, "problem", None) or exc)) from None
    return data, lines


class _Walk:
    def __init__(self, path: Path, lines: Lines) -> None:
        self.path = path
        self.lines = lines
        self.sizes: Dict[int, int] = {}  # expanded size of every collection walked, by node id

    def visit(self, node: yaml.Node, loc: Tuple[Any, ...], depth: int) -> int:
        """Expanded number of values under `node` (itself included); raises past the limits.
        A collection met again through an alias is the same node object: its size is reused,
        so the walk stays linear in the file while the sum tracks the real expansion."""
        if id(node) in self.sizes:
            return self.sizes[id(node)]
        if depth > MAX_DEPTH:
            raise ConfigError("{}:{}: YAML nested more than {} levels deep; a config is at most a few levels "
                              "deep.".format(self.path, node.start_mark.line + 1, MAX_DEPTH))
        size = 1
        if isinstance(node, yaml.MappingNode):
            first_line: Dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                if key is not None and key != "<<":
                    if key in first_line:
                        raise ConfigError(
                            "{}:{}: key '{}' appears twice in the same mapping (lines {} and {}); YAML would keep "
                            "only the last one silently. Merge them into one '{}:' section.".format(
                                self.path, line, _key_text(loc + (key,)), first_line[key], line, key))
                    first_line[key] = line
                    self.lines.setdefault(loc + (key,), line)
                size += self.visit(value_node, loc + (key,), depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines.setdefault(loc + (index,), item.start_mark.line + 1)
                size += self.visit(item, loc + (index,), depth + 1)
        else:
            return 1
        if size > MAX_VALUES:
            raise ConfigError(
                "{}:{}: this YAML expands to more than {} values (aliases '*name' nested inside each other "
                "multiply); a config holds a few hundred. Write the values out or nest fewer aliases.".format(
                    self.path, node.start_mark.line + 1, MAX_VALUES))
        self.sizes[id(node)] = size
        return size


def _key_text(loc: Tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += "[{}]".format(part) if isinstance(part, int) else ("." if text else "") + str(part)
    return text


def top_level_mapping(data: Any, path: Optional[Path]) -> Dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("{}: the top level must be a mapping of keys (device:, model:, ...), got {}".format(
            path, type(data).__name__))
    return data
