"""Checkpoint conversion between the frameworks' layouts, as one call.

Reading follows one rule for every family (:func:`porthub.engine.read_state`): the weights of the
first of ``state_dict_ema``, ``model_ema``, ``state_dict``, ``model`` that holds a state dict, else
the file itself without its training entries; ``module.`` / ``_orig_mod.`` prefixes stripped; then the
family's layouts. A file that fits no layout of the model is compared with every shipped manifest, so
the error can say which registered variant it is a checkpoint of.

Writing never destroys a file: the source is never written over (not even when overwriting is
allowed), an existing output is refused unless ``force``, a missing output directory is an error,
and the default output name never names an existing file: ``ckpt_T.pdparams`` converts to
``ckpt_T.pth`` unless that exists (the original the Paddle file was made from, typically), and to
``ckpt_T_torch.pth`` then (``_paddle`` for Paddle outputs).
"""

from __future__ import annotations

import os
import re
import sys
import types
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine import (
    Manifest,
    Reading,
    find_state,
    from_canonical,
    read_state,
    resolve_layout,
    to_canonical,
)
from .errors import (
    ConversionError,
    KeyMismatchError,
    LayoutError,
    OutputExistsError,
    OutputPathError,
    UnknownModelError,
)
from .io import frameworks_of_file, load_checkpoint, read_json_object, save_checkpoint
from .io.dtypes import FLOAT_DTYPES, cast_floats, is_bfloat16
from .manifest import load_manifest, manifest_for
from .registry import FAMILIES, all_specs, get_spec, normalise, resolve
from .spec import FRAMEWORKS, PADDLE, TORCH, FamilySpec, Layout, ModelRef, Variant

__all__ = [
    "FORMATS_FOR",
    "Found",
    "Target",
    "closest_variants",
    "convert",
    "convert_file",
    "default_output",
    "output_path",
    "read_checkpoint",
    "resolve_target",
]

#: which file formats can hold each framework's weights
FORMATS_FOR = {TORCH: ("pth", "safetensors"), PADDLE: ("pdparams", "safetensors")}
_SUFFIX = {"pth": ".pth", "pdparams": ".pdparams", "safetensors": ".safetensors"}
#: constructor arguments under the names other codebases give them (PaddleClas: ``class_num``)
_KWARG_ALIASES = {"class_num": "num_classes"}
#: words of a PaddleSeg config name that say nothing about the model (resolution, schedule)
_SCHEDULE_WORD = re.compile(r"\d+x\d+|\d+k|\d+e")


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

    @property
    def task(self) -> str | None:
        return self.variant.task if self.variant is not None else None

    def torch_layout(self) -> Layout:
        if self.variant is not None:
            return self.spec.layout(self.variant.release_layout)
        if self.case is not None:
            chosen = self.spec.case_layout(self.case)
            if chosen:
                return self.spec.layout(chosen)
        return self.spec.default_layout(TORCH)


@dataclass(frozen=True)
class Found:
    """What :func:`read_checkpoint` found in a file."""

    #: the family layout that read it (``official``, ``paddle``, ``mmseg``, ...)
    layout: str
    #: the framework whose layout that is
    framework: str
    #: the container the weights were in (``model``, ``state_dict_ema``, ...), None for a bare state dict
    container: str | None
    #: wrapper prefixes removed from every key (``module.``, ``_orig_mod.``)
    stripped: tuple[str, ...] = ()
    #: top-level entries left unread (optimizer, config, meta, other containers)
    skipped: tuple[str, ...] = ()
    #: the floating dtypes of the weights read
    dtypes: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, reading: Reading) -> Found:
        return cls(reading.layout.name, reading.layout.framework, reading.container, reading.stripped, reading.skipped,
                   _float_dtypes(reading.state))

    def describe(self) -> str:
        where = f"'{self.container}' entry" if self.container else "bare state dict"
        extra = f", {' and '.join(p.rstrip('.') for p in self.stripped)} prefix stripped" if self.stripped else ""
        return f"layout {self.layout} ({where}{extra})"


def _float_dtypes(state: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    # a state dict has a thousand tensors and one or two dtype objects: name each dtype once (the
    # arrays keep their dtypes alive, so an id stands for one dtype throughout the loop)
    names: dict[int, str | None] = {}
    for value in state.values():
        key = id(value.dtype)
        if key not in names:
            names[key] = "bfloat16" if is_bfloat16(value) else str(value.dtype) if value.dtype.kind == "f" else None
        name = names[key]
        if name is not None:
            seen[name] = None
    return tuple(seen)


# ------------------------------------------------------------------------------------- targets
def _resolve_by_words(model: str) -> tuple[FamilySpec, Variant] | None:
    """The one registered variant whose names hold every word of ``model`` (PaddleSeg's config
    names such as ``seaformer_tiny_ade20k_512x512_160k``, less their resolution and schedule)."""
    words = {w for w in normalise(model).split("_") if w and not _SCHEDULE_WORD.fullmatch(w)}
    if len(words) < 2:
        return None
    hits = []
    for spec in all_specs():
        for variant in spec.variants:
            names = {w for name in (variant.name, *variant.aliases) for w in normalise(name).split("_")}
            if words <= names:
                hits.append((spec, variant))
    return hits[0] if len(hits) == 1 else None


def _resolve_variant(model: str) -> tuple[FamilySpec, Variant]:
    try:
        return resolve(model)
    except UnknownModelError:
        found = _resolve_by_words(model)
        if found is None:
            raise
        return found


def _kwargs(data: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(data)
    for alias, name in _KWARG_ALIASES.items():
        if alias in kwargs:
            if name in kwargs and kwargs[name] != kwargs[alias]:
                raise ConversionError(
                    f"the config gives both {alias}={kwargs[alias]} and {name}={kwargs[name]}; keep one")
            kwargs[name] = kwargs.pop(alias)
    return kwargs


def resolve_target(model: str, config: str | None = None) -> Target:
    """``model`` is a registered variant (or a PaddleSeg config name of one), or a family name
    together with ``config`` (a reference case JSON, or any JSON with ``constructor`` and ``kwargs``;
    PaddleClas' ``class_num`` is read as ``num_classes``)."""
    if config is None:
        spec, variant = _resolve_variant(model)
        return Target(spec, variant.model(), variant.name, variant)
    data = read_json_object(config, "config")
    family = normalise(model) if normalise(model) in FAMILIES else None
    if family is None:
        try:
            family = _resolve_variant(model)[0].family
        except UnknownModelError:
            family = data.get("family")
    if family is None:
        raise UnknownModelError(f"{model!r} is neither a family ({', '.join(FAMILIES)}) nor a registered model")
    spec = get_spec(family)
    if "family" in data:
        if normalise(str(data["family"])) != spec.family:
            raise ConversionError(f"config {config} is a {data['family']} case, not {spec.family}")
        if isinstance(data.get("kwargs"), Mapping):
            data = {**data, "kwargs": _kwargs(data["kwargs"])}
        ref = spec.case_model(data)
        label = f"{spec.family} config {os.path.basename(config)}"
        return Target(spec, ref, label, None, data)
    if "constructor" not in data or not isinstance(data.get("kwargs"), Mapping):
        raise ConversionError(
            f"config {config} needs 'constructor' and 'kwargs' (or be a reference case with 'family')")
    class_name = str(data["constructor"]).split("(")[0].strip().rsplit(".", 1)[-1]
    label = f"{spec.family} config {os.path.basename(config)}"
    return Target(spec, ModelRef(class_name, _kwargs(data["kwargs"])), label)


# ------------------------------------------------------------------------------------- outputs
def default_output(src: str, to: str, fmt: str) -> str:
    """Beside ``src`` with the format's suffix; ``<stem>_<to><suffix>`` when that is ``src`` itself
    or an existing file (the checkpoint a Paddle file was converted from, say)."""
    stem = os.path.splitext(src)[0]
    out = stem + _SUFFIX[fmt]
    if _same_file(out, src) or os.path.lexists(out):
        out = f"{stem}_{to}{_SUFFIX[fmt]}"
    return out


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def output_path(src: str, to: str, fmt: str, out: str | None = None, force: bool = False) -> str:
    """Where a conversion of ``src`` writes, checked before any work: never ``src`` itself, an
    existing file only with ``force``, into an existing directory under the default file name, and
    only into a directory that exists."""
    if out is None:
        path = default_output(src, to, fmt)
    elif os.path.isdir(out):
        path = os.path.join(out, os.path.basename(default_output(src, to, fmt)))
        if _same_file(path, src) or os.path.lexists(path) and not force:
            path = os.path.join(out, os.path.basename(f"{os.path.splitext(src)[0]}_{to}{_SUFFIX[fmt]}"))
    else:
        path = out
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputPathError(f"cannot write {path}: the directory {parent} does not exist; create it first")
    if _same_file(path, src):
        raise _exists(f"{path} is the checkpoint being converted; porthub never writes over its source. "
                      "Choose another output name", path, True)
    if os.path.lexists(path) and not force:
        raise _exists(f"{path} exists; nothing was written. Choose another output name, or allow overwriting it", path)
    return path


def _exists(message: str, path: str, is_source: bool = False) -> OutputExistsError:
    exc = OutputExistsError(message)
    exc.path, exc.is_source = path, is_source  # for callers that word their own advice (the CLI's flags)
    return exc


# -------------------------------------------------------------------------------------- reading
def closest_variants(raw: Any, frameworks: Sequence[str] = FRAMEWORKS, limit: int = 3) -> list[tuple[str, float]]:
    """The registered variants whose shipped key lists best match the file: (name, share of the
    union of (key, shape) pairs that both have), best first."""
    try:
        file_state = find_state(raw)[0]
    except LayoutError:
        return []
    scores: list[tuple[float, str]] = []
    for spec in all_specs():
        seen: set[frozenset] = set()
        for layout in spec.layouts:
            if layout.framework not in frameworks:
                continue
            try:
                state, _strays = to_canonical(file_state, layout, spec)
            except LayoutError:
                continue
            pairs = frozenset((k, tuple(v.shape)) for k, v in state.items() if isinstance(v, np.ndarray))
            if not pairs or pairs in seen:
                continue
            seen.add(pairs)
            for variant in spec.variants:
                manifest = load_manifest(spec, variant)
                if manifest is None:
                    continue
                want = {(k, shape) for k, (shape, _dtype) in manifest.entries.items()}
                scores.append((len(pairs & want) / len(pairs | want), variant.name))
    best: dict[str, float] = {}
    for score, name in sorted(scores, reverse=True):
        best.setdefault(name, score)
    return sorted(best.items(), key=lambda item: -item[1])[:limit]


def _read(target: Target, raw: Any, frameworks: Sequence[str], layout: str | None,
          allow_missing: Sequence[str]) -> Reading:
    manifest = target.manifest()
    try:
        return read_state(raw, target.spec, manifest, frameworks, layout=layout, allow_missing=allow_missing,
                          task=target.task if layout is None else None)
    except KeyMismatchError as exc:
        close = [(name, score) for name, score in closest_variants(raw, frameworks) if score >= 0.5]
        if not close or close[0][0] == target.name:
            raise
        name, score = close[0]
        _spec, variant = resolve(name)
        raise KeyMismatchError(
            f"this looks like a checkpoint of {name} ({variant.task}, {score:.0%} of its keys and shapes agree), not "
            f"{target.name}: convert it as {name}. Details: {exc}"
        ) from None


def read_checkpoint(path: str, model: str, layout: str | None = None, framework: str | None = None,
                    allow_missing: Sequence[str] = (),
                    config: str | None = None) -> tuple[OrderedDict[str, np.ndarray], Found]:
    """The canonical state dict of ``model`` (official PyTorch keys and shapes) in the checkpoint at
    ``path``, whatever container, wrapper prefix or layout it was saved in, and what was found.

    ``layout`` forces one of the family's layouts; ``framework`` says whose layout a safetensors
    file without metadata holds. Arrays are read-only views of the memory-mapped file where the
    layout allows (copy them to modify)."""
    target = resolve_target(model, config)
    frameworks = (framework,) if framework else frameworks_of_file(path)
    reading = _read(target, load_checkpoint(path), frameworks, layout, allow_missing)
    return reading.state, Found.of(reading)


# ---------------------------------------------------------------------------------- conversion
def _destination(target: Target, to: str, layout: str | None) -> Layout:
    if layout:
        dest = resolve_layout(target.spec, layout)
        if dest.framework != to:
            raise ConversionError(
                f"layout {dest.name!r} is a {dest.framework} layout; convert to {dest.framework} to write it")
        return dest
    return target.torch_layout() if to == TORCH else target.spec.default_layout(PADDLE)


def _task_note(target: Target, to: str, dest: Layout) -> str | None:
    """A one-line note when the target framework has a layout made for this task that was not chosen
    (PaddleSeg reads a segmentation model only in its own layout, and quietly loads part of any other)."""
    task = target.task
    if task is None:
        return None
    special = [layout for layout in target.spec.layouts_for(to) if layout.tasks and task in layout.tasks]
    if not special or dest in special:
        return None
    names = " or ".join(repr(layout.name) for layout in special)
    who = special[0].description.split(" (")[0]
    return (f"written in layout {dest.name!r}, porthub's own; {who} needs layout {names} "
            "(its loader would load only part of this file)")


def _written(obj: Any, dest: Layout) -> int:
    state = obj[dest.wrap] if dest.wrap is not None and isinstance(obj, Mapping) else obj
    return sum(isinstance(v, np.ndarray) for v in state.values()) if isinstance(state, Mapping) else 0


def convert_file(target: Target, src: str, to: str, out: str | None = None, fmt: str | None = None,
                 layout: str | None = None, source_layout: str | None = None,
                 allow_missing: Sequence[str] = (), source_framework: str | None = None,
                 force: bool = False, dtype: str | None = None) -> dict[str, Any]:
    """Read ``src`` in any layout of the family, check it against the model's manifest, and write it
    in ``to``'s layout. Nothing is written unless every key and shape fits; the output is checked
    before anything is read (see :func:`output_path`). ``dtype`` casts the floating weights
    (default: kept as they are, float16 and bfloat16 included)."""
    if to not in FRAMEWORKS:
        raise ConversionError(f"the target framework must be torch or paddle, not {to!r}")
    fmt = fmt or ("pdparams" if to == PADDLE else "pth")
    if fmt not in FORMATS_FOR[to]:
        raise ConversionError(f"{to} weights are written as {' or '.join(FORMATS_FOR[to])}, not {fmt}")
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ConversionError(f"cannot cast weights to {dtype!r}; choose one of {', '.join(FLOAT_DTYPES)}")
    dest = _destination(target, to, layout)
    if source_layout is not None:
        resolve_layout(target.spec, source_layout)  # an unknown name fails before any reading
    frameworks = (source_framework,) if source_framework else frameworks_of_file(src)
    path = output_path(src, to, fmt, out, force)
    reading = _read(target, load_checkpoint(src), frameworks, source_layout, allow_missing)
    state = reading.state
    if dtype is not None:
        state = OrderedDict((k, cast_floats(v, dtype)) for k, v in state.items())
    obj = from_canonical(state, dest, target.spec, target.ref.kwargs)
    metadata = None
    if fmt == "safetensors":
        if dest.wrap is not None:
            obj = obj[dest.wrap]
        metadata = {"format": "pt" if to == TORCH else "paddle", "porthub.framework": to,
                    "porthub.layout": dest.name, "porthub.model": target.name}
    written = _written(obj, dest)
    save_checkpoint(obj, path, fmt, metadata, overwrite=force)
    found = Found.of(reading)
    dtypes = found.dtypes if dtype is None else _float_dtypes(state)
    notes = [note] if (note := _task_note(target, to, dest)) else []
    return {"src": src, "out": path, "from_layout": found.layout, "container": found.container,
            "stripped": list(found.stripped), "skipped": list(found.skipped), "to_layout": dest.name, "format": fmt,
            "tensors": written, "dtypes": list(dtypes), "model": target.name, "read": found.describe(),
            "notes": notes}


def convert(model: str, src: str, to: str, out: str | None = None, force: bool = False, *, fmt: str | None = None,
            layout: str | None = None, from_layout: str | None = None, dtype: str | None = None,
            allow_missing: Sequence[str] = (), config: str | None = None,
            source_framework: str | None = None) -> dict[str, Any]:
    """Convert the checkpoint ``src`` of ``model`` to framework ``to`` ("torch" or "paddle").

    Writes ``out`` (default: beside ``src``, see :func:`default_output`; an existing directory gets
    the default file name inside it). An existing output is refused unless ``force``; ``src`` is
    never written over. Returns a summary: the layout and container read, the layout written, the
    number of tensors written, the output path."""
    return convert_file(resolve_target(model, config), src, to, out, fmt, layout, from_layout, allow_missing,
                        source_framework, force=force, dtype=dtype)


class _CallableModule(types.ModuleType):
    """``porthub.convert`` is both this module and the API function :func:`convert`: importing the
    submodule makes it the package's ``convert`` attribute, so the module itself calls :func:`convert`."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
