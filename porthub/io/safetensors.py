"""The safetensors format (an 8-byte header length, a JSON header, raw little-endian bytes), read by
memory-mapping and written by streaming, without the safetensors package."""

from __future__ import annotations

import json
import math
import os
import struct
from typing import IO, Any, Mapping

import numpy as np

from ..errors import CheckpointFormatError, CheckpointWriteError
from .dtypes import BFLOAT16, is_bfloat16
from .mapped import map_file
from .stream import write_array

__all__ = ["read_safetensors", "write_safetensors", "read_safetensors_metadata"]

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}
# bfloat16 words (porthub.io.dtypes) compare equal to uint16, so BF16 is looked up apart from _CODES
_DTYPES["BF16"] = BFLOAT16
_MAX_HEADER = 100 * 1024 * 1024


def _header(mm: Any, size: int, source: str) -> tuple[dict, int]:
    if size < 8:
        raise CheckpointFormatError(f"{source}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", mm[:8])
    if length > min(_MAX_HEADER, size - 8):
        raise CheckpointFormatError(f"{source}: safetensors header claims {length} bytes, more than the file holds")
    try:
        header = json.loads(bytes(mm[8:8 + length]).decode("utf-8"))
    except RecursionError as exc:
        raise CheckpointFormatError(f"{source}: safetensors header nests too deeply") from exc
    except ValueError as exc:
        # JSONDecodeError, UnicodeDecodeError, and integers longer than Python converts are all ValueErrors
        raise CheckpointFormatError(f"{source}: safetensors header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointFormatError(f"{source}: safetensors header is not a JSON object")
    return header, 8 + length


def read_safetensors_metadata(path: str) -> dict[str, str]:
    source = os.path.basename(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(min(size, 8 + _MAX_HEADER))
    header, _ = _header(head, size, source)
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Every tensor as a read-only numpy view of the memory-mapped file, in header order."""
    source = os.path.basename(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise CheckpointFormatError(f"{source}: empty file")
        mm, whole = map_file(fh.fileno())
    header, start = _header(mm, size, source)
    data_size = size - start
    out: dict[str, np.ndarray] = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise CheckpointFormatError(f"{source}: entry {name!r:.80} is not an object")
        code = entry.get("dtype")
        dtype = _DTYPES.get(code) if isinstance(code, str) else None
        if dtype is None:
            raise CheckpointFormatError(f"{source}: tensor {name!r:.80} has unsupported dtype {code!r:.40}")
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if not (isinstance(shape, list) and len(shape) <= 64 and all(type(n) is int and n >= 0 for n in shape)):
            raise CheckpointFormatError(f"{source}: tensor {name!r:.80} has a malformed shape {shape!r:.80}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise CheckpointFormatError(f"{source}: tensor {name!r:.80} has malformed data_offsets")
        begin, end = offsets
        # exact integers: a product of numpy int64 would wrap around for a crafted shape
        need = math.prod(shape) * dtype.itemsize
        if not 0 <= begin <= end <= data_size or end - begin != need:
            raise CheckpointFormatError(
                f"{source}: tensor {name!r:.80} of shape {shape} needs {need} bytes at [{begin}, {end}) of a "
                f"{data_size}-byte data section"
            )
        spans.append((begin, end, name))
        out[name] = whole[start + begin:start + end].view(dtype).reshape(shape)
    spans.sort()
    for (_b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise CheckpointFormatError(f"{source}: tensors {n0!r:.80} and {n1!r:.80} overlap")
    return out


def write_safetensors(
    tensors: Mapping[str, np.ndarray], out: IO[bytes], metadata: Mapping[str, str] | None = None
) -> None:
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    arrays = []
    for name, arr in tensors.items():
        if not isinstance(arr, np.ndarray):
            raise CheckpointWriteError(f"safetensors entry {name} is {type(arr).__name__}, not an array")
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        code = "BF16" if is_bfloat16(arr) else _CODES.get(dtype)
        if code is None:
            raise CheckpointWriteError(
                f"safetensors has no dtype for {arr.dtype} (tensor {name}); cast the weights to a float type first")
        header[name] = {
            "dtype": code,
            "shape": [int(n) for n in arr.shape],
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
        arrays.append(arr)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    out.write(struct.pack("<Q", len(raw)))
    out.write(raw)
    for arr in arrays:
        write_array(out, arr)
