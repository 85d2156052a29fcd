"""CrossFormer specifics the generic tests cannot see: the group geometry against the official per-block
facts, the v1 constant buffers, the dense backbone's fallback rule and statelessness, and the layouts
that read classification checkpoints into the dense backbone."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import DATA

from converters.crossformer import (
    NEG_INF,
    SPEC,
    block_plan,
    compute_group_size,
    dpb_tables,
    group_mask,
    pad_amounts,
    v1_constants,
)
from porthub.engine import detect_layout
from porthub.io import load_checkpoint

HERE = os.path.join(DATA, "crossformer")


def _json(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as fh:
        return json.load(fh)


def _mask_shape(block, res):
    pads = block["pads"]
    mask = group_mask(res, res, pads, block["G"], block["I"], block["lsda"])
    return None if mask is None else list(mask.shape)


@pytest.mark.parametrize("case", ["mini_a", "pp_mini_a"])
def test_block_plan_is_the_official_per_block_state(case):
    data = _json(f"{case}.json")
    kwargs = data["kwargs"]
    grid = kwargs["img_size"] // kwargs["patch_size"][0]
    got = [
        [
            {"G": b["G"], "lsda": b["lsda"], "I": b["I"], "acl": b["acl"], "attn_mask": _mask_shape(b, grid // 2**i)}
            for b in stage
        ]
        for i, stage in enumerate(block_plan(kwargs))
    ]
    assert got == data["effective_per_block"]


def test_block_plan_of_every_released_variant():
    official = _json("variants.json")["variants"]
    for variant in SPEC.variants:
        rows = official[variant.meta["official_keys"]]["per_block_effective_group_size_lsda_interval_acl_hasmask"]
        got = [
            [[b["G"], b["lsda"], b["I"], b["acl"], _mask_shape(b, 56 // 2**i) is not None] for b in stage]
            for i, stage in enumerate(block_plan(variant.kwargs))
        ]
        assert got == rows, variant.name


def test_dpb_tables_follow_the_swin_index_formula():
    biases, index = dpb_tables(3, 2)
    assert biases.dtype == np.float32 and index.dtype == np.int64
    assert biases.shape == (5 * 3, 2) and index.shape == (6, 6)
    assert biases[0].tolist() == [-2.0, -1.0] and biases[-1].tolist() == [2.0, 1.0]
    coords = [(h, w) for h in range(3) for w in range(2)]
    for i, (hi, wi) in enumerate(coords):
        for j, (hj, wj) in enumerate(coords):
            assert index[i, j] == (hi - hj + 2) * 3 + (wi - wj + 1)
            assert biases[index[i, j]].tolist() == [hi - hj, wi - wj]


def test_centred_padding_masks_both_sides():
    pads = pad_amounts(5, 6, 4, pad_type=1)
    assert pads == (1, 1, 1, 2)
    mask = group_mask(5, 6, pads, 4, 1, 0)
    padded = np.ones((8, 8), dtype=bool)
    padded[1:6, 1:7] = False
    keys = padded.reshape(2, 4, 2, 4).transpose(0, 2, 1, 3).reshape(4, 16)
    assert mask.shape == (4, 16, 16)
    assert np.array_equal(mask, np.repeat(np.where(keys, NEG_INF, 0.0)[:, None, :], 16, axis=1).astype(np.float32))
    assert group_mask(8, 8, pad_amounts(8, 8, 4), 4, 1, 0) is None


def test_group_size_schedules():
    assert compute_group_size([4, 4, 14, 7], [1, 2, 3, 2], [56, 56]) == [[4], [4, 4], [14, 14, 14], [7, 7]]
    assert compute_group_size([7, 7, 14, 7], [2, 2, 6, 2], [56, 56], "7_14") == [
        [7, 7],
        [7, 7],
        [7, 7, 7, 7, 14, 14],
        [7, 7],
    ]
    with pytest.raises(ValueError, match="group_type"):
        compute_group_size([7] * 4, [2, 2, 6, 2], [56, 56], "cubic")


def test_v1_constants_are_the_released_buffers_of_mini_a():
    """The 2021 files' buffers come back bit for bit from the kwargs alone (stage 4 falls back to 7)."""
    data = _json("mini_a.json")
    released = load_checkpoint(os.path.join(HERE, "mini_a.pth"))["model"]
    rebuilt = v1_constants(data["kwargs"])
    assert set(rebuilt) == {k for k in released if k.endswith(("attn.biases", "attn.relative_position_index"))}
    for key, value in rebuilt.items():
        assert value.dtype == released[key].dtype and np.array_equal(value, released[key]), key


def test_case_layout_and_features():
    assert SPEC.case_layout(_json("mini_a.json")) == "official_v1"
    assert SPEC.case_layout(_json("pp_mini_a.json")) is None
    (features,) = SPEC.case_features(_json("pp_mini_a.json"))
    assert features.model.class_name == "CrossFormerBackbone"
    assert features.input == "features_input" and features.dtypes == ("float32",)
    assert features.model.kwargs["img_size"] == [160, 224]


def _backbone_manifest(case):
    from porthub.runtime import model_manifest

    ref = SPEC.case_features(_json(f"{case}.json"))[0].model
    return model_manifest(SPEC, ref, "torch", f"{case} backbone")


@pytest.mark.parametrize("case", ["mini_a", "pp_mini_a"])
def test_classification_checkpoints_read_into_the_dense_backbone(case):
    pytest.importorskip("torch")
    manifest = _backbone_manifest(case)
    raw = load_checkpoint(os.path.join(HERE, f"{case}.pth"))
    layout, state = detect_layout(raw, SPEC, manifest, ("torch",))
    assert layout.name == "backbone_init"
    assert list(state) == manifest.keys()


def test_dense_layout_reads_an_mmcv_detector_checkpoint():
    pytest.importorskip("torch")
    manifest = _backbone_manifest("pp_mini_a")
    weights = load_checkpoint(os.path.join(HERE, "pp_mini_a.pth"))["model"]
    detector = {f"backbone.{k}": v for k, v in weights.items() if k in manifest.entries}
    detector.update(
        {
            "neck.lateral_convs.0.conv.weight": np.zeros((4, 4, 1, 1), np.float32),
            "rpn_head.rpn_cls.bias": np.zeros(3, np.float32),
        }
    )
    layout, state = detect_layout({"meta": {}, "state_dict": detector}, SPEC, manifest, ("torch",), prefer="dense")
    assert layout.name == "dense" and list(state) == manifest.keys()


def test_dense_backbone_fallback_is_max_side_and_stateless():
    torch = pytest.importorskip("torch")
    from torch_models.crossformer import CrossFormerBackbone

    kwargs = dict(_json("pp_mini_a.json")["features"]["main"]["constructor_kwargs"])
    torch.manual_seed(0)
    model = CrossFormerBackbone(**kwargs).eval()
    block = model.layers[1].blocks[1]
    # a 5x7 map with G=8: one SDA group of max(H, W) = 7 (the short side padded and masked)
    assert block._geometry(5, 7) == (7, 2, 0)
    assert block._geometry(28, 40) == (8, 2, 1)
    big, small = torch.randn(1, 3, 224, 160), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first = model(big)
        model(small)
        again = model(big)
    for a, b in zip(first, again):
        assert torch.equal(a, b)


def test_classifier_rejects_other_sizes():
    torch = pytest.importorskip("torch")
    from torch_models.crossformer import CrossFormer

    model = CrossFormer(**_json("mini_a.json")["kwargs"]).eval()
    with pytest.raises(ValueError, match="img_size"):
        model(torch.zeros(1, 3, 192, 224))


def test_variants_carry_the_official_config_kwargs():
    official = _json("variants.json")["variants"]
    for variant in SPEC.variants:
        want = official[variant.meta["official_keys"]]
        assert list(variant.kwargs.items()) == list(want["kwargs"].items()), variant.name
        assert variant.meta["num_parameters"] == want["num_parameters"]
        assert variant.meta["top1"] == want["readme"]["top1"]
