"""Checkpoint conversion between the frameworks' layouts, as one call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .engine import Manifest, detect_layout, from_canonical
from .errors import UnknownModelError
from .io import FORMATS, load_checkpoint, save_checkpoint
from .manifest import manifest_for
from .registry import FAMILIES, get_spec, normalise, resolve
from .spec import FRAMEWORKS, PADDLE, TORCH, FamilySpec, Layout, ModelRef, Variant
from .verify import frameworks_of_file, read_json_object

__all__ = ["Target", "resolve_target", "convert_file", "default_output", "FORMATS_FOR"]

#: which file formats can hold each framework's weights
FORMATS_FOR = {TORCH: ("pth", "safetensors"), PADDLE: ("pdparams", "safetensors")}
_SUFFIX = {"pth": ".pth", "pdparams": ".pdparams", "safetensors": ".safetensors"}


@dataclass(frozen=True)
class Target:
    """A model to convert for: its family spec, how to build it, and its manifest."""

    spec: FamilySpec
    ref: ModelRef
    name: str
    variant: Variant | None = None
    case: Mapping[str, Any] | None = None

    def manifest(self) -> Manifest:
        return manifest_for(self.spec, self.ref, self.name, self.variant)

    def torch_layout(self) -> Layout:
        if self.variant is not None:
            return self.spec.layout(self.variant.release_layout)
        if self.case is not None:
            chosen = self.spec.case_layout(self.case)
            if chosen:
                return self.spec.layout(chosen)
        return self.spec.default_layout(TORCH)


def resolve_target(model: str, config: str | None = None) -> Target:
    """``model`` is a registered variant, or a family name together with ``config`` (a reference
    case JSON, or any JSON with ``constructor`` and ``kwargs``)."""
    if config is None:
        spec, variant = resolve(model)
        return Target(spec, variant.model(), variant.name, variant)
    data = read_json_object(config, "config")
    family = normalise(model) if normalise(model) in FAMILIES else None
    if family is None:
        try:
            family = resolve(model)[0].family
        except UnknownModelError:
            family = data.get("family")
    if family is None:
        raise UnknownModelError(f"{model!r} is neither a family ({', '.join(FAMILIES)}) nor a registered model")
    spec = get_spec(family)
    if "family" in data:
        if normalise(str(data["family"])) != spec.family:
            raise ValueError(f"config {config} is a {data['family']} case, not {spec.family}")
        ref = spec.case_model(data)
        label = f"{spec.family} config {os.path.basename(config)}"
        return Target(spec, ref, label, None, data)
    if "constructor" not in data or "kwargs" not in data:
        raise ValueError(f"config {config} needs 'constructor' and 'kwargs' (or be a reference case with 'family')")
    class_name = str(data["constructor"]).split("(")[0].strip().rsplit(".", 1)[-1]
    return Target(spec, ModelRef(class_name, dict(data["kwargs"])), f"{spec.family} config {os.path.basename(config)}")


def default_output(src: str, to: str, fmt: str) -> str:
    stem = os.path.splitext(src)[0]
    out = stem + _SUFFIX[fmt]
    if os.path.abspath(out) == os.path.abspath(src):
        out = f"{stem}_{to}{_SUFFIX[fmt]}"
    return out


def convert_file(target: Target, src: str, to: str, out: str | None = None, fmt: str | None = None,
                 layout: str | None = None, source_layout: str | None = None,
                 allow_missing: Sequence[str] = (), source_framework: str | None = None) -> dict[str, Any]:
    """Read ``src`` in any layout of the family, check it against the model's manifest, and write it
    in ``to``'s layout. Nothing is written unless every key and shape fits."""
    if to not in FRAMEWORKS:
        raise ValueError(f"--to must be torch or paddle, not {to!r}")
    fmt = fmt or ("pdparams" if to == PADDLE else "pth")
    if fmt not in FORMATS_FOR[to]:
        raise ValueError(f"{to} weights are written as {' or '.join(FORMATS_FOR[to])}, not {fmt}")
    spec = target.spec
    manifest = target.manifest()
    raw = load_checkpoint(src)
    frameworks = (source_framework,) if source_framework else frameworks_of_file(src)
    task = target.variant.task if target.variant is not None else None
    found, state = detect_layout(raw, spec, manifest, frameworks, prefer=source_layout, allow_missing=allow_missing, task=task)
    dest = spec.layout(layout) if layout else (target.torch_layout() if to == TORCH else spec.default_layout(PADDLE))
    if dest.framework != to:
        raise ValueError(f"layout {dest.name!r} is a {dest.framework} layout; use it with --to {dest.framework}")
    obj = from_canonical(state, dest, spec, target.ref.kwargs)
    out = out or default_output(src, to, fmt)
    metadata = None
    if fmt == "safetensors":
        if dest.wrap is not None:
            obj = obj[dest.wrap]
        metadata = {"format": "pt" if to == TORCH else "paddle", "porthub.framework": to,
                    "porthub.layout": dest.name, "porthub.model": target.name}
    save_checkpoint(obj, out, fmt, metadata)
    return {"src": src, "out": out, "from_layout": found.name, "to_layout": dest.name, "format": fmt,
            "tensors": len(state), "model": target.name}
