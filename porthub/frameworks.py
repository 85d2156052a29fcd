"""The only place porthub touches torch or paddle: import them on demand (with the machine's cores),
build a family's model from a :class:`~porthub.spec.ModelRef`, load a canonical state strictly, and
run it with forward hooks."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import re
import sys
import warnings
from collections import OrderedDict
from typing import Any, Iterable, Mapping

import numpy as np

from .engine import Manifest, canonical_keys, check_state, from_canonical
from .errors import FrameworkMissingError, KeyMismatchError
from .inputs import InputCheck
from .spec import PADDLE, TORCH, FamilySpec, Layout, ModelRef

__all__ = [
    "import_framework",
    "paddle_cpu_settings",
    "available_framework",
    "model_class",
    "build_model",
    "model_manifest",
    "load_state",
    "run_model",
    "named_modules",
    "add_output_hook",
    "to_numpy",
]

_INSTALL = {TORCH: "pip install 'porthub[torch]' (CPU: pip install torch==2.13.0)", PADDLE: "pip install 'porthub[paddle]' (CPU: pip install paddlepaddle==3.3.1)"}


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


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
        os.environ["OMP_NUM_THREADS"] = str(_threads())
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


def _import_paddle() -> Any:
    """``import paddle`` without the noise it makes, and with the logging configuration as it was:
    Paddle installs a handler on the root logger at INFO, which makes every library's INFO lines
    (matplotlib, httpx) print. Anything else Paddle writes to stderr while importing is passed on."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    captured = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(captured):
            warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
            module = importlib.import_module(PADDLE)
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


def import_framework(framework: str) -> Any:
    """Import torch or paddle; paddle after :func:`paddle_cpu_settings`, quietly (see :func:`_import_paddle`)."""
    if framework not in (TORCH, PADDLE):
        raise ValueError(f"framework must be 'torch' or 'paddle', not {framework!r}")
    if framework == PADDLE:
        paddle_cpu_settings()
    try:
        quiet = framework == PADDLE and PADDLE not in sys.modules
        module = _import_paddle() if quiet else importlib.import_module(framework)
    except ImportError as exc:
        raise FrameworkMissingError(f"{framework} is not installed; {_INSTALL[framework]}") from exc
    return module


def available_framework() -> str:
    for framework in (TORCH, PADDLE):
        try:
            # through import_framework: a bare `import paddle` here would pin it to one thread for good
            import_framework(framework)
            return framework
        except FrameworkMissingError:
            continue
    raise FrameworkMissingError(
        "this needs torch or paddle to build the model (the model is not a registered variant with a shipped manifest); "
        f"{_INSTALL[TORCH]}"
    )


def model_class(spec: FamilySpec, class_name: str, framework: str) -> type:
    import_framework(framework)
    module = importlib.import_module(f"{framework}_models.{spec.module}")
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise AttributeError(f"{framework}_models.{spec.module} has no class {class_name}") from None


def _model_name(spec: FamilySpec, ref: ModelRef) -> str:
    """The registered name of the variant ``ref`` builds exactly, else the family and class."""
    for variant in spec.variants:
        if variant.class_name == ref.class_name and dict(variant.kwargs) == dict(ref.kwargs):
            return variant.name
    return f"{spec.family} {ref.class_name}"


def build_model(spec: FamilySpec, ref: ModelRef, framework: str, dtype: str = "float32", name: str | None = None,
                check_input: bool = True) -> Any:
    """The model in eval mode, its floating tensors in ``dtype``.

    With ``check_input`` a forward pre-hook checks every input against the family's
    :class:`~porthub.spec.InputRule` for ``ref`` (channels, size, 4-D, floating dtype) and raises
    :class:`~porthub.errors.InputError` naming the constraint; ``name`` is the model's name in
    those messages (default: the registered variant ``ref`` builds, else the family and class).
    """
    fw = import_framework(framework)
    cls = model_class(spec, ref.class_name, framework)
    if framework == TORCH:
        model = cls(**dict(ref.kwargs))
        model = model.to(getattr(fw, dtype))
    else:
        previous = fw.get_default_dtype()
        fw.set_default_dtype(dtype)
        try:
            model = cls(**dict(ref.kwargs))
        finally:
            fw.set_default_dtype(previous)
    model.eval()
    if check_input:
        # after construction, so that bad constructor arguments get the model's own error
        model.register_forward_pre_hook(InputCheck(spec.input_rule(ref), name or _model_name(spec, ref)))
    return model


def _state_entries(model: Any, framework: str) -> "OrderedDict[str, tuple[tuple[int, ...], str]]":
    out: OrderedDict = OrderedDict()
    for key, value in model.state_dict().items():
        if framework == TORCH:
            out[key] = (tuple(value.shape), str(value.dtype).replace("torch.", ""))
        else:
            out[key] = (tuple(value.shape), str(value.dtype).replace("paddle.", ""))
    return out


def model_manifest(spec: FamilySpec, ref: ModelRef, framework: str, name: str) -> Manifest:
    """The canonical manifest of a model, read off an instance (torch on the meta device when it can)."""
    if framework == TORCH:
        torch = import_framework(TORCH)
        cls = model_class(spec, ref.class_name, TORCH)
        try:
            with torch.device("meta"):
                model = cls(**dict(ref.kwargs))
        except (RuntimeError, NotImplementedError):
            # data-dependent construction (nonzero, topk on values) cannot run on the meta device
            model = cls(**dict(ref.kwargs))
        return Manifest(name, _state_entries(model, TORCH))
    model = build_model(spec, ref, PADDLE)
    return Manifest(name, canonical_keys(spec, _state_entries(model, PADDLE)))


def check_finite(state: Mapping[str, np.ndarray], name: str = "model") -> None:
    """Refuse weights with NaN or infinity: they come from a diverged run or a corrupt file, and a
    model loaded with them only produces NaN."""
    for key, value in state.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{name}: {key} holds {bad} non-finite value(s) (NaN or inf); the checkpoint is corrupt or from a diverged run")


def _owned(value: Any, want: str) -> np.ndarray:
    """A fresh, writable copy in the model's float dtype (file views are read-only and may be mapped)."""
    arr = np.asarray(value)
    if arr.dtype.kind == "f" and str(arr.dtype) != want:
        return arr.astype(want)
    return np.array(arr, copy=True)


def load_state(model: Any, state: Mapping[str, np.ndarray], spec: FamilySpec, framework: str, name: str = "model",
               allow_nonfinite: bool = False) -> None:
    """Load a canonical state strictly: every key of the model present with its shape, nothing else,
    and (unless ``allow_nonfinite``) only finite values."""
    fw = import_framework(framework)
    if not allow_nonfinite:
        check_finite(state, name)
    entries = _state_entries(model, framework)
    if framework == TORCH:
        manifest = Manifest(name, entries)
        check_state(state, manifest)
        tensors = {key: fw.from_numpy(_owned(value, entries[key][1])) for key, value in state.items()}
        model.load_state_dict(tensors, strict=True)
        return
    manifest = Manifest(name, canonical_keys(spec, entries))
    check_state(state, manifest)
    layout = Layout(name="paddle-model", framework=PADDLE)
    converted = from_canonical(state, layout, spec)
    if set(converted) != set(entries):
        raise KeyMismatchError(f"{name}: Paddle keys differ after conversion: {sorted(set(converted) ^ set(entries))[:6]}")
    values = {key: _owned(value, entries[key][1]) for key, value in converted.items()}
    missing, unexpected = model.set_state_dict(values)
    if missing or unexpected:
        raise KeyMismatchError(f"{name}: Paddle reported missing {missing[:6]} and unexpected {unexpected[:6]}")


def to_numpy(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):
        return value.numpy()
    return value


def named_modules(model: Any, framework: str) -> dict[str, Any]:
    """Every module (layer) of ``model`` by path, the model itself under ``""``."""
    return dict(model.named_modules() if framework == TORCH else model.named_sublayers(include_self=True))


def add_output_hook(module: Any, framework: str, hook: Any) -> Any:
    """Call ``hook(module, inputs, output)`` after each forward of ``module``; returns the handle."""
    return module.register_forward_hook(hook) if framework == TORCH else module.register_forward_post_hook(hook)


def run_model(model: Any, x: np.ndarray, framework: str, dtype: str = "float32", hooks: Iterable[str] = ()) -> tuple[Any, dict[str, Any]]:
    """Run ``model`` on ``x``; return its output and the outputs of the modules named in ``hooks``
    (as numpy), taken with forward hooks."""
    fw = import_framework(framework)
    captured: dict[str, Any] = {}
    handles = []
    modules = named_modules(model, framework)
    for path in hooks:
        if path not in modules:
            raise KeyError(f"the model has no module {path!r} to take an output from")

        def hook(_module: Any, _inputs: Any, output: Any, _path: str = path) -> None:
            captured[_path] = to_numpy(output)

        handles.append(add_output_hook(modules[path], framework, hook))
    try:
        arr = np.ascontiguousarray(x.astype(dtype))
        if framework == TORCH:
            with fw.no_grad():
                out = model(fw.from_numpy(arr))
        else:
            with fw.no_grad():
                out = model(fw.to_tensor(arr))
    finally:
        for handle in handles:
            handle.remove()
    return to_numpy(out), captured


def hook_name_pattern(template: str) -> re.Pattern[str]:
    """``"stage{i}"`` -> a regex whose group 1 is the list index."""
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"(\d+)") + r"\Z")
