"""The zip format of ``torch.save`` (PyTorch >= 1.6), read and written without torch.

Reading memory-maps the file: tensors whose storage entry is stored uncompressed (always, for
``torch.save``) are numpy views of the mapping, so reading a checkpoint allocates almost nothing
until a tensor is transformed or written.
"""

from __future__ import annotations

import mmap
import os
import struct
import zipfile
from typing import IO, Any

import numpy as np

from ..errors import CheckpointFormatError, UnsafeCheckpointError
from .pickle_safe import BASIC_GLOBALS, NUMPY_GLOBALS, PickleWriter, SafeUnpickler

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
}
_STORAGE_OF = {dtype: name for name, dtype in TORCH_DTYPES.items()}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_MAX_PICKLE = 256 * 1024 * 1024


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: it only names a dtype."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = TORCH_DTYPES[name]


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       hooks: Any = None, metadata: Any = None) -> np.ndarray:
    if not isinstance(storage, np.ndarray):
        raise CheckpointFormatError("a tensor refers to something that is not a storage")
    if not (isinstance(offset, int) and isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        raise CheckpointFormatError("a tensor has a malformed offset, size or stride")
    if any(not isinstance(n, int) or n < 0 for n in size) or any(not isinstance(s, int) or s < 0 for s in stride):
        raise CheckpointFormatError(f"a tensor has a negative or non-integer size {size} or stride {stride}")
    numel = int(np.prod(size, dtype=np.int64)) if size else 1
    if numel == 0:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= storage.size:
        raise CheckpointFormatError(
            f"a tensor of size {size} at offset {offset} with stride {stride} reaches element {last} of a storage of {storage.size}"
        )
    if numel > storage.size:
        raise CheckpointFormatError(f"a tensor claims {numel} elements from a storage of {storage.size}")
    contiguous = tuple(int(np.prod(size[i + 1:], dtype=np.int64)) for i in range(len(size)))
    flat = storage[offset:]
    if stride == contiguous or numel == 1:
        return flat[:numel].reshape(size)
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(flat, shape=size, strides=tuple(s * itemsize for s in stride), writeable=False)
    return np.ascontiguousarray(view)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *state: Any) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise CheckpointFormatError("a parameter wraps something that is not a tensor")
    return data


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> np.ndarray:
    if func not in (_rebuild_tensor_v2, _rebuild_parameter) or new_type not in (_TensorClass, _ParameterClass):
        raise UnsafeCheckpointError("refusing a tensor subclass other than torch.Tensor / torch.nn.Parameter")
    return func(*args)


class _TensorClass:
    """Stands in for ``torch.Tensor`` as named by ``_rebuild_from_type_v2``."""


class _ParameterClass:
    """Stands in for ``torch.nn.Parameter`` as named by ``_rebuild_from_type_v2``."""


TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    **BASIC_GLOBALS,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TensorClass,
    ("torch.nn.parameter", "Parameter"): _ParameterClass,
    **{("torch", name): _StorageType(name) for name in TORCH_DTYPES},
    # Training checkpoints keep optimizer scalars and metrics as numpy values.
    **NUMPY_GLOBALS,
}


def _entry_view(mm: mmap.mmap, zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str) -> np.ndarray:
    """The bytes of one stored zip entry, as a uint8 view of the mapping (no copy)."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointFormatError(f"{source}: entry {info.filename} is compressed; torch.save stores entries uncompressed")
    start = info.header_offset
    header = mm[start:start + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise CheckpointFormatError(f"{source}: zip entry {info.filename} has no local header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    data_start = start + 30 + name_len + extra_len
    if data_start + info.file_size > len(mm):
        raise CheckpointFormatError(f"{source}: zip entry {info.filename} runs past the end of the file (truncated?)")
    return np.frombuffer(mm, dtype=np.uint8, count=info.file_size, offset=data_start)


def read_pth(path: str) -> Any:
    """Read a ``torch.save`` zip file into nested containers of numpy arrays."""
    source = os.path.basename(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if magic != b"PK\x03\x04":
            fh.seek(0)
            _refuse_legacy(fh, source)
        size = os.fstat(fh.fileno()).st_size
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None
    if mm is None:
        raise CheckpointFormatError(f"{source}: empty file")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointFormatError(f"{source}: not a readable torch.save zip file ({exc}); was it truncated?") from exc
    with zf:
        infos = zf.infolist()
        pkl = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
        if len(pkl) != 1:
            raise CheckpointFormatError(f"{source}: a torch.save zip holds exactly one data.pkl; found {len(pkl)}")
        prefix = pkl[0].filename[: -len("data.pkl")]
        if pkl[0].file_size > _MAX_PICKLE:
            raise CheckpointFormatError(f"{source}: data.pkl claims {pkl[0].file_size} bytes; refusing more than {_MAX_PICKLE}")
        by_name = {i.filename: i for i in infos}
        storages: dict[str, np.ndarray] = {}

        def persistent_load(pid: Any) -> np.ndarray:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise CheckpointFormatError(f"{source}: unexpected persistent id {pid!r:.80}")
            _, storage_type, key, _location, numel = pid
            if not isinstance(storage_type, _StorageType):
                raise UnsafeCheckpointError(f"{source}: storage type {storage_type!r:.60} is not a torch storage class")
            if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
                raise CheckpointFormatError(f"{source}: malformed storage reference")
            if key in storages:
                return storages[key]
            info = by_name.get(f"{prefix}data/{key}")
            if info is None:
                raise CheckpointFormatError(f"{source}: storage {key} is referenced but missing (truncated file?)")
            need = numel * storage_type.dtype.itemsize
            if info.file_size != need:
                raise CheckpointFormatError(
                    f"{source}: storage {key} claims {numel} x {storage_type.name} ({need} bytes) but holds {info.file_size}"
                )
            raw = _entry_view(mm, zf, info, source)
            storages[key] = raw.view(storage_type.dtype) if need else np.zeros(0, storage_type.dtype)
            return storages[key]

        import io as _io

        data = _entry_view(mm, zf, pkl[0], source)
        unpickler = SafeUnpickler(_io.BytesIO(data.tobytes()), TORCH_GLOBALS, persistent_load, source)
        return unpickler.load_checked()


def _refuse_legacy(fh: IO[bytes], source: str) -> None:
    head = fh.read(64)
    if head[:1] == b"\x80":
        fh.seek(0)
        try:
            first = SafeUnpickler(fh, {}, None, source).load_checked()
        except (CheckpointFormatError, UnsafeCheckpointError):
            first = None
        if first == _LEGACY_MAGIC:
            raise CheckpointFormatError(
                f"{source}: legacy torch.save format (PyTorch < 1.6), which porthub does not read; "
                "re-save it with a current PyTorch: torch.save(torch.load(f, weights_only=True), new_f)"
            )
    raise CheckpointFormatError(f"{source}: not a torch.save zip file (it does not start with a zip header)")


# ------------------------------------------------------------------------------------------ writing
def _torch_array_hook(storages: list[np.ndarray]):
    def hook(writer: PickleWriter, arr: np.ndarray) -> None:
        dtype = np.dtype(arr.dtype).newbyteorder("<") if arr.dtype.itemsize > 1 else arr.dtype
        name = _STORAGE_OF.get(dtype)
        if name is None:
            raise TypeError(f"torch has no storage for numpy dtype {arr.dtype}")
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


_ALIGN = 64


def write_pth(obj: Any, out: IO[bytes], archive: str = "archive") -> None:
    """Write nested containers of numpy arrays as ``torch.save`` does (loadable with
    ``torch.load(..., weights_only=True)``), storages aligned to 64 bytes for ``mmap=True``."""
    import io as _io

    storages: list[np.ndarray] = []
    pickled = _io.BytesIO()
    PickleWriter(pickled, 2, _torch_array_hook(storages), ordered=True).dump(obj)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        _write_entry(zf, out, f"{archive}/data.pkl", memoryview(pickled.getbuffer()))
        _write_entry(zf, out, f"{archive}/byteorder", memoryview(b"little"))
        for key, arr in enumerate(storages):
            data = np.ascontiguousarray(arr)
            if data.dtype.byteorder == ">":
                data = data.astype(data.dtype.newbyteorder("<"))
            _write_entry(zf, out, f"{archive}/data/{key}", memoryview(data.reshape(-1)).cast("B"))
        _write_entry(zf, out, f"{archive}/version", memoryview(b"3\n"))
        _write_entry(zf, out, f"{archive}/.data/serialization_id", memoryview(b"0" * 40))


def _write_entry(zf: zipfile.ZipFile, out: IO[bytes], name: str, data: memoryview) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    # Pad the local header's extra field so the entry's data starts on a 64-byte boundary, as torch does.
    offset = out.tell() + 30 + len(name.encode())
    pad = (-(offset + 4)) % _ALIGN
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
    size = data.nbytes
    if size >= 0xFFFFFFFF:
        info.file_size = size
    with zf.open(info, "w", force_zip64=size >= 0xFFFFFFFF) as dst:
        dst.write(data)
