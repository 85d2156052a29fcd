"""A small YAML writer for the deployment configs (``inference.yml``), so that export needs no PyYAML.

It writes block mappings and sequences of str/int/float/bool/None; every string is double-quoted the
JSON way, which YAML reads as the same string, so no value can turn into another type (``"no"``,
``"1e3"``). Short lists of scalars are written in flow style (``[0.485, 0.456, 0.406]``).
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps"]

_FLOW_ITEMS = 8


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} to YAML")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _flow(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) <= _FLOW_ITEMS and all(_is_scalar(v) for v in value)


def _inline(value: Any) -> str | None:
    """The value on its key's line, or None when it takes a block of its own."""
    if _is_scalar(value):
        return _scalar(value)
    if isinstance(value, dict) and not value:
        return "{}"
    if isinstance(value, (list, tuple)) and not value:
        return "[]"
    if _flow(value):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return None


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            inline = _inline(item)
            if inline is not None:
                out.append(f"{pad}{name}: {inline}")
            else:
                out.append(f"{pad}{name}:")
                out.extend(_lines(item, indent + 2))
        return out
    for item in value:
        inline = _inline(item)
        if inline is not None:
            out.append(f"{pad}- {inline}")
            continue
        body = _lines(item, indent + 2)
        out.append(f"{pad}- {body[0].lstrip()}")
        out.extend(body[1:])
    return out


def dumps(data: dict[str, Any]) -> str:
    """``data`` (a mapping) as a YAML document."""
    return "\n".join(_lines(data, 0)) + "\n"
