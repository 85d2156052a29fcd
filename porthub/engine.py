"""The conversion engine: every transform comes from a family's spec, never from tensor ranks.

Reading a checkpoint: ``raw file -> Layout.unwrap -> canonical state`` (the official PyTorch keys and
shapes). Writing: ``canonical -> Layout.wrap -> file``. A canonical state is checked against the
variant's manifest (keys, shapes, integer dtypes) before anything is written.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import KeyMismatchError, LayoutError, UnknownLayoutError
from .io.dtypes import as_bfloat16
from .io.pdparams import PADDLE_NAME_TABLE
from .spec import PADDLE, TORCH, FamilySpec, LayerKind, Layout

__all__ = [
    "CONTAINERS",
    "LAYOUT_ALIASES",
    "TRAINING_ENTRIES",
    "Manifest",
    "Reading",
    "State",
    "check_state",
    "detect_layout",
    "find_state",
    "framework_keys",
    "from_canonical",
    "read_state",
    "resolve_layout",
    "strip_wrapper_prefixes",
    "to_canonical",
    "unwrap",
    "wrap",
]

State = "OrderedDict[str, np.ndarray]"

_BN_TO_PADDLE = {"running_mean": "_mean", "running_var": "_variance"}
_BN_FROM_PADDLE = {v: k for k, v in _BN_TO_PADDLE.items()}
_BN_COUNT = "num_batches_tracked"


@dataclass(frozen=True)
class Manifest:
    """The canonical keys of one model, in state-dict order, with shapes and dtypes."""

    name: str
    entries: OrderedDict[str, tuple[tuple[int, ...], str]]

    @classmethod
    def from_list(cls, name: str, rows: Iterable[Sequence[Any]]) -> Manifest:
        return cls(name, OrderedDict((str(r[0]), (tuple(int(n) for n in r[1]), str(r[2]))) for r in rows))

    def to_list(self) -> list[list[Any]]:
        return [[k, list(shape), dtype] for k, (shape, dtype) in self.entries.items()]

    def keys(self) -> list[str]:
        return list(self.entries)


# --------------------------------------------------------------------------------- kind transforms
def _split(key: str) -> tuple[str, str]:
    module, _, leaf = key.rpartition(".")
    return module, leaf


def _paddle_entry(spec: FamilySpec, key: str, shape: tuple[int, ...]) -> tuple[str, tuple[int, ...], bool] | None:
    """The Paddle name and shape of a canonical entry, and whether its values are transposed;
    None for entries Paddle does not keep."""
    module, leaf = _split(key)
    kind = spec.kind_of(module)
    if kind is LayerKind.LINEAR and leaf == "weight":
        if len(shape) != 2:
            raise LayoutError(
                f"{spec.family}: {key} is declared a Linear weight but has shape {list(shape)}; fix the spec's layer "
                "rules"
            )
        return key, (shape[1], shape[0]), True
    if kind is LayerKind.BATCHNORM:
        if leaf == _BN_COUNT:
            return None
        if leaf in _BN_TO_PADDLE:
            return f"{module}.{_BN_TO_PADDLE[leaf]}", shape, False
    return key, shape, False


def _to_paddle(spec: FamilySpec, key: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    entry = _paddle_entry(spec, key, tuple(value.shape))
    if entry is None:
        return None
    name, _shape, transpose = entry
    # a view: the writer copies it out one tensor at a time, so conversion never holds two copies
    return name, (value.T if transpose else value)


def _canonical_entries(
    spec: FamilySpec, key: str, shape: tuple[int, ...], dtype: str
) -> list[tuple[str, tuple[int, ...], str, bool]]:
    """The canonical entries a Paddle entry stands for: (name, shape, dtype, transposed)."""
    module, leaf = _split(key)
    kind = spec.kind_of(module)
    if kind is LayerKind.LINEAR and leaf == "weight":
        if len(shape) != 2:
            raise LayoutError(
                f"{spec.family}: {key} is declared a Linear weight but has shape {list(shape)}; fix the spec's layer "
                "rules"
            )
        return [(key, (shape[1], shape[0]), dtype, True)]
    if kind is LayerKind.BATCHNORM and leaf in _BN_FROM_PADDLE:
        out = [(f"{module}.{_BN_FROM_PADDLE[leaf]}", shape, dtype, False)]
        if leaf == "_variance":
            out.append((f"{module}.{_BN_COUNT}", (), "int64", False))
        return out
    return [(key, shape, dtype, False)]


def _from_paddle(spec: FamilySpec, key: str, value: np.ndarray) -> list[tuple[str, np.ndarray]]:
    out = []
    for name, _shape, _dtype, transposed in _canonical_entries(spec, key, tuple(value.shape), str(value.dtype)):
        if name.endswith("." + _BN_COUNT) and not key.endswith("." + _BN_COUNT):
            out.append((name, np.zeros((), dtype=np.int64)))
        else:
            out.append((name, value.T if transposed else value))
    return out


def canonical_keys(
    spec: FamilySpec, paddle_entries: Mapping[str, tuple[tuple[int, ...], str]]
) -> OrderedDict[str, tuple[tuple[int, ...], str]]:
    """A Paddle model's state-dict names and shapes as canonical ones."""
    out: OrderedDict = OrderedDict()
    for key, (shape, dtype) in paddle_entries.items():
        for name, cshape, cdtype, _ in _canonical_entries(spec, key, shape, dtype):
            out[name] = (cshape, cdtype)
    return out


def framework_keys(
    spec: FamilySpec, manifest: Manifest, framework: str
) -> OrderedDict[str, tuple[tuple[int, ...], str]]:
    """The manifest as the given framework's model names and shapes its state dict."""
    if framework == TORCH:
        return OrderedDict(manifest.entries)
    out: OrderedDict = OrderedDict()
    for key, (shape, dtype) in manifest.entries.items():
        entry = _paddle_entry(spec, key, shape)
        if entry is not None:
            out[entry[0]] = (entry[1], dtype)
    return out


# ------------------------------------------------------------------------------------ renames
def _rename(key: str, table: Mapping[str, str]) -> str:
    if not table:
        return key
    return ".".join(table.get(part, part) for part in key.split("."))


# ------------------------------------------------------------------------------------ unwrap/wrap
def _is_state(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, np.ndarray) for v in obj.values())
    )


def unwrap(raw: Any, layout: Layout) -> OrderedDict[str, Any] | None:
    """The file-side state dict a layout finds in a loaded file, or None if the layout does not apply."""
    if not isinstance(raw, Mapping):
        return None
    if layout.containers:
        for name in layout.containers:
            inner = raw.get(name)
            if _is_state(inner):
                return OrderedDict(inner)
        return None
    return OrderedDict(raw) if _is_state(raw) else None


def to_canonical(
    file_state: Mapping[str, Any], layout: Layout, spec: FamilySpec
) -> tuple[OrderedDict[str, np.ndarray], list[str]]:
    """File-side keys to canonical ones. Returns the canonical state and the file keys that no rule
    accounts for (reported as unexpected by :func:`check_state`)."""
    renames = {r.file: r.canonical for r in layout.renames}
    strays: list[str] = []
    state: OrderedDict = OrderedDict()
    file_state, _ = strip_wrapper_prefixes(file_state)
    for key, value in file_state.items():
        if key == PADDLE_NAME_TABLE and layout.framework == PADDLE:
            continue
        if any(re.fullmatch(p, key) for p in layout.ignore):
            continue
        if not key.startswith(layout.prefix):
            strays.append(key)
            continue
        key = key[len(layout.prefix):]
        if any(re.fullmatch(p, key) for p in layout.constants):
            continue
        if not isinstance(value, np.ndarray):
            strays.append(layout.prefix + key)
            continue
        if layout.key_map is not None:
            key = layout.key_map[0](key)
        key = _rename(key, renames)
        if layout.framework == PADDLE:
            if value.dtype == np.uint16:
                # Paddle (and numpy) spell bfloat16 as uint16; no model of porthub has uint16 weights
                value = as_bfloat16(value)
            for k, v in _from_paddle(spec, key, value):
                state[k] = v
        else:
            state[key] = value
    return state, strays


def from_canonical(state: Mapping[str, np.ndarray], layout: Layout, spec: FamilySpec,
                   kwargs: Mapping[str, Any] | None = None) -> Any:
    """Canonical state to what the layout's file holds (the exact inverse of :func:`to_canonical`)."""
    renames = {r.canonical: r.file for r in layout.renames}
    items: list[tuple[str, np.ndarray]] = list(state.items())
    if layout.constant_fn is not None:
        items = _insert_constants(items, layout.constant_fn(kwargs or {}, [k for k, _ in items]))
    out: OrderedDict = OrderedDict()
    for key, value in items:
        if layout.framework == PADDLE:
            got = _to_paddle(spec, key, value)
            if got is None:
                continue
            key, value = got
        key = _rename(key, renames)
        if layout.key_map is not None:
            key = layout.key_map[1](key)
        out[layout.prefix + key] = value
    if layout.wrap is None:
        return out
    return {layout.wrap: out, **dict(layout.extra)}


def _insert_constants(
    items: list[tuple[str, np.ndarray]], constants: Mapping[str, np.ndarray]
) -> list[tuple[str, np.ndarray]]:
    """Put each regenerated buffer before the first key of its own module's children (where the
    official state dict keeps it), or at the end."""
    result = list(items)
    for key, value in constants.items():
        module = key.rpartition(".")[0] + "."
        at = next((i for i, (k, _) in enumerate(result) if k.startswith(module) and "." in k[len(module):]), None)
        if at is None:
            at = next((i + 1 for i in range(len(result) - 1, -1, -1) if result[i][0].startswith(module)), len(result))
        result.insert(at, (key, value))
    return result


def wrap(
    state: Mapping[str, np.ndarray], layout: Layout, spec: FamilySpec, kwargs: Mapping[str, Any] | None = None
) -> Any:
    return from_canonical(state, layout, spec, kwargs)


# ------------------------------------------------------------------------------------------ checks
@dataclass
class Mismatch:
    missing: list[str]
    unexpected: list[str]
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    dtypes: list[tuple[str, str, str]]

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.shapes) + len(self.dtypes)


def compare(state: Mapping[str, np.ndarray], manifest: Manifest, strays: Sequence[str] = (),
            allow_missing: Sequence[str] = ()) -> Mismatch:
    missing = [k for k in manifest.entries if k not in state and not any(re.fullmatch(p, k) for p in allow_missing)]
    unexpected = [k for k in state if k not in manifest.entries] + list(strays)
    shapes, dtypes = [], []
    for key, value in state.items():
        if key not in manifest.entries:
            continue
        shape, dtype = manifest.entries[key]
        if tuple(value.shape) != shape:
            shapes.append((key, tuple(value.shape), shape))
        elif np.dtype(dtype).kind in "iub" and value.dtype != np.dtype(dtype):
            dtypes.append((key, str(value.dtype), dtype))
    return Mismatch(missing, unexpected, shapes, dtypes)


def _fmt_keys(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_state(state: Mapping[str, np.ndarray], manifest: Manifest, strays: Sequence[str] = (),
                allow_missing: Sequence[str] = (), layout: str = "") -> None:
    """Raise :class:`KeyMismatchError` listing every missing, unexpected and mis-shaped key."""
    mm = compare(state, manifest, strays, allow_missing)
    if not mm.count:
        return
    raise KeyMismatchError(_describe(mm, manifest, layout))


def _describe(mm: Mismatch, manifest: Manifest, layout: str, found: str = "") -> str:
    parts = []
    if mm.shapes:
        parts.append(
            "shape mismatch: "
            + "; ".join(f"{k} is {list(a)} in the file, {list(b)} in the model" for k, a, b in mm.shapes[:6])
            + (f" ... ({len(mm.shapes)} in all)" if len(mm.shapes) > 6 else "")
        )
    if mm.missing:
        parts.append(f"missing: {_fmt_keys(mm.missing)}")
    if mm.unexpected:
        parts.append(f"unexpected: {_fmt_keys(mm.unexpected)}")
    if mm.dtypes:
        parts.append("dtype mismatch: " + "; ".join(f"{k} is {a}, model needs {b}" for k, a, b in mm.dtypes[:6]))
    where = f" (read as layout '{layout}'{', from the ' + found if found else ''})" if layout else ""
    return (f"checkpoint does not fit {manifest.name}{where}: " + " | ".join(parts)
            + ". Is it a checkpoint of another variant? Name the right model, "
            "or allow the keys you mean to leave out as missing")


#: containers a training or release save keeps its weights in, most preferred first: EMA weights
#: first, as timm's loaders and the official SeaFormer loader take them (they are the reported ones)
CONTAINERS = ("state_dict_ema", "model_ema", "state_dict", "model")
#: top-level entries of training saves (timm, DeiT, Swin-style utils.save_checkpoint, mmcv) that hold
#: no model weights: never read as part of a bare state dict (their tensors are never touched)
TRAINING_ENTRIES = frozenset({
    "meta", "optimizer", "lr_scheduler", "scheduler", "scaler", "amp", "amp_scaler", "epoch", "iter", "args",
    "config", "max_accuracy", "metric", "version", "arch", "best_acc1", "step",
})
#: key prefixes of wrapped models: torch DistributedDataParallel / DataParallel and torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: other names users know a family's layouts by (PaddleClas loads state dicts with the official keys,
#: which is porthub's ``paddle`` layout)
LAYOUT_ALIASES = {"paddleclas": "paddle"}


@dataclass(frozen=True)
class Reading:
    """What reading a checkpoint found: the layout, the canonical state, the container the weights
    were in (None: a bare state dict), the wrapper prefixes stripped and the entries left unread."""

    layout: Layout
    state: OrderedDict[str, np.ndarray]
    container: str | None
    stripped: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f"'{self.container}' entry" if self.container else "bare state dict"
        extra = f", {'/'.join(p.rstrip('.') for p in self.stripped)} prefix stripped" if self.stripped else ""
        return f"{where}, layout {self.layout.name}{extra}"


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> tuple[OrderedDict[str, Any], tuple[str, ...]]:
    """``state`` without the ``module.`` / ``_orig_mod.`` prefixes that every key carries (in any
    nesting: ``module._orig_mod.``), and the prefixes removed."""
    current: OrderedDict = state if isinstance(state, OrderedDict) else OrderedDict(state)
    stripped: list[str] = []
    while True:
        keys = [k for k in current if k != PADDLE_NAME_TABLE]
        prefix = next((p for p in WRAPPER_PREFIXES if keys and all(k.startswith(p) for k in keys)), None)
        if prefix is None:
            return current, tuple(stripped)
        stripped.append(prefix)
        current = OrderedDict((k.removeprefix(prefix), v) for k, v in current.items())


def _no_state(raw: Any, family: str) -> LayoutError:
    top = sorted(str(k) for k in raw)[:8] if isinstance(raw, Mapping) else type(raw).__name__
    return LayoutError(
        f"no {family} layout applies to this file: it holds no state dict (top-level entries: {top}); porthub reads "
        f"the weights from {', '.join(repr(c) for c in CONTAINERS)} or a bare state dict"
    )


def find_state(raw: Any, family: str = "model"
               ) -> tuple[OrderedDict[str, Any], str | None, tuple[str, ...], tuple[str, ...]]:
    """The one reading rule every family shares, by content: the weights of the first container of
    :data:`CONTAINERS` that holds a state dict, else the file itself minus the training entries; then
    wrapper prefixes stripped. Returns (file-side state, container, prefixes stripped, entries skipped).
    Nothing outside the chosen state is looked at, so skipped tensors stay unread pages of the file."""
    if not isinstance(raw, Mapping):
        raise _no_state(raw, family)
    container = next((name for name in CONTAINERS if _is_state(raw.get(name))), None)
    if container is not None:
        state: Mapping[str, Any] = raw[container]
        skipped = tuple(str(k) for k in raw if k != container)
    else:
        state = OrderedDict((k, v) for k, v in raw.items() if not (k in TRAINING_ENTRIES and type(v) is not np.ndarray))
        skipped = tuple(str(k) for k in raw if k not in state)
        if not _is_state(state):
            raise _no_state(raw, family)
    file_state, stripped = strip_wrapper_prefixes(state)
    return file_state, container, stripped, skipped


def resolve_layout(spec: FamilySpec, name: str) -> Layout:
    """The family's layout called ``name`` (or one of :data:`LAYOUT_ALIASES`)."""
    for candidate in (name, LAYOUT_ALIASES.get(name.lower())):
        if candidate and any(layout.name == candidate for layout in spec.layouts):
            return spec.layout(candidate)
    known = ", ".join(f"{layout.name} ({layout.framework})" for layout in spec.layouts)
    aliases = ", ".join(f"{a} = {t}" for a, t in LAYOUT_ALIASES.items()
                        if any(layout.name == t for layout in spec.layouts))
    raise UnknownLayoutError(f"{spec.family} has no layout {name!r}; known layouts: {known}"
                             + (f" (also: {aliases})" if aliases else ""))


def _rank(layout: Layout, container: str | None, raw: Mapping[str, Any]) -> int:
    """How well a layout's declared form matches what the file showed (lower first): its container
    (or none for a bare file), then the extra entries it writes (mmcv's ``meta``)."""
    fits = layout.containers == () if container is None else container in layout.containers
    extras = all(k in raw for k in layout.extra) if layout.extra else False
    return (0 if fits else 2) - (1 if extras else 0)


def read_state(raw: Any, spec: FamilySpec, manifest: Manifest | None, frameworks: Sequence[str] = (TORCH, PADDLE),
               layout: str | None = None, prefer: str | None = None, allow_missing: Sequence[str] = (),
               task: str | None = None) -> Reading:
    """Read ``raw`` (a loaded checkpoint) into the manifest's canonical keys and shapes.

    :func:`find_state` takes the weights out of their container; then the family's layouts (key
    prefixes, renames, key maps, constants, Paddle's layer-kind transforms) are tried, those whose
    declared form matches the file's first (``prefer`` before all), until one reads exactly the
    manifest. ``layout`` forces one layout (an unknown name raises :class:`UnknownLayoutError`
    listing the known ones). With no manifest the first layout that applies wins. When none fits,
    the error describes the closest one.
    """
    file_state, container, stripped, skipped = find_state(raw, spec.family)
    if layout is not None:
        candidates = [resolve_layout(spec, layout)]
    else:
        candidates = [c for c in spec.layouts if c.framework in frameworks and c.applies_to(task)]
        candidates.sort(key=lambda c: (c.name != prefer, _rank(c, container, raw)))
    if not candidates:
        raise LayoutError(f"no {spec.family} layout holds {'/'.join(frameworks)} weights for a {task} model")
    best: tuple[int, Layout, Mismatch] | None = None
    for candidate in candidates:
        state, strays = to_canonical(file_state, candidate, spec)
        if manifest is None:
            return Reading(candidate, state, container, stripped, skipped)
        mm = compare(state, manifest, strays, allow_missing)
        if mm.count == 0:
            return Reading(candidate, _ordered_like(state, manifest), container, stripped, skipped)
        if best is None or mm.count < best[0]:
            best = (mm.count, candidate, mm)
    if best is None:  # not reached: every candidate either returns or sets best
        raise LayoutError(f"no {spec.family} layout applies to this file")
    where = f"'{container}' entry" if container else "bare state dict"
    raise KeyMismatchError(_describe(best[2], manifest, best[1].name, where))


def detect_layout(raw: Any, spec: FamilySpec, manifest: Manifest | None, frameworks: Sequence[str] = (TORCH, PADDLE),
                  prefer: str | None = None, allow_missing: Sequence[str] = (),
                  task: str | None = None) -> tuple[Layout, OrderedDict[str, np.ndarray]]:
    """The layout that reads ``raw`` into exactly the manifest's keys and shapes, and the canonical
    state (:func:`read_state` without the details of what was found)."""
    found = read_state(raw, spec, manifest, frameworks, prefer=prefer, allow_missing=allow_missing, task=task)
    return found.layout, found.state


def _ordered_like(state: Mapping[str, np.ndarray], manifest: Manifest) -> OrderedDict[str, np.ndarray]:
    out = OrderedDict((k, state[k]) for k in manifest.entries if k in state)
    for k, v in state.items():
        if k not in out:
            out[k] = v
    return out
