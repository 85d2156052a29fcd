"""Focal Transformer behaviour the registry-driven tests cannot see: the index buffers against the
official ones and the notes' formulas, twin agreement on the unreleased constructor options (focal
level 3, shift, ape, layerscale, pre-norm, padding on non-square maps, mean/max pooling, Focal-fast
with three levels), Focal-fast's top-k tables taken from the checkpoint, Paddle's float64 cast of
index buffers, case parsing, the two torch layouts, and the clear errors."""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest

from converters.focal import SPEC, V1_CLASS, V2_CLASS, case_features, case_model
from porthub.engine import Manifest, detect_layout
from porthub.spec import ModelRef

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "official", "focal")

TINY = {
    "embed_dim": 8,
    "depths": [1, 2, 1, 1],
    "num_heads": [1, 2, 2, 4],
    "window_size": 7,
    "mlp_ratio": 2.0,
    "num_classes": 4,
    "expand_sizes": [3, 3, 3, 3],
    "focal_windows": [7, 5, 3, 1],
    "focal_levels": [2, 2, 2, 2],
}

CONFIGS = {
    # 96x128 -> stage maps 24x32, 12x16, 6x8, 3x4: padded to 28x35 / 14x21, one window below; level 3 trims
    "v1-nonsquare-pad-level3-odd": (
        V1_CLASS,
        {
            **TINY,
            "img_size": [96, 128],
            "focal_levels": [3, 3, 2, 2],
            "expand_layer": "odd",
            "qk_scale": 0.3,
            "norm_layer": "functools.partial(torch.nn.LayerNorm, eps=1e-6)",
        },
    ),
    "v1-shift-ape-layerscale-prenorm-even": (
        V1_CLASS,
        {
            **TINY,
            "img_size": 112,
            "focal_levels": [3, 3, 2, 2],
            "use_shift": True,
            "ape": True,
            "use_layerscale": True,
            "use_pre_norm": True,
            "expand_layer": "even",
        },
    ),
    "v1-useconv-ws5-padding": (
        V1_CLASS,
        {
            **TINY,
            "img_size": 96,
            "window_size": 5,
            "expand_sizes": [2, 2, 2, 2],
            "focal_windows": [5, 3, 3, 1],
            "use_conv_embed": True,
        },
    ),
    "v1-mean-pool-partial-stages": (
        V1_CLASS,
        {**TINY, "img_size": 112, "focal_pool": "mean", "focal_stages": [0, 2, 3], "patch_norm": False},
    ),
    "v1-max-pool": (V1_CLASS, {**TINY, "img_size": 112, "focal_pool": "max", "qkv_bias": False}),
    "v2-level3-shift-ape": (
        V2_CLASS,
        {
            **TINY,
            "img_size": 112,
            "focal_levels": [3, 2, 2, 2],
            "focal_topK": 20,
            "use_shift": True,
            "ape": True,
            "use_layerscale": True,
            "use_pre_norm": True,
        },
    ),
    "v2-useconv": (V2_CLASS, {**TINY, "img_size": 224, "focal_topK": 12, "use_conv_embed": True}),
}


def _case(name):
    with open(os.path.join(DATA, name + ".json")) as f:
        return json.load(f)


def _input(kwargs, seed=0):
    img = kwargs["img_size"]
    H, W = (img, img) if isinstance(img, int) else img
    return np.random.default_rng(seed).standard_normal((2, 3, H, W)).astype("float32")


def _random_state(ref, seed=0):
    """The torch model's own state with every learned tensor replaced by noise (buffers kept)."""
    from porthub.runtime import build_model

    model = build_model(SPEC, ref, "torch")
    buffers = {name for name, _ in model.named_buffers()}
    rng = np.random.default_rng(seed)
    state = OrderedDict()
    for key, value in model.state_dict().items():
        arr = _np(value)
        if key not in buffers:
            scale = 0.5 if "relative_position_bias_table" in key else 1.0 / np.sqrt(max(1, int(np.prod(arr.shape[1:]))))
            arr = (scale * rng.standard_normal(arr.shape)).astype(arr.dtype)
            if key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "gamma_1", "gamma_2")):
                arr = (1.0 + 0.1 * rng.standard_normal(arr.shape)).astype(arr.dtype)
        state[key] = np.array(arr, copy=True)
    return state


def _np(tensor):
    return tensor.detach().numpy() if hasattr(tensor, "detach") else tensor.numpy()


def _run(ref, state, framework, dtype, x, hook=None):
    from porthub.runtime import build_model, load_state, run_model

    model = build_model(SPEC, ref, framework, dtype)
    load_state(model, state, SPEC, framework)
    out, captured = run_model(model, x, framework, dtype, hooks=[hook] if hook else [])
    return captured[hook] if hook else out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_twins_agree_on_every_constructor_option(name):
    """Torch and Paddle give the same logits from the same weights, in float64 to round-off."""
    pytest.importorskip("torch")
    pytest.importorskip("paddle")
    class_name, kwargs = CONFIGS[name]
    ref = ModelRef(class_name, kwargs)
    state = _random_state(ref)
    x = _input(kwargs)
    a = _run(ref, state, "torch", "float64", x)
    b = _run(ref, state, "paddle", "float64", x)
    assert a.shape == (2, kwargs["num_classes"]) and a.dtype == np.float64
    assert np.abs(a - b).max() < 1e-10 * max(1.0, np.abs(a).max())
    c = _run(ref, state, "paddle", "float32", x)
    assert np.abs(a - c).max() < 2e-5 * max(1.0, np.abs(a).max())


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_index_buffers_are_the_official_ones_persistent_int64(framework):
    """A model built from mini_a's kwargs carries, as persistent int64 state, exactly the index
    buffers of the official checkpoint (Swin index, rolled-neighbour and pooled-window indices)."""
    pytest.importorskip(framework)
    from porthub.io import load_checkpoint
    from porthub.runtime import build_model

    case = _case("mini_a")
    official = load_checkpoint(os.path.join(DATA, "mini_a.pth"))["model"]
    model = build_model(SPEC, case_model(case), framework)
    state = {k: _np(v) for k, v in model.state_dict().items()}
    ints = [k for k, v in official.items() if v.dtype.kind == "i"]
    assert len(ints) == 10
    for key in ints:
        assert state[key].dtype == np.int64, key
        assert np.array_equal(state[key], official[key]), key
    assert official["layers.0.blocks.0.attn.valid_ind_rolled"].shape == (132,)


def _relative_index(q, k):
    """The notes' formula: query minus key coordinates, shifted by k-1, row term times q+k-1."""
    qc = np.stack(np.meshgrid(np.arange(q), np.arange(q), indexing="ij")).reshape(2, -1)
    kc = np.stack(np.meshgrid(np.arange(k), np.arange(k), indexing="ij")).reshape(2, -1)
    rel = qc[:, :, None] - kc[:, None, :]
    return (rel[0] + k - 1) * (q + k - 1) + rel[1] + k - 1


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_focal_level_3_buffers_follow_the_official_formulas(framework):
    """Level 2 (k=1): a stride-2 unfold of kernel 2*(fw//2)+3 keeps its bottom-right (fw+1)^2 cells."""
    pytest.importorskip(framework)
    from porthub.runtime import build_model

    _, kwargs = CONFIGS["v1-shift-ape-layerscale-prenorm-even"]
    model = build_model(SPEC, ModelRef(V1_CLASS, kwargs), framework)
    state = {k: _np(v) for k, v in model.state_dict().items()}
    attn = "layers.1.blocks.0.attn."
    fw, ws = 5, 7
    kernel = 2 * (fw // 2) + 3
    mask = np.zeros((kernel, kernel))
    mask[1:, 1:] = 1
    assert np.array_equal(state[attn + "valid_ind_unfold_1"], np.flatnonzero(mask))
    assert np.array_equal(state[attn + "relative_position_index_1"], _relative_index(ws, fw + 1))
    assert np.array_equal(state[attn + "relative_position_index_0"], _relative_index(ws, fw))
    assert state[attn + "relative_position_bias_table_to_windows.1"].shape == (2, (ws + fw) ** 2)
    # expand_layer "even": block 0 has no neighbours, block 1 (shifted by ws // 2) has them and a float mask
    assert attn + "valid_ind_rolled" not in state
    assert state["layers.1.blocks.1.attn.valid_ind_rolled"].dtype == np.int64
    shift_mask = state["layers.1.blocks.1.attn_mask"]
    assert shift_mask.dtype == np.float32 and shift_mask.shape == (4, 49, 49)
    assert set(np.unique(shift_mask)) == {0.0, -100.0}


def test_focal_fast_topk_tables_are_read_from_the_checkpoint():
    """The top-k tables are state: different (valid) tables in the checkpoint change the output, the
    same way in both frameworks, so neither rebuilds them."""
    pytest.importorskip("torch")
    pytest.importorskip("paddle")
    _, kwargs = CONFIGS["v2-useconv"]
    ref = ModelRef(V2_CLASS, kwargs)
    state = _random_state(ref, seed=3)
    x = _input(kwargs, seed=3)
    block = "layers.0.blocks.0"
    before = _run(ref, state, "torch", "float64", x, block)
    key = "layers.0.blocks.0.attn.topk_cloest_indice_0"
    assert state[key].dtype == np.int64 and state[key].shape == (64, 12)
    state[key] = np.ascontiguousarray(np.roll(state[key], 5, axis=0))
    coords = "layers.0.blocks.0.attn.topk_cloest_coords_0"
    assert state[coords].dtype == np.float32 and state[coords].shape == (64, 49, 12, 2)
    a = _run(ref, state, "torch", "float64", x, block)
    b = _run(ref, state, "paddle", "float64", x, block)
    assert np.abs(a - before).max() > 1e-4
    assert np.abs(a - b).max() < 1e-10


def test_paddle_layer_to_float64_keeps_indices_usable():
    """``Layer.to(dtype="float64")`` casts int64 buffers to float64 too; the model still indexes right."""
    pytest.importorskip("torch")
    paddle = pytest.importorskip("paddle")
    from porthub.io import load_checkpoint
    from porthub.runtime import build_model, load_state, run_model

    case = _case("mini_a")
    ref = case_model(case)
    official = load_checkpoint(os.path.join(DATA, "mini_a.pth"))["model"]
    model = build_model(SPEC, ref, "paddle", "float32")
    load_state(model, official, SPEC, "paddle")
    model.to(dtype="float64")
    assert model.state_dict()["layers.0.blocks.0.attn.relative_position_index"].dtype == paddle.float64
    x = np.load(os.path.join(DATA, "mini_a.input.npy"))
    out, _ = run_model(model, x, "paddle", "float64")
    ref_out = np.load(os.path.join(DATA, "mini_a.out64.npy"))
    assert np.abs(out - ref_out).max() < 1e-8


def test_case_model_reads_the_official_module():
    v1 = {
        "constructor": "FocalTransformer",
        "module": "classification/focal_transformer.py",
        "kwargs": {"embed_dim": 8},
    }
    v2 = {
        "constructor": "FocalTransformer",
        "module": "classification/focal_transformer_v2.py",
        "kwargs": {"focal_topK": 12},
    }
    assert case_model(v1) == ModelRef(V1_CLASS, {"embed_dim": 8})
    assert case_model(v2) == ModelRef(V2_CLASS, {"focal_topK": 12})
    assert case_model({"constructor": "FocalTransformerV2", "kwargs": {}}).class_name == V2_CLASS
    assert case_model(_case("mini_a")).class_name == V1_CLASS
    with pytest.raises(ValueError, match="constructor"):
        case_model({"constructor": "FocalNet", "kwargs": {}})
    (features,) = case_features(_case("mini_a"))
    names = np.load(os.path.join(DATA, "mini_a.features.npz")).files
    import re

    assert all(re.fullmatch(features.pattern, n) for n in names) and features.dtypes == ("float32",)


def test_variants_are_the_official_ones():
    with open(os.path.join(DATA, "variants.json")) as f:
        official = {v["id"]: v for v in json.load(f)["variants"]}
    assert {v.name for v in SPEC.variants} == set(official)
    for variant in SPEC.variants:
        facts = official[variant.name]
        assert dict(variant.kwargs) == facts["kwargs"], variant.name
        assert variant.class_name == (V2_CLASS if facts["module"].endswith("_v2.py") else V1_CLASS)
        assert variant.meta["num_parameters"] == facts["num_parameters"]
        assert variant.meta["checkpoint_file"] == facts["released_checkpoint"]["file"]
        headline = facts["headline"][-1]
        assert (variant.meta["top1"], variant.meta["top5"]) == (headline["imagenet_top1"], headline["imagenet_top5"])
        with open(os.path.join(DATA, facts["keys_file"])) as f:
            rows = json.load(f)["entries"]
        assert sum(int(np.prod(r[1])) for r in rows if r[3] == "param") == facts["num_parameters"]


def test_wrapped_and_bare_checkpoints_both_read():
    from porthub.io import load_checkpoint

    official = load_checkpoint(os.path.join(DATA, "mini_a.pth"))
    state = official["model"]
    manifest = Manifest("mini_a", OrderedDict((k, (tuple(v.shape), str(v.dtype))) for k, v in state.items()))
    assert detect_layout(official, SPEC, manifest)[0].name == "official"
    layout, read = detect_layout(dict(state), SPEC, manifest)
    assert layout.name == "bare" and list(read) == list(state)


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_errors_name_the_fix(framework):
    pytest.importorskip(framework)
    from porthub.runtime import build_model, run_model

    _, kwargs = CONFIGS["v1-max-pool"]
    model = build_model(SPEC, ModelRef(V1_CLASS, kwargs), framework)
    with pytest.raises(ValueError, match="img_size"):
        run_model(model, np.zeros((1, 3, 96, 96), "float32"), framework)
    even = build_model(SPEC, ModelRef(V1_CLASS, {**kwargs, "focal_windows": [6, 5, 3, 1]}), framework)
    with pytest.raises(ValueError, match="odd focal_window"):
        run_model(even, _input(kwargs), framework)
    with pytest.raises(ValueError, match="expand_layer"):
        build_model(SPEC, ModelRef(V1_CLASS, {**kwargs, "expand_layer": "some"}), framework)
