"""Paddle's ``.pdparams``: a pickle of ``{name: numpy array}`` (what ``paddle.save`` writes for a
state dict), read and written without paddle."""

from __future__ import annotations

import mmap
import os
import pickle
from typing import IO, Any

from ..errors import CheckpointFormatError
from .pickle_safe import (
    BASIC_GLOBALS, NUMPY_GLOBALS, CopyBudget, PickleWriter, SafeUnpickler, finish_tree, scan_pickle, write_numpy_array,
)

__all__ = ["read_pdparams", "write_pdparams", "PADDLE_NAME_TABLE"]

#: paddle.save adds this entry (structured name -> parameter name); it holds no tensor
PADDLE_NAME_TABLE = "StructuredToParameterName@@"

PDPARAMS_GLOBALS = {**BASIC_GLOBALS, **NUMPY_GLOBALS}


def read_pdparams(path: str) -> Any:
    source = os.path.basename(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
        if len(head) < 2 or head[0] != 0x80 or head[1] > pickle.HIGHEST_PROTOCOL:
            raise CheckpointFormatError(f"{source}: not a pickle (a .pdparams file is a pickle of numpy arrays)")
        size = os.fstat(fh.fileno()).st_size
        # The scan reads the mapping in place; it copies none of the array bytes.
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            scan_pickle(mm, source)
        fh.seek(0)
        # Unpickling straight from the file: each array's bytes are read once and numpy adopts them
        # without a copy, so peak memory stays near the file's size.
        obj = SafeUnpickler(fh, PDPARAMS_GLOBALS, None, source).load_checked()
    return finish_tree(obj, source, CopyBudget(size, source))


def write_pdparams(obj: Any, out: IO[bytes]) -> None:
    """Pickle protocol 4 with arrays as numpy pickles them, which ``paddle.load`` reads."""
    PickleWriter(out, 4, write_numpy_array).dump(obj)
