"""The zip format of ``torch.save`` (PyTorch >= 1.6), read and written without torch.

Reading memory-maps the file: tensors whose storage entry is stored uncompressed (always, for
``torch.save``) are numpy views of the mapping, so reading a checkpoint allocates almost nothing
until a tensor is transformed or written.
"""

from __future__ import annotations

import contextlib
import io
import math
import mmap
import os
import struct
import zipfile
from typing import IO, Any

import numpy as np

from ..errors import CheckpointFormatError, CheckpointWriteError, UnsafeCheckpointError
from .dtypes import BFLOAT16, is_bfloat16
from .mapped import map_file
from .pickle_safe import (
    BASIC_GLOBALS,
    NUMPY_GLOBALS,
    Allowed,
    CopyBudget,
    Marker,
    PickleWriter,
    SafeUnpickler,
    allowed,
    finish_tree,
    scan_pickle,
)
from .zipstore import StoredZipWriter

__all__ = ["read_pth", "write_pth", "TORCH_DTYPES"]

#: torch storage class name -> numpy dtype
TORCH_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
}
#: torch storages numpy has no type for: named so the error says so instead of calling them unsafe
_UNSUPPORTED_STORAGES = ("QInt8Storage", "QUInt8Storage", "QInt32Storage", "QUInt4x2Storage",
                         "QUInt2x4Storage", "Float8_e4m3fnStorage", "Float8_e5m2Storage")
_STORAGE_OF = {dtype: name for name, dtype in TORCH_DTYPES.items()}
#: bfloat16 is carried as its raw 16-bit words (see porthub.io.dtypes); kept out of _STORAGE_OF, where
#: it would compare equal to plain uint16
_BFLOAT16_STORAGE = "BFloat16Storage"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_MAX_PICKLE = 256 * 1024 * 1024


class _Storage:
    """One storage entry of the zip, as a flat array viewing the mapped file. Only
    ``persistent_load`` makes these, so a pickle cannot pass some other array off as a storage."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError("the pickle tries to modify a storage")


def _contiguous_strides(size: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.prod(size[i + 1:]) for i in range(len(size)))


def _torch_globals(budget: CopyBudget) -> dict[tuple[str, str], Any]:
    """The allow-list for one read: the tensor rebuilders charge their copies to ``budget``."""

    def rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                          hooks: Any = None, metadata: Any = None) -> np.ndarray:
        if not isinstance(storage, _Storage):
            raise CheckpointFormatError("a tensor refers to something that is not a storage")
        if not (
            type(offset) is int
            and isinstance(size, tuple)
            and isinstance(stride, tuple)
            and len(size) == len(stride)
            and len(size) <= 64
        ):
            raise CheckpointFormatError("a tensor has a malformed offset, size or stride")
        if any(type(n) is not int or n < 0 for n in size) or any(type(s) is not int or s < 0 for s in stride):
            raise CheckpointFormatError(f"a tensor has a negative or non-integer size {size} or stride {stride}")
        data = storage.data
        numel = math.prod(size)
        if numel == 0:
            return np.zeros(size, dtype=data.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if offset < 0 or last >= data.size:
            raise CheckpointFormatError(
                f"a tensor of size {size} at offset {offset} with stride {stride} reaches element {last} of a storage "
                f"of {data.size}"
            )
        flat = data[offset:]
        # torch ignores the stride of a dimension of size 1, and so does contiguity here
        if all(s == c for n, s, c in zip(size, stride, _contiguous_strides(size)) if n != 1):
            return flat[:numel].reshape(size)
        budget.spend(numel * data.itemsize, f"a strided tensor of size {size}")
        itemsize = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat, shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
        )
        return np.ascontiguousarray(view)

    def rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *state: Any) -> np.ndarray:
        if not isinstance(data, np.ndarray):
            raise CheckpointFormatError("a parameter wraps something that is not a tensor")
        return data

    rebuild_tensor = Allowed("torch._utils._rebuild_tensor_v2", rebuild_tensor_v2)
    rebuild_param = Allowed("torch._utils._rebuild_parameter", rebuild_parameter)

    def rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> np.ndarray:
        if func not in (rebuild_tensor, rebuild_param) or new_type not in (_TENSOR, _PARAMETER):
            raise UnsafeCheckpointError("refusing a tensor subclass other than torch.Tensor / torch.nn.Parameter")
        if not isinstance(args, tuple):
            raise CheckpointFormatError("a tensor's rebuild arguments are not a tuple")
        return func(*args)

    return {
        **BASIC_GLOBALS,
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): rebuild_param,
        ("torch._tensor", "_rebuild_from_type_v2"): Allowed(
            "torch._tensor._rebuild_from_type_v2", rebuild_from_type_v2
        ),
        ("torch", "Tensor"): _TENSOR,
        ("torch.nn.parameter", "Parameter"): _PARAMETER,
        **_STORAGE_TYPES,
        # Training checkpoints keep optimizer scalars and metrics as numpy values.
        **NUMPY_GLOBALS,
    }


_TENSOR = Marker("torch.Tensor")
_PARAMETER = Marker("torch.nn.Parameter")
_STORAGE_TYPES: dict[tuple[str, str], Any] = allowed({
    **{("torch", name): Marker(name, dtype) for name, dtype in TORCH_DTYPES.items()},
    ("torch", _BFLOAT16_STORAGE): Marker(_BFLOAT16_STORAGE, BFLOAT16),
    **{("torch", name): Marker(name) for name in _UNSUPPORTED_STORAGES},
})


def _entry_view(mm: mmap.mmap, info: zipfile.ZipInfo, source: str) -> np.ndarray:
    """The bytes of one stored zip entry, as a uint8 view of the mapping (no copy)."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointFormatError(
            f"{source}: entry {info.filename} is compressed; torch.save stores entries uncompressed"
        )
    start = info.header_offset
    if start < 0 or info.file_size < 0:
        raise CheckpointFormatError(f"{source}: zip entry {info.filename} has a negative offset or size")
    header = mm[start:start + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise CheckpointFormatError(f"{source}: zip entry {info.filename} has no local header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    data_start = start + 30 + name_len + extra_len
    if data_start + info.file_size > len(mm):
        raise CheckpointFormatError(f"{source}: zip entry {info.filename} runs past the end of the file (truncated?)")
    return np.frombuffer(mm, dtype=np.uint8, count=info.file_size, offset=data_start)


def _byteorder(mm: mmap.mmap, by_name: dict[str, zipfile.ZipInfo], prefix: str, source: str) -> str:
    """``<`` or ``>``: torch records the saving machine's byte order (files from before it did are little-endian)."""
    info = by_name.get(f"{prefix}byteorder")
    if info is None:
        return "<"
    if info.file_size > 16:
        raise CheckpointFormatError(f"{source}: the byteorder record holds {info.file_size} bytes")
    value = _entry_view(mm, info, source).tobytes()
    if value not in (b"little", b"big"):
        raise CheckpointFormatError(f"{source}: the byteorder record says {value[:16]!r}, neither little nor big")
    return "<" if value == b"little" else ">"


def read_pth(path: str) -> Any:
    """Read a ``torch.save`` zip file into nested containers of numpy arrays."""
    source = os.path.basename(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if magic != b"PK\x03\x04":
            fh.seek(0)
            _refuse_legacy(fh, source)
        size = os.fstat(fh.fileno()).st_size
        mm, _whole = map_file(fh.fileno())
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError) as exc:
            raise CheckpointFormatError(
                f"{source}: not a readable torch.save zip file ({exc}); was it truncated?"
            ) from exc
        with zf:
            infos = zf.infolist()
    pkl = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
    if len(pkl) != 1:
        raise CheckpointFormatError(f"{source}: a torch.save zip holds exactly one data.pkl; found {len(pkl)}")
    prefix = pkl[0].filename[: -len("data.pkl")]
    if pkl[0].file_size > _MAX_PICKLE:
        raise CheckpointFormatError(
            f"{source}: data.pkl claims {pkl[0].file_size} bytes; refusing more than {_MAX_PICKLE}"
        )
    by_name = {i.filename: i for i in infos}
    order = _byteorder(mm, by_name, prefix, source)
    budget = CopyBudget(size, source)
    storages: dict[str, _Storage] = {}

    def persistent_load(pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and isinstance(pid[0], str) and pid[0] == "storage"):
            raise CheckpointFormatError(f"{source}: unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, Marker) or storage_type.name not in TORCH_DTYPES and storage_type.name not in (
                _BFLOAT16_STORAGE, *_UNSUPPORTED_STORAGES):
            raise UnsafeCheckpointError(f"{source}: storage type {storage_type!r:.60} is not a torch storage class")
        if storage_type.dtype is None:
            raise CheckpointFormatError(
                f"{source}: holds torch.{storage_type.name} tensors, which numpy cannot represent; "
                "convert them to float32 in PyTorch first (model.float()) and save again"
            )
        if not isinstance(key, str) or type(numel) is not int or numel < 0:
            raise CheckpointFormatError(f"{source}: malformed storage reference")
        if key in storages:
            # torch hands back the storage first loaded under this key whatever type a later reference names
            return storages[key]
        info = by_name.get(f"{prefix}data/{key}")
        if info is None:
            raise CheckpointFormatError(f"{source}: storage {key!r:.40} is referenced but missing (truncated file?)")
        dtype = storage_type.dtype.newbyteorder(order) if storage_type.dtype.itemsize > 1 else storage_type.dtype
        need = numel * dtype.itemsize
        if info.file_size != need:
            raise CheckpointFormatError(
                f"{source}: storage {key} claims {numel} x {storage_type.name} ({need} bytes) but holds "
                f"{info.file_size}"
            )
        data = _entry_view(mm, info, source).view(dtype) if need else np.zeros(0, dtype)
        if not data.dtype.isnative:
            # Saved on a big-endian machine: swap each storage once, so that tensors sharing it stay views.
            budget.spend(data.nbytes, f"byte-swapping storage {key}")
            data = data.astype(dtype.newbyteorder("="))
        storages[key] = _Storage(data)
        return storages[key]

    raw = _entry_view(mm, pkl[0], source).tobytes()
    scan_pickle(raw, source)
    unpickler = SafeUnpickler(io.BytesIO(raw), _torch_globals(budget), persistent_load, source)
    return finish_tree(unpickler.load_checked(), source, budget)


def _refuse_legacy(fh: IO[bytes], source: str) -> None:
    head = fh.read(64)
    if head[:1] == b"\x80":
        fh.seek(0)
        first: Any = None
        with contextlib.suppress(CheckpointFormatError, UnsafeCheckpointError):
            # the legacy format starts with a small pickle of the magic number; a scan bounds what it may claim
            start = fh.read(4096)
            scan_pickle(start, source)
            first = SafeUnpickler(io.BytesIO(start), {}, None, source).load_checked()
        if type(first) is int and first == _LEGACY_MAGIC:
            raise CheckpointFormatError(
                f"{source}: legacy torch.save format (PyTorch < 1.6), which porthub does not read; "
                "re-save it with a current PyTorch: torch.save(torch.load(f, weights_only=True), new_f)"
            )
    raise CheckpointFormatError(f"{source}: not a torch.save zip file (it does not start with a zip header)")


# ------------------------------------------------------------------------------------------ writing
def _torch_array_hook(storages: list[np.ndarray]):
    def hook(writer: PickleWriter, arr: np.ndarray) -> None:
        dtype = np.dtype(arr.dtype).newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        name = _BFLOAT16_STORAGE if is_bfloat16(arr) else _STORAGE_OF.get(dtype)
        if name is None:
            raise CheckpointWriteError(
                f"torch has no tensor type for numpy dtype {arr.dtype}; cast the weights to a float type first")
        key = str(len(storages))
        storages.append(arr)
        shape = tuple(int(n) for n in arr.shape)
        stride = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape)))
        writer.global_("torch._utils", "_rebuild_tensor_v2")
        writer.op(b"(")  # MARK for the argument tuple
        writer.op(b"(")  # MARK for the persistent id tuple
        writer.str_("storage")
        writer.global_("torch", name)
        writer.str_(key)
        writer.str_("cpu")
        writer.int_(int(arr.size))
        writer.op(b"t" + b"Q")  # TUPLE, BINPERSID
        writer.int_(0)
        writer.tuple_(shape)
        writer.tuple_(stride)
        writer.op(b"\x89")  # NEWFALSE: requires_grad
        writer.global_("collections", "OrderedDict")
        writer.op(b")R")  # EMPTY_TUPLE, REDUCE: backward hooks
        writer.op(b"tR")  # TUPLE, REDUCE

    return hook


def write_pth(obj: Any, out: IO[bytes], archive: str = "archive") -> None:
    """Write nested containers of numpy arrays as ``torch.save`` does (loadable with
    ``torch.load(..., weights_only=True)``), storages aligned to 64 bytes for ``mmap=True``."""
    storages: list[np.ndarray] = []
    pickled = io.BytesIO()
    PickleWriter(pickled, 2, _torch_array_hook(storages), ordered=True).dump(obj)
    with StoredZipWriter(out, align=64) as zf:
        zf.add(f"{archive}/data.pkl", pickled.getbuffer())
        zf.add(f"{archive}/byteorder", b"little")
        zf.add_arrays((f"{archive}/data/{key}", arr) for key, arr in enumerate(storages))
        zf.add(f"{archive}/version", b"3\n")
        zf.add(f"{archive}/.data/serialization_id", b"0" * 40)
