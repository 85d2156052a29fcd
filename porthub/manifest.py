"""Manifests: the canonical keys, shapes and dtypes of each registered variant.

They ship as data (``converters/manifests/<family>.json``) so that conversion checks every key and
shape without torch or paddle. ``porthub manifests --write`` regenerates them from the PyTorch
models; a test holds them equal to the official key lists.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Mapping

from .engine import Manifest
from .spec import FamilySpec, ModelRef, Variant

__all__ = ["manifest_path", "load_manifest", "manifest_for", "write_manifests"]

_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "converters", "manifests")


def manifest_path(family: str) -> str:
    return os.path.join(_DIR, f"{family}.json")


@lru_cache(maxsize=None)
def _family_manifests(family: str) -> Mapping[str, Any]:
    try:
        with open(manifest_path(family), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}


def load_manifest(spec: FamilySpec, variant: Variant) -> Manifest | None:
    rows = _family_manifests(spec.family).get(variant.name)
    return None if rows is None else Manifest.from_list(variant.name, rows)


def manifest_for(spec: FamilySpec, ref: ModelRef, name: str, variant: Variant | None = None) -> Manifest:
    """The shipped manifest of a registered variant built as registered, else one read off a model
    built in whichever framework is installed."""
    if variant is not None and dict(variant.kwargs) == dict(ref.kwargs) and variant.class_name == ref.class_name:
        shipped = load_manifest(spec, variant)
        if shipped is not None:
            return shipped
    from .runtime import available_framework, model_manifest

    return model_manifest(spec, ref, available_framework(), name)


def write_manifests(spec: FamilySpec, framework: str = "torch") -> str:
    from .runtime import model_manifest

    data = {v.name: model_manifest(spec, v.model(), framework, v.name).to_list() for v in spec.variants}
    os.makedirs(_DIR, exist_ok=True)
    path = manifest_path(spec.family)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, separators=(",", ":"))
        fh.write("\n")
    _family_manifests.cache_clear()
    return path
