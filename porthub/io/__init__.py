"""Checkpoint files in and out, with neither torch nor paddle imported.

``load_checkpoint`` reads ``.pth`` (torch.save zip), ``.pdparams`` (paddle.save pickle) and
``.safetensors`` into nested containers of numpy arrays; ``save_checkpoint`` writes them atomically.
Unpickling runs no code from the file (see :mod:`porthub.io.pickle_safe`).
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, Mapping

import numpy as np

from ..errors import CheckpointFormatError, CheckpointWriteError, ConfigFileError, ConversionError
from .atomic import atomic_write
from .pdparams import PADDLE_NAME_TABLE, read_pdparams, write_pdparams
from .pth import read_pth, write_pth
from .safetensors import read_safetensors, read_safetensors_metadata, write_safetensors
from .stream import clear_scratch

__all__ = [
    "FORMATS",
    "frameworks_of_file",
    "read_json_object",
    "detect_format",
    "format_for_path",
    "load_checkpoint",
    "save_checkpoint",
    "read_safetensors_metadata",
    "atomic_write",
    "PADDLE_NAME_TABLE",
]

FORMATS = ("pth", "pdparams", "safetensors")
_SUFFIXES = {
    ".pth": "pth",
    ".pt": "pth",
    ".bin": "pth",
    ".ckpt": "pth",
    ".pdparams": "pdparams",
    ".safetensors": "safetensors",
}


def format_for_path(path: str) -> str | None:
    return _SUFFIXES.get(os.path.splitext(path)[1].lower())


def _require_regular_file(path: str) -> None:
    # Opening a FIFO blocks until something writes to it, and a device never ends: refuse both unopened.
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no such checkpoint: {path}") from None
    if stat.S_ISDIR(mode):
        raise CheckpointFormatError(f"{path} is a directory, not a checkpoint file")
    if not stat.S_ISREG(mode):
        raise CheckpointFormatError(
            f"{path} is not a regular file (a pipe or a device); save the checkpoint to a file first"
        )


def detect_format(path: str) -> str:
    """The format from the file's first bytes (the suffix can lie; the bytes cannot)."""
    _require_regular_file(path)
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"PK\x03\x04":
        return "pth"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        # A pickle: paddle.save's format, or torch.save's legacy one (read_pth explains that case).
        return "pdparams" if format_for_path(path) != "pth" else "pth"
    if not head:
        raise CheckpointFormatError(f"{os.path.basename(path)}: empty file")
    raise CheckpointFormatError(
        f"{os.path.basename(path)}: not a checkpoint porthub reads (.pth zip, .pdparams pickle or .safetensors)"
    )


def load_checkpoint(path: str, fmt: str | None = None) -> Any:
    _require_regular_file(path)
    fmt = fmt or detect_format(path)
    if fmt == "pth":
        return read_pth(path)
    if fmt == "pdparams":
        return read_pdparams(path)
    if fmt == "safetensors":
        return read_safetensors(path)
    raise ConversionError(f"unknown checkpoint format {fmt!r}; use one of {', '.join(FORMATS)}")


def save_checkpoint(obj: Any, path: str, fmt: str, metadata: Mapping[str, str] | None = None,
                    overwrite: bool = True) -> None:
    """Write atomically: the destination is either untouched or complete. With ``overwrite=False``
    an existing destination (even one created while this write ran) is left as it is and
    :class:`~porthub.errors.OutputExistsError` raised."""
    if fmt == "safetensors":
        if not isinstance(obj, Mapping) or not all(isinstance(v, np.ndarray) for v in obj.values()):
            raise CheckpointWriteError(
                "safetensors holds a flat {name: array} mapping only; write the state dict without its container")
    elif fmt not in ("pth", "pdparams"):
        raise ConversionError(f"unknown checkpoint format {fmt!r}; use one of {', '.join(FORMATS)}")
    try:
        with atomic_write(path, overwrite=overwrite) as fh:
            if fmt == "pth":
                write_pth(obj, fh)
            elif fmt == "pdparams":
                write_pdparams(obj, fh)
            else:
                write_safetensors(obj, fh, metadata)
    finally:
        clear_scratch()


def frameworks_of_file(path: str, fmt: str | None = None) -> tuple[str, ...]:
    """Which framework's layout a file can hold, from its format (and safetensors metadata)."""
    from ..spec import FRAMEWORKS, PADDLE, TORCH

    fmt = fmt or detect_format(path)
    if fmt == "pth":
        return (TORCH,)
    if fmt == "pdparams":
        return (PADDLE,)
    meta = read_safetensors_metadata(path)
    declared = meta.get("porthub.framework") or {"pt": TORCH, "paddle": PADDLE, "pd": PADDLE}.get(
        meta.get("format", "")
    )
    return (declared,) if declared in FRAMEWORKS else FRAMEWORKS


def read_json_object(path: str, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``what`` names the file in the errors ("reference case", "config")."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such {what}: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{what} {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(f"{what} {path} must be a JSON object")
    return data
