"""Paddle's ``.pdparams``: a pickle of ``{name: numpy array}`` (what ``paddle.save`` writes for a
state dict), read and written without paddle."""

from __future__ import annotations

import os
from typing import IO, Any

import numpy as np

from ..errors import CheckpointFormatError
from .pickle_safe import BASIC_GLOBALS, NUMPY_GLOBALS, PickleWriter, SafeUnpickler, write_numpy_array

__all__ = ["read_pdparams", "write_pdparams", "PADDLE_NAME_TABLE"]

#: paddle.save adds this entry (structured name -> parameter name); it holds no tensor
PADDLE_NAME_TABLE = "StructuredToParameterName@@"

PDPARAMS_GLOBALS = {**BASIC_GLOBALS, **NUMPY_GLOBALS}


def read_pdparams(path: str) -> Any:
    source = os.path.basename(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
        if len(head) < 2 or head[0] != 0x80 or head[1] > pickle_highest():
            raise CheckpointFormatError(f"{source}: not a pickle (a .pdparams file is a pickle of numpy arrays)")
        fh.seek(0)
        # Unpickling straight from the file: each array's bytes are read once and numpy adopts them
        # without a copy, so peak memory stays near the file's size.
        return as_plain_arrays(SafeUnpickler(fh, PDPARAMS_GLOBALS, None, source).load_checked())


def pickle_highest() -> int:
    import pickle

    return pickle.HIGHEST_PROTOCOL


def write_pdparams(obj: Any, out: IO[bytes]) -> None:
    """Pickle protocol 4 with arrays as numpy pickles them, which ``paddle.load`` reads."""
    PickleWriter(out, 4, write_numpy_array).dump(obj)


def as_plain_arrays(obj: Any) -> Any:
    """Arrays reconstructed by the safe unpickler are a private ndarray subclass; hand out plain views."""
    if isinstance(obj, np.ndarray):
        return obj.view(np.ndarray)
    if isinstance(obj, dict):
        return type(obj)((k, as_plain_arrays(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [as_plain_arrays(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(as_plain_arrays(v) for v in obj)
    return obj
