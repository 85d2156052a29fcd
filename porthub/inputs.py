"""The input a model accepts, checked before it runs.

A family declares, per constructor, an :class:`~porthub.spec.InputRule` (``FamilySpec.input_rule``):
the channel count, the smallest side, what each side must be a multiple of, or the one size a
fixed-size classifier is built for. :func:`porthub.runtime.build_model` attaches :func:`check_input`
as a forward pre-hook on the root model, so a wrong input fails with the constraint named instead of
a reshape error deep inside. The check reads only the shape and dtype: it costs nothing next to a
forward pass.

Nothing here imports numpy, torch or paddle (converters use :func:`smallest_side`).
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Callable, Sequence

from .errors import InputError, ModelConfigError, NotScriptableError
from .spec import InputRule

__all__ = ["check_input", "describe", "smallest_side", "InputCheck", "FLOAT_DTYPES"]

#: dtypes a model takes, as torch, numpy and paddle spell them without their module prefix (older
#: Paddle reports the VarType names FP32 ...)
FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64", "fp16", "bf16", "fp32", "fp64"})


def _pair(value: Sequence[int]) -> str:
    return f"{value[0]}x{value[1]}"


def describe(rule: InputRule) -> str:
    """The rule as a phrase: ``"3-channel 224x224 inputs"``, ``"3-channel inputs of at least 32x32
    whose sides are multiples of 32"``."""
    if rule.fixed_size is not None:
        return f"{rule.channels}-channel {_pair(rule.fixed_size)} inputs"
    parts = []
    if tuple(rule.min_size) != (1, 1):
        parts.append(f"of at least {_pair(rule.min_size)}")
    if tuple(rule.multiple_of) != (1, 1):
        parts.append(
            f"whose height and width are multiples of {rule.multiple_of[0]} and {rule.multiple_of[1]}"
            if rule.multiple_of[0] != rule.multiple_of[1]
            else f"whose sides are multiples of {rule.multiple_of[0]}"
        )
    return " ".join([f"{rule.channels}-channel inputs", *parts])


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rpartition(".")[2].lower()


def check_input(rule: InputRule, shape: Sequence[int], model_name: str, dtype: Any = None) -> None:
    """Raise :class:`~porthub.errors.InputError` (a ValueError) with one sentence naming the broken
    constraint, the given shape and what to do, unless ``shape`` (N, C, H, W) and ``dtype`` (a
    torch/paddle/numpy dtype or its name; ``None`` skips the dtype check) fit ``rule``."""
    shape = tuple(int(n) for n in shape)
    why = f" ({rule.why})" if rule.why else ""
    if len(shape) != 4:
        hint = "add the batch axis (x[None])" if len(shape) == 3 else "pass one batch of images"
        raise InputError(f"{model_name} takes a 4-D batch [N, {rule.channels}, H, W]; got shape {list(shape)}: {hint}")
    if dtype is not None and _dtype_name(dtype) not in FLOAT_DTYPES:
        raise InputError(
            f"{model_name} takes floating-point input; got {_dtype_name(dtype)} of shape {list(shape)}: "
            "convert it (and scale pixels as the family's preprocessing does) first"
        )
    _, channels, height, width = shape
    got = f"got {channels}x{height}x{width}"
    if channels != rule.channels:
        raise InputError(
            f"{model_name} takes {rule.channels}-channel input (its stem convolution has {rule.channels} "
            f"input channels); {got}: convert the images to {rule.channels} channels"
        )
    min_h, min_w = rule.min_size
    mult_h, mult_w = rule.multiple_of
    if rule.fixed_size is not None:
        if (height, width) != tuple(rule.fixed_size):
            raise InputError(
                f"{model_name} takes {_pair(rule.fixed_size)} inputs{why}; {got}: resize or crop to "
                f"{_pair(rule.fixed_size)}"
            )
        if height < min_h or width < min_w or height % mult_h or width % mult_w:
            # the model cannot run the one size it was built for: only rebuilding helps
            raise InputError(
                f"{model_name} was built for {_pair(rule.fixed_size)} inputs, which its stages cannot run "
                f"(sides must be at least {_pair(rule.min_size)} and multiples of {mult_h} and {mult_w}){why}; "
                f"{got}: rebuild it with an img_size that fits"
            )
        return
    if height < min_h or width < min_w:
        raise InputError(f"{model_name} takes {describe(rule)}{why}; {got}: resize to at least {_pair(rule.min_size)}")
    if height % mult_h or width % mult_w:
        up = (-(-height // mult_h) * mult_h, -(-width // mult_w) * mult_w)
        raise InputError(
            f"{model_name} takes {describe(rule)}{why}; {got}: resize or pad to a multiple (e.g. {_pair(up)})"
        )


def smallest_side(accepts: Callable[[int], bool], limit: int = 1 << 14) -> int:
    """The smallest side length ``n >= 1`` with ``accepts(n)``, for rules whose valid sides are every
    length from some minimum on (stage sizes that only grow with the input). ``accepts`` is the
    family's own stage arithmetic; ``limit`` bounds the search."""
    for side in range(1, limit + 1):
        if accepts(side):
            return side
    raise ModelConfigError(f"no side length up to {limit} fits these constructor arguments; check the stage strides")


class InputCheck:
    """A forward pre-hook (torch and paddle call it with ``(module, args)``) that checks the first
    positional argument. A class rather than a closure, so that a model carrying it still pickles
    (``torch.save(model)``) and deep-copies."""

    def __init__(self, rule: InputRule, model_name: str) -> None:
        self.rule = rule
        self.model_name = model_name

    def __call__(self, module: Any, args: Any) -> None:
        if not isinstance(args, tuple) or not args:
            return None
        x = args[0]
        shape = getattr(x, "shape", None)
        if shape is None:
            raise InputError(
                f"{self.model_name} takes a tensor [N, {self.rule.channels}, H, W]; got {type(x).__name__}: "
                "convert it with torch.from_numpy / paddle.to_tensor"
            )
        tracer_warning = _tracer_warning()
        if tracer_warning is None:
            check_input(self.rule, tuple(shape), self.model_name, getattr(x, "dtype", None))
            return None
        # under torch.jit.trace the sizes are traced values and reading them as ints warns that the
        # trace may be wrong; the check only reads the example's shape and returns nothing, so no
        # value of it enters the trace (which then runs without the check)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", tracer_warning)
            check_input(self.rule, tuple(shape), self.model_name, getattr(x, "dtype", None))
        return None

    @property
    def __name__(self) -> str:
        # torch.jit.script compiles a module's hooks by their __name__ before anything else; none of
        # porthub's models is scriptable (their forwards use Python that TorchScript lacks), so say
        # so and what works instead. An AttributeError, so hasattr(hook, "__name__") stays False.
        raise NotScriptableError(
            f"{self.model_name} cannot be compiled with torch.jit.script (porthub's models use Python features "
            "TorchScript lacks); use torch.jit.trace(model, example_input) or torch.compile(model)"
        )


def _tracer_warning() -> Any:
    """torch's TracerWarning while torch.jit.trace runs, else None (torch is never imported here)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.jit.is_tracing():
        return None
    return torch.jit.TracerWarning
