#!/usr/bin/env python3
"""Write docs/config.md and docs/schemas/config.schema.json from the pydantic config schema.

The schema's field descriptions are the single source: run this after changing a config model
(`python scripts/gen_config_docs.py`); tests/test_config_docs.py fails while the docs are stale.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, List, Tuple

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from typing_extensions import get_args, get_origin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_agent.config import DEMO_MODEL, AgentConfig  # noqa: E402

HEADER = """# Configuration reference

edge-agent reads one YAML file (`edge-agent run --config FILE`). Every key is optional; a missing
key takes the default below, so an empty file runs the demo. Unknown keys are rejected with the
nearest known key suggested. Relative paths are resolved against the config file's folder.
Check a file with `edge-agent check --config FILE`. Editors can validate against
[`schemas/config.schema.json`](schemas/config.schema.json).

Generated from the schema by `python scripts/gen_config_docs.py`; do not edit by hand.
"""


def _models(annotation: Any) -> List[type]:
    """Config models inside an annotation (through Optional, List, Dict, Union, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: List[type] = []
    for arg in get_args(annotation):
        found += _models(arg)
    return found


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is None:
        return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "null")
    args = get_args(annotation)
    name = getattr(origin, "__name__", str(origin))
    if name == "Literal":
        return " \\| ".join(json.dumps(a) for a in args)
    if name in ("Union", "UnionType"):
        return " or ".join(_type_name(a) for a in args)
    if name == "Annotated":
        return _type_name(args[0])
    return "{}[{}]".format(name, ", ".join(_type_name(a) for a in args))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        return "**required**"
    value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "one {} source".format(getattr(value[0], "type", ""))
    if isinstance(value, Path):
        return "bundled demo model" if value == DEMO_MODEL else "`{}`".format(value)
    return "`{}`".format(json.dumps(value))


def _section(model: type, prefix: str, rows: List[Tuple[str, str, str, str]], subsections: List[Any]) -> None:
    for name, field in model.model_fields.items():
        key = prefix + name
        nested = _models(field.annotation)
        if len(nested) == 1 and get_origin(field.annotation) is None:
            rows.append((key, "section", "", field.description or ""))
            _section(nested[0], key + ".", rows, subsections)
        elif len(nested) > 1 or (nested and get_origin(field.annotation) is not None):
            kinds = ", ".join("`{}`".format(m.model_fields["type"].default) for m in nested
                              if "type" in m.model_fields) or "see below"
            rows.append((key, "list or section", _default(field), "{} Kinds: {}.".format(field.description, kinds)))
            subsections.append((key, nested))
        else:
            rows.append((key, _type_name(field.annotation), _default(field), field.description or ""))


def _table(rows: List[Tuple[str, str, str, str]]) -> List[str]:
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    out += ["| `{}` | {} | {} | {} |".format(*row) for row in rows]
    return out


def render() -> Tuple[str, str]:
    rows: List[Tuple[str, str, str, str]] = []
    subsections: List[Any] = []
    _section(AgentConfig, "", rows, subsections)
    lines = [HEADER, "## Keys", ""] + _table(rows)
    for key, models in subsections:
        for model in models:
            kind = model.model_fields["type"].default if "type" in model.model_fields else model.__name__
            sub_rows: List[Tuple[str, str, str, str]] = []
            _section(model, "", sub_rows, [])
            lines += ["", "## `{}` of type `{}`".format(key, kind), ""] + _table(sub_rows)
    schema = json.dumps(AgentConfig.model_json_schema(), indent=2, sort_keys=True, default=str)
    # the demo model's default is an absolute path into the checkout: keep the file the same everywhere
    schema = schema.replace(json.dumps(str(DEMO_MODEL)), json.dumps("<bundled demo model>"))
    return "\n".join(lines) + "\n", schema + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the docs differ from the schema")
    args = parser.parse_args()
    markdown, schema = render()
    targets = {REPO / "docs" / "config.md": markdown, REPO / "docs" / "schemas" / "config.schema.json": schema}
    stale = [p for p, text in targets.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for path in stale:
            print("{} is stale: run python scripts/gen_config_docs.py".format(path.relative_to(REPO)))
        return 1 if stale else 0
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print("wrote {}".format(path.relative_to(REPO)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
