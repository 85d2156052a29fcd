"""Manifests: the canonical keys, shapes and dtypes of each registered variant.

They ship as data (``converters/manifests/<family>.json``) so that conversion checks every key and
shape without torch or paddle. ``porthub manifests --write`` regenerates them from the PyTorch
models; a test holds them equal to the official key lists.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

from .engine import Manifest
from .io import atomic_write
from .spec import FamilySpec, ModelRef, Variant

__all__ = ["manifest_path", "load_manifest", "manifest_for", "write_manifests"]

#: the package whose data the manifests are (``converters/manifests/<family>.json``, shipped as package data)
_PACKAGE = "converters"


def _resource(family: str) -> Any:
    return resources.files(_PACKAGE) / "manifests" / f"{family}.json"


def manifest_path(family: str) -> str:
    """Where the family's manifest file is (a file system path: ``porthub manifests`` writes it)."""
    return os.fspath(_resource(family))


@lru_cache(maxsize=None)
def _family_manifests(family: str) -> Mapping[str, Any]:
    try:
        return json.loads(_resource(family).read_text(encoding="utf-8"))
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
    path = manifest_path(spec.family)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_write(path) as fh:
        fh.write((json.dumps(data, separators=(",", ":")) + "\n").encode("utf-8"))
    _family_manifests.cache_clear()
    return path
