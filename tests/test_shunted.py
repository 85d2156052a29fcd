"""Shunted Transformer behaviour the registry-driven tests cannot see: the stem BatchNorm index rule,
the per-position LayerNorm eps, the two attention branches on odd, non-square inputs, case parsing."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from converters.shunted import SPEC, case_model
from porthub.spec import LayerKind

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "official", "shunted")

# small but exercising every branch: sr 8/4/2 (two scales) and 1 (plain + local conv), odd head split sizes
SMALL = {
    "num_classes": 5,
    "embed_dims": [64, 16, 32, 24],
    "num_heads": [2, 4, 2, 2],
    "mlp_ratios": [1.5, 3, 2, 2],
    "qkv_bias": False,
    "qk_scale": 0.3,
    "depths": [1, 2, 1, 1],
    "sr_ratios": [8, 4, 2, 1],
    "num_conv": 2,
    "norm_layer": "functools.partial(torch.nn.LayerNorm, eps=1e-6)",
}


def test_stem_batchnorm_rule_is_every_third_index_from_one():
    matched = [n for n in range(3000) if SPEC.kind_of(f"patch_embed1.conv.{n}") == LayerKind.BATCHNORM]
    assert matched == list(range(1, 3000, 3))
    assert SPEC.kind_of("patch_embed1.conv.01x") != LayerKind.BATCHNORM


@pytest.mark.parametrize("num_conv", [0, 1, 2, 5])
def test_kinds_follow_module_classes(num_conv):
    torch = pytest.importorskip("torch")
    from torch_models.shunted import ShuntedTransformer

    model = ShuntedTransformer(**{**SMALL, "num_conv": num_conv})
    for name, module in model.named_modules():
        if not name:
            continue
        expected = {torch.nn.Linear: LayerKind.LINEAR, torch.nn.BatchNorm2d: LayerKind.BATCHNORM}.get(
            type(module), LayerKind.PLAIN
        )
        assert SPEC.kind_of(name) == expected, name


def test_layernorm_eps_by_position():
    pytest.importorskip("torch")
    from torch_models.shunted import ShuntedTransformer

    model = ShuntedTransformer(**SMALL)
    eps = {name: m.eps for name, m in model.named_modules() if type(m).__name__ == "LayerNorm"}
    for name, value in eps.items():
        fixed = name.startswith("patch_embed") or re.fullmatch(r"block\d+\.\d+\.attn\.norm[12]", name)
        assert value == (1e-5 if fixed else 1e-6), name
    assert eps["block1.0.attn.norm1"] == 1e-5 and eps["block1.0.norm1"] == 1e-6 and eps["norm4"] == 1e-6


def _to_paddle_state(state):
    out = {}
    for key, value in state.items():
        module, leaf = key.rsplit(".", 1)
        kind = SPEC.kind_of(module)
        if kind is LayerKind.LINEAR and leaf == "weight":
            value = value.T
        if kind is LayerKind.BATCHNORM:
            if leaf == "num_batches_tracked":
                continue
            leaf = {"running_mean": "_mean", "running_var": "_variance"}.get(leaf, leaf)
        out[f"{module}.{leaf}"] = value
    return out


@pytest.mark.parametrize("size", [(75, 101), (160, 192)])
def test_twins_agree_on_odd_non_square_inputs(size):
    """Floor/ceil sizes of the stem, the sr convs and the local-conv grids stay consistent off 224x224."""
    torch = pytest.importorskip("torch")
    paddle = pytest.importorskip("paddle")
    from paddle_models import shunted as pd_shunted
    from torch_models import shunted as th_shunted

    torch.manual_seed(0)
    th_model = th_shunted.ShuntedTransformer(**SMALL).eval()
    state = {k: v.numpy() for k, v in th_model.state_dict().items()}
    for key in state:
        if key.endswith("running_var"):
            state[key] = np.linspace(0.5, 1.5, state[key].size, dtype=np.float32)
        elif key.endswith(("running_mean", "bias")):
            state[key] = np.full_like(state[key], 0.03)
    th_model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
    pd_model = pd_shunted.ShuntedTransformer(**SMALL)
    pd_model.eval()
    pd_model.set_state_dict({k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in _to_paddle_state(state).items()})

    x = np.random.default_rng(0).standard_normal((2, 3, *size))
    with torch.no_grad():
        expected = th_model.to(torch.float64)(torch.from_numpy(x)).numpy()
    pd_model.to(dtype="float64")
    with paddle.no_grad():
        got = pd_model(paddle.to_tensor(x)).numpy()
    assert expected.shape == (2, 5) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_case_model_reads_class_and_factories():
    with open(os.path.join(DATA, "mini_a.json")) as f:
        case = json.load(f)
    ref = case_model(case)
    assert ref.class_name == "ShuntedTransformer" and ref.kwargs == case["kwargs"]

    factory = case_model({"constructor": "SSA.shunted_s", "kwargs": {"num_classes": 10}})
    assert (
        factory.kwargs["depths"] == [2, 4, 12, 1]
        and factory.kwargs["num_conv"] == 1
        and factory.kwargs["num_classes"] == 10
    )

    with pytest.raises(ValueError, match="constructor"):
        case_model({"constructor": "SSA.Other", "kwargs": {}})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"embed_dims": [32, 16, 32, 24]}, "embed_dims\\[0\\]"),
        ({"sr_ratios": [16, 4, 2, 1]}, "sr_ratio"),
        ({"num_heads": [2, 1, 2, 2]}, "even"),
    ],
)
def test_configurations_the_official_forward_cannot_run_are_refused(kwargs, message):
    pytest.importorskip("torch")
    from torch_models.shunted import ShuntedTransformer

    with pytest.raises(ValueError, match=message):
        ShuntedTransformer(**{**SMALL, **kwargs})
