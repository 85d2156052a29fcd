"""Pickle without code execution, in both directions.

Reading: :class:`SafeUnpickler` resolves only the globals of an explicit allow-list, and each of them
to porthub's own inert stand-in (never the real torch or numpy callable), so a checkpoint can build
containers, numbers, strings and arrays, and nothing else. Any other global is refused by name
before anything of the file has run. Before unpickling, :func:`scan_pickle` walks the opcodes and
refuses what would make CPython's unpickler allocate beyond the file's size or crash on deep nesting;
after it, :func:`finish_tree` refuses cycles and exponential sharing and hands out plain arrays.

Writing: :class:`PickleWriter` emits the opcodes of the few shapes porthub writes (nested dicts,
lists, tuples, scalars, and arrays in the form torch or numpy expects), streaming array bytes
straight to the file, so neither torch nor paddle is needed to produce files they read.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
import struct
from collections import OrderedDict
from typing import IO, Any, Callable, Mapping

import numpy as np

from ..errors import CheckpointFormatError, CheckpointWriteError, ConversionError, UnsafeCheckpointError
from .stream import write_array

__all__ = [
    "SafeUnpickler",
    "PickleWriter",
    "Opaque",
    "ConfigRecord",
    "safe_dtype",
    "scan_pickle",
    "finish_tree",
    "CopyBudget",
    "Allowed",
    "Marker",
    "MAX_DEPTH",
]

#: numpy dtype kinds a checkpoint tensor may have; anything else (object, void, strings, dates) is refused
_NUMERIC_KINDS = frozenset("biufc")
#: how deeply containers may nest; real checkpoints stay under 15 and deeper trees crash C code that
#: recurses without a guard (hashing nested tuples) or exhaust Python's recursion limit downstream
MAX_DEPTH = 100
#: opcodes in one pickle; a state dict of a thousand tensors needs about 40 000, so this allows large
#: training checkpoints while bounding the time a crafted file can take (about a second per million)
MAX_OPCODES = 5_000_000
#: containers in a loaded checkpoint counted as a tree (a shared list counts at every place it is used),
#: so that code walking the result recursively cannot be made to take exponential time
MAX_TREE_NODES = 10_000_000


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


class ConfigRecord(dict):
    """An inert stand-in for a dict-based config object (yacs ``CfgNode``, ``EasyDict``, mmcv's
    ``ConfigDict``) in a training checkpoint: the pickle fills it as the dict it is, and its instance
    state (yacs' immutability flags, EasyDict's attribute mirror) is kept as data, never applied."""

    __slots__ = ("state",)
    name = "config"

    def __setstate__(self, state: Any) -> None:
        if state is not None and not isinstance(state, dict):
            raise CheckpointFormatError(f"{self.name}: the pickled state of a config object is not a dict")
        self.state = state

    def __repr__(self) -> str:
        return f"ConfigRecord({self.name}, {dict.__repr__(self)})"


def _config_class(name: str) -> type:
    return type(name.rsplit(".", 1)[-1], (ConfigRecord,), {"__slots__": (), "name": name})


def _plain_set(items: Any = ()) -> set:
    # protocol-2 pickles spell a set as set([items]); yacs keeps its deprecated/renamed keys in one
    plain = (str, int, float, bool, type(None))
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, plain) for i in items):
        raise UnsafeCheckpointError("set() called with something other than a list of plain values")
    return set(items)


def _opaque_class(name: str) -> type:
    return type(
        name.rsplit(".", 1)[-1],
        (Opaque,),
        {"__slots__": (), "__init__": lambda self, *a, **k: Opaque.__init__(self, name)},
    )


class Allowed:
    """One allow-listed callable as the unpickler sees it.

    Handing the unpickler a plain function would let a pickle's BUILD opcode set attributes on it
    (``__defaults__``, ``__dict__``) and so change how later, honest files load in the same process;
    this wrapper has no attributes to set and refuses BUILD outright.
    """

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafeCheckpointError(f"refusing to modify the allowed global {self.name}")

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(f"the pickle tries to modify the allowed global {self.name}; nothing was changed")

    def __repr__(self) -> str:
        return f"<allowed {self.name}>"


class Marker:
    """An allow-listed name that only ever appears as an argument (``numpy.ndarray`` given to
    ``_reconstruct``, ``torch.Tensor``, ``torch.FloatStorage``); it can be neither called nor modified."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype | None = None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __call__(self, *args: Any) -> Any:
        raise UnsafeCheckpointError(f"the pickle calls {self.name}, which porthub accepts only as a type name")

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafeCheckpointError(f"refusing to modify the allowed global {self.name}")

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(f"the pickle tries to modify the allowed global {self.name}; nothing was changed")

    def __repr__(self) -> str:
        return f"<{self.name}>"


def safe_dtype(dtype: np.dtype, where: str) -> np.dtype:
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsafeCheckpointError(f"{where}: refusing array dtype {dtype!s}; only numeric tensors are accepted")
    if dtype.kind in "fc" and dtype.itemsize > (8 if dtype.kind == "f" else 16):
        raise CheckpointFormatError(f"{where}: {dtype} (extended precision) is not a tensor type torch or paddle holds")
    return dtype


class PickledDtype:
    """What ``numpy.dtype(code, align, copy)`` followed by BUILD makes of a numpy-pickled dtype.

    numpy's own ``dtype.__setstate__`` accepts field tables, object flags and item sizes; this record
    accepts only a byte order and resolves to a numeric dtype when an array asks for it.
    """

    __slots__ = ("code", "order")

    def __init__(self, code: str) -> None:
        self.code = code
        self.order = "="

    def __setstate__(self, state: Any) -> None:
        # numpy writes (3, endian, None, None, None, -1, -1, 0); version 4 appends metadata
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise CheckpointFormatError("numpy dtype state has an unexpected form")
        endian, subdescr, names, fields, elsize, alignment, flags = state[1:8]
        if endian not in ("<", ">", "|", "=") or (subdescr, names, fields) != (None, None, None):
            raise UnsafeCheckpointError(
                "numpy dtype state describes a structured or sub-array dtype; only plain numbers are accepted"
            )
        if (elsize, alignment, flags) != (-1, -1, 0) or (len(state) == 9 and state[8] not in (None, {})):
            raise UnsafeCheckpointError(
                "numpy dtype state sets item size, alignment or flags; only plain numbers are accepted"
            )
        self.order = endian

    def resolve(self, where: str) -> np.dtype:
        dtype = np.dtype(self.code)
        if self.order in "<>":
            dtype = dtype.newbyteorder(self.order)
        return safe_dtype(dtype, where)


#: the codes numpy pickles numeric dtypes with ("f4", "b1", "c16") and the one-letter type codes;
#: anything else is refused before numpy parses it (its parser evaluates sub-array shapes like "(2,2)f4")
_DTYPE_CODE = re.compile(r"[<>|=]?(?:[biufc](?:1|2|4|8|16)|[?bBhHiIlLqQefdFD])")


def _np_dtype(obj: Any, align: Any = False, copy: Any = True) -> PickledDtype:
    if not isinstance(obj, str) or not _DTYPE_CODE.fullmatch(obj):
        raise UnsafeCheckpointError(f"numpy.dtype called with {obj!r:.40}; only plain numeric dtype codes are accepted")
    try:
        dtype = np.dtype(obj)
    except TypeError as exc:
        raise CheckpointFormatError(f"unknown numpy dtype code {obj!r}") from exc
    safe_dtype(dtype, "numpy.dtype")
    return PickledDtype(obj)


def _empty_bytes(*args: Any) -> bytes:
    # protocol-2 pickles spell b"" as bytes(); any argument (bytes(10**12) allocates) is refused
    if args:
        raise UnsafeCheckpointError("bytes() called with arguments")
    return b""


def _dtype_of(obj: Any, where: str) -> np.dtype:
    if not isinstance(obj, PickledDtype):
        raise CheckpointFormatError(f"{where} carries no numpy dtype")
    return obj.resolve(where)


def _checked_shape(shape: Any, where: str) -> tuple[int, ...]:
    if not (isinstance(shape, tuple) and len(shape) <= 64 and all(type(n) is int and n >= 0 for n in shape)):
        raise CheckpointFormatError(f"{where}: shape {shape!r:.80} is not a tuple of at most 64 sizes")
    return shape


class _SafeArray(np.ndarray):
    """The array class a numpy pickle reconstructs into; its ``__setstate__`` checks the claimed shape
    against the bytes actually present before numpy allocates anything."""

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise CheckpointFormatError("numpy array state has an unexpected form")
        version, shape, dtype, fortran, raw = state
        if self.size or self.shape != (0,) or not self.flags.owndata or getattr(self, "_mapped", None) is not None:
            raise UnsafeCheckpointError("the pickle sets the state of an array twice")
        dtype = _dtype_of(dtype, "numpy array")
        if isinstance(raw, MappedBytes):
            shape = _checked_shape(shape, "numpy array")
            need = math.prod(shape) * dtype.itemsize
            if need != raw.data.nbytes or not isinstance(fortran, bool):
                raise CheckpointFormatError(
                    f"numpy array claims shape {shape} of {dtype} ({need} bytes) but holds {raw.data.nbytes} bytes"
                )
            # a view of the mapped file, resolved by finish_tree: no copy of the array's bytes
            self._mapped = raw.data.view(dtype).reshape(shape, order="F" if fortran else "C")
            return
        if not isinstance(raw, (bytes, bytearray)):
            raise UnsafeCheckpointError("numpy array state holds objects instead of raw bytes")
        shape = _checked_shape(shape, "numpy array")
        if not isinstance(fortran, bool):
            raise CheckpointFormatError("numpy array state has a malformed order flag")
        need = math.prod(shape) * dtype.itemsize
        if need != len(raw):
            raise CheckpointFormatError(
                f"numpy array claims shape {shape} of {dtype} ({need} bytes) but holds {len(raw)} bytes"
            )
        super().__setstate__((version, shape, dtype, fortran, raw))


_NDARRAY = Marker("numpy.ndarray")


def _np_reconstruct(cls: Any, shape: Any, typecode: Any) -> np.ndarray:
    if cls is not _NDARRAY:
        raise UnsafeCheckpointError("numpy _reconstruct asked for a class other than ndarray")
    return np.ndarray.__new__(_SafeArray, (0,), dtype=np.uint8)


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> np.ndarray:
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)) or order not in ("C", "F"):
        raise UnsafeCheckpointError("numpy _frombuffer with unexpected arguments")
    dtype = _dtype_of(dtype, "numpy _frombuffer")
    shape = _checked_shape(shape, "numpy _frombuffer")
    data = memoryview(buf)
    need = math.prod(shape) * dtype.itemsize
    if need != data.nbytes:
        raise CheckpointFormatError(f"numpy buffer claims shape {shape} of {dtype} but holds {data.nbytes} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order)


def _np_scalar(dtype: Any, raw: Any = None) -> Any:
    if not isinstance(raw, bytes):
        raise UnsafeCheckpointError("numpy scalar with unexpected arguments")
    dtype = _dtype_of(dtype, "numpy scalar")
    if len(raw) != dtype.itemsize:
        raise CheckpointFormatError("numpy scalar has the wrong number of bytes")
    return np.frombuffer(raw, dtype=dtype)[0]


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Python 2-era protocol-2 pickles spell bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise UnsafeCheckpointError("_codecs.encode with unexpected arguments")
    return text.encode(encoding, "surrogatepass")


def _ordered_dict(*args: Any) -> OrderedDict:
    if args and not (len(args) == 1 and isinstance(args[0], list)):
        raise UnsafeCheckpointError("OrderedDict called with unexpected arguments")
    return OrderedDict(*args)


def allowed(table: Mapping[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    """Wrap the plain functions of an allow-list so that a pickle cannot modify them."""
    out: dict[tuple[str, str], Any] = {}
    for (module, name), value in table.items():
        if isinstance(value, (Allowed, Marker, type)):
            out[(module, name)] = value
        else:
            out[(module, name)] = Allowed(f"{module}.{name}", value)
    return out


NUMPY_GLOBALS: dict[tuple[str, str], Any] = allowed({
    **{(mod, "_reconstruct"): _np_reconstruct for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): _np_scalar for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _np_frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _np_dtype,
})

BASIC_GLOBALS: dict[tuple[str, str], Any] = allowed({
    ("collections", "OrderedDict"): _ordered_dict,
    ("_codecs", "encode"): _codecs_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
    ("argparse", "Namespace"): _opaque_class("argparse.Namespace"),
    ("types", "SimpleNamespace"): _opaque_class("types.SimpleNamespace"),
    ("builtins", "set"): _plain_set,
    ("__builtin__", "set"): _plain_set,
    # plain-data config objects of training saves (CrossFormer and Focal keep a yacs CfgNode as 'config')
    **{(module, cls): _config_class(f"{module}.{cls}") for module, cls in (
        ("yacs.config", "CfgNode"), ("easydict", "EasyDict"), ("addict.addict", "Dict"),
        ("mmcv.utils.config", "ConfigDict"), ("mmengine.config.config", "ConfigDict"))},
})


class SafeUnpickler(pickle.Unpickler):
    """An unpickler whose every global comes from ``allowed``; nothing else can be named.

    Call :func:`scan_pickle` on the bytes first: it refuses the inputs that make CPython's unpickler
    allocate far beyond the file's size or recurse until the process crashes.
    """

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
        except (KeyError, TypeError):
            raise UnsafeCheckpointError(
                f"{self._source}: refusing to load global '{module!s:.100}.{name!s:.100}'; porthub loads only tensors "
                "and plain containers and runs no code from checkpoints (if you trust this file, re-save its state "
                "dict with torch.save(model.state_dict(), path) and convert that)"
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


# ------------------------------------------------------------------------------------- pre-scan
# Per opcode byte: (argument kind, fixed argument size, items popped below a mark or outright,
# pops to a mark, items pushed, special handling). Built once from pickletools' opcode table.
_ARG_FIXED, _ARG_LINE, _ARG_LINE2, _ARG_COUNTED, _ARG_NONE = range(5)
_SPECIAL = {
    "APPEND": "inplace", "SETITEM": "inplace", "BUILD": "inplace",
    "APPENDS": "inplace_mark", "SETITEMS": "inplace_mark", "ADDITEMS": "inplace_mark",
    "PUT": "put", "BINPUT": "put", "LONG_BINPUT": "put", "MEMOIZE": "memoize",
    "GET": "get", "BINGET": "get", "LONG_BINGET": "get",
    "DUP": "dup", "POP": "pop", "FRAME": "frame", "STOP": "stop", "PROTO": "proto",
}


def _build_table() -> list[tuple | None]:
    table: list[tuple | None] = [None] * 256
    for op in pickletools.opcodes:
        arg = op.arg
        if arg is None:
            kind, size = _ARG_NONE, 0
        elif arg.n >= 0:
            kind, size = _ARG_FIXED, arg.n
        elif arg.n == pickletools.UP_TO_NEWLINE:
            kind, size = (_ARG_LINE2 if arg.name == "stringnl_noescape_pair" else _ARG_LINE), 0
        else:
            # the length prefix: 1, 4 (signed or not) or 8 bytes
            size = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
                    pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}[arg.n]
            kind = _ARG_COUNTED
        before = [s.name for s in op.stack_before]
        has_mark = "mark" in before
        below = before.index("mark") if has_mark else len(before)
        table[ord(op.code.encode("latin1"))] = (
            op.name,
            kind,
            size,
            below,
            has_mark,
            len(op.stack_after),
            _SPECIAL.get(op.name),
            op.name in ("BININT", "LONG4", "EXT4", "BINSTRING"),
        )
    return table


_TABLE = _build_table()


def scan_pickle(buf: Any, source: str, max_depth: int = MAX_DEPTH, max_ops: int = MAX_OPCODES,
                spans: "list[tuple[int, int, int]] | None" = None) -> int:
    """Walk a pickle's opcodes without building anything, and refuse it unless every length it
    claims fits in the bytes present, every memo index is one the pickle could have made, its
    containers nest at most ``max_depth`` deep and it ends with STOP.

    ``buf`` is ``bytes`` or an ``mmap`` (neither is copied). Returns the offset just past STOP.
    With ``spans``, also records ``(opcode offset, data offset, length)`` of every BINBYTES payload of
    at least :data:`MAP_MIN_BYTES` and ``(opcode offset, -1, 9)`` of every FRAME, for
    :func:`remap_stream`; a pickle read that way may hold no persistent references of its own.
    CPython's unpickler trusts these numbers: it allocates a claimed byte count before reading it,
    grows its memo to any index named (a 13-byte pickle can make it fill 32 GB), and hashes tuples
    recursively with no depth guard (a 200 000-deep tuple used as a dict key kills the process).
    """
    end = len(buf)
    pos = 0
    ops = 0
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[int, int] = {}
    table = _TABLE
    find = buf.find

    def fail(why: str) -> CheckpointFormatError:
        return CheckpointFormatError(f"{source}: not a well-formed pickle ({why} at byte {pos})")

    while True:
        if pos >= end:
            raise fail("no STOP opcode before the end of the data (truncated?)")
        code = buf[pos]
        entry = table[code]
        if entry is None:
            raise fail(f"unknown opcode 0x{code:02x}")
        name, kind, size, below, has_mark, pushed, special, signed = entry
        start = pos
        ops += 1
        if ops > max_ops:
            raise CheckpointFormatError(f"{source}: the pickle has more than {max_ops} opcodes; refusing to read it")
        pos += 1
        # ---- the argument
        arg = 0
        if kind == _ARG_FIXED:
            if pos + size > end:
                raise fail(f"{name} argument runs past the end")
            if special in ("put", "get", "frame", "proto") or name.startswith("EXT"):
                arg = int.from_bytes(buf[pos:pos + size], "little", signed=signed)
            pos += size
        elif kind == _ARG_COUNTED:
            if pos + size > end:
                raise fail(f"{name} length runs past the end")
            length = int.from_bytes(buf[pos:pos + size], "little", signed=signed)
            pos += size
            if length < 0 or length > end - pos:
                raise fail(f"{name} claims {length} bytes but {end - pos} remain")
            if spans is not None and name in ("BINBYTES", "BINBYTES8") and length >= MAP_MIN_BYTES:
                spans.append((start, pos, length))
            pos += length
        elif kind in (_ARG_LINE, _ARG_LINE2):
            for _ in range(2 if kind == _ARG_LINE2 else 1):
                nl = find(b"\n", pos)
                if nl < 0:
                    raise fail(f"{name} argument has no end of line")
                if special in ("put", "get"):
                    text = bytes(buf[pos:nl])
                    if not (0 < len(text) <= 20 and text.isdigit()):
                        raise fail(f"{name} index {text[:20]!r} is not a small number")
                    arg = int(text)
                pos = nl + 1
        if spans is not None and name in ("PERSID", "BINPERSID"):
            raise UnsafeCheckpointError(f"{source}: a persistent reference at byte {start}; this format has none")
        # ---- the stack
        fence = marks[-1] if marks else 0
        if special is None:
            popped = -1
            if has_mark:
                if not marks:
                    raise fail(f"{name} without a MARK")
                mark = marks.pop()
                if stack[mark:]:
                    popped = max(stack[mark:])
                del stack[mark:]
                fence = marks[-1] if marks else 0
            if below:
                if len(stack) - below < fence:
                    raise fail(f"{name} on a stack with too few items")
                popped = max(popped, *stack[-below:])
                del stack[-below:]
            if name == "MARK":
                marks.append(len(stack))
            elif pushed:
                depth = popped + 1 if popped >= 0 else 0
                if depth > max_depth:
                    raise CheckpointFormatError(
                        f"{source}: the pickle nests containers more than {max_depth} deep; refusing it"
                    )
                stack.extend([depth] * pushed)
        elif special == "inplace":
            if len(stack) - (3 if name == "SETITEM" else 2) < fence:
                raise fail(f"{name} on a stack with too few items")
            item = stack.pop()
            if name == "SETITEM":
                item = max(item, stack.pop())
            stack[-1] = max(stack[-1], item + 1)
            if stack[-1] > max_depth:
                raise CheckpointFormatError(
                    f"{source}: the pickle nests containers more than {max_depth} deep; refusing it"
                )
        elif special == "inplace_mark":
            if not marks:
                raise fail(f"{name} without a MARK")
            mark = marks.pop()
            items = stack[mark:]
            del stack[mark:]
            fence = marks[-1] if marks else 0
            if len(stack) - 1 < fence:
                raise fail(f"{name} with no container below the MARK")
            if items:
                stack[-1] = max(stack[-1], max(items) + 1)
                if stack[-1] > max_depth:
                    raise CheckpointFormatError(
                        f"{source}: the pickle nests containers more than {max_depth} deep; refusing it"
                    )
        elif special in ("put", "memoize"):
            if len(stack) - 1 < fence:
                raise fail(f"{name} on an empty stack")
            index = len(memo) if special == "memoize" else arg
            # Picklers number memo entries 0, 1, 2...; an index beyond the opcodes read so far only
            # serves to make the unpickler allocate a huge memo table.
            if index < 0 or index > ops:
                raise fail(f"{name} index {index} is beyond anything the pickle could have stored")
            memo[index] = stack[-1]
        elif special == "get":
            if arg not in memo:
                raise fail(f"{name} of memo entry {arg}, which was never stored")
            stack.append(memo[arg])
        elif special == "dup":
            if len(stack) - 1 < fence:
                raise fail("DUP on an empty stack")
            stack.append(stack[-1])
        elif special == "pop":
            if marks and marks[-1] == len(stack):
                marks.pop()
            elif len(stack) - 1 < fence:
                raise fail("POP on an empty stack")
            else:
                stack.pop()
        elif special == "frame":
            if arg > end - pos:
                raise fail(f"FRAME claims {arg} bytes but {end - pos} remain")
            if spans is not None:
                spans.append((start, -1, 9))
        elif special == "proto":
            if arg > pickle.HIGHEST_PROTOCOL:
                raise fail(f"unsupported pickle protocol {arg}")
        elif special == "stop":
            # a pickler leaves exactly the result: an open MARK or extra items mean a damaged stream
            if marks or len(stack) != 1:
                raise fail(f"STOP with {len(marks)} open MARKs and {len(stack)} items on the stack")
            return pos


#: byte strings at least this long are left in the mapped file and read as views
MAP_MIN_BYTES = 4096


class MappedBytes:
    """A byte string of the pickle that stays in the memory-mapped file: ``data`` is a uint8 view."""

    __slots__ = ("data",)

    def __init__(self, data: np.ndarray) -> None:
        self.data = data


def remap_stream(buf: Any, whole: np.ndarray, spans: "list[tuple[int, int, int]]") -> tuple[bytes, list[MappedBytes]]:
    """The pickle with each recorded payload replaced by a persistent reference to a view of the
    mapping, and FRAME opcodes dropped (their lengths no longer hold; frames are optional).

    Only the bytes between payloads are copied, so the rewritten stream is a few bytes per tensor.
    """
    pieces: list[bytes] = []
    table: list[MappedBytes] = []
    prev = 0
    for start, data, length in spans:
        pieces.append(bytes(buf[prev:start]))
        if data < 0:
            prev = start + length
            continue
        pieces.append(pickle.BININT + struct.pack("<i", len(table)) + pickle.BINPERSID)
        table.append(MappedBytes(whole[data:data + length]))
        prev = data + length
    pieces.append(bytes(buf[prev:]))
    return b"".join(pieces), table


# ---------------------------------------------------------------------------------- post-check
class CopyBudget:
    """Bytes a reader may allocate for copies (non-contiguous views, byte swaps), in proportion to
    the file: a file naming one storage from thousands of strided tensors must not turn a megabyte
    into gigabytes."""

    __slots__ = ("left", "source")

    def __init__(self, file_size: int, source: str, slack: int = 16 * 1024 * 1024) -> None:
        self.left = file_size + slack
        self.source = source

    def spend(self, nbytes: int, what: str) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise CheckpointFormatError(
                f"{self.source}: {what} would copy more data than the file holds; refusing it (a real checkpoint "
                "stores every tensor's bytes)"
            )


def _plain_array(arr: np.ndarray, budget: CopyBudget) -> np.ndarray:
    mapped = getattr(arr, "_mapped", None)
    if mapped is not None:
        arr = mapped
    if not arr.dtype.isnative:
        budget.spend(arr.nbytes, "byte-swapping a tensor")
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr.view(np.ndarray) if type(arr) is not np.ndarray else arr


def finish_tree(root: Any, source: str, budget: CopyBudget, max_depth: int = MAX_DEPTH,
                max_nodes: int = MAX_TREE_NODES) -> Any:
    """The loaded object with every array a plain, native-byte-order ``numpy.ndarray``, after
    checking that its containers form a tree (no cycles), nest at most ``max_depth`` deep and, with
    shared containers counted at each use, number at most ``max_nodes``.

    Iterative, so a hostile depth cannot exhaust the recursion limit here; shared containers and
    arrays stay shared.
    """
    done: dict[int, Any] = {}
    height: dict[int, int] = {}
    size: dict[int, int] = {}
    on_path: set[int] = set()
    arrays: dict[int, np.ndarray] = {}

    def leaf(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            key = id(value)
            if key not in arrays:
                arrays[key] = _plain_array(value, budget)
            return arrays[key]
        return value

    if not isinstance(root, (dict, list, tuple)):
        return leaf(root)
    todo: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while todo:
        node, depth, entered = todo.pop()
        key = id(node)
        children = list(node.values()) if isinstance(node, dict) else node
        if not entered:
            if key in done:
                continue
            if key in on_path:
                raise CheckpointFormatError(
                    f"{source}: the checkpoint's containers refer to themselves (a cycle); refusing it"
                )
            if depth > max_depth:
                raise CheckpointFormatError(
                    f"{source}: the checkpoint nests containers more than {max_depth} deep; refusing it"
                )
            on_path.add(key)
            todo.append((node, depth, True))
            todo.extend((c, depth + 1, False) for c in reversed(children) if isinstance(c, (dict, list, tuple)))
            continue
        on_path.discard(key)
        h, n = 1, 1
        for c in children:
            if isinstance(c, (dict, list, tuple)):
                h = max(h, height[id(c)] + 1)
                n += size[id(c)]
            else:
                n += 1
        if h > max_depth:
            raise CheckpointFormatError(
                f"{source}: the checkpoint nests containers more than {max_depth} deep; refusing it"
            )
        if n > max_nodes:
            raise CheckpointFormatError(
                f"{source}: the checkpoint's shared containers expand to more than {max_nodes} items; refusing it"
            )
        height[key], size[key] = h, n

        def conv(c: Any) -> Any:
            return done[id(c)] if isinstance(c, (dict, list, tuple)) else leaf(c)

        if isinstance(node, dict):
            new: Any = (OrderedDict if isinstance(node, OrderedDict) else dict)((k, conv(v)) for k, v in node.items())
        elif isinstance(node, list):
            new = [conv(c) for c in node]
        else:
            new = tuple(conv(c) for c in node)
        done[key] = new
    return done[id(root)]


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
            raise ConversionError("bytes need pickle protocol 3 or later")
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
            raise CheckpointWriteError(
                f"cannot write {obj!r}: porthub does not re-emit opaque objects; write the state dict alone")
        else:
            raise CheckpointWriteError(
                f"cannot write a {type(obj).__name__} into a checkpoint; only containers, numbers, strings and arrays")

    def dump(self, obj: Any) -> None:
        self.op(_P.PROTO + bytes([self.protocol]))
        self.value(obj)
        self.op(_P.STOP)


def write_numpy_array(writer: PickleWriter, arr: np.ndarray) -> None:
    """An ndarray exactly as numpy pickles it (``_reconstruct`` then ``__setstate__``), named through
    ``numpy.core`` so that numpy 1.x and 2.x both read it."""
    if arr.dtype.kind not in _NUMERIC_KINDS or arr.dtype.fields is not None or arr.dtype.subdtype is not None:
        # the reader refuses these, so writing one would only produce a file nobody can load
        raise CheckpointWriteError(
            f"cannot write an array of dtype {arr.dtype} into a checkpoint; only numeric tensors"
        )
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
    # the raw bytes are streamed (C order, little-endian) rather than copied out first: see io.stream
    size = arr.nbytes
    if writer.protocol < 3:
        raise ConversionError("bytes need pickle protocol 3 or later")
    writer.op(_P.BINBYTES + struct.pack("<I", size) if size < 2**32 else _P.BINBYTES8 + struct.pack("<Q", size))
    write_array(writer.out, arr)
    writer.op(_P.TUPLE + _P.BUILD)


def dumps_for_test(obj: Any) -> bytes:
    buf = io.BytesIO()
    PickleWriter(buf, 4, write_numpy_array).dump(obj)
    return buf.getvalue()
