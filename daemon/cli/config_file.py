"""The file `cltool init` writes: every setting at its value, each under its description, as TOML."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from daemon.config import Settings


def render_toml(settings: Settings | None = None) -> str:
    """A commented TOML file holding every setting at its current value (defaults for `cltool init`)."""
    settings = settings or Settings()
    lines = ["# cltool configuration. Every key is shown at its default; delete what you do not change.",
             "# Environment variables override it (CLTOOL_TRAIN__EPOCHS=1), CLI flags override both.", ""]
    sections: list[tuple[str, BaseModel]] = []
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            sections.append((name, value))
        else:
            lines += [f"# {field.description}", f"{name} = {_toml_value(value)}", ""]
    for name, section in sections:
        lines.append(f"[{name}]")
        for key, field in type(section).model_fields.items():
            lines += [f"# {field.description}", f"{key} = {_toml_value(getattr(section, key))}"]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not (isinstance(value, float) and not math.isfinite(value)):
        return repr(value)
    if isinstance(value, Path):
        return _toml_value(str(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_value(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")
