"""TorchScript export: ``model.pt``, the PyTorch model traced (``torch.jit.trace``) on the example input.

Tracing records the operations one forward runs; porthub's models take no data-dependent branches at a
fixed input size (they trace without warnings from porthub), so the file computes what the model does at
that size. ``torch.jit.script`` is not supported by porthub's models (:class:`~porthub.errors.NotScriptableError`).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from ..devices import parse_device
from ..runtime.torch import torchscript_load, torchscript_save
from ..spec import TORCH

__all__ = ["FRAMEWORK", "FILES", "write", "runner"]

FRAMEWORK = "torch"
FILES = ("model.pt",)


def write(model: Any, example: np.ndarray, out_dir: str, *, dynamic_batch: bool = False, dtype: str = "float32",
          options: dict | None = None) -> list[str]:
    """Trace ``model`` on ``example`` into ``out_dir/model.pt``; returns the files written (relative names).
    A traced model takes any batch size when the model's operations do not depend on it (porthub's do
    not), so ``dynamic_batch`` needs nothing more here; ``dtype`` is the model's own."""
    torchscript_save(model, example, os.path.join(out_dir, FILES[0]))
    return list(FILES)


def runner(out_dir: str, *, device: str = "cpu", options: dict | None = None
           ) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``out_dir/model.pt`` loaded by ``torch.jit.load`` on ``device``: numpy NCHW -> the outputs, in order."""
    from ..runtime.torch import import_torch

    run = torchscript_load(os.path.join(out_dir, FILES[0]), parse_device(device, TORCH).name)
    # what export.json records about the run that verified the file
    run.info = {"runtime": f"torch.jit {import_torch().__version__}"}  # type: ignore[attr-defined]
    return run
