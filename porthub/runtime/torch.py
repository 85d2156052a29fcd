"""PyTorch's side of the runtime: imported by :mod:`porthub.runtime` only; torch is imported inside
the functions, so importing porthub never loads it."""

from __future__ import annotations

import importlib
import time
import weakref
from typing import Any, Callable

import numpy as np

from ..compare import map_nested
from ..errors import FrameworkMissingError

__all__ = [
    "INSTALL",
    "import_torch",
    "build",
    "build_on_meta",
    "state_entries",
    "load",
    "run",
    "named_modules",
    "add_output_hook",
    "run_hooked",
    "from_numpy",
]

INSTALL = "pip install 'porthub[torch]' (CPU: pip install torch==2.13.0)"


def import_torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise FrameworkMissingError(f"torch is not installed; {INSTALL}") from exc


def build(cls: type, kwargs: dict[str, Any], dtype: str) -> Any:
    torch = import_torch()
    return cls(**kwargs).to(getattr(torch, dtype))


def build_on_meta(cls: type, kwargs: dict[str, Any]) -> Any:
    """The model on the meta device (no memory for weights) when its construction allows."""
    torch = import_torch()
    try:
        with torch.device("meta"):
            return cls(**kwargs)
    except (RuntimeError, NotImplementedError):
        # data-dependent construction (nonzero, topk on values) cannot run on the meta device
        return cls(**kwargs)


def state_entries(model: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        key: (tuple(value.shape), str(value.dtype).replace("torch.", "")) for key, value in model.state_dict().items()
    }


def from_numpy(arr: np.ndarray) -> Any:
    return import_torch().from_numpy(arr)


def load(model: Any, values: dict[str, np.ndarray]) -> None:
    torch = import_torch()
    model.load_state_dict({key: torch.from_numpy(value) for key, value in values.items()}, strict=True)


def run(model: Any, arr: np.ndarray) -> Any:
    torch = import_torch()
    with torch.no_grad():
        return model(torch.from_numpy(arr))


def named_modules(model: Any) -> dict[str, Any]:
    return dict(model.named_modules())


def add_output_hook(module: Any, hook: Any) -> Any:
    return module.register_forward_hook(hook)


class _Arrays:
    """numpy copies of torch tensors, one per tensor object and version, so that a tensor that is the
    output of one module and the input of the next is stored once. Entries die with their tensor, so a
    recycled ``id`` never finds a stale copy; a tensor changed in place gets a new copy."""

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self._by_id: dict[int, tuple[Any, int, np.ndarray]] = {}

    def _array(self, tensor: Any) -> np.ndarray:
        key = id(tensor)
        hit = self._by_id.get(key)
        if hit is not None and hit[0]() is tensor and hit[1] == tensor._version:
            return hit[2]
        arr = tensor.detach().cpu().numpy().copy()
        by_id = self._by_id
        self._by_id[key] = (weakref.ref(tensor, lambda _ref, k=key: by_id.pop(k, None)), tensor._version, arr)
        return arr

    def __call__(self, value: Any) -> Any:
        return map_nested(value, lambda v: self._array(v) if isinstance(v, self._torch.Tensor) else v)


def run_hooked(
    model: Any, arr: np.ndarray, pre: Callable[..., Any] | None, post: Callable[..., Any]
) -> tuple[Any, float]:
    """Run ``model`` with a hook on every module call: ``pre(path, type_name, inputs)`` (``inputs()``
    gives the call's (args, kwargs) as numpy) and ``post(path, output)`` with the output as numpy. Returns
    the model's output as numpy and the seconds the forward took."""
    torch = import_torch()
    arrays = _Arrays(torch)
    handles = []
    for path, module in model.named_modules():

        def on_pre(mod: Any, args: Any, kwargs: Any, _path: str = path) -> None:
            pre(_path, type(mod).__name__, lambda: (arrays(args), arrays(kwargs)))

        def on_post(mod: Any, args: Any, kwargs: Any, output: Any, _path: str = path) -> None:
            post(_path, arrays(output))

        if pre is not None:
            handles.append(module.register_forward_pre_hook(on_pre, with_kwargs=True))
        handles.append(module.register_forward_hook(on_post, with_kwargs=True))
    start = time.perf_counter()
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(arr))
    finally:
        for handle in handles:
            handle.remove()
    return arrays(out), time.perf_counter() - start
