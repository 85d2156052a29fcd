"""Device names, parsed once for both frameworks (framework-free: L0).

PyTorch spells a GPU ``cuda`` / ``cuda:N``, Paddle ``gpu`` / ``gpu:N``; either spelling is accepted for
either framework and mapped (``cuda:1`` for Paddle is ``gpu:1``). :func:`parse_device` checks the text
only; whether the installed framework can use a GPU is checked by
:func:`porthub.runtime.resolve_device`, which calls :func:`check_gpu_build` with what the framework
reports, before any model is built.

>>> parse_device("gpu:1", "torch").name
'cuda:1'
>>> parse_device("cuda", "paddle").name
'gpu:0'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import DeviceError
from .spec import FRAMEWORKS, PADDLE, TORCH

__all__ = ["Device", "CPU", "GPU", "DTYPES", "HALF_DTYPES", "parse_device", "check_gpu_build", "check_dtype",
           "DEVICE_HELP", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


CPU = "cpu"
GPU = "gpu"
#: each framework's word for a GPU
_GPU_WORD = {TORCH: "cuda", PADDLE: "gpu"}
_PATTERN = re.compile(r"(cpu|cuda|gpu)(?::(\d+))?\Z")
#: the inference dtypes porthub builds models in
DTYPES = ("float32", "float64", "float16", "bfloat16")
HALF_DTYPES = ("float16", "bfloat16")
#: half precision a framework cannot run on the CPU, and why (measured: Paddle 3.3.1's CPU build has
#: conv2d kernels for float32 and float64 only, so every family's patch embedding fails in float16/bfloat16)
_NO_HALF_ON_CPU = {PADDLE: "Paddle's CPU kernels (conv2d among them) exist for float32 and float64 only"}
#: one line for a CLI's --device help
DEVICE_HELP = "cpu, cuda[:N] or gpu[:N] (either spelling for either framework; default cpu)"
#: what to install for a GPU build
GPU_INSTALL = {
    TORCH: "install a CUDA build of torch (pip install torch --index-url https://download.pytorch.org/whl/cu126)",
    PADDLE: "install paddlepaddle-gpu (pip install paddlepaddle-gpu==3.3.1 -i "
    "https://www.paddlepaddle.org.cn/packages/stable/cu126/)",
}


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` "cpu" or "gpu", ``index`` (0 for a bare ``cuda``/``gpu``; None for the
    CPU), and the framework whose spelling :attr:`name` uses."""

    framework: str
    kind: str
    index: int | None = None

    @property
    def is_gpu(self) -> bool:
        return self.kind == GPU

    @property
    def name(self) -> str:
        """The framework's own spelling: ``cpu``, ``cuda:N`` (torch), ``gpu:N`` (paddle)."""
        if not self.is_gpu:
            return CPU
        return f"{_GPU_WORD[self.framework]}:{self.index}"

    def for_framework(self, framework: str) -> "Device":
        """The same device in the other framework's spelling."""
        return Device(_framework(framework), self.kind, self.index)

    def __str__(self) -> str:
        return self.name


def _framework(framework: str) -> str:
    if framework not in FRAMEWORKS:
        raise DeviceError(f"framework must be 'torch' or 'paddle', not {framework!r}")
    return framework


def parse_device(text: "str | Device | None", framework: str) -> Device:
    """``text`` ("cpu", "cuda", "cuda:N", "gpu", "gpu:N", case and surrounding spaces ignored; None is the
    CPU) as a :class:`Device` for ``framework``; anything else raises :class:`DeviceError`. A Device is
    returned in ``framework``'s spelling."""
    framework = _framework(framework)
    if isinstance(text, Device):
        return text.for_framework(framework)
    if text is None:
        return Device(framework, CPU)
    if not isinstance(text, str):
        raise DeviceError(f"a device is a string such as 'cpu' or 'cuda:0', not {type(text).__name__}")
    match = _PATTERN.match(text.strip().lower())
    if match is None:
        raise DeviceError(f"unknown device {text!r}; use {DEVICE_HELP}")
    word, index = match.groups()
    if word == CPU:
        if index is not None:
            raise DeviceError(f"unknown device {text!r}: the CPU takes no index; use 'cpu'")
        return Device(framework, CPU)
    return Device(framework, GPU, int(index) if index is not None else 0)


def check_gpu_build(device: Device, *, compiled_with_cuda: bool, count: int, build: str) -> None:
    """Refuse a GPU ``device`` the installed framework cannot use: ``compiled_with_cuda`` (a CUDA build),
    ``count`` (the GPUs it sees), ``build`` (how the installed package is named in the message, e.g.
    "paddlepaddle 3.3.1 (CPU build)")."""
    if not device.is_gpu:
        return
    if not compiled_with_cuda:
        raise DeviceError(f"{build} cannot use {device.name}; {GPU_INSTALL[device.framework]}")
    if count <= 0:
        raise DeviceError(f"{build} sees no GPU, so it cannot use {device.name} (check nvidia-smi and "
                          "CUDA_VISIBLE_DEVICES)")
    if device.index is not None and device.index >= count:
        raise DeviceError(f"{device.name} does not exist: {build} sees {count} GPU(s), "
                          f"{_GPU_WORD[device.framework]}:0 to {_GPU_WORD[device.framework]}:{count - 1}")


def check_dtype(device: Device, dtype: str) -> None:
    """Refuse a dtype porthub does not build in, and half precision where ``device``'s framework has no
    kernels for it (Paddle on the CPU), before the model is built."""
    if dtype not in DTYPES:
        raise DeviceError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype in HALF_DTYPES and not device.is_gpu and device.framework in _NO_HALF_ON_CPU:
        raise DeviceError(f"{device.framework} cannot run {dtype} on the CPU ({_NO_HALF_ON_CPU[device.framework]}); "
                          f"use float32, or a GPU ({_GPU_WORD[device.framework]}:0)")
