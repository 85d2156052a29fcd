"""Fuzz porthub's checkpoint readers and run the catalogue of hostile pickles.

Every input must either load or raise a :class:`porthub.errors.PorthubError`; anything else is a
bug: another exception, a crash of the interpreter, a hang, an attempt to allocate memory the file
cannot justify, or (for the catalogue) a payload that ran. Inputs are real checkpoints
(``tests/data/official/*/*.pth``) and files porthub writes, mutated blindly (bit flips, boundary
integers, cuts, splices) and with knowledge of each format (pickle opcodes and their arguments, zip
headers and entries, safetensors JSON fields).

    python tools/fuzz_readers.py --per-format 3000            # the long run; prints the counts
    python tools/fuzz_readers.py --engine atheris --runs 20000 # coverage-guided, where atheris installs

Each input is read in a worker process that the parent restarts after a crash or a hang, with
its address space capped so that an attempted huge allocation surfaces as a bug instead of
swapping. ``tests/test_fuzz_readers.py`` and ``tests/test_io_hostile.py`` import the mutators and the
catalogue from here and run a smaller number in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import copyreg
import glob
import io
import json
import lzma
import os
import pickle
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from porthub.errors import PorthubError, UnsafeCheckpointError  # noqa: E402
from porthub.io import load_checkpoint  # noqa: E402
from porthub.io.pdparams import write_pdparams  # noqa: E402
from porthub.io.pickle_safe import CopyBudget, SafeUnpickler, finish_tree, scan_pickle  # noqa: E402
from porthub.io.pth import _torch_globals, write_pth  # noqa: E402
from porthub.io.safetensors import write_safetensors  # noqa: E402

FORMATS = ("pth", "pdparams", "safetensors")
_SUFFIX = {"pth": ".pth", "pdparams": ".pdparams", "safetensors": ".safetensors"}
#: memory a read may use beyond a small multiple of the file's size (interpreter noise, headers)
MEMORY_SLACK = 64 * 1024 * 1024
#: a read may use this many times the file's size (the pickle bytes, the arrays built from them, copies)
MEMORY_FACTOR = 3


# ---------------------------------------------------------------------------------------- seeds
def _small_objects(rng: random.Random) -> list[Any]:
    """Containers of the shapes checkpoints have: flat state dicts, nested training checkpoints,
    every dtype the writers accept, 0-d, empty and shared arrays."""
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    shared = np.linspace(-1, 1, 10)
    objs: list[Any] = [
        {"w": a, "b": np.zeros(4, np.float32), "idx": np.arange(5, dtype=np.int64)},
        {
            "model": {"layer.weight": a, "layer.bias": np.float64(0.5) * np.ones(3), "tied": shared, "tied2": shared},
            "epoch": 3,
            "best": 81.25,
            "name": "run-1",
            "flags": [True, False, None],
            "hist": (1, 2.5, "x"),
        },
        {
            "f16": np.ones((2, 2), np.float16),
            "i8": np.array([-1, 2], np.int8),
            "u8": np.array([1, 255], np.uint8),
            "i16": np.array([3], np.int16),
            "i32": np.array([7, 8], np.int32),
            "bool": np.array([True, False]),
            "scalar": np.array(3.5, np.float32),
            "empty": np.zeros((0, 3), np.float32),
        },
    ]
    objs.append({f"blocks.{i}.w": rng.random() * np.ones((i + 1, 2), np.float32) for i in range(12)})
    return objs


def _flat_arrays(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flat_arrays(v, f"{prefix}{k}."))
    elif isinstance(obj, np.ndarray):
        out[prefix[:-1]] = obj
    return out


def _to_bytes(writer: Callable[..., None], obj: Any, *extra: Any) -> bytes:
    buf = io.BytesIO()
    writer(obj, buf, *extra)
    return buf.getvalue()


def seed_corpus(repo: str = REPO, max_real: int = 3_000_000) -> dict[str, list[tuple[str, bytes]]]:
    """Per format, (name, bytes) of the files mutation starts from."""
    rng = random.Random(1234)
    seeds: dict[str, list[tuple[str, bytes]]] = {fmt: [] for fmt in FORMATS}
    real = sorted(glob.glob(os.path.join(repo, "tests", "data", "official", "*", "*.pth")))
    for path in real:
        if os.path.getsize(path) > max_real:
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        name = os.path.relpath(path, repo)
        seeds["pth"].append((name, data))
    # porthub's own files: the first real checkpoint's tensors (some of them, to keep inputs small)
    # and the synthetic objects
    if real:
        state = _flat_arrays(load_checkpoint(real[0]))
        subset = dict(list(state.items())[:24])
        for fmt, writer in (("pth", write_pth), ("pdparams", write_pdparams), ("safetensors", write_safetensors)):
            seeds[fmt].append((f"porthub:{fmt}:{os.path.basename(real[0])}[:24]", _to_bytes(writer, subset)))
        seeds["pdparams"].append((f"porthub:pdparams:{os.path.basename(real[0])}", _to_bytes(write_pdparams, state)))
    for i, obj in enumerate(_small_objects(rng)):
        seeds["pth"].append((f"porthub:pth:small{i}", _to_bytes(write_pth, obj)))
        seeds["pdparams"].append((f"porthub:pdparams:small{i}", _to_bytes(write_pdparams, obj)))
        seeds["safetensors"].append((f"porthub:safetensors:small{i}", _to_bytes(write_safetensors, _flat_arrays(obj))))
        # numpy's own pickles of the same arrays, as paddle.save writes them (protocols 2 to 5)
        proto = 2 + i % 4
        seeds["pdparams"].append((f"numpy-pickle:p{proto}:small{i}", pickle.dumps(obj, protocol=proto)))
    return seeds


# ------------------------------------------------------------------------------------- mutators
_INTERESTING_INTS = [
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0x100000000,
    2**40,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -1,
    -2,
    -(2**31),
    -(2**63),
]

# Pickle snippets spliced in by the opcode-aware mutator: resource claims, deep nesting, forbidden
# and allowed globals with odd arguments, every stack and memo opcode.
_SNIPPETS: list[bytes] = [
    b"r\xff\xff\xff\x7f",
    b"q\xff",
    b"j\xff\xff\xff\x00",
    b"h\x00",
    b"h\x05",
    b"g99999\n",
    b"p99999999\n",
    b"\x94",
    b"\x8e" + (2**40).to_bytes(8, "little"),
    b"\x95" + (2**40).to_bytes(8, "little"),
    b"B\xff\xff\xff\x7f",
    b"X\xff\xff\xff\xff",
    b"\x8b\xff\xff\xff\x7f",
    b"\x8d" + (2**35).to_bytes(8, "little"),
    b"\x96" + (2**33).to_bytes(8, "little"),
    b")" + b"\x85" * 3000,
    b"]" * 2000 + b"a" * 1999,
    b"(" * 500,
    b"t" * 50,
    b"}" * 100,
    b"(" * 300 + b"t" * 300,
    b"cos\nsystem\n",
    b"\x8c\x05posix\x8c\x06system\x93",
    b"cbuiltins\neval\n",
    b"c__builtin__\nexec\n",
    b"cnumpy\ndtype\n",
    b"ctorch._utils\n_rebuild_tensor_v2\n",
    b"ccollections\nOrderedDict\n",
    b"c_codecs\nencode\n",
    b"cnumpy.core.multiarray\n_reconstruct\n",
    b"cnumpy\nndarray\n",
    b"ctorch\nFloatStorage\n",
    b"cargparse\nNamespace\n",
    b"cnumpy._core.numeric\n_frombuffer\n",
    b"cnumpy.core.multiarray\nscalar\n",
    b"ctorch._tensor\n_rebuild_from_type_v2\n",
    b"R",
    b"b",
    b"\x81",
    b"\x92",
    b"o",
    b"i",
    b"\x82\x01",
    b"\x83\x01\x00",
    b"\x84\x01\x00\x00\x00",
    b"Q",
    b"P1\n",
    b"}",
    b"]",
    b")",
    b"u",
    b"s",
    b"e",
    b"a",
    b"0",
    b"1",
    b"2",
    b"N",
    b"t",
    b"l",
    b"d",
    b"\x90",
    b"\x91",
    b"\x8f",
    b"\x85",
    b"\x86",
    b"\x87",
    b"(",
    b".",
    b"\x80\x05",
    b"\x97",
    b"\x98",
    b"I99999999999999999999\n",
    b"L" + b"9" * 5000 + b"L\n",
    b"F1e999\n",
    b"S'abc'\n",
    b"V\\u1234\n",
    b"K\x03",
    b"J\xff\xff\xff\xff",
    b"\x8a\x09" + b"\xff" * 9,
    b"G" + b"\x7f\xf0" + b"\x00" * 6,
    b"X\x02\x00\x00\x00f4",
    b"X\x01\x00\x00\x00O",
    b"X\x03\x00\x00\x00V16",
    b"X\x02\x00\x00\x00>f",
    b"X\x02\x00\x00\x00c8",
    b"C\x04abcd",
    b"\x8c\x03cpu",
    b"X\x07\x00\x00\x00storage",
]


def _pickle_ops(data: bytes) -> list[tuple[int, int, int]]:
    """(opcode position, argument start, end) of each opcode of a well-formed pickle."""
    import pickletools

    out = []
    ops = list(pickletools.genops(data))
    for i, (_op, _arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        out.append((pos, pos + 1, end))
    return out


_OPS_CACHE: dict[int, list[tuple[int, int, int]]] = {}


def _ops_of(data: bytes) -> list[tuple[int, int, int]]:
    key = hash(data)
    if key not in _OPS_CACHE:
        try:
            _OPS_CACHE[key] = _pickle_ops(data)
        except (ValueError, EOFError):
            _OPS_CACHE[key] = []
    return _OPS_CACHE[key]


def _int_bytes(rng: random.Random) -> bytes:
    value = rng.choice(_INTERESTING_INTS)
    width = rng.choice((1, 2, 4, 8))
    order = rng.choice(("little", "big"))
    return (value % (1 << (8 * width))).to_bytes(width, order)


def mutate_bytes(data: bytes, rng: random.Random, donors: list[bytes]) -> bytes:
    """One blind mutation."""
    buf = bytearray(data)
    n = len(buf)
    kind = rng.randrange(11)
    pos = rng.randrange(n) if n else 0
    if kind == 0 and n:  # flip a few bits
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
    elif kind == 1 and n:  # set bytes to boundary values
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, ord("\n"), ord("."), ord("(")))
    elif kind == 2:  # overwrite with a boundary integer
        raw = _int_bytes(rng)
        buf[pos : pos + len(raw)] = raw
    elif kind == 3:  # truncate
        del buf[rng.randrange(n + 1) :]
    elif kind == 4:  # delete a range
        del buf[pos : pos + rng.randint(1, 64)]
    elif kind == 5:  # insert random bytes
        buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    elif kind == 6 and n:  # duplicate a range
        chunk = buf[pos : pos + rng.randint(1, 256)]
        at = rng.randrange(n)
        buf[at:at] = chunk * rng.randint(1, 4)
    elif kind == 7 and donors:  # splice with another file of the same format
        other = rng.choice(donors)
        cut = rng.randrange(len(other) + 1)
        buf = buf[:pos] + bytearray(other[cut : cut + rng.randint(1, 4096)]) + buf[pos:]
    elif kind == 8:  # zero a range
        length = rng.randint(1, 512)
        buf[pos : pos + length] = bytes(len(buf[pos : pos + length]))
    elif kind == 9:  # append junk
        buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    else:  # splice in a pickle snippet anywhere
        buf[pos:pos] = rng.choice(_SNIPPETS)
    return bytes(buf)


def mutate_pickle(data: bytes, rng: random.Random) -> bytes:
    """One opcode-aware mutation: the pickle stays parseable up to the change."""
    ops = _ops_of(data)
    if not ops:
        return mutate_bytes(data, rng, [])
    pos, arg_start, end = rng.choice(ops)
    kind = rng.randrange(6)
    if kind == 0 and end > arg_start:  # a boundary value in the argument (a length, an index, a number)
        raw = _int_bytes(rng)
        width = min(len(raw), end - arg_start)
        return data[:arg_start] + raw[:width] + data[arg_start + width :]
    if kind == 1:  # delete the opcode
        return data[:pos] + data[end:]
    if kind == 2:  # duplicate the opcode
        return data[:end] + data[pos:end] * rng.randint(1, 3) + data[end:]
    if kind == 3:  # replace the opcode with a snippet
        return data[:pos] + rng.choice(_SNIPPETS) + data[end:]
    if kind == 4:  # insert snippets before it
        return data[:pos] + b"".join(rng.choice(_SNIPPETS) for _ in range(rng.randint(1, 3))) + data[pos:]
    other_pos, _, other_end = rng.choice(ops)  # move an opcode
    return data[:pos] + data[other_pos:other_end] + data[end:]


def _zip_entries(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(info, zf.read(info)) for info in zf.infolist()]
    except (
        zipfile.BadZipFile,
        OSError,
        ValueError,
        EOFError,
        KeyError,
        NotImplementedError,
        struct.error,
        RuntimeError,
        zlib.error,
        lzma.LZMAError,
    ):
        # the mutator re-reads inputs it already damaged (RuntimeError: an entry flagged as encrypted)
        return None


def build_zip(entries: list[tuple[str, bytes]], compress: set[str] = frozenset()) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        warnings.simplefilter("ignore")  # duplicate entry names are one of the mutations
        for name, payload in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            zf.writestr(info, payload)
    return out.getvalue()


def mutate_pth(data: bytes, rng: random.Random, donors: list[bytes]) -> bytes:
    """One mutation of a torch.save zip that keeps the zip readable and changes what is inside."""
    entries = _zip_entries(data)
    if not entries or rng.random() < 0.25:
        return mutate_bytes(data, rng, donors)
    items = [(info.filename, payload) for info, payload in entries]
    kind = rng.randrange(8)
    pkl_index = next((i for i, (name, _) in enumerate(items) if name.endswith("data.pkl")), None)
    if kind <= 2 and pkl_index is not None:  # the pickle inside: opcode-aware or blind
        name, payload = items[pkl_index]
        payload = mutate_pickle(payload, rng) if kind < 2 else mutate_bytes(payload, rng, [])
        items[pkl_index] = (name, payload)
    elif kind == 3:  # a storage's bytes: shorter, longer
        i = rng.randrange(len(items))
        name, payload = items[i]
        items[i] = (name, payload[: rng.randrange(len(payload) + 1)] if rng.random() < 0.5 else payload + payload[:64])
    elif kind == 4:  # drop or duplicate an entry
        i = rng.randrange(len(items))
        if rng.random() < 0.5:
            del items[i]
        else:
            items.insert(rng.randrange(len(items) + 1), items[i])
    elif kind == 5:  # the byteorder record
        prefix = items[0][0].split("/")[0]
        items = [it for it in items if not it[0].endswith("/byteorder")]
        items.append((f"{prefix}/byteorder", rng.choice([b"big", b"little", b"middle", b"", b"big" * 10])))
    elif kind == 6:  # a compressed entry, sometimes a highly compressible (zip-bomb shaped) one
        i = rng.randrange(len(items))
        name, payload = items[i]
        if rng.random() < 0.5:
            payload = b"\x00" * (8 * 1024 * 1024)
        return build_zip(items[:i] + [(name, payload)] + items[i + 1 :], compress={name})
    else:  # a boundary integer somewhere in the zip's headers (first or last 256 bytes of the structure)
        raw = build_zip(items)
        region = rng.choice((range(0, min(len(raw), 256)), range(max(0, len(raw) - 256), len(raw))))
        at = rng.choice(list(region)) if len(region) else 0
        value = _int_bytes(rng)
        return raw[:at] + value + raw[at + len(value) :]
    return build_zip(items)


def _json_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            -1,
            0,
            2**31,
            2**63,
            2**64 + 5,
            10**30,
            1.5,
            float("1e308"),
            "F32",
            "BF16",
            "O",
            "",
            [],
            {},
            [2**32, 2**32],
            [-1],
            [1.5],
            [[1]],
            ["1"],
            [0, 2**63],
            [2**62, 2**62],
            [3, 2],
            list(range(70)),
            {"a": 1},
        ]
    )


def mutate_safetensors(data: bytes, rng: random.Random, donors: list[bytes]) -> bytes:
    """One mutation of a safetensors file: its JSON header's fields, or its length prefix, or blind."""
    if len(data) < 8 or rng.random() < 0.3:
        return mutate_bytes(data, rng, donors)
    (length,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, RecursionError):
        return mutate_bytes(data, rng, donors)
    if not isinstance(header, dict):
        return mutate_bytes(data, rng, donors)
    body = data[8 + length :]
    names = [k for k in header if k != "__metadata__"]
    kind = rng.randrange(8)
    if kind <= 2 and names:  # one field of one tensor
        entry = header[rng.choice(names)]
        if isinstance(entry, dict):
            entry[rng.choice(("dtype", "shape", "data_offsets", "extra"))] = _json_value(rng)
    elif kind == 3 and names:  # offsets that overlap, reverse, or leave the data section
        entry = header[rng.choice(names)]
        if isinstance(entry, dict):
            a, b = rng.randrange(len(body) + 2), rng.randrange(len(body) + 2)
            entry["data_offsets"] = [a, b]
    elif kind == 4:  # duplicate/remove entries, odd metadata
        if names and rng.random() < 0.5:
            del header[rng.choice(names)]
        else:
            header["__metadata__"] = _json_value(rng)
    elif kind == 5:  # deep JSON or long numbers
        depth = rng.choice((100, 1000, 100000))
        text = json.dumps(header)[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
        if rng.random() < 0.5:
            text = (
                json.dumps(header)[:-1]
                + ', "n": {"dtype": "F32", "shape": ['
                + "9" * 5000
                + '], "data_offsets": [0, 4]}}'
            )
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw + body
    elif kind == 6:  # the length prefix
        return struct.pack("<Q", rng.choice(_INTERESTING_INTS) % 2**64) + data[8:]
    else:  # the header as a different JSON type
        header = rng.choice(
            [[], "x", 1, None, {"a": "b"}, {"t": {"dtype": "F32", "shape": [2**33, 2**33], "data_offsets": [0, 0]}}]
        )
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def mutate(data: bytes, fmt: str, rng: random.Random, donors: list[bytes]) -> bytes:
    """One to three mutations, format-aware most of the time."""
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if fmt == "pth":
            data = mutate_pth(data, rng, donors)
        elif fmt == "pdparams":
            data = mutate_pickle(data, rng) if rng.random() < 0.6 else mutate_bytes(data, rng, donors)
        else:
            data = mutate_safetensors(data, rng, donors)
    return data


def fuzz_inputs(
    seeds: dict[str, list[tuple[str, bytes]]], fmt: str, count: int, seed: int
) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(f"{fmt}:{seed}")
    pool = seeds[fmt]
    donors = [data for _, data in pool]
    for i in range(count):
        name, data = rng.choice(pool)
        yield f"{fmt}#{i} from {name}", mutate(data, fmt, rng, donors)


# ------------------------------------------------------------------------------------- checking
def touch_all(obj: Any) -> int:
    """Read every byte of every array (a view past its buffer would fault here); returns the count of arrays."""
    count = 0
    todo = [obj]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            todo.extend(node.values())
        elif isinstance(node, (list, tuple)):
            todo.extend(node)
        elif isinstance(node, np.ndarray):
            if type(node) is not np.ndarray or not node.dtype.isnative or node.dtype.hasobject:
                raise AssertionError(f"reader returned a {type(node).__name__} of {node.dtype}")
            if len(node.tobytes()) != node.nbytes:
                raise AssertionError("array bytes disagree with its size")
            count += 1
    return count


@dataclass
class Outcome:
    kind: str  # "loaded", "refused-unsafe", "refused-format", "bug"
    detail: str
    seconds: float
    peak: int


def classify(path: str, fmt: str | None = None, size: int | None = None, trace_memory: bool = True) -> Outcome:
    """Load one file in this process and say what happened."""
    size = os.path.getsize(path) if size is None else size
    if trace_memory:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        obj = load_checkpoint(path, fmt)
        arrays = touch_all(obj)
        kind, detail = "loaded", f"{arrays} arrays"
    except UnsafeCheckpointError as exc:
        kind, detail = "refused-unsafe", str(exc)
    except PorthubError as exc:
        kind, detail = "refused-format", str(exc)
        cause = exc.__cause__
        if isinstance(cause, MemoryError):
            kind, detail = "bug", f"attempted an allocation the file cannot justify: {exc}"
    except Exception as exc:  # noqa: BLE001 - the point of a fuzzer: any other exception is the finding
        kind, detail = "bug", f"{type(exc).__name__}: {exc}"[:500]
    seconds = time.perf_counter() - start
    peak = 0
    if trace_memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if kind != "bug" and peak > MEMORY_FACTOR * size + MEMORY_SLACK:
            kind, detail = "bug", f"peak memory {peak} bytes for a {size}-byte file ({detail})"
    return Outcome(kind, detail, seconds, peak)


# ------------------------------------------------------------------------------------ catalogue
def _S(text: str) -> bytes:
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw


def _B(raw: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(raw)) + raw


def _G(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def _p(body: bytes, proto: int = 2) -> bytes:
    return b"\x80" + bytes([proto]) + body + b"."


@dataclass(frozen=True)
class Hostile:
    name: str
    payload: bytes  # a complete pickle
    expect: str  # "unsafe": UnsafeCheckpointError; "refused": any PorthubError
    ext: tuple[str, str] | None = None  # a copyreg extension code 0xf0 for (module, name) while loading


def _real_reduce_pickles(cmd: str) -> list[tuple[str, bytes]]:
    """What pickle.dumps writes for an object whose __reduce__ calls os.system / subprocess."""

    class Evil:
        def __init__(self, fn: Any, args: tuple) -> None:
            self.fn, self.args = fn, args

        def __reduce__(self) -> tuple:
            return self.fn, self.args

    out = []
    for proto in (0, 2, 4, 5):
        body = pickle.dumps(Evil(os.system, (cmd,)), protocol=proto)
        out.append((f"pickle.dumps(os.system) protocol {proto}", body if proto >= 2 else b"\x80\x02" + body))
    out.append(
        (
            "pickle.dumps(subprocess.call) in a dict",
            pickle.dumps({"w": Evil(subprocess.call, (["sh", "-c", cmd],))}, protocol=4),
        )
    )
    out.append(
        (
            "pickle.dumps(eval) as a state-dict value",
            pickle.dumps({"w": np.ones(2), "b": Evil(eval, (f"open({cmd.split()[-1]!r}, 'w')",))}, protocol=2),
        )
    )
    return out


def torch_zip(data_pkl: bytes, storages: dict[str, bytes] | None = None, byteorder: bytes | None = b"little") -> bytes:
    entries = [("archive/data.pkl", data_pkl)]
    if byteorder is not None:
        entries.append(("archive/byteorder", byteorder))
    for key, raw in (storages or {}).items():
        entries.append((f"archive/data/{key}", raw))
    entries.append(("archive/version", b"3\n"))
    return build_zip(entries)


def hostile_catalogue(marker: str) -> list[Hostile]:
    """Pickles that would run code (each would create ``marker``), abuse allowed globals, or exhaust
    memory, time or the C stack. Every one must be refused, in every carrier, with nothing run."""
    cmd = f"touch {marker}"
    pyc = f"open({marker!r}, 'w').close()"
    inner_evil = _p(_call(_G("os", "system"), _S(cmd)))
    cases: list[Hostile] = []

    def unsafe(name: str, body: bytes, proto: int = 2, ext: tuple[str, str] | None = None) -> None:
        cases.append(Hostile(name, _p(body, proto), "unsafe", ext))

    def refused(name: str, body: bytes, proto: int = 2) -> None:
        cases.append(Hostile(name, _p(body, proto), "refused"))

    # --- code execution through a forbidden global
    for module, name in [
        ("os", "system"),
        ("posix", "system"),
        ("nt", "system"),
        ("os", "popen"),
        ("os", "execv"),
        ("os", "spawnlp"),
        ("pty", "spawn"),
        ("subprocess", "call"),
        ("subprocess", "check_output"),
        ("subprocess", "getoutput"),
        ("subprocess", "run"),
        ("commands", "getoutput"),
    ]:
        unsafe(f"{module}.{name}", _call(_G(module, name), _S(cmd)))
    unsafe(
        "subprocess.Popen via NEWOBJ", _G("subprocess", "Popen") + b"(" + _S("sh") + _S("-c") + _S(cmd) + b"l\x85\x81"
    )
    for module, name in [
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("__builtin__", "eval"),
        ("__builtin__", "execfile"),
        ("builtins", "compile"),
        ("builtins", "breakpoint"),
        ("timeit", "timeit"),
        ("cProfile", "run"),
        ("profile", "run"),
        ("pdb", "run"),
        ("code", "InteractiveInterpreter"),
        ("runpy", "run_path"),
        ("numpy.testing._private.utils", "runstring"),
        ("numpy.testing", "runstring"),
    ]:
        unsafe(f"{module}.{name}", _call(_G(module, name), _S(pyc)))
    unsafe("builtins.open creates the marker", _call(_G("builtins", "open"), _S(marker), _S("w")))
    unsafe("io.open creates the marker", _call(_G("io", "open"), _S(marker), _S("w")))
    unsafe("pathlib.Path.touch", _call(_G("pathlib", "Path"), _S(marker)))
    unsafe(
        "getattr(__import__('os'), 'system')(cmd)",
        _call(_call(_G("builtins", "getattr"), _call(_G("builtins", "__import__"), _S("os")), _S("system")), _S(cmd)),
    )
    unsafe("importlib.import_module('os')", _call(_G("importlib", "import_module"), _S("os")))
    unsafe("operator.methodcaller", _call(_G("operator", "methodcaller"), _S("system"), _S(cmd)))
    unsafe("functools.partial(os.system)", _call(_G("functools", "partial"), _G("os", "system"), _S(cmd)))
    unsafe(
        "copyreg._reconstructor",
        _call(_G("copyreg", "_reconstructor"), _G("os", "system"), _G("builtins", "object"), b"N"),
    )
    unsafe("copyreg.__newobj__", _call(_G("copyreg", "__newobj__"), _G("subprocess", "Popen"), _S(cmd)))
    unsafe("ctypes.CDLL", _call(_G("ctypes", "CDLL"), _S("libc.so.6")))
    unsafe("shutil.rmtree", _call(_G("shutil", "rmtree"), _S(os.path.dirname(marker))))
    unsafe("sys.exit", _call(_G("sys", "exit"), b"K\x07"))
    unsafe("webbrowser.open", _call(_G("webbrowser", "open"), _S("file://" + marker)))
    # --- pickle re-entry: an inner pickle the real unpickler would execute
    for module, name in [
        ("pickle", "loads"),
        ("_pickle", "loads"),
        ("pickle", "_loads"),
        ("dill", "loads"),
        ("joblib", "load"),
    ]:
        unsafe(f"{module}.{name}(inner evil pickle)", _call(_G(module, name), _B(inner_evil)))
    unsafe(
        "pickle.Unpickler(io.BytesIO(evil)).load",
        _call(_G("pickle", "Unpickler"), _call(_G("io", "BytesIO"), _B(inner_evil))),
    )
    # --- torch globals other than the tensor rebuilders
    inner_torch = torch_zip(inner_evil)
    for module, name in [
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.storage", "_load_from_bytes"),
        ("torch.jit", "load"),
        ("torch.hub", "load"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("torch._utils", "_rebuild_qtensor"),
        ("torch._C", "_jit_pass_inline"),
        ("torch.nn", "Module"),
        ("torch", "Tensor.__reduce_ex__"),
        ("torch.testing._internal.common_utils", "run_tests"),
        ("torch._dynamo.eval_frame", "run"),
    ]:
        unsafe(f"{module}.{name}", _call(_G(module, name), _B(inner_torch)))
    unsafe("torch.FloatStorage called", _call(_G("torch", "FloatStorage"), b"K\x10"))
    unsafe("torch.Tensor called", _call(_G("torch", "Tensor"), _S(cmd)))
    unsafe(
        "_rebuild_from_type_v2 with os.system as the function",
        _call(
            _G("torch._tensor", "_rebuild_from_type_v2"),
            _G("os", "system"),
            _G("torch", "Tensor"),
            b"(" + _S(cmd) + b"t",
            b"}",
        ),
    )
    unsafe(
        "_rebuild_from_type_v2 with OrderedDict as the function",
        _call(
            _G("torch._tensor", "_rebuild_from_type_v2"),
            _G("collections", "OrderedDict"),
            _G("torch", "Tensor"),
            b")",
            b"}",
        ),
    )
    unsafe(
        "_rebuild_from_type_v2 with a tensor subclass",
        _call(
            _G("torch._tensor", "_rebuild_from_type_v2"),
            _G("torch._utils", "_rebuild_parameter"),
            _G("torch.nn", "Module"),
            b")",
            b"}",
        ),
    )
    # --- numpy globals: forbidden ones, and the allowed ones given hostile arguments
    for module, name in [
        ("numpy", "load"),
        ("numpy.lib.npyio", "load"),
        ("numpy", "loads"),
        ("numpy.f2py", "compile"),
        ("numpy.ctypeslib", "load_library"),
        ("numpy", "frombuffer"),
        ("numpy", "fromfile"),
        ("numpy.core.multiarray", "_reconstruct_object"),
        ("numpy.ma.core", "_mareconstruct"),
        ("numpy", "vectorize"),
        ("numpy.lib.utils", "source"),
    ]:
        unsafe(f"{module}.{name}", _call(_G(module, name), _S(marker)))
    unsafe(
        "numpy _reconstruct of os.system",
        _call(_G("numpy.core.multiarray", "_reconstruct"), _G("os", "system"), b")", _S(cmd)),
    )
    unsafe(
        "numpy _reconstruct of torch.Tensor",
        _call(_G("numpy.core.multiarray", "_reconstruct"), _G("torch", "Tensor"), b"K\x00\x85", _S("b")),
    )
    unsafe(
        "numpy.ndarray called directly (a 1 TB allocation)",
        _call(_G("numpy", "ndarray"), b"\x8a\x06" + (2**40).to_bytes(6, "little") + b"\x85"),
    )
    refused(
        "numpy.ndarray via NEWOBJ",
        _G("numpy", "ndarray") + b"\x8a\x06" + (2**40).to_bytes(6, "little") + b"\x85\x85\x81",
    )
    for code in ("O", "V16", "U8", "S4", "M8[s]", "m8", "f4,i4", "(2,2)f4", "O8"):
        unsafe(f"numpy.dtype({code!r})", _call(_G("numpy", "dtype"), _S(code), b"\x89\x88"))
    for code in ("g", "G", "nonsense"):
        refused(f"numpy.dtype({code!r})", _call(_G("numpy", "dtype"), _S(code), b"\x89\x88"))
    unsafe("numpy.dtype(list of fields)", _call(_G("numpy", "dtype"), b"](" + _S("a") + _S("O") + b"\x86e"))
    array_state = b"(K\x01K\x02\x85" + _call(_G("numpy", "dtype"), _S("f8"), b"\x89\x88") + b"\x89"
    for label, state in [
        ("object flags", b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"),
        ("fields", b"(K\x03X\x01\x00\x00\x00|N(X\x01\x00\x00\x00atN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"),
        ("item size", b"(K\x03X\x01\x00\x00\x00<NNNK\x40J\xff\xff\xff\xffK\x00tb"),
    ]:
        unsafe(f"numpy dtype BUILD state with {label}", _call(_G("numpy", "dtype"), _S("f8"), b"\x89\x88") + state)
    unsafe(
        "numpy array state holding Python objects",
        _call(_G("numpy.core.multiarray", "_reconstruct"), _G("numpy", "ndarray"), b"K\x00\x85", _S("b"))
        + array_state
        + b"]"
        + _S(cmd)
        + b"atb",
    )
    unsafe(
        "numpy scalar of an object dtype",
        _call(
            _G("numpy.core.multiarray", "scalar"), _call(_G("numpy", "dtype"), _S("O"), b"\x89\x88"), _B(b"\x00" * 8)
        ),
    )
    unsafe(
        "_codecs.encode with a codec that is not text", _call(_G("_codecs", "encode"), _S("x" * 64), _S("zlib_codec"))
    )
    unsafe(
        "OrderedDict with a generator-like argument",
        _call(_G("collections", "OrderedDict"), _call(_G("builtins", "iter"), b"]")),
    )
    unsafe("OrderedDict with two arguments", _call(_G("collections", "OrderedDict"), b"]", b"}"))
    # --- modifying an allowed global through BUILD (would change how later, honest files load)
    unsafe(
        "BUILD on torch.FloatStorage",
        _G("torch", "FloatStorage") + b"}" + _S("dtype") + _call(_G("numpy", "dtype"), _S("f8"), b"\x89\x88") + b"sb",
    )
    unsafe(
        "BUILD on collections.OrderedDict (slot state)",
        _G("collections", "OrderedDict") + b"N}" + _S("fn") + b"K\x01s\x86b",
    )
    unsafe(
        "BUILD on numpy.dtype with __defaults__",
        _G("numpy", "dtype") + b"N}" + _S("__defaults__") + b"(K\x01t" + b"s\x86b",
    )
    unsafe("BUILD on _rebuild_tensor_v2", _G("torch._utils", "_rebuild_tensor_v2") + b"}" + _S("x") + b"K\x01sb")
    unsafe("BUILD on numpy.ndarray", _G("numpy", "ndarray") + b"}" + _S("x") + b"K\x01sb")
    # --- GLOBAL reached through other opcodes
    unsafe("INST opcode", b"(" + _S(cmd) + b"ios\nsystem\n")
    unsafe("OBJ opcode", b"(" + _G("os", "system") + _S(cmd) + b"o")
    unsafe("STACK_GLOBAL", b"\x8c\x02os\x8c\x06system\x93" + _S(cmd) + b"\x85R", proto=4)
    refused("STACK_GLOBAL with a non-string name", b"K\x01K\x02\x93", proto=4)
    unsafe("NEWOBJ_EX on a forbidden class", _G("subprocess", "Popen") + b"(" + _S(cmd) + b"t}\x92", proto=4)
    for op, code in ((b"\x82", b"\xf0"), (b"\x83", b"\xf0\x00"), (b"\x84", b"\xf0\x00\x00\x00")):
        cases.append(
            Hostile(
                f"EXT{len(code)} opcode naming os.system",
                _p(op + code + _S(cmd) + b"\x85R"),
                "unsafe",
                ("os", "system"),
            )
        )
    unsafe("persistent id outside a torch zip", _S(cmd) + b"Q")
    unsafe(
        "persistent id with a forbidden storage type",
        b"(" + _S("storage") + _G("os", "system") + _S("0") + _S("cpu") + b"K\x01tQ",
    )
    unsafe(
        "persistent id naming torch.Tensor as its storage",
        b"(" + _S("storage") + _G("torch", "Tensor") + _S("0") + _S("cpu") + b"K\x01tQ",
    )
    # --- resources: memory, time, C stack
    refused("memo index 2**31 (LONG_BINPUT): a 32 GB memo table", b"Nr\xff\xff\xff\x7f")
    refused("memo index 2**31 (PUT text)", b"Np2147483647\n")
    refused("BINBYTES8 claiming 1 TB", b"\x8e" + (2**40).to_bytes(8, "little") + b"abc", proto=4)
    refused("BINBYTES claiming 2 GB", b"B\xff\xff\xff\x7fabc", proto=3)
    refused("BINUNICODE8 claiming 32 GB", b"\x8d" + (2**35).to_bytes(8, "little") + b"abc", proto=4)
    refused("BYTEARRAY8 claiming 8 GB", b"\x96" + (2**33).to_bytes(8, "little") + b"abc", proto=5)
    refused("FRAME claiming 1 TB", b"\x95" + (2**40).to_bytes(8, "little") + b"N", proto=4)
    refused("LONG4 claiming 2 GB", b"\x8b\xff\xff\xff\x7f\x00")
    refused("LONG of 100 000 digits", b"L" + b"9" * 100_000 + b"L\n")
    refused("tuple nested 200 000 deep used as a dict key (crashes CPython's hash)", b"}N" + b"\x85" * 200_000 + b"Ns")
    refused(
        "tuple nested 200 000 deep in an OrderedDict",
        _call(_G("collections", "OrderedDict"), b"](N" + b"\x85" * 200_000 + b"N\x86a"),
    )
    refused("list nested 100 000 deep", b"]" * 100_000 + b"a" * 99_999)
    refused("dict nested 50 000 deep", b"}" + (_S("k") + b"}") * 50_000 + b"s" * 50_000)
    refused("a list that contains itself", b"]q\x00h\x00a")
    refused("shared lists doubling 80 times (2**80 items as a tree)", b"]" + b"q\x00h\x00h\x00\x86" * 80)
    refused(
        "numpy array claiming 10**12 elements from 16 bytes",
        _call(_G("numpy.core.multiarray", "_reconstruct"), _G("numpy", "ndarray"), b"K\x00\x85", _S("b"))
        + b"(K\x01\x8a\x05"
        + (10**12).to_bytes(5, "little")
        + b"\x85"
        + _call(_G("numpy", "dtype"), _S("f8"), b"\x89\x88")
        + b"\x89"
        + _B(b"\x00" * 16)
        + b"tb",
    )
    refused(
        "numpy array whose shape product wraps int64",
        _call(_G("numpy.core.multiarray", "_reconstruct"), _G("numpy", "ndarray"), b"K\x00\x85", _S("b"))
        + b"(K\x01\x8a\x05"
        + (2**32).to_bytes(5, "little")
        + b"\x8a\x05"
        + (2**32).to_bytes(5, "little")
        + b"\x86"
        + _call(_G("numpy", "dtype"), _S("f8"), b"\x89\x88")
        + b"\x89"
        + _B(b"")
        + b"tb",
    )
    refused(
        "numpy _frombuffer claiming 2**40 elements",
        _call(
            _G("numpy._core.numeric", "_frombuffer"),
            _B(b"\x00" * 8),
            _call(_G("numpy", "dtype"), _S("f8"), b"\x89\x88"),
            b"\x8a\x06" + (2**40).to_bytes(6, "little") + b"\x85",
            _S("C"),
        ),
        proto=4,
    )
    refused("a million MARKs", b"(" * 1_000_000 + b"N")
    refused("truncated in the middle of a frame", b"\x95\x10\x00\x00\x00\x00\x00\x00\x00N", proto=4)
    return cases


def torch_tensor_catalogue() -> list[tuple[str, bytes]]:
    """Complete .pth files whose tensors misuse a real storage: huge claims, overlapping and
    shared storages, negative strides, amplification through many strided views."""
    storage = np.arange(16, dtype="<f4").tobytes()

    def tensor(
        size: tuple, stride: tuple, offset: int = 0, key: str = "0", storage_type: str = "FloatStorage", numel: int = 16
    ) -> bytes:
        pid = (
            b"("
            + _S("storage")
            + _G("torch", storage_type)
            + _S(key)
            + _S("cpu")
            + b"J"
            + struct.pack("<i", numel)
            + b"tQ"
        )
        size_b = b"(" + b"".join(b"\x8a\x08" + n.to_bytes(8, "little", signed=True) for n in size) + b"t"
        stride_b = b"(" + b"".join(b"\x8a\x08" + s.to_bytes(8, "little", signed=True) for s in stride) + b"t"
        return _call(
            _G("torch._utils", "_rebuild_tensor_v2"),
            pid,
            b"\x8a\x08" + offset.to_bytes(8, "little", signed=True),
            size_b,
            stride_b,
            b"\x89",
            _call(_G("collections", "OrderedDict")),
        )

    def file(body: bytes, storages: dict[str, bytes] | None = None, byteorder: bytes | None = b"little") -> bytes:
        return torch_zip(_p(b"}(" + body + b"u"), {"0": storage} if storages is None else storages, byteorder)

    many = b"".join(_S(f"t{i}") + tensor((4096, 16), (0, 1)) for i in range(1000))
    return [
        ("tensor of 2**40 elements on a 16-element storage", file(_S("w") + tensor((2**40,), (1,)))),
        ("tensor whose shape product wraps int64", file(_S("w") + tensor((2**32, 2**32), (1, 1)))),
        ("negative stride", file(_S("w") + tensor((4,), (-1,), offset=3))),
        ("negative offset", file(_S("w") + tensor((4,), (1,), offset=-4))),
        ("offset past the storage", file(_S("w") + tensor((4,), (1,), offset=15))),
        ("stride reaching past the storage", file(_S("w") + tensor((4, 4), (5, 1)))),
        ("storage claiming more elements than its entry holds", file(_S("w") + tensor((4,), (1,), numel=1_000_000))),
        ("storage entry missing", file(_S("w") + tensor((4,), (1,), key="7"))),
        ("1000 stride-0 views of one storage, 256 KB each (amplification)", file(many)),
        ("bfloat16 storage", file(_S("w") + tensor((4,), (1,), storage_type="BFloat16Storage"))),
        ("byteorder record that is neither little nor big", file(_S("w") + tensor((4,), (1,)), byteorder=b"middle")),
        (
            "data.pkl compressed (a zip bomb would be)",
            build_zip(
                [("archive/data.pkl", _p(b"}" + b"N" * 10)), ("archive/version", b"3\n")], compress={"archive/data.pkl"}
            ),
        ),
        (
            "storage compressed (a zip bomb would be)",
            build_zip(
                [
                    ("archive/data.pkl", _p(b"}(" + _S("w") + tensor((4,), (1,)) + b"u")),
                    ("archive/data/0", b"\x00" * (1 << 20)),
                ],
                compress={"archive/data/0"},
            ),
        ),
        ("two data.pkl", build_zip([("a/data.pkl", _p(b"N")), ("b/data.pkl", _p(b"N"))])),
    ]


def torch_tensor_loads() -> list[tuple[str, bytes, Callable[[Any], bool]]]:
    """Legitimate but unusual .pth files that must load with the right values."""
    base = np.arange(16, dtype="<f4")

    def tensor(
        size: tuple, stride: tuple, offset: int = 0, key: str = "0", storage_type: str = "FloatStorage", numel: int = 16
    ) -> bytes:
        pid = b"(" + _S("storage") + _G("torch", storage_type) + _S(key) + _S("cpu") + b"K" + bytes([numel]) + b"tQ"
        size_b = b"(" + b"".join(b"K" + bytes([n]) for n in size) + b"t"
        stride_b = b"(" + b"".join(b"K" + bytes([s]) for s in stride) + b"t"
        return _call(
            _G("torch._utils", "_rebuild_tensor_v2"),
            pid,
            b"K" + bytes([offset]),
            size_b,
            stride_b,
            b"\x89",
            _call(_G("collections", "OrderedDict")),
        )

    two = (
        b"("
        + _S("a")
        + tensor((4, 4), (4, 1))
        + _S("b")
        + tensor((4, 4), (1, 4))
        + _S("c")
        + tensor((2, 2), (4, 1), offset=5)
        + _S("d")
        + tensor((3, 4), (0, 1))
        + b"u"
    )
    big = np.arange(16, dtype=">f4").tobytes()
    return [
        (
            "shared and overlapping views of one storage",
            torch_zip(_p(b"}" + two), {"0": base.tobytes()}),
            lambda r: (
                np.array_equal(r["a"], base.reshape(4, 4))
                and np.array_equal(r["b"], base.reshape(4, 4).T)
                and np.array_equal(r["c"], base.reshape(4, 4)[1:3, 1:3])
                and np.array_equal(r["d"], np.tile(base[:4], (3, 1)))
            ),
        ),
        (
            "a big-endian torch.save (byteorder 'big')",
            torch_zip(_p(b"}" + two), {"0": big}, byteorder=b"big"),
            lambda r: (
                np.array_equal(r["a"], base.reshape(4, 4)) and r["a"].dtype == np.float32 and r["a"].dtype.isnative
            ),
        ),
        (
            "no byteorder record (PyTorch before 1.10)",
            torch_zip(_p(b"}" + two), {"0": base.tobytes()}, byteorder=None),
            lambda r: np.array_equal(r["b"], base.reshape(4, 4).T),
        ),
    ]


def _write_carrier(directory: str, case: Hostile, carrier: str) -> str:
    if carrier == "pth":
        path = os.path.join(directory, "evil.pth")
        data = torch_zip(case.payload)
    else:
        path = os.path.join(directory, "evil.pdparams")
        data = case.payload
    with open(path, "wb") as fh:
        fh.write(data)
    return path


@contextlib.contextmanager
def extension(ext: tuple[str, str] | None) -> Iterator[None]:
    """Register copyreg extension code 0xf0 for ``ext`` while loading (EXT opcodes name globals through it)."""
    if ext is None:
        yield
        return
    copyreg.add_extension(ext[0], ext[1], 0xF0)
    try:
        yield
    finally:
        copyreg.remove_extension(ext[0], ext[1], 0xF0)


CARRIERS = ("pickle", "pth", "pdparams")


def load_carrier(directory: str, case: Hostile, carrier: str) -> Any:
    """Load ``case`` the way ``carrier`` says: ``pickle`` through the scan and the unpickler directly
    (with torch's allow-list, the largest), ``pth`` inside a torch.save zip, ``pdparams`` as a file."""
    with extension(case.ext):
        if carrier == "pickle":
            budget = CopyBudget(len(case.payload), "evil.pkl")
            scan_pickle(case.payload, "evil.pkl")
            loaded = SafeUnpickler(io.BytesIO(case.payload), _torch_globals(budget), None, "evil.pkl").load_checked()
            return finish_tree(loaded, "evil.pkl", budget)
        return load_checkpoint(_write_carrier(directory, case, carrier))


def run_catalogue(directory: str) -> dict[str, Any]:
    """Every catalogue case in every carrier; counts and any failure."""
    marker = os.path.join(directory, "PWNED")
    counts = {"cases": 0, "tried": 0, "refused-unsafe": 0, "refused-format": 0, "executions": 0, "bugs": 0}
    failures: list[str] = []
    catalogue = hostile_catalogue(marker)
    counts["cases"] = len(catalogue)
    for case in catalogue:
        for carrier in CARRIERS:
            counts["tried"] += 1
            try:
                load_carrier(directory, case, carrier)
                outcome = "loaded"
            except UnsafeCheckpointError:
                outcome = "refused-unsafe"
            except PorthubError:
                outcome = "refused-format"
            except Exception as exc:  # noqa: BLE001 - a finding
                outcome = f"bug {type(exc).__name__}: {exc}"[:300]
            if os.path.exists(marker):
                counts["executions"] += 1
                failures.append(f"{case.name} [{carrier}]: THE PAYLOAD RAN")
                os.unlink(marker)
            if outcome in ("refused-unsafe", "refused-format"):
                counts[outcome] += 1
            # in a zip or as a file, the outer format can refuse first (a pickle without a tensor is still refused)
            if (
                outcome == "loaded"
                or outcome.startswith("bug")
                or (case.expect == "unsafe" and carrier == "pickle" and outcome != "refused-unsafe")
            ):
                counts["bugs"] += 1
                failures.append(f"{case.name} [{carrier}]: expected {case.expect}, got {outcome}")
    for name, data in torch_tensor_catalogue():
        counts["tried"] += 1
        path = os.path.join(directory, "evil_tensor.pth")
        with open(path, "wb") as fh:
            fh.write(data)
        result = classify(path, trace_memory=True)
        if result.kind.startswith("refused"):
            counts[result.kind] += 1
        else:
            counts["bugs"] += 1
            failures.append(f"{name}: expected refused, got {result.kind} ({result.detail[:200]})")
    counts["failures"] = failures
    return counts


# ------------------------------------------------------------------------------------ the worker
def _worker() -> int:
    """Read JSON requests {path, fmt, size} from stdin, answer one JSON line each."""
    import resource

    limit = int(os.environ.get("FUZZ_AS_LIMIT", str(3 * 1024**3)))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for line in sys.stdin:
        req = json.loads(line)
        out = classify(req["path"], None, req["size"], trace_memory=True)
        sys.stdout.write(json.dumps(out.__dict__) + "\n")
        sys.stdout.flush()
    return 0


class Worker:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
        return subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )

    def check(self, path: str, size: int) -> Outcome:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"path": path, "size": size}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            return Outcome("bug", f"hang: no answer within {self.timeout} s", self.timeout, 0)
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return Outcome(
                "bug", f"crash: the worker died with {signal.Signals(-code).name if code < 0 else code}", 0, 0
            )
        return Outcome(**json.loads(line))

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait()


def run_fuzz(per_format: int, seed: int, timeout: float, keep: str, formats: tuple[str, ...]) -> dict[str, Any]:
    seeds = seed_corpus()
    report: dict[str, Any] = {"seeds": {fmt: len(seeds[fmt]) for fmt in FORMATS}, "formats": {}}
    work = tempfile.mkdtemp(prefix="porthub-fuzz-")
    worker = Worker(timeout)
    try:
        for fmt in formats:
            counts = {
                "tried": 0,
                "loaded": 0,
                "refused-unsafe": 0,
                "refused-format": 0,
                "bug": 0,
                "max_seconds": 0.0,
                "max_peak_over_size": 0.0,
                "max_peak_mb": 0.0,
            }
            bugs: list[str] = []
            started = time.time()
            for label, data in fuzz_inputs(seeds, fmt, per_format, seed):
                path = os.path.join(work, "input" + _SUFFIX[fmt])
                with open(path, "wb") as fh:
                    fh.write(data)
                result = worker.check(path, len(data))
                counts["tried"] += 1
                counts[result.kind] += 1
                counts["max_seconds"] = max(counts["max_seconds"], round(result.seconds, 3))
                counts["max_peak_over_size"] = max(
                    counts["max_peak_over_size"], round(result.peak / max(len(data), 1), 2)
                )
                counts["max_peak_mb"] = max(counts["max_peak_mb"], round(result.peak / 2**20, 1))
                if result.kind == "bug":
                    os.makedirs(keep, exist_ok=True)
                    saved = os.path.join(keep, f"{fmt}-{counts['tried']}{_SUFFIX[fmt]}")
                    shutil.copyfile(path, saved)
                    bugs.append(f"{label}: {result.detail[:300]} -> {saved}")
            counts["wall_seconds"] = round(time.time() - started, 1)
            report["formats"][fmt] = {**counts, "bugs": bugs}
    finally:
        worker.close()
        shutil.rmtree(work, ignore_errors=True)
    return report


def run_atheris(runs: int, fmt_hint: str | None) -> int:
    """Coverage-guided fuzzing: libFuzzer's bytes choose a format, a seed file and the mutations
    (or, one time in four, are the file itself); coverage comes from instrumenting porthub.io."""
    import atheris

    atheris.instrument_all()
    seeds = seed_corpus()
    work = tempfile.mkdtemp(prefix="porthub-atheris-")
    counts = {"tried": 0, "loaded": 0, "refused-unsafe": 0, "refused-format": 0}

    def one(data: bytes) -> None:
        data = data.ljust(4, b"\0")
        fmt = fmt_hint or FORMATS[data[0] % 3]
        rng = random.Random(data[1:])
        pool = seeds[fmt]
        base = pool[data[2] % len(pool)][1]
        raw = mutate(base, fmt, rng, [d for _, d in pool]) if data[3] % 4 else data[4:]
        path = os.path.join(work, "input" + _SUFFIX[fmt])
        with open(path, "wb") as fh:
            fh.write(raw)
        outcome = classify(path, trace_memory=False)
        counts["tried"] += 1
        if outcome.kind == "bug":
            raise RuntimeError(f"{fmt}: {outcome.detail}")
        counts[outcome.kind] += 1
        if counts["tried"] % 500 == 0 or counts["tried"] == runs:
            # libFuzzer ends the process itself, so the running totals are the report
            sys.stderr.write(f"atheris counts: {json.dumps(counts)}\n")

    corpus = os.path.join(work, "corpus")
    os.makedirs(corpus)
    start = random.Random(7)
    for i in range(32):
        with open(os.path.join(corpus, f"seed{i}"), "wb") as fh:
            fh.write(bytes(start.randrange(256) for _ in range(16)))
    findings = os.path.abspath("fuzz-findings") + os.sep
    os.makedirs(findings, exist_ok=True)
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={runs}",
            "-rss_limit_mb=3072",
            "-timeout=20",
            "-max_len=4096",
            f"-artifact_prefix={findings}",
            corpus,
        ],
        one,
    )
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-format", type=int, default=3000, help="mutated files per format (default 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds one read may take before it counts as a hang")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--keep", default="fuzz-findings", help="folder for inputs that found a bug")
    p.add_argument("--no-catalogue", action="store_true")
    p.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    p.add_argument("--runs", type=int, default=10000, help="atheris: inputs to run")
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker()
    if args.engine == "atheris":
        formats = args.formats.split(",")
        return run_atheris(args.runs, formats[0] if len(formats) == 1 else None)
    report = run_fuzz(args.per_format, args.seed, args.timeout, args.keep, tuple(args.formats.split(",")))
    if not args.no_catalogue:
        with tempfile.TemporaryDirectory(prefix="porthub-catalogue-") as directory:
            report["catalogue"] = run_catalogue(directory)
    bugs = 0
    print(
        f"{'format':<12} {'tried':>6} {'loaded':>7} {'unsafe':>7} {'format':>7} {'bugs':>5} "
        f"{'max s':>6} {'peak MB':>8} {'wall s':>7}  seeds"
    )
    for fmt, c in report["formats"].items():
        bugs += c["bug"]
        print(
            f"{fmt:<12} {c['tried']:>6} {c['loaded']:>7} {c['refused-unsafe']:>7} {c['refused-format']:>7} "
            f"{c['bug']:>5} {c['max_seconds']:>6.2f} {c['max_peak_mb']:>8.1f} {c['wall_seconds']:>7.0f}  "
            f"{report['seeds'][fmt]}"
        )
        for line in c["bugs"][:20]:
            print("  BUG", line)
    if "catalogue" in report:
        c = report["catalogue"]
        bugs += c["bugs"] + c["executions"]
        print(
            f"catalogue: {c['cases']} hostile pickles x {len(CARRIERS)} carriers + tensor files = {c['tried']} loads; "
            f"refused unsafe {c['refused-unsafe']}, refused format {c['refused-format']}, "
            f"executions {c['executions']}, bugs {c['bugs']}"
        )
        for line in c["failures"][:40]:
            print("  BUG", line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
