"""ONNX export: ``model.onnx`` from the PyTorch model, checked by ``onnx.checker``, run by ONNX Runtime.

torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) writes it at opset
:data:`~porthub.runtime.torch.ONNX_OPSET`: it exports every family (measured on torch 2.13: the five
families' smallest variants and ``seaformer_seg_tiny``, ONNX Runtime within 2e-6 of PyTorch), while
torch's dynamo exporter needs ``onnxscript``, which porthub does not require. With ``dynamic_batch``
the batch axis of the input and of every output is left free (``batch``); the other axes are fixed at
the exported input size (the models' position tables and windows are built for it).

``options={"via": "paddle2onnx"}`` makes the file from the Paddle model instead, as PaddleX's high-performance
inference does for its ONNX Runtime backend: the model is saved as a Paddle inference program and converted by
paddle2onnx (an optional package, ``pip install paddle2onnx``); the export is then verified against the Paddle
model (its own framework) and the PyTorch model. It is the way a Paddle user deploys on ONNX Runtime.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from typing import Any, Callable

import numpy as np

from ..devices import parse_device, usable_cores
from ..errors import DeviceError, ExportError, FrameworkMissingError, InputError
from ..runtime.torch import ONNX_OPSET, onnx_export
from ..spec import PADDLE, TORCH

__all__ = ["FRAMEWORK", "VIA", "FILES", "framework", "write", "runner", "check", "check_options", "report_fields",
           "ORT_INSTALL"]

#: the framework whose model is exported by default
FRAMEWORK = "torch"
#: ``options["via"]`` -> the framework whose model is exported
VIA = {"torch": TORCH, "paddle2onnx": PADDLE}
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
    via = options.get("via", "torch")
    if via not in VIA:
        raise InputError(f"ONNX export via {via!r} is not built; via: {', '.join(VIA)}")
    opset = int(options.get("opset", ONNX_OPSET))
    if opset < ONNX_OPSET:
        raise InputError(f"opset {opset} is too old: porthub exports at opset {ONNX_OPSET} or later")
    return options


def check_options(options: dict) -> None:
    """Refuse unknown or unsupported options before any model is built (an unknown ``via``, an opset below
    17, paddle2onnx not installed)."""
    options = _options(options)
    if options.get("via") == "paddle2onnx":
        _module("paddle2onnx")


def framework(options: dict | None) -> str:
    """The framework whose model this export is made from: PyTorch, or Paddle with ``via="paddle2onnx"``."""
    return VIA[_options(options).get("via", "torch")]


def report_fields(options: dict | None = None) -> dict[str, Any]:
    """What export.json records about this format: the exporter, the opset, the ONNX packages."""
    options = _options(options)
    opset = int(options.get("opset", ONNX_OPSET))
    if options.get("via") == "paddle2onnx":
        from ..runtime.paddle import paddle2onnx_version, paddle_version

        exporter = {"exporter": f"paddle2onnx {paddle2onnx_version()} from the Paddle inference program",
                    "paddle": paddle_version()}
    else:
        from ..runtime.torch import import_torch

        exporter = {"exporter": "torch.onnx.export (TorchScript-based, dynamo=False)",
                    "torch": str(import_torch().__version__)}
    return {"onnx": {**exporter, "opset": opset, "onnx": str(_module("onnx").__version__),
                     "onnxruntime": str(_module("onnxruntime").__version__)}}


def check(path: str) -> None:
    """``onnx.checker.check_model`` on the file (by path, so a large model is not loaded twice)."""
    _module("onnx").checker.check_model(path)


def write(model: Any, example: np.ndarray, out_dir: str, *, dynamic_batch: bool = False, dtype: str = "float32",
          options: dict | None = None) -> list[str]:
    """Export ``model`` (a PyTorch model in ``dtype``, or a Paddle model with ``options["via"] ==
    "paddle2onnx"``) run on ``example`` to ``out_dir/model.onnx`` and check it; ``options["opset"]`` another
    opset (at least 17). Returns the files written (relative names)."""
    options = _options(options)
    _module("onnx")  # before the export's work: a missing package is one line, not a traceback half-way
    opset = int(options.get("opset", ONNX_OPSET))
    path = os.path.join(out_dir, FILES[0])
    if options.get("via") == "paddle2onnx":
        from ..runtime.paddle import paddle2onnx_export

        if dtype != "float32":
            raise ExportError("ONNX via paddle2onnx is exported in float32; export float16 from the PyTorch model")
        shape = [None if dynamic_batch else int(example.shape[0]), *(int(n) for n in example.shape[1:])]
        # the Paddle program goes into a folder of its own inside the export's temporary folder, removed after
        work = tempfile.mkdtemp(prefix=".paddle2onnx.", dir=out_dir)
        try:
            data = paddle2onnx_export(model, work, shape, dtype, opset)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        with open(path, "wb") as fh:
            fh.write(data)
    else:
        onnx_export(model, example, path, dynamic_batch=dynamic_batch, opset=opset)
    check(path)
    return list(FILES)


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
    session_options.intra_op_num_threads = int(options.get("threads") or usable_cores())
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
