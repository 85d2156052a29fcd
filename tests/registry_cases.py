"""The registry's smallest variants, which the registry-driven tests run at full size: one definition of
"smallest" (fewest learned values in the shipped key manifest) instead of a copy per test file."""

from __future__ import annotations

from typing import Any, Callable, Hashable

import numpy as np

from porthub.manifest import load_manifest
from porthub.registry import all_specs


def learned_size(spec: Any, variant: Any) -> int:
    """How many values the variant's state holds, read off its shipped manifest (no model is built)."""
    return sum(int(np.prod(shape)) for shape, _ in load_manifest(spec, variant).entries.values())


def smallest(key: Callable[[Any, Any], Hashable] = lambda spec, variant: (spec.family, variant.task),
             where: Callable[[Any, Any], bool] = lambda spec, variant: True) -> list[tuple[Any, Any]]:
    """The smallest variant per ``key`` (default: per family and task, so SeaFormer's segmenter too) among
    those ``where`` accepts, as (spec, variant) pairs in registry order."""
    out: dict[Hashable, tuple[Any, Any, int]] = {}
    for spec in all_specs():
        for variant in spec.variants:
            if not where(spec, variant):
                continue
            size = learned_size(spec, variant)
            k = key(spec, variant)
            if k not in out or size < out[k][2]:
                out[k] = (spec, variant, size)
    return [(spec, variant) for spec, variant, _ in out.values()]
