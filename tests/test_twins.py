"""Twins behaviour the registry-driven tests cannot see: the segmentation LSA's padding mask and its
"[-0:]" quirk, the classification LSA's whole-window requirement, block classes given as text, case
parsing (classification, factories, dense backbones), and the mmseg checkpoint layout."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from converters.twins import SPEC, case_features, case_model
from porthub.spec import LayerKind

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "official", "twins")
NORM = "functools.partial(torch.nn.LayerNorm, eps=1e-6)"

SMALL_SVT = {
    "num_classes": 5,
    "embed_dims": [16, 24, 32, 40],
    "num_heads": [2, 3, 4, 5],
    "mlp_ratios": [2, 3, 2, 1],
    "qkv_bias": True,
    "norm_layer": NORM,
    "depths": [2, 1, 3, 2],
    "wss": [4, 4, 2, 2],
    "sr_ratios": [8, 4, 2, 1],
}


def _case(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


def _window_attention_reference(x, H, W, ws, heads, qkv_w, qkv_b, proj_w, proj_b, masked):
    """numpy LSA on a bottom/right zero-padded grid; ``masked`` adds -1000 between real and padded tokens."""
    B, N, C = x.shape
    pad_b, pad_r = (-H) % ws, (-W) % ws
    grid = np.zeros((B, H + pad_b, W + pad_r, C))
    grid[:, :H, :W] = x.reshape(B, H, W, C)
    real = np.zeros((H + pad_b, W + pad_r))
    real[:H, :W] = 1
    out = np.zeros_like(grid)
    d = C // heads
    for r in range(0, H + pad_b, ws):
        for c in range(0, W + pad_r, ws):
            tokens = grid[:, r : r + ws, c : c + ws].reshape(B, ws * ws, C)
            flags = real[r : r + ws, c : c + ws].reshape(-1)
            qkv = (tokens @ qkv_w.T + qkv_b).reshape(B, ws * ws, 3, heads, d).transpose(2, 0, 3, 1, 4)
            logits = qkv[0] @ qkv[1].transpose(0, 1, 3, 2) * d**-0.5
            if masked:
                logits = logits + np.where(flags[:, None] != flags[None, :], -1000.0, 0.0)
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            win = (p @ qkv[2]).transpose(0, 2, 1, 3).reshape(B, ws, ws, C)
            out[:, r : r + ws, c : c + ws] = win
    return out[:, :H, :W].reshape(B, N, C) @ proj_w.T + proj_b


@pytest.mark.parametrize(
    "H, W, masked",
    [(6, 6, True), (7, 10, True), (6, 8, False), (8, 5, False), (8, 8, False)],
    ids=["both-pads", "both-pads-odd", "pad_r-zero-quirk", "pad_b-zero-quirk", "no-pad"],
)
@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_segmentation_lsa_masks_only_when_both_pads_are_positive(framework, H, W, masked):
    """The official mask fill ``mask[:, -pad:]`` with pad == 0 covers the whole axis, so a grid padded on one
    side only is attended without a mask (its zero tokens act as keys); both models must keep that."""
    rng = np.random.default_rng(H * 100 + W)
    C, heads, ws = 12, 3, 4
    params = {
        "qkv.weight": rng.standard_normal((3 * C, C)) / C**0.5,
        "qkv.bias": 0.3 * rng.standard_normal(3 * C),
        "proj.weight": rng.standard_normal((C, C)) / C**0.5,
        "proj.bias": 0.02 * rng.standard_normal(C),
    }
    x = rng.standard_normal((2, H * W, C))
    expected = _window_attention_reference(
        x, H, W, ws, heads, params["qkv.weight"], params["qkv.bias"], params["proj.weight"], params["proj.bias"], masked
    )
    if framework == "torch":
        torch = pytest.importorskip("torch")
        from torch_models.twins import GroupAttention

        attn = GroupAttention(C, heads, qkv_bias=True, ws=ws).to(torch.float64).eval()
        attn.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
        attn.pad_to_window = True
        with torch.no_grad():
            got = attn(torch.from_numpy(x), H, W).numpy()
    else:
        paddle = pytest.importorskip("paddle")
        from paddle_models.twins import GroupAttention

        attn = GroupAttention(C, heads, qkv_bias=True, ws=ws)
        attn.to(dtype="float64")
        attn.eval()
        attn.set_state_dict(
            {k: paddle.to_tensor(np.ascontiguousarray(v.T if k.endswith("weight") else v)) for k, v in params.items()}
        )
        attn.pad_to_window = True
        with paddle.no_grad():
            got = attn(paddle.to_tensor(x), H, W).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)
    other = _window_attention_reference(
        x,
        H,
        W,
        ws,
        heads,
        params["qkv.weight"],
        params["qkv.bias"],
        params["proj.weight"],
        params["proj.bias"],
        not masked,
    )
    if (-H) % ws or (-W) % ws:
        assert np.abs(other - expected).max() > 1e-4, "the mask must change this case, or it tests nothing"


def test_classification_lsa_needs_whole_windows():
    torch = pytest.importorskip("torch")
    from torch_models.twins import ALTGVT

    model = ALTGVT(**SMALL_SVT).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
        with pytest.raises(ValueError, match="features_only=True"):
            model(torch.zeros(1, 3, 60, 64))
        dense = ALTGVT(**SMALL_SVT, features_only=True, extra_norm=True).eval()
        maps = dense(torch.zeros(1, 3, 60, 100))
    assert [tuple(m.shape) for m in maps] == [(1, 16, 15, 25), (1, 24, 7, 12), (1, 32, 3, 6), (1, 40, 1, 3)]


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_kinds_follow_module_classes(framework):
    if framework == "torch":
        torch = pytest.importorskip("torch")
        from torch_models import twins

        linear, modules = torch.nn.Linear, lambda m: m.named_modules()
    else:
        paddle = pytest.importorskip("paddle")
        from paddle_models import twins

        linear, modules = paddle.nn.Linear, lambda m: m.named_sublayers()
    small_pcpvt = {k: v for k, v in SMALL_SVT.items() if k != "wss"}
    models = [
        twins.ALTGVT(**SMALL_SVT, extra_norm=True),
        twins.CPVTV2(**small_pcpvt, extra_norm=True),
        twins.PCPVT(**{**small_pcpvt, "block_cls": "gvt.SBlock"}),
    ]
    for model in models:
        for name, module in modules(model):
            if name:
                assert (SPEC.kind_of(name) is LayerKind.LINEAR) == isinstance(module, linear), name


def test_block_cls_as_text():
    pytest.importorskip("torch")
    from torch_models.twins import CPVTV2

    small = {k: v for k, v in SMALL_SVT.items() if k != "wss"}
    keys = CPVTV2(**small, block_cls="gvt.SBlock").state_dict()
    assert "blocks.0.0.attn.qkv.weight" in keys and "blocks.0.0.attn.q.weight" not in keys
    with pytest.raises(ValueError, match="block_cls"):
        CPVTV2(**small, block_cls="gvt.Unknown")


def test_custom_strides_rebuild_patch_embeds_last():
    """segmentation ALTGVT(strides=...) re-creates patch_embeds after the blocks (state-dict order), and its
    scale starts from strides[-1] (the official loop multiplies at stage 0 too)."""
    pytest.importorskip("torch")
    from torch_models.twins import ALTGVT

    model = ALTGVT(**SMALL_SVT, strides=(2, 2, 1), features_only=True)
    keys = list(model.state_dict())
    assert keys[-1] == "patch_embeds.3.norm.bias" and keys[0] == "norm.weight"
    assert model.patch_embeds[3].img_size == (14, 14) and model.patch_embeds[3].patch_size == (1, 1)


def test_case_model_reads_classes_factories_and_dense_backbones():
    case = _case("svt_mini_a")
    ref = case_model(case)
    assert ref.class_name == "ALTGVT" and ref.kwargs == case["kwargs"]

    factory = case_model({"constructor": "gvt.pcpvt_base_v0", "kwargs": {"num_classes": 10}})
    assert (
        factory.class_name == "CPVTV2"
        and factory.kwargs["depths"] == [3, 4, 18, 3]
        and factory.kwargs["num_classes"] == 10
    )

    dense = case_model(
        {"constructor": "gvt.alt_gvt_small", "official_file": "segmentation/gvt.py", "kwargs": {"num_classes": 3}}
    )
    assert (
        dense.kwargs["features_only"] and dense.kwargs["extra_norm"] and "num_classes" not in dense.kwargs
    )  # the seg factories ignore kwargs
    large = case_model({"constructor": "gvt.pcpvt_large", "official_file": "segmentation/gvt.py", "kwargs": {}})
    assert (
        large.kwargs["depths"] == [3, 8, 27, 3] and large.kwargs["features_only"] and not large.kwargs.get("extra_norm")
    )

    with pytest.raises(ValueError, match="constructor"):
        case_model({"constructor": "gvt.Other", "kwargs": {}})


@pytest.mark.parametrize(
    "name, extra_norm, suffix", [("pcpvt_mini_a", False, None), ("svt_mini_a", True, ".backbone.pth")]
)
def test_case_features_build_the_segmentation_backbone(name, extra_norm, suffix):
    (features,) = case_features(_case(name))
    assert features.model.kwargs["features_only"] is True and features.model.kwargs["extra_norm"] is extra_norm
    assert features.checkpoint_suffix == suffix and features.input == "features_input"
    assert features.outputs == {"stage{i}": ""} and features.dtypes == ("float32", "float64")


def test_mmseg_layout_reads_and_writes_the_backbone():
    torch = pytest.importorskip("torch")
    from porthub import engine

    backbone = torch.load(os.path.join(DATA, "svt_mini_a.backbone.pth"), map_location="cpu", weights_only=True)
    backbone = {k: v.numpy() for k, v in backbone.items()}
    raw = {
        "meta": {"mmseg_version": "0.11.0"},
        "state_dict": {
            **{"backbone." + k: v for k, v in backbone.items()},
            "decode_head.conv_seg.weight": np.zeros((150, 512, 1, 1), np.float32),
            "auxiliary_head.conv_seg.bias": np.zeros(150, np.float32),
        },
    }
    manifest = engine.Manifest.from_list(
        "svt_mini_a.backbone", [[k, v.shape, str(v.dtype)] for k, v in backbone.items()]
    )
    layout, state = engine.detect_layout(raw, SPEC, manifest, frameworks=("torch",))
    assert layout.name == "mmseg" and list(state) == list(backbone)
    assert all(np.array_equal(state[k], backbone[k]) for k in backbone)
    written = engine.from_canonical(state, layout, SPEC)
    assert set(written) == {"state_dict", "meta"} and list(written["state_dict"]) == ["backbone." + k for k in backbone]


def _frameworks():
    return pytest.importorskip("torch"), pytest.importorskip("paddle")


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "porthub.cli", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_paddleclas_pdparams_converts_to_torch_and_loads(tmp_path):
    """A PaddleClas user's file (paddle.save of the Paddle model's state dict) -> PyTorch, strictly."""
    torch, paddle = _frameworks()
    from porthub.pairs import seeded_input
    from porthub.registry import resolve
    from porthub.runtime import build_model, run_model

    spec, variant = resolve("pcpvt_small")
    paddle.seed(0)
    pmodel = build_model(spec, variant.model(), "paddle")
    src = tmp_path / "pcpvt_small.pdparams"
    paddle.save(pmodel.state_dict(), str(src))
    p = _cli("convert", "pcpvt_small", "--to", "torch", "--src", str(src), "--out", str(tmp_path / "pcpvt_small.pth"))
    assert p.returncode == 0, p.stderr
    tmodel = build_model(spec, variant.model(), "torch")
    tmodel.load_state_dict(torch.load(tmp_path / "pcpvt_small.pth", weights_only=True), strict=True)
    x = seeded_input(variant)
    out_t, _ = run_model(tmodel, x, "torch")
    out_p, _ = run_model(pmodel, x, "paddle")
    assert np.abs(out_t - out_p).max() <= 2e-5 * max(1.0, float(np.abs(out_t).max()))


@pytest.mark.slow
def test_timm_checkpoint_converts_to_paddle(tmp_path):
    """timm's twins_svt_small: the official keys in timm's order (patch_embeds, blocks, pos_block, norm, head)."""
    torch, paddle = _frameworks()
    from porthub.pairs import seeded_input
    from porthub.registry import resolve
    from porthub.runtime import build_model, run_model

    spec, variant = resolve("twins_svt_small")
    torch.manual_seed(0)
    tmodel = build_model(spec, variant.model(), "torch")
    state = tmodel.state_dict()

    def rank(k):
        return ["patch_embeds", "pos_drops", "blocks", "pos_block", "norm", "head"].index(k.split(".")[0])

    timm_order = {k: state[k] for k in sorted(state, key=rank)}
    assert list(timm_order) != list(state)
    src = tmp_path / "twins_svt_small.pth"
    torch.save(timm_order, src)
    p = _cli("convert", "twins_svt_small", "--to", "paddle", "--src", str(src))
    assert p.returncode == 0, p.stderr
    pmodel = build_model(spec, variant.model(), "paddle")
    missing, unexpected = pmodel.set_state_dict(paddle.load(str(tmp_path / "twins_svt_small.pdparams")))
    assert not missing and not unexpected
    x = seeded_input(variant)
    out_t, _ = run_model(tmodel, x, "torch")
    out_p, _ = run_model(pmodel, x, "paddle")
    assert np.abs(out_t - out_p).max() <= 2e-5 * max(1.0, float(np.abs(out_t).max()))
