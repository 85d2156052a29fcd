"""Paddle's side of the runtime: imported by :mod:`porthub.runtime` only, and it imports paddle only
inside its functions, after :func:`paddle_cpu_settings` (Paddle reads those variables when it loads)."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import re
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

from ..compare import limit, map_nested, max_abs_diff
from ..devices import usable_cores
from ..errors import ExportError, FrameworkMissingError, KeyMismatchError

__all__ = [
    "INSTALL",
    "paddle_cpu_settings",
    "import_paddle",
    "build",
    "state_entries",
    "load",
    "run",
    "named_modules",
    "add_output_hook",
    "run_hooked",
    "from_numpy",
    "to_numpy",
    "gpu_build",
    "model_device",
    "cast",
]

INSTALL = "pip install 'porthub[paddle]' (CPU: pip install paddlepaddle==3.3.1)"


def _amd_with_avx2(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    fields = {}
    for line in head.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields.get("vendor_id") == "AuthenticAMD" and "avx2" in fields.get("flags", "").split()


def paddle_cpu_settings() -> None:
    """Set, in this process's environment and unless the user has, what Paddle reads when it loads:

    * Paddle pins OMP_NUM_THREADS=1 when it is unset, which halves its speed on two cores, so it is
      set to the usable cores first;
    * on AMD processors with AVX2, MKL_DEBUG_CPU_TYPE=5: Paddle's bundled MKL (older than 2020.1,
      which reads it) otherwise takes its slow non-Intel path; measured 0.70x the time of a Paddle
      forward (shunted_t and focal_tiny, batch 8, AMD EPYC). PyTorch's newer MKL ignores it.

    Both act only if this runs before ``import paddle``.
    """
    global _OMP_SET_BY_PORTHUB
    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(usable_cores())
        _OMP_SET_BY_PORTHUB = True
    if "MKL_DEBUG_CPU_TYPE" not in os.environ and _amd_with_avx2():
        os.environ["MKL_DEBUG_CPU_TYPE"] = "5"


#: whether OMP_NUM_THREADS is porthub's setting (then Paddle's warning about it is porthub's doing)
_OMP_SET_BY_PORTHUB = False
#: what importing Paddle prints that is no problem of the user's: the C++-extension helper's note that
#: ccache is absent (porthub compiles nothing), and the OMP_NUM_THREADS warning porthub's own setting causes
_PADDLE_IMPORT_NOISE = re.compile(
    r"WARNING: OMP_NUM_THREADS set to \d+, not 1\..*\n|PLEASE USE OMP_NUM_THREADS WISELY\.\n"
)


def _import_quietly() -> Any:
    """``import paddle`` without the noise it makes, and with the logging configuration as it was:
    Paddle installs a handler on the root logger at INFO, which makes every library's INFO lines
    (matplotlib, httpx) print. Anything else Paddle writes to stderr while importing is passed on."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(captured):
            warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
            module = importlib.import_module("paddle")
    finally:
        text = captured.getvalue()
        if _OMP_SET_BY_PORTHUB:
            text = _PADDLE_IMPORT_NOISE.sub("", text)
        if text:
            sys.stderr.write(text)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    return module


def import_paddle() -> Any:
    """paddle, after :func:`paddle_cpu_settings`, quietly the first time (see :func:`_import_quietly`)."""
    paddle_cpu_settings()
    try:
        return importlib.import_module("paddle") if "paddle" in sys.modules else _import_quietly()
    except ImportError as exc:
        raise FrameworkMissingError(f"paddle is not installed; {INSTALL}") from exc


#: dtypes Paddle's set_default_dtype refuses: the model is built in float32 and cast
_CAST_AFTER_BUILD = ("float16", "bfloat16")


def build(cls: type, kwargs: dict[str, Any], dtype: str, device: str = "cpu") -> Any:
    """The model, its parameters created on ``device`` (Paddle's spelling; a GPU build would otherwise
    put them on its default gpu:0) in ``dtype``."""
    paddle = import_paddle()
    previous, previous_device = paddle.get_default_dtype(), paddle.device.get_device()
    paddle.set_default_dtype("float32" if dtype in _CAST_AFTER_BUILD else dtype)
    paddle.device.set_device(device)
    try:
        model = cls(**kwargs)
    finally:
        paddle.set_default_dtype(previous)
        paddle.device.set_device(previous_device)
    return cast(model, dtype) if dtype in _CAST_AFTER_BUILD else model


def gpu_build() -> tuple[bool, int, str]:
    """(a CUDA build, the GPUs it sees, the installed build in words) for :func:`porthub.devices.check_gpu_build`."""
    paddle = import_paddle()
    cuda = bool(paddle.is_compiled_with_cuda())
    build = f"paddlepaddle {paddle.__version__} ({'GPU' if cuda else 'CPU'} build)"
    return cuda, (paddle.device.cuda.device_count() if cuda else 0), build


def _place_name(place: Any) -> str:
    return f"gpu:{place.gpu_device_id()}" if place.is_gpu_place() else "cpu"


def model_device(model: Any) -> str:
    """Where the model's first parameter (or buffer) lives, in Paddle's spelling; "cpu" when it has none."""
    for tensor in model.parameters():
        return _place_name(tensor.place)
    for tensor in model.buffers():
        return _place_name(tensor.place)
    return "cpu"


def cast(model: Any, dtype: str) -> Any:
    """The model's floating parameters and buffers in ``dtype`` (in place)."""
    model.to(dtype=dtype)
    return model


def state_entries(model: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {
        key: (tuple(value.shape), str(value.dtype).replace("paddle.", "")) for key, value in model.state_dict().items()
    }


def load(model: Any, values: dict[str, np.ndarray], name: str) -> None:
    paddle = import_paddle()
    own = model.state_dict()
    # set_state_dict refuses a dtype other than the parameter's, and numpy has no bfloat16: such a
    # value (given as float32) is cast by Paddle first
    values = {
        key: paddle.to_tensor(value, place=own[key].place).astype(own[key].dtype)
        if key in own and str(own[key].dtype) == "paddle.bfloat16" else value
        for key, value in values.items()
    }
    missing, unexpected = model.set_state_dict(values)
    if missing or unexpected:
        raise KeyMismatchError(f"{name}: Paddle reported missing {missing[:6]} and unexpected {unexpected[:6]}")


def from_numpy(arr: np.ndarray, device: str | None = None, dtype: str | None = None) -> Any:
    """A tensor of ``arr`` on ``device`` (default: the CPU) in ``dtype`` (bfloat16 cast by Paddle)."""
    paddle = import_paddle()
    tensor = paddle.to_tensor(arr, place=device or "cpu")
    if dtype is not None and str(tensor.dtype) != f"paddle.{dtype}":
        tensor = tensor.astype(dtype)
    return tensor


def to_numpy(tensor: Any) -> np.ndarray:
    """A host numpy copy; bfloat16 (which Paddle hands to numpy as uint16 bits) comes back as float32."""
    if str(tensor.dtype) == "paddle.bfloat16":
        tensor = tensor.astype("float32")
    return tensor.numpy()


def run(model: Any, arr: np.ndarray, dtype: str | None = None) -> Any:
    """The model's output on ``arr``, placed on the model's device and cast to ``dtype`` there."""
    paddle = import_paddle()
    x = from_numpy(arr, model_device(model), dtype)
    with paddle.no_grad():
        return model(x)


def named_modules(model: Any) -> dict[str, Any]:
    return dict(model.named_sublayers(include_self=True))


def add_output_hook(module: Any, hook: Any) -> Any:
    return module.register_forward_post_hook(hook)


def run_hooked(model: Any, arr: np.ndarray, pre: Callable | None, post: Callable) -> tuple[Any, float]:
    """Run ``model`` with a hook on every layer call: ``pre(path, type_name, inputs)`` may return numpy
    (args, kwargs) that replace the call's inputs (``inputs()`` gives the call's own as numpy);
    ``post(path, output)`` gets the output as numpy and may return numpy that replaces it. Returns the
    model's output as numpy and the seconds the forward took."""
    paddle = import_paddle()
    place = model_device(model)

    def tensors(value: Any) -> Any:
        return map_nested(value, lambda v: paddle.to_tensor(v, place=place) if isinstance(v, np.ndarray) else v)

    def arrays(value: Any) -> Any:
        return map_nested(value, lambda v: to_numpy(v) if isinstance(v, paddle.Tensor) else v)

    def on_pre(path: str, layer: Any, args: Any, kwargs: Any) -> Any:
        new = pre(path, type(layer).__name__, lambda: (arrays(args), arrays(kwargs)))
        return None if new is None else (tuple(tensors(new[0])), dict(tensors(new[1])))

    def on_post(path: str, output: Any) -> Any:
        new = post(path, arrays(output))
        return None if new is None else tensors(new)

    handles = []
    for path, layer in model.named_sublayers(include_self=True):
        if pre is not None:
            handles.append(
                layer.register_forward_pre_hook(lambda lay, a, k, _p=path: on_pre(_p, lay, a, k), with_kwargs=True)
            )
        handles.append(layer.register_forward_post_hook(lambda lay, a, k, o, _p=path: on_post(_p, o), with_kwargs=True))
    x = paddle.to_tensor(arr, place=place)
    start = time.perf_counter()
    try:
        with paddle.no_grad():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return arrays(out), time.perf_counter() - start


# --- deployment artefacts (issue 17): the paddle calls of porthub.export.paddle_inference ---------------

#: Paddle 3.3.0/3.3.1's CPU executor with oneDNN has no conversion for some PIR attributes (a list of
#: doubles, as interpolate's scale) and raises or aborts in the first run; fixed upstream after 3.3.1
ONEDNN_BUG = ("Paddle 3.3.x CPU inference with oneDNN cannot convert some PIR attributes "
              "(ConvertPirAttribute2RuntimeAttribute; fixed upstream after 3.3.1)")
#: oneDNN on against off, relative to max(1, max|out|): the float32 output rule
ONEDNN_TOLERANCE = 2e-5
#: what dy2static warns on every traced attribute read that is harmless for a saved inference program
_TO_STATIC_NOISE = (r"Tensor do not have 'place' interface", r".*'dtype' interface", r"Paddle static graph")


def paddle_version() -> str:
    return str(import_paddle().__version__)


@contextlib.contextmanager
def _model_code_run_as_is(model: Any, shape: list[int | None]):
    """While converting ``model`` for fixed ``shape``s, let dy2static run the model's own package as plain
    Python instead of rewriting each sublayer's source.

    Paddle 3.3's converter keys its cache of converted functions by the bound method, which is new at every
    call, so it re-translates every sublayer's ``forward`` (writes a module and maps its origin) once per call:
    measured 67 s of crossformer_pp_huge's 69 s ``jit.save``, 22.9 s for crossformer_tiny, against 2.8 s with
    the code run as is. That is exact only when nothing in the model's Python depends on a tensor's value or
    on an unknown dimension: porthub's models branch on their configuration only, and with every dimension
    fixed ``x.shape`` holds plain ints (with a free batch axis they do not: Shunted's ``reshape([B, H, W,
    -1])``, so the source is rewritten then). The export verifies the saved program against the eager model
    either way. Scoped: Paddle's ignore list is process-wide and would otherwise outlive the export (a
    later free-batch ``to_static`` of the model would then fail); with an older or newer Paddle without that
    list this does nothing."""
    from paddle.jit.dy2static import convert_call_func

    ignored = getattr(convert_call_func, "BUILTIN_LIKELY_MODULES", None)
    package = sys.modules.get(type(model).__module__.partition(".")[0])
    if any(n is None for n in shape) or not isinstance(ignored, list) or package is None or package in ignored:
        yield
        return
    ignored.append(package)
    try:
        yield
    finally:
        ignored.remove(package)


def jit_save_inference(model: Any, prefix: str, shape: list[int | None], dtype: str) -> list[str]:
    """``paddle.jit.to_static`` on ``model`` with one input ``x`` of ``shape`` (None: a free axis) and
    ``paddle.jit.save`` to ``prefix`` (Paddle 3's PIR format: ``prefix.json`` + ``prefix.pdiparams``).
    Returns the files written. The model's forward is converted in place (it stays callable)."""
    paddle = import_paddle()
    from paddle.static import InputSpec

    spec = [InputSpec(list(shape), dtype, "x")]
    with warnings.catch_warnings(), _model_code_run_as_is(model, shape):
        for pattern in _TO_STATIC_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
        paddle.jit.save(static, prefix)
    folder, base = os.path.split(prefix)
    return sorted(name for name in os.listdir(folder or ".") if name.startswith(base + "."))


#: how to install the optional Paddle -> ONNX converter (it pins onnx <= 1.17, which porthub's ONNX code accepts)
PADDLE2ONNX_INSTALL = "pip install paddle2onnx (the optional extra porthub[paddle2onnx])"


def paddle2onnx_export(model: Any, work_dir: str, shape: list[int | None], dtype: str, opset: int) -> bytes:
    """The ONNX model of the Paddle ``model`` as PaddleX's high-performance inference makes it: the model is
    saved as a Paddle inference program (:func:`jit_save_inference`, in ``work_dir``) and converted by
    paddle2onnx at ``opset``. Returns the ONNX bytes; porthub writes and checks the file itself.

    paddle2onnx's own constant folding (polygraphy, which installs missing packages with pip on first use) is
    left off: ONNX Runtime folds constants when it loads the graph."""
    try:
        import paddle2onnx
    except ImportError as exc:
        raise FrameworkMissingError(f"ONNX from the Paddle model needs paddle2onnx; {PADDLE2ONNX_INSTALL}") from exc
    prefix = os.path.join(work_dir, "inference")
    jit_save_inference(model, prefix, shape, dtype)
    try:
        data = paddle2onnx.export(f"{prefix}.json", f"{prefix}.pdiparams", None, opset_version=opset,
                                  auto_upgrade_opset=False, enable_onnx_checker=True, optimize_tool="None")
    except UnboundLocalError:
        # paddle2onnx 2.x logs a failed conversion and then returns a variable it never set
        data = None
    if not isinstance(data, bytes) or not data:
        raise ExportError(f"paddle2onnx {paddle2onnx.__version__} could not convert the program at opset "
                          f"{opset} (its log above says which operator); export ONNX from the PyTorch model")
    return data


def paddle2onnx_version() -> str:
    import paddle2onnx

    return str(paddle2onnx.__version__)


def _inference_threads() -> int:
    """porthub's thread setting: OMP_NUM_THREADS (which :func:`paddle_cpu_settings` sets to the usable
    cores unless the user has) else the usable cores."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return usable_cores()


def inference_predictor(model_file: str, params_file: str, *, device: str = "cpu", onednn: bool = True,
                        threads: int | None = None) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A Paddle Inference predictor (``Config(model, params)`` + ``create_predictor``, IR passes on) as
    numpy NCHW -> the outputs in order. ``device``: "cpu" or Paddle's "gpu:N"; on the CPU ``threads``
    (default porthub's setting) and oneDNN on or off."""
    import_paddle()
    import paddle.inference as paddle_infer

    config = paddle_infer.Config(model_file, params_file)
    config.disable_glog_info()
    config.switch_ir_optim(True)
    if device.startswith("gpu"):
        config.enable_use_gpu(256, int(device.partition(":")[2] or 0))
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(int(threads or _inference_threads()))
        if onednn:
            config.enable_mkldnn()
            # one cached kernel set per input shape: a dynamic batch would otherwise grow it without bound
            config.set_mkldnn_cache_capacity(10)
        else:
            config.disable_mkldnn()
    predictor = paddle_infer.create_predictor(config)
    name = predictor.get_input_names()[0]
    outputs = predictor.get_output_names()
    # DataType.FLOAT32 / DataType.FLOAT16: the input is cast to it
    want = np.dtype(str(predictor.get_input_handle(name).type()).rpartition(".")[2].lower())

    def run(x: np.ndarray) -> list[np.ndarray]:
        handle = predictor.get_input_handle(name)
        arr = np.ascontiguousarray(x, dtype=want)
        handle.reshape(list(arr.shape))
        handle.copy_from_cpu(arr)
        predictor.run()
        return [predictor.get_output_handle(out).copy_to_cpu() for out in outputs]

    return run


def _onednn_probe_main() -> None:
    """The child of :func:`probe_onednn`: argv = model file, params file, the input shape as JSON, threads,
    the result file. Runs the program with oneDNN off and on, on one seeded input, and writes the largest
    difference relative to max(1, max|off|) (oneDNN can also give wrong numbers, not only fail) into the
    result file: a file, not stdout, which Paddle's own messages share."""
    import json

    model_file, params_file, shape, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    off = inference_predictor(model_file, params_file, onednn=False, threads=threads)(x)
    on = inference_predictor(model_file, params_file, onednn=True, threads=threads)(x)
    worst = float("inf") if len(off) != len(on) else max(
        (max_abs_diff(a, b) / limit(1.0, a) for a, b in zip(off, on)), default=0.0)
    with open(sys.argv[5], "w", encoding="utf-8") as fh:
        json.dump({"relative_diff": worst}, fh)


def probe_onednn(model_file: str, params_file: str, shape: list[int], threads: int | None = None,
                 timeout: float = 600.0) -> tuple[bool, str]:
    """Whether a CPU predictor with oneDNN builds, runs this model once and gives the numbers of oneDNN off,
    tried in a child process, so that Paddle 3.3.x's oneDNN failure (an exception, or an abort on some
    attributes) never reaches the caller's process. Returns (ok, the cause in one line when not ok)."""
    import json
    import subprocess
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("GLOG_minloglevel", "2")
    code = "from porthub.runtime.paddle import _onednn_probe_main; _onednn_probe_main()"
    with tempfile.TemporaryDirectory(prefix="porthub-onednn-") as scratch:
        result = os.path.join(scratch, "result.json")
        args = [sys.executable, "-c", code, model_file, params_file, json.dumps(shape),
                str(int(threads or _inference_threads())), result]
        try:
            done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return False, f"the oneDNN predictor did not finish one run in {timeout:.0f} s"
        found = None
        if done.returncode == 0:
            try:
                with open(result, encoding="utf-8") as fh:
                    found = float(json.load(fh)["relative_diff"])
            except (OSError, ValueError, KeyError):
                return False, "the oneDNN probe wrote no result"
    if found is not None:
        diff = found
        if diff <= ONEDNN_TOLERANCE:
            return True, ""
        return False, (f"Paddle {paddle_version()} CPU inference with oneDNN gives other numbers than without it on "
                       f"this program ({diff:.3g} x max(1, max|out|) > {ONEDNN_TOLERANCE:g})")
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    known = [line for line in lines if "ConvertPirAttribute2RuntimeAttribute" in line or "Error" in line]
    why = (known or lines or [f"exit status {done.returncode}"])[-1]
    if "ConvertPirAttribute2RuntimeAttribute" in why:
        return False, ONEDNN_BUG
    return False, f"the oneDNN predictor failed ({why[:200]})"
