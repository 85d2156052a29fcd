"""ONNX export: ``model.onnx`` from the PyTorch model, checked by ``onnx.checker``, run by ONNX Runtime.

torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) writes it at opset
:data:`~porthub.runtime.torch.ONNX_OPSET`: it exports every family (measured on torch 2.13: the five
families' smallest variants and ``seaformer_seg_tiny``, ONNX Runtime within 2e-6 of PyTorch), while
torch's dynamo exporter needs ``onnxscript``, which porthub does not require. With ``dynamic_batch``
the batch axis of the input and of every output is left free (``batch``); the other axes are fixed at
the exported input size (the models' position tables and windows are built for it).

``options={"via": "paddle2onnx"}`` is not built: the ONNX file comes from the PyTorch model only.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable

import numpy as np

from ..devices import parse_device
from ..errors import DeviceError, FrameworkMissingError, InputError
from ..runtime.torch import ONNX_OPSET, onnx_export
from ..spec import TORCH

__all__ = ["FRAMEWORK", "FILES", "write", "runner", "check", "check_options", "report_fields", "ORT_INSTALL"]

FRAMEWORK = "torch"
FILES = ("model.onnx",)
ORT_INSTALL = "pip install onnx onnxruntime (onnxruntime-gpu for CUDA)"
_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise FrameworkMissingError(f"ONNX export needs {name}, which is not installed; {ORT_INSTALL}") from exc


_OPTIONS = ("via", "opset", "threads")


def _options(options: dict | None) -> dict:
    options = dict(options or {})
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InputError(f"unknown ONNX option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    via = options.pop("via", "torch")
    if via != "torch":
        raise InputError(f"ONNX export from {via!r} is not built; porthub writes model.onnx from the PyTorch model")
    opset = int(options.get("opset", ONNX_OPSET))
    if opset < ONNX_OPSET:
        raise InputError(f"opset {opset} is too old: porthub exports at opset {ONNX_OPSET} or later")
    return options


def check_options(options: dict) -> None:
    """Refuse unknown or unsupported options before any model is built (``via`` other than torch, an opset
    below 17)."""
    _options(options)


def report_fields() -> dict[str, Any]:
    """What export.json records about this format: the exporter, the opset, the ONNX packages."""
    from ..runtime.torch import import_torch

    return {"onnx": {"exporter": "torch.onnx.export (TorchScript-based, dynamo=False)", "opset": ONNX_OPSET,
                     "torch": str(import_torch().__version__), "onnx": str(_module("onnx").__version__),
                     "onnxruntime": str(_module("onnxruntime").__version__)}}


def check(path: str) -> None:
    """``onnx.checker.check_model`` on the file (by path, so a large model is not loaded twice)."""
    _module("onnx").checker.check_model(path)


def write(model: Any, example: np.ndarray, out_dir: str, *, dynamic_batch: bool = False, dtype: str = "float32",
          options: dict | None = None) -> list[str]:
    """Export ``model`` (a PyTorch model in ``dtype``) run on ``example`` to ``out_dir/model.onnx`` and check
    it; ``options["opset"]`` another opset (at least 17). Returns the files written (relative names)."""
    options = _options(options)
    _module("onnx")  # before the export's work: a missing package is one line, not a traceback half-way
    opset = int(options.get("opset", ONNX_OPSET))
    path = os.path.join(out_dir, FILES[0])
    onnx_export(model, example, path, dynamic_batch=dynamic_batch, opset=opset)
    check(path)
    return list(FILES)


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _providers(ort: Any, device: str) -> list[Any]:
    where = parse_device(device, TORCH)
    if not where.is_gpu:
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise DeviceError(f"onnxruntime {ort.__version__} here has no CUDAExecutionProvider, so it cannot use "
                          f"{where.name}; pip install onnxruntime-gpu, or use device cpu")
    return [("CUDAExecutionProvider", {"device_id": where.index}), "CPUExecutionProvider"]


def runner(out_dir: str, *, device: str = "cpu", options: dict | None = None
           ) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``out_dir/model.onnx`` in an ONNX Runtime session (CPU, or CUDA for a GPU ``device``), all graph
    optimisations, the usable cores as intra-op threads (``options["threads"]`` to choose): numpy NCHW ->
    the outputs, in order. The input is cast to the model's input type (float16 for a float16 export)."""
    options = _options(options)
    ort = _module("onnxruntime")
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = int(options.get("threads") or _threads())
    # one graph, run op after op: more inter-op threads only compete with the intra-op ones
    session_options.inter_op_num_threads = 1
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session_options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise
    session = ort.InferenceSession(os.path.join(out_dir, FILES[0]), session_options,
                                   providers=_providers(ort, device))
    first = session.get_inputs()[0]
    want = _TYPES.get(first.type, np.float32)

    def run(x: np.ndarray) -> list[np.ndarray]:
        return list(session.run(None, {first.name: np.ascontiguousarray(x, dtype=want)}))

    # what export.json records about the run that verified the file
    run.info = {"runtime": f"onnxruntime {ort.__version__}", "providers": session.get_providers(),  # type: ignore[attr-defined]
                "threads": session_options.intra_op_num_threads}
    return run
