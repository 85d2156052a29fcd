"""The one comparison rule of porthub: outputs of two runs agree when ``max|got - ref|`` is within
``tolerance * max(1, max|ref|)`` (relative for large values, absolute near zero).

Every item of a list, tuple or dict output (each map of a feature pyramid) is compared, by name:
``output`` for a single array, ``output.0``, ``output.1``, ... for list items, ``output.<key>`` for
dict items. A shape or structure mismatch, or a non-finite difference, counts as infinitely far.
Used by verification (reference cases and PyTorch-against-Paddle), reports, gradients and publishing.
Numpy only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Comparison", "limit", "max_abs_diff", "flatten_outputs", "compare_outputs", "compare_arrays", "map_nested"]


@dataclass
class Comparison:
    """One compared output: its name, ``max|got - ref|``, the limit it had to stay within, and the verdict."""

    framework: str
    output: str
    max_abs_diff: float
    tolerance: float
    ok: bool
    dtype: str = "float32"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def limit(tol: float, ref: Any) -> float:
    """``tol * max(1, max|ref|)``: the largest difference allowed against the reference ``ref``."""
    arr = np.asarray(ref)
    top = float(np.abs(arr).max()) if arr.size and arr.dtype.kind in "fciu" else 0.0
    return float(tol) * max(1.0, top)


def map_nested(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` applied to every leaf of nested tuples, lists and dicts, keeping their structure."""
    if isinstance(value, tuple):
        return tuple(map_nested(v, fn) for v in value)
    if isinstance(value, list):
        return [map_nested(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_nested(v, fn) for k, v in value.items()}
    return fn(value)


def max_abs_diff(a: Any, b: Any) -> float:
    """``max|a - b|`` in float64; inf when the shapes differ or the difference is not finite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    diff = np.abs(a - b)
    return float("inf") if not np.all(np.isfinite(diff)) else float(diff.max())


def flatten_outputs(out: Any, name: str = "output") -> dict[str, np.ndarray]:
    """Every array of a (nested) output by name: ``name`` for one array, ``name.i`` for list and tuple
    items, ``name.key`` for dict items."""
    if isinstance(out, (list, tuple)):
        flat: dict[str, np.ndarray] = {}
        for i, item in enumerate(out):
            flat.update(flatten_outputs(item, f"{name}.{i}"))
        return flat
    if isinstance(out, Mapping):
        flat = {}
        for key in out:
            flat.update(flatten_outputs(out[key], f"{name}.{key}"))
        return flat
    return {name: np.asarray(out)}


def compare_outputs(
    ref: Any, got: Any, tol: float, framework: str = "", dtype: str = "float32", name: str = "output"
) -> list[Comparison]:
    """One :class:`Comparison` per item of ``ref`` (and per item only one side has, which fails), in
    the reference's order, each judged by :func:`limit` of its own reference item."""
    want, have = flatten_outputs(ref, name), flatten_outputs(got, name)
    results = [compare_arrays(key, want[key], have.get(key), tol, framework, dtype) for key in want]
    results += [
        Comparison(framework, key, float("inf"), limit(tol, 0.0), False, dtype) for key in have if key not in want
    ]
    return results


def compare_arrays(
    name: str, ref: Any, got: Any, tol: float, framework: str = "", dtype: str = "float32"
) -> Comparison:
    """One named array against its reference (``got=None``: missing, which fails)."""
    bound = limit(tol, ref)
    diff = float("inf") if got is None else max_abs_diff(got, ref)
    return Comparison(framework, name, diff, bound, bool(diff <= bound), dtype)
