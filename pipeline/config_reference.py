"""The config reference in the README, generated from the config models so that it cannot drift from the code.

    python -m pipeline.config_reference            print it (Markdown)
    python -m pipeline.config_reference --update   rewrite the block in README.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipeline.config import RunConfig
from stages import STAGES

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(value) for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{json.dumps(value)}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{json.dumps(field.default)}`"


def _model_of(annotation) -> type[BaseModel] | None:
    candidates = typing.get_args(annotation) or (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        if key == "stages":
            rows.append(f"| `{key}` | list | required | {field.description} See the stage tables below. |")
            continue
        value_model = _model_of(typing.get_args(field.annotation)[1]) if typing.get_origin(field.annotation) is dict \
            else None
        if value_model is not None:  # {name: model}: the model's keys under <key>.<name>
            rows.append(f"| `{key}` | mapping | {_default(field)} | {field.description} |")
            rows.extend(_rows(value_model, f"{key}.<name>."))
            continue
        nested = _model_of(field.annotation)
        description = field.description or (_first_line(nested.__doc__) if nested is not None else "")
        if nested is not None:
            rows.append(f"| `{key}` | mapping | {_default(field) or '(defaults)'} | {description} |")
            rows.extend(_rows(nested, f"{key}."))
        else:
            rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
    return rows


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def markdown() -> str:
    header = "| key | type | default | meaning |\n|---|---|---|---|"
    parts = ["### Run", header, *_rows(RunConfig, "")]
    for name, stage in STAGES.items():
        summary = _first_line(sys.modules[stage.__module__].__doc__)
        parts += ["", f"### Stage `{name}`", summary, "", header, *_rows(stage.Config, f"{name}.")]
    return "\n".join(parts)


def update_readme(readme: Path) -> bool:
    """Rewrite the generated block; True when it changed."""
    text = readme.read_text()
    block = f"{START}\n{markdown()}\n{END}"
    updated = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    if updated != text:
        readme.write_text(updated)
    return updated != text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite the block in README.md")
    args = parser.parse_args()
    if args.update:
        readme = Path(__file__).resolve().parents[1] / "README.md"
        print("README.md updated" if update_readme(readme) else "README.md already up to date")
    else:
        print(markdown())


if __name__ == "__main__":
    main()
