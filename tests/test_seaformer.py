"""SeaFormer behaviour the registry-driven tests cannot see: the official quirks reproduced, the
segmentation model's head paths, the exact Paddle resize, PaddleSeg's key names, case parsing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import DATA

from converters.seaformer import (
    SPEC,
    case_features,
    case_layout,
    case_model,
    paddleseg_canonical_key,
    paddleseg_file_key,
)
from porthub.engine import framework_keys
from porthub.manifest import load_manifest
from porthub.spec import PADDLE

torch = pytest.importorskip("torch")
paddle = pytest.importorskip("paddle")

from paddle_models import seaformer as P  # noqa: E402
from torch_models import seaformer as T  # noqa: E402

HERE = os.path.join(DATA, "seaformer")
SMALL_CFGS = [[[3, 1, 8, 1], [3, 4, 16, 2]], [[5, 3, 16, 2]], [[3, 3, 24, 2]], [[5, 3, 32, 2]], [[3, 4, 40, 2]]]
SMALL_CLS = dict(
    cfgs=SMALL_CFGS,
    channels=[8, 16, 16, 24, 32, 40],
    emb_dims=[24, 32, 40],
    key_dims=[8, 12, 8],
    depths=[1, 2, 1],
    num_heads=3,
    mlp_ratios=[2, 3, 4],
)


def _seg_kwargs(**head):
    backbone = dict(SMALL_CLS, norm_cfg={"type": "SyncBN", "requires_grad": True})
    decode_head = dict(
        in_channels=[16, 24, 32, 40],
        in_index=[0, 1, 2, 3],
        channels=24,
        embed_dims=[16, 20, 24],
        num_classes=3,
        is_dw=True,
        norm_cfg={"type": "SyncBN", "requires_grad": True},
    )
    decode_head.update(head)
    return {"backbone": backbone, "decode_head": decode_head}


def _noisy_state(model, seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.dtype == torch.int64:
            state[key] = value.numpy()
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, tuple(value.shape))
        elif value.ndim >= 2 and not key.endswith("pos_embed"):
            # fan-in scaled like the official fixtures, so activations keep their size through the stages
            state[key] = rng.standard_normal(tuple(value.shape)) / np.sqrt(np.prod(value.shape[1:]))
        else:
            state[key] = 0.3 * rng.standard_normal(tuple(value.shape)) + (key.endswith("bn.weight"))
    # float32 values, as checkpoints hold: both frameworks then start from the same numbers
    return {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in state.items()}


def _twins(class_name, kwargs, shape, dtype="float64", seed=0):
    """The same weights in both frameworks; returns (torch output, paddle output)."""
    tm = getattr(T, class_name)(**kwargs).eval()
    state = _noisy_state(tm, seed)
    tm.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
    tm.to(getattr(torch, dtype))
    pm = getattr(P, class_name)(**kwargs)
    pm.eval()
    pm.to(dtype=dtype)
    converted = {}
    for key, value in state.items():
        module, leaf = key.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            continue
        leaf = {"running_mean": "_mean", "running_var": "_variance"}.get(leaf, leaf)
        value = np.asarray(value).T if module == "linear" and leaf == "weight" else np.asarray(value)
        converted[f"{module}.{leaf}"] = value.astype(dtype)
    missing, unexpected = pm.set_state_dict(converted)
    assert not missing and not unexpected
    x = np.random.default_rng(seed + 1).standard_normal(shape)
    with torch.no_grad():
        a = tm(torch.from_numpy(x.astype(dtype))).numpy()
    with paddle.no_grad():
        b = pm(paddle.to_tensor(x.astype(dtype))).numpy()
    return a, b


def test_h_sigmoid_is_relu6_literal():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    assert torch.equal(T.h_sigmoid()(x), torch.clamp(x + 3, 0, 6) / 6)
    px = paddle.to_tensor(x.numpy())
    np.testing.assert_array_equal(P.h_sigmoid()(px).numpy(), np.clip(x.numpy() + 3, 0, 6) / 6)


def test_expand_ratio_one_shifts_the_conv_indices():
    block = T.InvertedResidual(8, 8, ks=3, stride=1, expand_ratio=1)
    assert [k for k in block.state_dict() if k.endswith("c.weight")] == ["conv.0.c.weight", "conv.2.c.weight"]
    assert block.use_res_connect
    block = T.InvertedResidual(8, 16, ks=5, stride=2, expand_ratio=3)
    assert [k for k in block.state_dict() if k.endswith("c.weight")] == [
        "conv.0.c.weight",
        "conv.2.c.weight",
        "conv.4.c.weight",
    ]
    assert tuple(block.conv[2].c.weight.shape) == (24, 1, 5, 5) and not block.use_res_connect


def test_num_classes_sizes_the_classifier_1000_by_default():
    """The official code fixes the head at 1000; porthub's num_classes sizes it (issue 16)."""
    assert tuple(T.SeaFormer(**SMALL_CLS, num_classes=10).linear.weight.shape) == (10, 40)
    assert tuple(T.SeaFormer(**SMALL_CLS).linear.weight.shape) == (1000, 40)


def test_detail_branch_width_differs_between_cls_and_seg_code():
    """cls sizes dwconv dh + 2*nh_kd, seg 2*dh: equal at attn_ratios=2, and seg cannot run otherwise."""
    cls = T.SeaFormer(**dict(SMALL_CLS, attn_ratios=3))
    assert cls.trans1.transformer_blocks[0].attn.dwconv.c.weight.shape[0] == 3 * 8 * 3 + 2 * 8 * 3
    with pytest.raises(ValueError, match="attn_ratios == 2"):
        T.SeaFormerBackbone(**dict(SMALL_CLS, attn_ratios=3))


def test_backbone_outputs_smb2_then_every_trans_stage():
    model = T.SeaFormerBackbone(**SMALL_CLS).eval()
    with torch.no_grad():
        outs = model(torch.zeros(1, 3, 160, 224))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 20, 28), (1, 24, 10, 14), (1, 32, 5, 7), (1, 40, 3, 4)]


@pytest.mark.parametrize("shape", [(2, 3, 160, 288), (1, 3, 97, 131)])
def test_classifier_twins_agree_in_float64_on_non_square_inputs(shape):
    a, b = _twins("SeaFormer", SMALL_CLS, shape)
    assert np.abs(a - b).max() <= 1e-10 * max(1.0, np.abs(a).max())


@pytest.mark.parametrize(
    "head",
    [
        {},
        {"align_corners": True},
        {"dropout_ratio": 0.0},
        {"norm_cfg": None},
        {"act_cfg": {"type": "ReLU6"}, "is_dw": False},
    ],
)
def test_segmentation_twins_agree_in_float64(head):
    a, b = _twins("EncoderDecoder", _seg_kwargs(**head), (2, 3, 200, 328))
    assert a.shape == (2, 3, 200, 328)
    assert np.abs(a - b).max() <= 1e-10 * max(1.0, np.abs(a).max())


def test_head_without_norm_has_conv_biases_and_no_bn():
    keys = T.EncoderDecoder(**_seg_kwargs(norm_cfg=None)).state_dict()
    assert "decode_head.linear_fuse.conv.bias" in keys and "decode_head.fuse1.local_embedding.bn.weight" not in keys


@pytest.mark.parametrize("size", [(1, 1), (3, 4), (20, 28), (37, 51), (160, 224)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_paddle_resize_matches_torch_in_float64(size, align_corners):
    """Paddle's own kernels use a float32 coordinate ratio (about 1e-6 off in float64); ours does not."""
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 9))
    a = T._resize(torch.from_numpy(x), size, align_corners).numpy()
    b = P._resize(paddle.to_tensor(x), size, align_corners).numpy()
    assert np.abs(a - b).max() <= 1e-14
    line = x[:, :, 0, :]
    for length in (1, 3, 7, 16, 18):
        a = T._resize(torch.from_numpy(line), [length]).numpy()
        b = P._resize(paddle.to_tensor(line), [length]).numpy()
        assert np.abs(a - b).max() <= 1e-14


@pytest.mark.parametrize("name", [v.name for v in SPEC.variants if v.task == "segmentation"])
def test_paddleseg_key_map_is_a_bijection_onto_paddleseg_names(name):
    variant = next(v for v in SPEC.variants if v.name == name)
    paddle_keys = list(framework_keys(SPEC, load_manifest(SPEC, variant), PADDLE))
    file_keys = [paddleseg_file_key(k) for k in paddle_keys]
    assert len(set(file_keys)) == len(file_keys)
    assert [paddleseg_canonical_key(k) for k in file_keys] == paddle_keys
    names = set(file_keys)
    for expected in (
        "backbone.smb1.stem_block.0._conv.weight",
        "backbone.smb1.layer1.conv.0._batch_norm._mean",
        "backbone.trans1.transformer_blocks.0.attn.proj.1._conv.weight",
        "backbone.trans1.transformer_blocks.0.mlp.dwconv.bias",
        "linear_fuse._conv.weight",
        "linear_fuse._batch_norm._variance",
        "fuse1.local_embedding._conv.weight",
        "fuse1.global_act._batch_norm.weight",
        "cls_seg.weight",
        "cls_seg.bias",
    ):
        assert expected in names, expected
    assert not any(k.startswith("decode_head.") or ".c." in k or ".bn." in k for k in names)


def _case(name):
    with open(os.path.join(HERE, f"{name}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def test_case_parsing():
    cls, seg = _case("mini_a"), _case("seg_mini_a")
    assert case_model(cls).class_name == "SeaFormer" and case_layout(cls) == "timm"
    assert case_model(seg).class_name == "EncoderDecoder" and case_layout(seg) == "mmseg"
    assert set(case_model(seg).kwargs) == {"backbone", "decode_head"}
    (fs,) = case_features(seg)
    assert fs.outputs == {"backbone_out{i}": "backbone", "decode_head_out": "decode_head"}
    assert case_model({"constructor": "SeaFormer_L", "kwargs": {}}).kwargs["depths"] == [3, 3, 3]
    with pytest.raises(ValueError, match="constructor"):
        case_model({"constructor": "TopFormer", "kwargs": {}})


def test_paddleseg_whole_model_layout_round_trips_through_the_cli(tmp_path):
    """An official mmseg checkpoint -> PaddleSeg's SeaFormerSeg naming -> back, bit for bit."""
    import subprocess
    import sys

    from porthub.io import load_checkpoint

    case = os.path.join(DATA, "seaformer", "seg_mini_a.json")
    src = case[:-5] + ".pth"
    ps, back = tmp_path / "seg.pdparams", tmp_path / "back.pth"

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "porthub.cli", "convert", "seaformer", "--config", case, *a],
            capture_output=True,
            text=True,
            timeout=300,
        )

    p = run("--to", "paddle", "--layout", "paddleseg", "--src", src, "--out", str(ps))
    assert p.returncode == 0, p.stderr
    keys = list(load_checkpoint(str(ps)))
    assert "cls_seg.weight" in keys and not any(k.startswith("decode_head.") for k in keys)
    assert any(k.startswith("backbone.smb1.stem_block.0._conv.") for k in keys)
    p = run("--to", "torch", "--src", str(ps), "--out", str(back))
    assert p.returncode == 0, p.stderr
    a, b = load_checkpoint(src)["state_dict"], load_checkpoint(str(back))["state_dict"]
    a = {k: v for k, v in a.items() if not k.endswith("num_batches_tracked")}
    b = {k: v for k, v in b.items() if not k.endswith("num_batches_tracked")}
    assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
