"""Shunted Transformer: the layer map between the official PyTorch checkpoints and Paddle.

Facts from OliverRensu/Shunted-Transformer @ 6861101 (``SSA.py``, ``main.py``, ``datasets.py``, README).
"""

from __future__ import annotations

from typing import Any, Mapping

from porthub.catalogue import Accuracy, Location, Release, SourceKind, Wrapping
from porthub.errors import ReferenceCaseError
from porthub.inputs import smallest_side
from porthub.spec import (
    IMAGENET_EVAL_224,
    PADDLE,
    TORCH,
    FamilySpec,
    HalfTolerance,
    InputRule,
    LayerKind,
    LayerRule,
    Layout,
    ModelRef,
    Variant,
)

OFFICIAL_REPO = "https://github.com/OliverRensu/Shunted-Transformer"
OFFICIAL_COMMIT = "6861101d8f4f592da79f84294f015e1e6b150351"
PAPER = "Shunted Self-Attention via Multi-Scale Token Aggregation (Ren et al., CVPR 2022), arXiv:2111.15193"
LICENCE = "not stated: the official repository has no LICENSE file (its training code derives from DeiT, Apache-2.0)"
CLASS_NAME = "ShuntedTransformer"
CONSTRUCTOR = "SSA.ShuntedTransformer"

LAYERS = (
    LayerRule(r"block\d+\.\d+\.attn\.(?:q|kv|kv1|kv2|proj)", LayerKind.LINEAR),
    LayerRule(r"block\d+\.\d+\.mlp\.fc[12]", LayerKind.LINEAR),
    LayerRule(r"head", LayerKind.LINEAR),
    # the stem Sequential repeats (conv, BatchNorm, ReLU) num_conv+1 times (then one last conv): its
    # BatchNorms sit at indices 1, 4, 7, ... for any num_conv
    LayerRule(r"patch_embed1\.conv\.(\d+)", LayerKind.BATCHNORM, every=(3, 1)),
)

LAYOUTS = (
    Layout(
        "official",
        TORCH,
        description=(
            "the released ckpt_{T,S,B}.pth: a bare state_dict (third-party loaders use strict load_state_dict "
            "on it)"
        ),
    ),
    Layout(
        "paddle",
        PADDLE,
        description=(
            "porthub's Paddle state_dict (.pdparams): official keys, Linear weights [in, out], BatchNorm "
            "_mean/_variance"
        ),
        default_format="pdparams",
    ),
    Layout(
        "main_py",
        TORCH,
        description=(
            "the official main.py training checkpoint {'model': state_dict, 'optimizer', ...}; main.py unwraps "
            "'model' when present"
        ),
        containers=("model",),
        wrap="model",
    ),
)

_SHARED_KWARGS: Mapping[str, Any] = {
    "patch_size": 4,
    "embed_dims": [64, 128, 256, 512],
    "num_heads": [2, 4, 8, 16],
    "mlp_ratios": [8, 8, 4, 4],
    "qkv_bias": True,
    "norm_layer": "functools.partial(torch.nn.LayerNorm, eps=1e-6)",
}

_README = 'README.md "Model Zoo" table (Acc@1, #Params (M)), official repo @ ' + OFFICIAL_COMMIT[:7]


def _variant(
    name: str, letter: str, depths: list[int], num_conv: int, top1: float, params_m: float, n_params: int
) -> Variant:
    return Variant(
        name=name,
        class_name=CLASS_NAME,
        kwargs={**_SHARED_KWARGS, "depths": depths, "sr_ratios": [8, 4, 2, 1], "num_conv": num_conv},
        aliases=(f"shunted-{letter.lower()}",),
        release_layout="official",
        input_size=(224, 224),
        num_classes=1000,
        task="classification",
        meta={
            "top1": top1,
            "params_M": params_m,
            "num_parameters": n_params,
            "accuracy_source": _README,
            "checkpoint_file": f"ckpt_{letter}.pth (not named by the README; the name third-party loaders use)",
            "checkpoint_where": "Google Drive / Baidu Pan links in the README Model Zoo",
            "dataset": "ImageNet-1k",
            "paper": PAPER,
            "licence": LICENCE,
            "factory": f"SSA.{name}",
            "readme_name": f"Shunted-{letter}",
        },
    )


VARIANTS = (
    _variant("shunted_t", "T", [1, 2, 4, 1], 0, 79.8, 11.5, 11_553_576),
    _variant("shunted_s", "S", [2, 4, 12, 1], 1, 82.9, 22.4, 22_401_256),
    _variant("shunted_b", "B", [3, 4, 24, 2], 2, 84.0, 39.6, 39_614_376),
)

_FACTORIES = {f"SSA.{variant.name}": variant for variant in VARIANTS}

# The README's Model Zoo links one Google Drive folder and one Baidu Pan share for all three files.
_DRIVE = Location(SourceKind.GDRIVE, "15iZKXFT7apjUSoN2WUMAbb0tvJgyh3YP", folder=True,
                  note="a folder holding all released checkpoints: pick the file by name")
_BAIDU = Location(SourceKind.BAIDU, "https://pan.baidu.com/s/1a9nVWpw2SzP0csCBCF8DNw", code="hazr")
_REPO_AT = f"OliverRensu/Shunted-Transformer @ {OFFICIAL_COMMIT[:7]}"
_AT = f"{_REPO_AT}, README.md"


def _release(letter: str, top1: float) -> Release:
    return Release(
        file_name=f"ckpt_{letter}.pth",
        wrapping=Wrapping.BARE,
        locations=(_DRIVE, _BAIDU),
        licence=LICENCE,
        accuracy=Accuracy(
            "top1", top1, "ImageNet-1k", f"{_AT} (Model Zoo, Acc@1)", "224, resize 256 bicubic, crop 224"
        ),
        verified=(
            f"Drive folder 15iZKXFT7apjUSoN2WUMAbb0tvJgyh3YP, Baidu Pan 1a9nVWpw2SzP0csCBCF8DNw code hazr ({_AT})",
            f"Acc@1 {top1} for Shunted-{letter} ({_AT})",
            f"no LICENSE file in the repository ({_REPO_AT}, tree)",
        ),
        unverified=(
            f"file name ckpt_{letter}.pth: not printed in the README; the name downstream loaders use",
            "bare state dict: downstream code loads it with strict load_state_dict; file not inspected",
            "size and sha256: not published",
        ),
    )


SOURCES = {"shunted_t": _release("T", 79.8), "shunted_s": _release("S", 82.9), "shunted_b": _release("B", 84.0)}


def case_model(case: Mapping[str, Any]) -> ModelRef:
    """The model of a reference case: ``SSA.ShuntedTransformer(**kwargs)``, or a factory
    (``SSA.shunted_t`` ...) whose own keyword arguments the case's kwargs extend or override."""
    constructor = case.get("constructor", CONSTRUCTOR)
    kwargs = dict(case.get("kwargs", {}))
    if constructor in (CONSTRUCTOR, CLASS_NAME):
        return ModelRef(CLASS_NAME, kwargs)
    if constructor in _FACTORIES:
        kwargs.pop("pretrained", None)
        return _FACTORIES[constructor].model(**kwargs)
    known = ", ".join([CONSTRUCTOR, *_FACTORIES])
    raise ReferenceCaseError(
        f"shunted case {case.get('case', '?')!r}: constructor {constructor!r} is not one of {known}"
    )


def _stage_sides(side: int, num_stages: int) -> list[int]:
    """The token-grid side of every stage for an input side: the stem's 7x7/2 conv (padding 3) gives
    ceil(n/2) and its 2x2/2 conv floor(.../2); each later 3x3/2 conv (padding 1) gives ceil(s/2)."""
    sides = [(side + 1) // 2 // 2]
    for _ in range(1, num_stages):
        sides.append((sides[-1] + 1) // 2)
    return sides


def input_rule(ref: ModelRef) -> InputRule:
    """3 channels (the stem hard-codes them, whatever ``in_chans`` says) and no fixed size (``img_size``
    is unused); every stage with ``sr_ratio > 1`` needs its grid at least ``sr_ratio`` tokens wide,
    because the coarse key/value reduction is a ``sr x sr`` conv with stride ``sr`` (an empty map
    otherwise). 31 px for the released ``sr_ratios`` [8, 4, 2, 1]."""
    kwargs = ref.kwargs
    num_stages = int(kwargs.get("num_stages", 4))
    sr_ratios = list(kwargs.get("sr_ratios", (8, 4, 2, 1)))
    depths = list(kwargs.get("depths", (3, 4, 6, 3)))

    def accepts(side: int) -> bool:
        return all(grid >= 1 and (depths[i] == 0 or sr_ratios[i] <= 1 or grid >= sr_ratios[i])
                   for i, grid in enumerate(_stage_sides(side, num_stages)))

    least = smallest_side(accepts)
    return InputRule(
        channels=3,
        min_size=(least, least),
        why=f"stage grids are the input / 4, 8, 16, 32 and each attention with sr_ratio r reduces its grid with an "
            f"r x r conv, so sr_ratios {sr_ratios} need at least {least} px a side",
    )


#: float16/bfloat16 against float32 (porthub.pairs.verify_half), measured on the CPU
HALF_TOLERANCE = HalfTolerance(
    float16=0.005,
    bfloat16=0.03,
    reason=("measured 2026-12-04 on the CPU (PyTorch 2.13, shunted_t at the registered size, seeded "
            "weights, seeded noise batch 1 and 2): worst max|diff| / max(1, max|ref|) bfloat16 8.89e-03, float16 "
            "1.15e-03; each limit is 3x that or more, rounded up: half precision keeps 8 (bfloat16) / "
            "11 (float16) mantissa bits and its rounding adds up over the blocks, softmax and normalisation"),
    measured={"bfloat16": 0.00889, "float16": 0.00115},
)


SPEC = FamilySpec(
    family="shunted",
    title="Shunted Transformer",
    layers=LAYERS,
    layouts=LAYOUTS,
    variants=VARIANTS,
    case_model=case_model,
    input_rule=input_rule,
    paper=PAPER,
    official_repo=f"{OFFICIAL_REPO} @ {OFFICIAL_COMMIT}",
    licence=LICENCE,
    half_tolerance=HALF_TOLERANCE,
    # datasets.build_transform (eval): Resize(int(256/224 * size), bicubic), CenterCrop(size), timm ImageNet mean/std
    preprocessing=IMAGENET_EVAL_224,
    sources=SOURCES,
)
