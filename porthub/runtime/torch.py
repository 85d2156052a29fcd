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
    "gpu_build",
    "model_device",
    "cast",
]

INSTALL = "pip install 'porthub[torch]' (CPU: pip install torch==2.13.0)"


def import_torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise FrameworkMissingError(f"torch is not installed; {INSTALL}") from exc


def build(cls: type, kwargs: dict[str, Any], dtype: str, device: str = "cpu") -> Any:
    torch = import_torch()
    if device != "cpu":
        # float32 stays float32 on the GPU (no TF32 in matmuls and cuDNN convolutions), as on the CPU
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return cls(**kwargs).to(device=device, dtype=getattr(torch, dtype))


def gpu_build() -> tuple[bool, int, str]:
    """(a CUDA build, the GPUs it sees, the installed build in words) for :func:`porthub.devices.check_gpu_build`."""
    torch = import_torch()
    cuda = getattr(torch.version, "cuda", None)
    build = f"torch {torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU'} build)"
    return bool(cuda), (torch.cuda.device_count() if cuda else 0), build


def model_device(model: Any) -> str:
    """Where the model's first parameter (or buffer) lives, in torch's spelling; "cpu" when it has none."""
    for tensor in model.parameters():
        return str(tensor.device)
    for tensor in model.buffers():
        return str(tensor.device)
    return "cpu"


def cast(model: Any, dtype: str) -> Any:
    """The model's floating parameters and buffers in ``dtype`` (in place)."""
    return model.to(dtype=getattr(import_torch(), dtype))


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


def from_numpy(arr: np.ndarray, device: str | None = None, dtype: str | None = None) -> Any:
    """A tensor of ``arr`` on ``device`` in ``dtype`` (a dtype numpy lacks, bfloat16, is cast by torch)."""
    torch = import_torch()
    tensor = torch.from_numpy(arr)
    if device is not None and device != "cpu":
        tensor = tensor.to(device)
    if dtype is not None and str(tensor.dtype) != f"torch.{dtype}":
        tensor = tensor.to(getattr(torch, dtype))
    return tensor


def to_numpy(tensor: Any) -> np.ndarray:
    """A host numpy copy; bfloat16, which numpy lacks, comes back as float32."""
    torch = import_torch()
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()


def load(model: Any, values: dict[str, np.ndarray]) -> None:
    torch = import_torch()
    model.load_state_dict({key: torch.from_numpy(value) for key, value in values.items()}, strict=True)


def run(model: Any, arr: np.ndarray, dtype: str | None = None) -> Any:
    """The model's output on ``arr``, moved to the model's device and cast to ``dtype`` there."""
    torch = import_torch()
    x = from_numpy(arr, model_device(model), dtype)
    with torch.no_grad():
        return model(x)


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
        arr = to_numpy(tensor).copy()
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
    x = from_numpy(arr, model_device(model))
    start = time.perf_counter()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return arrays(out), time.perf_counter() - start


# --- deployment artefacts (issue 17): the torch calls of porthub.export.onnx and porthub.export.torchscript ---

#: the ONNX operator set written by :func:`onnx_export` (17 has LayerNormalization, which keeps the graph small)
ONNX_OPSET = 17
#: the messages the legacy exporter prints on every call: porthub chooses that exporter on purpose
#: (see porthub.export.onnx), so they say nothing to the user
_LEGACY_EXPORT_NOTES = (r"You are using the legacy TorchScript-based ONNX export", r"The feature will be removed")


def _example(model: Any, arr: np.ndarray) -> Any:
    """``arr`` as a tensor on the device and in the floating dtype of ``model``'s first parameter."""
    torch = import_torch()
    x = torch.from_numpy(np.ascontiguousarray(arr))
    first = next(iter(model.parameters()), None)
    return x if first is None else x.to(device=first.device, dtype=first.dtype)


def _quiet_tracer(torch: Any) -> None:
    """Inside ``warnings.catch_warnings()``: no TracerWarning. The trace fixes what depends on the spatial size
    (padding branches, window counts), which an export fixes anyway (the artefact takes its input size only);
    that nothing depends on the batch size is checked by running the artefact on other batch sizes."""
    import warnings

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)


def _output_names(out: Any) -> list[str]:
    """``output`` for one tensor, ``output.0``, ``output.1``, ... for a list or tuple (porthub.compare's names)."""
    return [f"output.{i}" for i in range(len(out))] if isinstance(out, (list, tuple)) else ["output"]


def onnx_export(model: Any, arr: np.ndarray, path: str, *, dynamic_batch: bool, opset: int = ONNX_OPSET) -> list[str]:
    """Write ``model`` run on ``arr`` as ONNX to ``path`` with torch's TorchScript-based exporter (the dynamo
    exporter needs onnxscript, which porthub does not require); input ``input``, outputs named as
    :func:`_output_names`, axis 0 of each named ``batch`` and left free when ``dynamic_batch``. Returns the
    output names."""
    import warnings

    torch = import_torch()
    x = _example(model, arr)
    with torch.no_grad():
        names = _output_names(model(x))
    axes = {name: {0: "batch"} for name in ("input", *names)} if dynamic_batch else None
    with warnings.catch_warnings():
        for note in _LEGACY_EXPORT_NOTES:
            warnings.filterwarnings("ignore", message=note, category=DeprecationWarning)
        _quiet_tracer(torch)
        with torch.no_grad():
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=names, dynamic_axes=axes, do_constant_folding=True)
    return names


def torchscript_save(model: Any, arr: np.ndarray, path: str) -> None:
    """``torch.jit.trace`` of ``model`` on ``arr``, saved to ``path``. The trace is not re-run by torch
    (``check_trace=False``): the caller verifies the saved file against the model itself."""
    import warnings

    torch = import_torch()
    x = _example(model, arr)
    with warnings.catch_warnings():
        _quiet_tracer(torch)
        with torch.no_grad():
            traced = torch.jit.trace(model, x, check_trace=False)
    traced.save(path)


def torchscript_load(path: str, device: str = "cpu") -> Callable[[np.ndarray], list[np.ndarray]]:
    """A TorchScript file (``torch.jit.load``: TorchScript's own archive, whose code is TorchScript run by
    torch's interpreter, not Python pickles) as a callable numpy NCHW -> its outputs as numpy, in order."""
    torch = import_torch()
    module = torch.jit.load(path, map_location=device)
    module.eval()
    first = next(iter(module.parameters()), None)

    def run(arr: np.ndarray) -> list[np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(arr))
        if first is not None:
            x = x.to(device=first.device, dtype=first.dtype)
        with torch.no_grad():
            out = module(x)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        return [o.detach().cpu().numpy() for o in outs]

    return run
