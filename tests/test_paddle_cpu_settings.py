"""The settings that make Paddle fast on CPU. Paddle models run their forward with Paddle's stride
kernels off (``layers.dense_layout``): the outputs are the same bits either way, and the caller's
setting is back afterwards, also after an error inside the forward. MKL's AVX2 path is chosen on
AMD processors unless the user set MKL_DEBUG_CPU_TYPE."""

from __future__ import annotations

import os

import numpy as np
import paddle
import pytest

from paddle_models.layers import dense_layout
from porthub.registry import resolve
from porthub.runtime import build_model

FLAG = "FLAGS_use_stride_kernel"


def _flag() -> bool:
    return paddle.get_flags(FLAG)[FLAG]


@pytest.fixture
def strides_on():
    before = _flag()
    paddle.set_flags({FLAG: True})
    yield
    paddle.set_flags({FLAG: before})


def test_the_flag_is_off_inside_and_restored_after(strides_on):
    seen = []

    @dense_layout
    def forward(self, x):
        seen.append(_flag())
        return x + 1

    assert forward(None, 1) == 2
    assert seen == [False]
    assert _flag() is True


def test_the_flag_is_restored_when_the_forward_raises(strides_on):
    @dense_layout
    def forward(self, x):
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        forward(None, 1)
    assert _flag() is True


@pytest.mark.parametrize("name", ["focal_tiny", "twins_svt_small", "crossformer_tiny"])
def test_outputs_are_bit_identical_with_and_without_stride_kernels(name, strides_on):
    spec, variant = resolve(name)
    model = build_model(spec, variant, "paddle")
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("float32"))
    with paddle.no_grad():
        dense = model(x).numpy()
        strided = model.forward.__wrapped__(model, x).numpy()
    assert _flag() is True
    np.testing.assert_array_equal(dense, strided)


def test_mkl_avx2_path_is_chosen_only_on_amd_with_avx2_and_only_if_unset(tmp_path, monkeypatch):
    from porthub.runtime import paddle as frameworks

    def cpuinfo(vendor: str, flags: str) -> str:
        path = tmp_path / f"{vendor}-{len(flags)}"
        path.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        return str(path)

    assert frameworks._amd_with_avx2(cpuinfo("AuthenticAMD", "fpu sse2 avx avx2 fma"))
    assert not frameworks._amd_with_avx2(cpuinfo("AuthenticAMD", "fpu sse2 avx"))
    assert not frameworks._amd_with_avx2(cpuinfo("GenuineIntel", "fpu sse2 avx avx2"))
    assert not frameworks._amd_with_avx2(str(tmp_path / "missing"))

    monkeypatch.setattr(frameworks, "_amd_with_avx2", lambda: True)
    monkeypatch.delenv("MKL_DEBUG_CPU_TYPE", raising=False)
    frameworks.paddle_cpu_settings()
    assert os.environ["MKL_DEBUG_CPU_TYPE"] == "5"
    monkeypatch.setenv("MKL_DEBUG_CPU_TYPE", "0")  # the user's choice stands
    frameworks.paddle_cpu_settings()
    assert os.environ["MKL_DEBUG_CPU_TYPE"] == "0"


def _model_classes() -> list[tuple[str, str]]:
    from porthub.registry import all_specs

    return sorted({(spec.family, variant.class_name) for spec in all_specs() for variant in spec.variants})


@pytest.mark.parametrize("family, class_name", _model_classes())
def test_every_registered_paddle_model_runs_with_dense_transposes(family, class_name):
    from porthub.registry import get_spec
    from porthub.runtime import model_class

    forward = model_class(get_spec(family), class_name, "paddle").forward
    assert getattr(forward, "__wrapped__", None) is not None, f"{class_name}.forward lacks @dense_layout"
