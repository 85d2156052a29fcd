"""bfloat16 without a numpy type for it.

numpy has no bfloat16, so porthub carries bfloat16 tensors as their raw 16-bit words: a ``uint16``
array whose dtype carries metadata saying what the words are. Views, transposes and copies keep the
metadata, so the writers know to store the words back as torch's ``BFloat16Storage``, safetensors'
``BF16`` or Paddle's bfloat16 (which numpy and Paddle already spell as ``uint16``). Nothing is
rounded on the way through: the words are the file's own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConversionError

__all__ = ["BFLOAT16", "FLOAT_DTYPES", "as_bfloat16", "cast_floats", "is_bfloat16"]

#: the dtype of bfloat16 words (uint16 with porthub's metadata)
BFLOAT16 = np.dtype(np.uint16, metadata={"porthub": "bfloat16"})
#: the names ``cast_floats`` accepts
FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


def is_bfloat16(arr: Any) -> bool:
    dtype = getattr(arr, "dtype", None)
    return (dtype is not None and dtype.kind == "u" and dtype.itemsize == 2
            and (dtype.metadata or {}).get("porthub") == "bfloat16")


def as_bfloat16(arr: np.ndarray) -> np.ndarray:
    """The same 16-bit words, marked as bfloat16 (a view, no copy)."""
    return arr.view(BFLOAT16)


def _to_float32(arr: np.ndarray) -> np.ndarray:
    # a bfloat16 word is the top half of the float32 with the same sign, exponent and leading mantissa
    return (np.asarray(arr).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def _from_float32(arr: np.ndarray) -> np.ndarray:
    # round to nearest even, as torch's .bfloat16() does; NaNs stay NaNs (quiet bit kept)
    bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(arr)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded.view(BFLOAT16)


def cast_floats(arr: np.ndarray, dtype: str) -> np.ndarray:
    """``arr`` in ``dtype`` if it holds floating values (bfloat16 words included); integer and
    boolean tensors (indices, counters) are returned as they are."""
    if dtype not in FLOAT_DTYPES:
        raise ConversionError(f"cannot cast to {dtype!r}; choose one of {', '.join(FLOAT_DTYPES)}")
    bf16 = is_bfloat16(arr)
    if not bf16 and arr.dtype.kind != "f":
        return arr
    if dtype == "bfloat16":
        return arr if bf16 else _from_float32(arr.astype(np.float32))
    values = _to_float32(arr) if bf16 else arr
    return values if values.dtype == np.dtype(dtype) else values.astype(dtype)
