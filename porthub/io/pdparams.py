"""Paddle's ``.pdparams``: a pickle of ``{name: numpy array}`` (what ``paddle.save`` writes for a
state dict), read and written without paddle."""

from __future__ import annotations

import io
import os
import pickle
from typing import IO, Any

from ..errors import CheckpointFormatError
from .mapped import map_file
from .pickle_safe import (
    BASIC_GLOBALS,
    NUMPY_GLOBALS,
    CopyBudget,
    MappedBytes,
    PickleWriter,
    SafeUnpickler,
    finish_tree,
    remap_stream,
    scan_pickle,
    write_numpy_array,
)

__all__ = ["read_pdparams", "write_pdparams", "PADDLE_NAME_TABLE"]

#: paddle.save adds this entry (structured name -> parameter name); it holds no tensor
PADDLE_NAME_TABLE = "StructuredToParameterName@@"

PDPARAMS_GLOBALS = {**BASIC_GLOBALS, **NUMPY_GLOBALS}


def read_pdparams(path: str) -> Any:
    """Arrays of at least a few KB are read-only views of the memory-mapped file (numpy's pickled
    bytes are used in place), so reading costs a few bytes per tensor until a tensor is used."""
    source = os.path.basename(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
        if len(head) < 2 or head[0] != 0x80 or head[1] > pickle.HIGHEST_PROTOCOL:
            raise CheckpointFormatError(f"{source}: not a pickle (a .pdparams file is a pickle of numpy arrays)")
        size = os.fstat(fh.fileno()).st_size
        mm, whole = map_file(fh.fileno())
    spans: list[tuple[int, int, int]] = []
    scan_pickle(mm, source, spans=spans)
    stream, table = remap_stream(mm, whole, spans)

    def persistent_load(pid: Any) -> MappedBytes:
        # only remap_stream writes persistent references (scan_pickle refused any of the file's own)
        if type(pid) is not int or not 0 <= pid < len(table):
            raise CheckpointFormatError(f"{source}: a persistent reference that porthub did not write")
        return table[pid]

    obj = SafeUnpickler(io.BytesIO(stream), PDPARAMS_GLOBALS, persistent_load, source).load_checked()
    return finish_tree(obj, source, CopyBudget(size, source))


def write_pdparams(obj: Any, out: IO[bytes]) -> None:
    """Pickle protocol 4 with arrays as numpy pickles them, which ``paddle.load`` reads."""
    PickleWriter(out, 4, write_numpy_array).dump(obj)
