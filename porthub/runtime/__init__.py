"""The runtime: the only part of porthub that imports torch, paddle, torch_models or paddle_models.

It imports a framework on demand (Paddle with the machine's cores, quietly), builds a family's model
from a :class:`~porthub.spec.ModelRef`, loads a canonical state strictly, runs a model with forward
hooks, and turns framework tensors into numpy. Everything above it (verification, reports, the hub)
works on numpy arrays and calls these functions with ``framework`` = "torch" or "paddle"; the
framework-specific halves are :mod:`porthub.runtime.torch` and :mod:`porthub.runtime.paddle`.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import re
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ..devices import HALF_DTYPES, Device, check_dtype, check_gpu_build, parse_device
from ..engine import Manifest, canonical_keys, check_state, from_canonical
from ..errors import (
    DeviceError,
    FrameworkMissingError,
    KeyMismatchError,
    ModelClassError,
    NonFiniteWeightsError,
    NoSuchModuleError,
    UnknownFrameworkError,
)
from ..inputs import InputCheck
from ..spec import PADDLE, TORCH, FamilySpec, Layout, ModelRef
from . import paddle as _paddle
from . import torch as _torch
from .paddle import paddle_cpu_settings

__all__ = [
    "import_framework",
    "paddle_cpu_settings",
    "available_framework",
    "model_class",
    "build_model",
    "model_manifest",
    "check_finite",
    "load_state",
    "run_model",
    "run_hooked",
    "named_modules",
    "add_output_hook",
    "from_numpy",
    "to_numpy",
    "seed_framework",
    "parameter_names",
    "state_arrays",
    "hook_name_pattern",
    "resolve_device",
    "model_device",
    "cast_model",
    "HALF_DTYPES",
    "on_device",
]

#: the device build_model uses when it is given none (set by :func:`on_device`)
_DEFAULT_DEVICE: contextvars.ContextVar["str | Device | None"] = contextvars.ContextVar("porthub_device", default=None)


@contextlib.contextmanager
def on_device(device: "str | Device | None") -> Iterator[None]:
    """Within the block, :func:`build_model` without ``device`` builds on ``device`` (in either
    framework's spelling), so a service that builds models (a layer report, an evaluation) runs on a GPU
    without passing the device through every call."""
    token = _DEFAULT_DEVICE.set(device)
    try:
        yield
    finally:
        _DEFAULT_DEVICE.reset(token)

_SIDES = {TORCH: _torch, PADDLE: _paddle}


def _side(framework: str) -> Any:
    try:
        return _SIDES[framework]
    except (KeyError, TypeError):
        raise UnknownFrameworkError(f"framework must be 'torch' or 'paddle', not {framework!r}") from None


def import_framework(framework: str) -> Any:
    """torch, or paddle after :func:`paddle_cpu_settings` (quietly: see :mod:`porthub.runtime.paddle`)."""
    side = _side(framework)
    return side.import_torch() if side is _torch else side.import_paddle()


def resolve_device(device: "str | Device | None", framework: str) -> Device:
    """``device`` parsed for ``framework`` (:func:`porthub.devices.parse_device`) and, for a GPU, checked
    against the installed framework (a CUDA build that sees that GPU): a :class:`~porthub.errors.DeviceError`
    says what to install, before any model is built."""
    side = _side(framework)
    parsed = parse_device(device, framework)
    if parsed.is_gpu:
        compiled, count, build = side.gpu_build()
        check_gpu_build(parsed, compiled_with_cuda=compiled, count=count, build=build)
    return parsed


def model_device(model: Any, framework: str) -> Device:
    """The device ``model``'s parameters are on."""
    return parse_device(_side(framework).model_device(model), framework)


def cast_model(model: Any, framework: str, dtype: str) -> Any:
    """``model`` with its floating parameters and buffers in ``dtype`` (in place; returned)."""
    return _side(framework).cast(model, dtype)


def available_framework() -> str:
    for framework in (TORCH, PADDLE):
        try:
            # through import_framework: a bare `import paddle` here would pin it to one thread for good
            import_framework(framework)
            return framework
        except FrameworkMissingError:
            continue
    raise FrameworkMissingError(
        "this needs torch or paddle to build the model (the model is not a registered variant with a shipped "
        f"manifest); {_torch.INSTALL}"
    )


def model_class(spec: FamilySpec, class_name: str, framework: str) -> type:
    import_framework(framework)
    module = importlib.import_module(f"{framework}_models.{spec.module}")
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ModelClassError(f"{framework}_models.{spec.module} has no class {class_name}") from None


def _model_name(spec: FamilySpec, ref: ModelRef) -> str:
    """The registered name of the variant ``ref`` builds exactly, else the family and class."""
    for variant in spec.variants:
        if variant.class_name == ref.class_name and dict(variant.kwargs) == dict(ref.kwargs):
            return variant.name
    return f"{spec.family} {ref.class_name}"


def build_model(
    spec: FamilySpec,
    ref: ModelRef,
    framework: str,
    dtype: str = "float32",
    name: str | None = None,
    check_input: bool = True,
    device: "str | Device | None" = None,
) -> Any:
    """The model in eval mode, its floating tensors in ``dtype``, on ``device`` (default the CPU; see
    :func:`resolve_device`: a GPU the installed framework cannot use is refused before the build).

    With ``check_input`` a forward pre-hook checks every input against the family's
    :class:`~porthub.spec.InputRule` for ``ref`` (channels, size, 4-D, floating dtype) and raises
    :class:`~porthub.errors.InputError` naming the constraint; ``name`` is the model's name in
    those messages (default: the registered variant ``ref`` builds, else the family and class).
    """
    side = _side(framework)
    where = resolve_device(device if device is not None else _DEFAULT_DEVICE.get(), framework)
    check_dtype(where, dtype)
    if where.is_gpu:
        # float32 on a GPU means float32: cuBLAS/cuDNN would otherwise use TF32 (10-bit mantissa) for
        # matmuls and convolutions on Ampere and later, ~1e-3 off the CPU; read when CUDA makes its handles,
        # for both frameworks, unless the user has set it
        os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
    cls = model_class(spec, ref.class_name, framework)
    model = side.build(cls, dict(ref.kwargs), dtype, where.name)
    model.eval()
    if check_input:
        # after construction, so that bad constructor arguments get the model's own error
        model.register_forward_pre_hook(InputCheck(spec.input_rule(ref), name or _model_name(spec, ref)))
    return model


def _state_entries(model: Any, framework: str) -> "OrderedDict[str, tuple[tuple[int, ...], str]]":
    return OrderedDict(_side(framework).state_entries(model))


def model_manifest(spec: FamilySpec, ref: ModelRef, framework: str, name: str) -> Manifest:
    """The canonical manifest of a model, read off an instance (torch on the meta device when it can)."""
    if framework == TORCH:
        model = _torch.build_on_meta(model_class(spec, ref.class_name, TORCH), dict(ref.kwargs))
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
            raise NonFiniteWeightsError(
                f"{name}: {key} holds {bad} non-finite value(s) (NaN or inf); the checkpoint is "
                "corrupt or from a diverged run"
            )


def _owned(value: Any, want: str) -> np.ndarray:
    """A fresh, writable copy in the model's float dtype (file views are read-only and may be mapped)."""
    arr = np.asarray(value)
    if want == "bfloat16":
        # numpy has no bfloat16: the framework casts float32 into the model's bfloat16 tensors
        return arr.astype("float32") if arr.dtype.kind == "f" else np.array(arr, copy=True)
    if arr.dtype.kind == "f" and str(arr.dtype) != want:
        return arr.astype(want)
    return np.array(arr, copy=True)


def load_state(
    model: Any,
    state: Mapping[str, np.ndarray],
    spec: FamilySpec,
    framework: str,
    name: str = "model",
    allow_nonfinite: bool = False,
) -> None:
    """Load a canonical state strictly: every key of the model present with its shape, nothing else,
    and (unless ``allow_nonfinite``) only finite values."""
    side = _side(framework)
    import_framework(framework)
    if not allow_nonfinite:
        check_finite(state, name)
    entries = _state_entries(model, framework)
    if framework == TORCH:
        check_state(state, Manifest(name, entries))
        _torch.load(model, {key: _owned(value, entries[key][1]) for key, value in state.items()})
        return
    check_state(state, Manifest(name, canonical_keys(spec, entries)))
    converted = from_canonical(state, Layout(name="paddle-model", framework=PADDLE), spec)
    if set(converted) != set(entries):
        raise KeyMismatchError(
            f"{name}: Paddle keys differ after conversion: {sorted(set(converted) ^ set(entries))[:6]}"
        )
    side.load(model, {key: _owned(value, entries[key][1]) for key, value in converted.items()}, name)


def _host(x: Any, dtype: str) -> np.ndarray:
    """``x`` as a contiguous numpy array in ``dtype``, or in float32 for bfloat16 (the framework casts)."""
    return np.ascontiguousarray(np.asarray(x).astype("float32" if dtype == "bfloat16" else dtype))


def from_numpy(x: np.ndarray, framework: str, dtype: str = "float32", device: "str | Device | None" = None) -> Any:
    """A framework tensor of ``x`` in ``dtype`` on ``device`` (default the CPU; see :func:`resolve_device`)."""
    where = resolve_device(device, framework)
    return _side(framework).from_numpy(_host(x, dtype), where.name, dtype)


def seed_framework(framework: str, seed: int) -> None:
    """Seed the framework's own random generator (weight initialisation)."""
    fw = import_framework(framework)
    (fw.manual_seed if framework == TORCH else fw.seed)(seed)


def parameter_names(model: Any, framework: str) -> set[str]:
    """The state-dict keys of ``model`` that are learned parameters (not buffers)."""
    _side(framework)
    return {name for name, _ in model.named_parameters()}


def state_arrays(model: Any, framework: str) -> "OrderedDict[str, np.ndarray]":
    """``model.state_dict()`` as numpy arrays, in the model's key order."""
    _side(framework)
    return OrderedDict((key, to_numpy(value)) for key, value in model.state_dict().items())


def to_numpy(value: Any) -> Any:
    """Framework tensors (also inside lists, tuples and dicts) as numpy arrays; anything else as it is."""
    if isinstance(value, (list, tuple)):
        return [to_numpy(v) for v in value]
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    module = type(value).__module__.split(".", 1)[0]
    if module in _SIDES and hasattr(value, "numpy"):
        # the framework's own copy to the host: bfloat16 comes back as float32
        return _SIDES[module].to_numpy(value)
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):
        return value.numpy()
    return value


def named_modules(model: Any, framework: str) -> dict[str, Any]:
    """Every module (layer) of ``model`` by path, the model itself under ``""``."""
    return _side(framework).named_modules(model)


def add_output_hook(module: Any, framework: str, hook: Any) -> Any:
    """Call ``hook(module, inputs, output)`` after each forward of ``module``; returns the handle."""
    return _side(framework).add_output_hook(module, hook)


def run_model(
    model: Any,
    x: np.ndarray,
    framework: str,
    dtype: str = "float32",
    hooks: Iterable[str] = (),
    device: "str | Device | None" = None,
) -> tuple[Any, dict[str, Any]]:
    """Run ``model`` on ``x`` (put on the model's device and cast to ``dtype`` there); return its output
    and the outputs of the modules named in ``hooks``, as numpy on the host (bfloat16 as float32).
    ``device``, when given, is where the model must be: another is refused (move the model first)."""
    side = _side(framework)
    import_framework(framework)
    if device is not None:
        want, have = resolve_device(device, framework), model_device(model, framework)
        if want != have:
            raise DeviceError(f"the model is on {have.name}, not on {want.name}; build it with device={want.name!r}")
    captured: dict[str, Any] = {}
    handles = []
    modules = named_modules(model, framework)
    for path in hooks:
        if path not in modules:
            raise NoSuchModuleError(f"the model has no module {path!r} to take an output from")

        def hook(_module: Any, _inputs: Any, output: Any, _path: str = path) -> None:
            captured[_path] = to_numpy(output)

        handles.append(add_output_hook(modules[path], framework, hook))
    try:
        out = side.run(model, _host(x, dtype), dtype)
    finally:
        for handle in handles:
            handle.remove()
    return to_numpy(out), captured


def run_hooked(
    model: Any, x: np.ndarray, framework: str, dtype: str, pre: Callable[..., Any] | None, post: Callable[..., Any]
) -> tuple[Any, float]:
    """Run ``model`` on ``x`` with a hook on every module call (see :func:`porthub.runtime.paddle.run_hooked`;
    in PyTorch the hooks' return values are ignored). Returns the output as numpy and the forward's seconds."""
    import_framework(framework)
    return _side(framework).run_hooked(model, np.ascontiguousarray(x.astype(dtype)), pre, post)


def hook_name_pattern(template: str) -> re.Pattern[str]:
    """``"stage{i}"`` -> a regex whose group 1 is the list index."""
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"(\d+)") + r"\Z")
