"""Pickle without code execution, in both directions.

Reading: :class:`SafeUnpickler` resolves only the globals of an explicit allow-list, and each of them
to porthub's own inert stand-in (never the real torch or numpy callable), so a checkpoint can build
containers, numbers, strings and arrays, and nothing else. Any other global is refused by name
before anything of the file has run.

Writing: :class:`PickleWriter` emits the opcodes of the few shapes porthub writes (nested dicts,
lists, tuples, scalars, and arrays in the form torch or numpy expects), streaming array bytes
straight to the file, so neither torch nor paddle is needed to produce files they read.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from typing import IO, Any, Callable, Mapping

import numpy as np

from ..errors import CheckpointFormatError, UnsafeCheckpointError

__all__ = ["SafeUnpickler", "PickleWriter", "Opaque", "safe_dtype"]

#: numpy dtypes a checkpoint tensor may have; anything else (object, void, strings) is refused
_NUMERIC_KINDS = frozenset("biufc")


class Opaque:
    """An inert record of a data-only object (``argparse.Namespace`` in a training checkpoint):
    it keeps the pickled state and never runs a method of the original class."""

    __slots__ = ("name", "state")

    def __init__(self, name: str = "", state: Any = None) -> None:
        self.name = name
        self.state = state

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Opaque({self.name})"


def _opaque_class(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (Opaque,), {"__slots__": (), "__init__": lambda self, *a, **k: Opaque.__init__(self, name)})


def safe_dtype(dtype: np.dtype, where: str) -> np.dtype:
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None:
        raise UnsafeCheckpointError(f"{where}: refusing array dtype {dtype!s}; only numeric tensors are accepted")
    return dtype


def _np_dtype(obj: Any, align: bool = False, copy: bool = True) -> np.dtype:
    if not isinstance(obj, str):
        raise UnsafeCheckpointError(f"numpy.dtype called with {type(obj).__name__}; only dtype codes are accepted")
    try:
        dtype = np.dtype(obj)
    except TypeError as exc:
        raise CheckpointFormatError(f"unknown numpy dtype code {obj!r}") from exc
    return safe_dtype(dtype, "numpy.dtype")


class _SafeArray(np.ndarray):
    """The array class a numpy pickle reconstructs into; its ``__setstate__`` checks the claimed shape
    against the bytes actually present before numpy allocates anything."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise CheckpointFormatError("numpy array state has an unexpected form")
        _version, shape, dtype, _fortran, raw = state
        if not isinstance(dtype, np.dtype):
            raise CheckpointFormatError("numpy array state carries no dtype")
        safe_dtype(dtype, "numpy array")
        if not isinstance(raw, (bytes, bytearray)):
            raise UnsafeCheckpointError("numpy array state holds objects instead of raw bytes")
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise CheckpointFormatError(f"numpy array shape {shape!r} is not a tuple of sizes")
        need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
        if need != len(raw):
            raise CheckpointFormatError(f"numpy array claims shape {shape} of {dtype} ({need} bytes) but holds {len(raw)} bytes")
        super().__setstate__(state)


def _np_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not np.ndarray and cls is not _SafeArray:
        raise UnsafeCheckpointError("numpy _reconstruct asked for a class other than ndarray")
    return np.ndarray.__new__(_SafeArray, (0,), dtype=np.uint8)


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: str = "C") -> np.ndarray:
    if not isinstance(dtype, np.dtype) or not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)):
        raise UnsafeCheckpointError("numpy _frombuffer with unexpected arguments")
    safe_dtype(dtype, "numpy _frombuffer")
    data = memoryview(buf)
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if need != data.nbytes:
        raise CheckpointFormatError(f"numpy buffer claims shape {shape} of {dtype} but holds {data.nbytes} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)


def _np_scalar(dtype: Any, raw: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or not isinstance(raw, bytes):
        raise UnsafeCheckpointError("numpy scalar with unexpected arguments")
    safe_dtype(dtype, "numpy scalar")
    if len(raw) != dtype.itemsize:
        raise CheckpointFormatError("numpy scalar has the wrong number of bytes")
    return np.frombuffer(raw, dtype=dtype)[0]


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Python 2-era protocol-2 pickles spell bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafeCheckpointError("_codecs.encode with unexpected arguments")
    return text.encode(encoding)


def _ordered_dict(*args: Any) -> OrderedDict:
    if args and not (len(args) == 1 and isinstance(args[0], list)):
        raise UnsafeCheckpointError("OrderedDict called with unexpected arguments")
    return OrderedDict(*args)


NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    **{(mod, "_reconstruct"): _np_reconstruct for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _np_scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _np_frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
}

BASIC_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("_codecs", "encode"): _codecs_encode,
    ("argparse", "Namespace"): _opaque_class("argparse.Namespace"),
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler whose every global comes from ``allowed``; nothing else can be named."""

    def __init__(
        self,
        file: IO[bytes],
        allowed: Mapping[tuple[str, str], Any],
        persistent_load: Callable[[Any], Any] | None = None,
        source: str = "checkpoint",
    ) -> None:
        super().__init__(file, encoding="latin1")
        self._allowed = allowed
        self._persistent = persistent_load
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._source}: refusing to load global '{module}.{name}'; porthub loads only tensors and plain "
                "containers and runs no code from checkpoints (if you trust this file, re-save its state dict "
                "with torch.save(model.state_dict(), path) and convert that)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafeCheckpointError(f"{self._source}: unexpected persistent reference in the pickle")
        return self._persistent(pid)

    def load_checked(self) -> Any:
        """Unpickle, turning the many ways a corrupt pickle fails into one porthub error."""
        try:
            return self.load()
        except (UnsafeCheckpointError, CheckpointFormatError):
            raise
        except RecursionError as exc:
            raise CheckpointFormatError(f"{self._source}: the pickle nests too deeply") from exc
        except MemoryError as exc:
            raise CheckpointFormatError(f"{self._source}: the pickle claims more memory than is available") from exc
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
                OverflowError, UnicodeDecodeError, struct.error) as exc:
            raise CheckpointFormatError(f"{self._source}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


# ----------------------------------------------------------------------------------------- writing
_P = pickle


class PickleWriter:
    """Streams a pickle of nested containers whose leaves are scalars, strings or arrays.

    ``array_hook(writer, array)`` writes one array in the target framework's form; ``dict_class``
    decides whether mappings are written as ``collections.OrderedDict`` (torch state dicts) or plain
    dicts.
    """

    def __init__(self, out: IO[bytes], protocol: int, array_hook: Callable[["PickleWriter", np.ndarray], None],
                 ordered: bool = False) -> None:
        self.out = out
        self.protocol = protocol
        self.array_hook = array_hook
        self.ordered = ordered
        self._memo_globals: dict[tuple[str, str], int] = {}

    # primitive opcodes
    def op(self, data: bytes) -> None:
        self.out.write(data)

    def global_(self, module: str, name: str) -> None:
        self.op(_P.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n")

    def int_(self, value: int) -> None:
        if 0 <= value < 256:
            self.op(_P.BININT1 + bytes([value]))
        elif -(2**31) <= value < 2**31:
            self.op(_P.BININT + struct.pack("<i", value))
        else:
            raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
            self.op(_P.LONG1 + bytes([len(raw)]) + raw)

    def str_(self, value: str) -> None:
        raw = value.encode("utf-8", "surrogatepass")
        self.op(_P.BINUNICODE + struct.pack("<I", len(raw)) + raw)

    def bytes_(self, value: bytes | memoryview) -> None:
        size = memoryview(value).nbytes
        if self.protocol < 3:
            raise ValueError("bytes need pickle protocol 3 or later")
        if size < 2**32:
            self.op(_P.BINBYTES + struct.pack("<I", size))
        else:
            self.op(_P.BINBYTES8 + struct.pack("<Q", size))
        self.out.write(value)

    def tuple_(self, items: tuple) -> None:
        if not items:
            self.op(_P.EMPTY_TUPLE)
            return
        if len(items) <= 3:
            for item in items:
                self.value(item)
            self.op((_P.TUPLE1, _P.TUPLE2, _P.TUPLE3)[len(items) - 1])
            return
        self.op(_P.MARK)
        for item in items:
            self.value(item)
        self.op(_P.TUPLE)

    def mapping(self, items: Mapping[Any, Any]) -> None:
        if self.ordered:
            self.global_("collections", "OrderedDict")
            self.op(_P.EMPTY_TUPLE + _P.REDUCE)
        else:
            self.op(_P.EMPTY_DICT)
        batch = 0
        for key, val in items.items():
            if batch == 0:
                self.op(_P.MARK)
            self.value(key)
            self.value(val)
            batch += 1
            if batch == 1000:
                self.op(_P.SETITEMS)
                batch = 0
        if batch:
            self.op(_P.SETITEMS)

    def value(self, obj: Any) -> None:
        if obj is None:
            self.op(_P.NONE)
        elif obj is True:
            self.op(_P.NEWTRUE)
        elif obj is False:
            self.op(_P.NEWFALSE)
        elif isinstance(obj, np.ndarray):
            self.array_hook(self, obj)
        elif isinstance(obj, (int, np.integer)):
            self.int_(int(obj))
        elif isinstance(obj, (float, np.floating)):
            self.op(_P.BINFLOAT + struct.pack(">d", float(obj)))
        elif isinstance(obj, str):
            self.str_(obj)
        elif isinstance(obj, bytes):
            self.bytes_(obj)
        elif isinstance(obj, tuple):
            self.tuple_(obj)
        elif isinstance(obj, list):
            self.op(_P.EMPTY_LIST)
            if obj:
                self.op(_P.MARK)
                for item in obj:
                    self.value(item)
                self.op(_P.APPENDS)
        elif isinstance(obj, Mapping):
            self.mapping(obj)
        elif isinstance(obj, Opaque):
            raise TypeError(f"cannot write {obj!r}: porthub does not re-emit opaque objects")
        else:
            raise TypeError(f"cannot pickle {type(obj).__name__} into a checkpoint")

    def dump(self, obj: Any) -> None:
        self.op(_P.PROTO + bytes([self.protocol]))
        self.value(obj)
        self.op(_P.STOP)


def write_numpy_array(writer: PickleWriter, arr: np.ndarray) -> None:
    """An ndarray exactly as numpy pickles it (``_reconstruct`` then ``__setstate__``), named through
    ``numpy.core`` so that numpy 1.x and 2.x both read it."""
    # np.ascontiguousarray would turn a 0-d array into a 1-d one
    arr = arr if arr.flags.c_contiguous else arr.copy(order="C")
    writer.global_("numpy.core.multiarray", "_reconstruct")
    writer.global_("numpy", "ndarray")
    writer.tuple_((0,))
    writer.bytes_(b"b")
    writer.op(_P.TUPLE3 + _P.REDUCE)
    # state: (version, shape, dtype, is_fortran, raw)
    writer.op(_P.MARK)
    writer.int_(1)
    writer.tuple_(tuple(int(n) for n in arr.shape))
    writer.global_("numpy", "dtype")
    writer.str_(arr.dtype.str[1:] if arr.dtype.byteorder in "<>=" else arr.dtype.str)
    writer.op(_P.NEWFALSE + _P.NEWTRUE + _P.TUPLE3 + _P.REDUCE)
    byteorder = "|" if arr.dtype.itemsize == 1 else "<"
    writer.op(_P.MARK)
    writer.int_(3)
    writer.str_(byteorder)
    writer.op(_P.NONE + _P.NONE + _P.NONE)
    writer.int_(-1)
    writer.int_(-1)
    writer.int_(0)
    writer.op(_P.TUPLE + _P.BUILD)
    writer.op(_P.NEWFALSE)
    little = arr if arr.dtype.byteorder != ">" else arr.astype(arr.dtype.newbyteorder("<"))
    writer.bytes_(memoryview(little).cast("B"))
    writer.op(_P.TUPLE + _P.BUILD)


def dumps_for_test(obj: Any) -> bytes:
    buf = io.BytesIO()
    PickleWriter(buf, 4, write_numpy_array).dump(obj)
    return buf.getvalue()
