"""The fused attention of the PyTorch models (``layers.attention``) against the written-out official
formula, and the reuse of CrossFormer's DPB bias in inference: reused while the weights stand still,
recomputed after any change to them, never reused when gradients are on."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import DATA

from converters.crossformer import SPEC as CROSSFORMER
from paddle_models.layers import attention as paddle_attention
from porthub.runtime import build_model
from torch_models.crossformer import DynamicPosBias
from torch_models.layers import attention


def _written_out(q, k, v, scale, bias):
    attn = (q @ k.transpose(-2, -1)) * scale
    if bias is not None:
        attn = attn + bias
    return attn.softmax(dim=-1) @ v


def _qkv(dtype):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(shape, dtype=dtype, generator=g) for shape in ((4, 3, 20, 8), (4, 3, 30, 8), (4, 3, 30, 8))]


@pytest.mark.parametrize("bias_shape", [None, (1, 3, 20, 30), (4, 1, 20, 30), (4, 3, 20, 30)])
def test_attention_is_the_written_out_formula_to_float64_rounding(bias_shape):
    q, k, v = _qkv(torch.float64)
    bias = (
        None
        if bias_shape is None
        else torch.randn(bias_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    )
    got, want = attention(q, k, v, 0.35, bias), _written_out(q, k, v, 0.35, bias)
    assert got.shape == want.shape == (4, 3, 20, 8)
    assert (got - want).abs().max().item() < 1e-13


def test_attention_with_a_minus_100_mask_ignores_the_masked_keys():
    q, k, v = _qkv(torch.float64)
    bias = torch.zeros(1, 1, 20, 30, dtype=torch.float64)
    bias[..., 10:] = -100.0
    got = attention(q, k, v, 0.35, bias)
    assert (got - _written_out(q, k[:, :, :10], v[:, :, :10], 0.35, None)).abs().max().item() < 1e-13


def test_paddle_attention_is_the_same_formula():
    import paddle

    q, k, v = _qkv(torch.float64)
    bias = torch.randn(1, 3, 20, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    got = paddle_attention(
        *(paddle.to_tensor(t.numpy()) for t in (q, k, v)), 0.35, paddle.to_tensor(bias.numpy())
    ).numpy()
    assert np.abs(got - _written_out(q, k, v, 0.35, bias).numpy()).max() < 1e-13


def test_attention_dropout_acts_only_while_training():
    q, k, v = _qkv(torch.float32)
    drop = torch.nn.Dropout(0.5).eval()
    assert torch.equal(attention(q, k, v, 0.35, None, drop), attention(q, k, v, 0.35))
    drop.train()
    torch.manual_seed(0)
    assert not torch.allclose(attention(q, k, v, 0.35, None, drop), attention(q, k, v, 0.35))


def _crossformer():
    with open(os.path.join(DATA, "crossformer", "pp_mini_a.json"), encoding="utf-8") as fh:
        ref = CROSSFORMER.case_model(json.load(fh))
    torch.manual_seed(0)
    model = build_model(CROSSFORMER, ref, "torch")
    x = torch.from_numpy(np.load(os.path.join(DATA, "crossformer", "pp_mini_a.input.npy")))
    return model, ref, x


def _dpb_calls(model):
    calls = []
    for module in model.modules():
        if isinstance(module, DynamicPosBias):
            module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_dpb_bias_is_reused_in_inference_and_follows_every_weight_change():
    model, ref, x = _crossformer()
    n_dpb = sum(isinstance(m, DynamicPosBias) for m in model.modules())
    calls = _dpb_calls(model)
    with torch.no_grad():
        first = model(x)
        assert len(calls) == n_dpb
        assert torch.equal(model(x), first)
        assert len(calls) == n_dpb  # reused

        def fresh_output(dtype=torch.float32):
            fresh = build_model(CROSSFORMER, ref, "torch")
            fresh.load_state_dict(model.state_dict())
            return fresh.to(dtype)(x.to(dtype))

        state = {k: v + 0.05 if ".attn.pos." in k else v for k, v in model.state_dict().items()}
        model.load_state_dict(state)
        loaded = model(x)
        assert not torch.allclose(loaded, first)
        assert torch.equal(loaded, fresh_output())

        next(m for m in model.modules() if isinstance(m, DynamicPosBias)).pos3[2].bias.add_(0.5)
        assert torch.equal(model(x), fresh_output())

        model.double()
        assert torch.equal(model(x.double()), fresh_output(torch.float64))


def test_dpb_gets_its_gradient_after_an_inference_call():
    grads = []
    for warm in (True, False):
        model, _, x = _crossformer()
        if warm:
            with torch.no_grad():
                model(x)
        model(x).square().sum().backward()
        grads.append([p.grad for m in model.modules() if isinstance(m, DynamicPosBias) for p in m.parameters()])
    warm, cold = grads
    assert warm and all(g is not None for g in warm)
    assert all(torch.equal(a, b) for a, b in zip(warm, cold))
    assert sum(g.abs().sum().item() for g in warm) > 0
