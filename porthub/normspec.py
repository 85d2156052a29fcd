"""Parse the text form of a ``norm_layer`` argument (``functools.partial(torch.nn.LayerNorm, eps=1e-6)``).

The reference cases write callables as text; both frameworks' model files turn that text into
their own norm layer through :func:`parse_norm_layer`, so the rule lives once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ModelConfigError

__all__ = ["NormSpec", "parse_norm_layer"]

_PARTIAL = re.compile(r"^\s*(?:functools\.)?partial\(\s*([\w.]+)\s*(?:,(.*))?\)\s*$")
_CLASS = re.compile(r"^\s*([\w.]+)\s*$")
_KWARG = re.compile(r"\s*(\w+)\s*=\s*([^,]+?)\s*(?:,|$)")


@dataclass(frozen=True)
class NormSpec:
    """A norm layer class (its PyTorch name, e.g. ``LayerNorm``) and its ``eps``."""

    name: str
    eps: float = 1e-5


def parse_norm_layer(text: "str | NormSpec | None", default_eps: float = 1e-5) -> NormSpec:
    """``"functools.partial(torch.nn.LayerNorm, eps=1e-6)"`` -> ``NormSpec("LayerNorm", 1e-6)``."""
    if text is None:
        return NormSpec("LayerNorm", default_eps)
    if isinstance(text, NormSpec):
        return text
    match = _PARTIAL.match(text)
    if match:
        qualname, args = match.group(1), match.group(2) or ""
    else:
        match = _CLASS.match(text)
        if not match:
            raise ModelConfigError(f"norm_layer {text!r} is not a class name or a functools.partial of one")
        qualname, args = match.group(1), ""
    name = qualname.rsplit(".", 1)[-1]
    eps = default_eps
    for key, value in _KWARG.findall(args):
        if key != "eps":
            raise ModelConfigError(f"norm_layer {text!r}: only eps can be set, not {key!r}")
        eps = float(value)
    if name not in ("LayerNorm",):
        raise ModelConfigError(f"norm_layer {text!r}: porthub supports LayerNorm here, not {name}")
    return NormSpec(name, eps)
