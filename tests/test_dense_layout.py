"""Paddle models run their forward with Paddle's stride kernels off (``layers.dense_layout``): the
outputs are the same bits either way, and the caller's setting is back afterwards, also after an
error inside the forward."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from paddle_models.layers import dense_layout
from porthub.frameworks import build_model
from porthub.registry import resolve

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
    def forward(x):
        seen.append(_flag())
        return x + 1

    assert forward(1) == 2
    assert seen == [False]
    assert _flag() is True


def test_the_flag_is_restored_when_the_forward_raises(strides_on):
    @dense_layout
    def forward(x):
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        forward(1)
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
