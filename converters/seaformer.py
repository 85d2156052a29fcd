"""SeaFormer: the layer map between the official PyTorch checkpoints and Paddle.

Facts from fudan-zvg/SeaFormer @ 9718d05 (``seaformer-cls/seaformer.py``, ``seaformer-seg/mmseg/models/
backbones/seaformer.py``, ``decode_heads/light_head.py``, ``local_configs/seaformer/*.py``, the READMEs)
and, for the PaddleSeg key names, PaddlePaddle/PaddleSeg (``paddleseg/models/backbones/seaformer.py``,
``paddleseg/models/seaformer_seg.py``, ``paddleseg/models/layers/layer_libs.py``).

Two model classes share one spec: the ImageNet classifier ``SeaFormer`` (keys ``smb*``, ``trans*``,
``linear``) and the segmentation ``EncoderDecoder`` (keys ``backbone.*``, ``decode_head.*``, exactly the
released mmseg checkpoints). Only the classifier's ``linear`` is a Linear; every BatchNorm is a module
called ``bn`` (``Conv2d_BN.bn`` and mmcv ``ConvModule.bn``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from porthub.catalogue import Accuracy, Location, Release, SourceKind, Wrapping
from porthub.errors import ReferenceCaseError
from porthub.spec import (
    PADDLE,
    TORCH,
    FamilySpec,
    FeatureSet,
    HalfTolerance,
    InputRule,
    LayerKind,
    LayerRule,
    Layout,
    ModelRef,
    Rename,
    Variant,
)

OFFICIAL_REPO = "https://github.com/fudan-zvg/SeaFormer"
OFFICIAL_COMMIT = "9718d05b6e70d0561dda7c052b8457feed74d4d9"
PADDLESEG_REPO = "https://github.com/PaddlePaddle/PaddleSeg"
PAPER = ("SeaFormer: Squeeze-enhanced Axial Transformer for Mobile Semantic Segmentation (Wan et al., ICLR 2023), "
         "arXiv:2301.13156")
LICENCE = "Apache-2.0 (seaformer-cls/LICENSE and seaformer-seg/LICENSE)"
CLS_CLASS = "SeaFormer"
SEG_CLASS = "EncoderDecoder"

LAYERS = (
    LayerRule(r"linear", LayerKind.LINEAR),
    LayerRule(r"(?:.+\.)?bn", LayerKind.BATCHNORM),
)

# PaddleSeg's ConvBN / ConvBNReLU name their children ``_conv`` and ``_batch_norm`` where the official
# Conv2d_BN has ``c`` and ``bn``; its backbone keeps the official ``smb*``/``trans*`` structure.
PADDLESEG_BACKBONE_RENAMES = (Rename("c", "_conv"), Rename("bn", "_batch_norm"))

# PaddleSeg's SeaFormerSeg puts the head at the top level (no ``decode_head.``), calls ``conv_seg``
# ``cls_seg`` and the head's ConvModule ``conv`` ``_conv`` -- while the backbone's InvertedResidual
# ``conv`` Sequential keeps its name. A component rename cannot say "conv only under decode_head" nor
# drop a leading component, so this map is a pair of key functions (see paddleseg_file_key).
_PADDLESEG_BACKBONE = {"c": "_conv", "bn": "_batch_norm"}
_PADDLESEG_HEAD = {"conv": "_conv", "bn": "_batch_norm", "conv_seg": "cls_seg"}


def _rename_modules(key: str, table: Mapping[str, str]) -> str:
    *modules, leaf = key.split(".")
    return ".".join([table.get(part, part) for part in modules] + [leaf])


def paddleseg_file_key(key: str) -> str:
    """A canonical EncoderDecoder key, with the Paddle kind names already applied (``_mean``/``_variance``),
    as PaddleSeg's ``SeaFormerSeg`` state dict names it."""
    if key.startswith("backbone."):
        return _rename_modules(key, _PADDLESEG_BACKBONE)
    if key.startswith("decode_head."):
        return _rename_modules(key[len("decode_head."):], _PADDLESEG_HEAD)
    raise ValueError(f"{key!r} is not a SeaFormer segmentation key (backbone.* or decode_head.*)")


def paddleseg_canonical_key(key: str) -> str:
    """The inverse of :func:`paddleseg_file_key`."""
    if key.startswith("backbone."):
        return _rename_modules(key, {v: k for k, v in _PADDLESEG_BACKBONE.items()})
    return "decode_head." + _rename_modules(key, {v: k for k, v in _PADDLESEG_HEAD.items()})


LAYOUTS = (
    Layout(
        "timm",
        TORCH,
        description=(
            "classification release: the timm CheckpointSaver dict of seaformer-cls training "
            "({'state_dict', 'state_dict_ema', 'optimizer', ...}); read with the official seg "
            "backbone's precedence state_dict_ema > state_dict > model, written as {'state_dict': ...}"
        ),
        containers=("state_dict_ema", "state_dict", "model"),
        wrap="state_dict",
    ),
    Layout(
        "mmseg",
        TORCH,
        description=(
            "segmentation release: an mmcv checkpoint {'meta', 'state_dict', ('optimizer')} whose keys "
            "carry backbone./decode_head. (the canonical keys of EncoderDecoder)"
        ),
        containers=("state_dict",),
        wrap="state_dict",
        extra={"meta": {"mmseg_version": "0.x", "config": "fudan-zvg/SeaFormer seaformer-seg/local_configs/seaformer"}},
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
        "paddleseg_backbone",
        PADDLE,
        description=(
            "PaddleSeg's naming of the SeaFormer backbone (paddleseg/models/backbones/seaformer.py, "
            "its seaformer_*_imagenet_pretrained.pdparams): the official smb*/trans* structure with "
            "ConvBN children _conv/_batch_norm and BatchNorm _mean/_variance. For the classifier (a "
            "PaddleSeg backbone has no 'linear': allow it missing) and SeaFormerBackbone; PaddleSeg's "
            "whole SeaFormerSeg files need paddleseg_file_key/paddleseg_canonical_key"
        ),
        renames=PADDLESEG_BACKBONE_RENAMES,
        default_format="pdparams",
    ),
    Layout(
        "paddleseg",
        PADDLE,
        description=(
            "PaddleSeg's SeaFormerSeg state dict (paddleseg/models/segmentation/seaformer_seg.py): the "
            "backbone under backbone. with ConvBN children _conv/_batch_norm, the LightHead at the top "
            "level with _conv/_batch_norm and cls_seg for conv_seg, BatchNorm _mean/_variance"
        ),
        key_map=(paddleseg_canonical_key, paddleseg_file_key),
        tasks=("segmentation",),
        default_format="pdparams",
    ),
    Layout(
        "bare",
        TORCH,
        description="a bare state_dict (what timm's clean_checkpoint and mmseg's publish step can leave)",
    ),
)

# ------------------------------------------------------------------------------------- variants
_CLS_README = (
    "README.md 'SeaFormer on ImageNet-1K' table and seaformer-cls/README.md, official repo @ " + OFFICIAL_COMMIT[:7]
)
_SEG_README = "seaformer-seg/README.md ADE20K / Cityscapes tables, official repo @ " + OFFICIAL_COMMIT[:7]

_CLS_CFGS = {
    "tiny": dict(
        cfgs=[[[3, 1, 16, 1], [3, 4, 16, 2], [3, 3, 16, 1]], [[5, 3, 32, 2], [5, 3, 32, 1]],
              [[3, 3, 64, 2], [3, 3, 64, 1]], [[5, 3, 128, 2]], [[3, 6, 160, 2]]],
        channels=[16, 16, 32, 64, 128, 160], emb_dims=[128, 160], key_dims=[16, 24], depths=[2, 2], num_heads=4,
        mlp_ratios=[2, 4]),
    "small": dict(
        cfgs=[[[3, 1, 16, 1], [3, 4, 24, 2], [3, 3, 24, 1]], [[5, 3, 48, 2], [5, 3, 48, 1]],
              [[3, 3, 96, 2], [3, 3, 96, 1]], [[5, 4, 160, 2]], [[3, 6, 192, 2]]],
        channels=[16, 24, 48, 96, 160, 192], emb_dims=[160, 192], key_dims=[16, 24], depths=[3, 3], num_heads=6,
        mlp_ratios=[2, 4]),
    "base": dict(
        cfgs=[[[3, 1, 16, 1], [3, 4, 32, 2], [3, 3, 32, 1]], [[5, 3, 64, 2], [5, 3, 64, 1]],
              [[3, 3, 128, 2], [3, 3, 128, 1]], [[5, 4, 192, 2]], [[3, 6, 256, 2]]],
        channels=[16, 32, 64, 128, 192, 256], emb_dims=[192, 256], key_dims=[16, 24], depths=[4, 4], num_heads=8,
        mlp_ratios=[2, 4]),
    "large": dict(
        cfgs=[[[3, 3, 32, 1], [3, 4, 64, 2], [3, 4, 64, 1]], [[5, 4, 128, 2], [5, 4, 128, 1]],
              [[3, 4, 192, 2], [3, 4, 192, 1]], [[5, 4, 256, 2]], [[3, 6, 320, 2]]],
        channels=[32, 64, 128, 192, 256, 320], emb_dims=[192, 256, 320], key_dims=[16, 20, 24], depths=[3, 3, 3],
        num_heads=8, mlp_ratios=[2, 4, 6]),
}

_LETTER = {"tiny": "T", "small": "S", "base": "B", "large": "L"}
_TITLE = {"tiny": "Tiny", "small": "Small", "base": "Base", "large": "Large"}


def _cls_kwargs(size: str) -> dict[str, Any]:
    cfg = _CLS_CFGS[size]
    # the factories SeaFormer_T/S/B/L pass exactly these, in this order
    return {"cfgs": cfg["cfgs"], "channels": cfg["channels"], "emb_dims": cfg["emb_dims"],
            "key_dims": cfg["key_dims"], "depths": cfg["depths"], "attn_ratios": 2,
            "mlp_ratios": cfg["mlp_ratios"], "num_heads": cfg["num_heads"], "drop_path_rate": 0.1}


_CLS_FACTS = {  # README top-1, params (M), FLOPs (G); measured parameter count; Drive link
    "tiny": (68.1, 1.8, 0.1, 1_781_096, "https://drive.google.com/file/d/1Qh1-8n-KUSGCoKVVcvjuHkTb3AWcX7o5/view"),
    "small": (73.4, 4.1, 0.2, 4_105_656, "https://drive.google.com/file/d/1_jpChZPVDFbHfxZPQFL3wKPuDcDgEtPK/view"),
    "base": (76.4, 8.7, 0.3, 8_742_664, "https://drive.google.com/file/d/1pTqkYXmEfGuRD2119vWikwd68lGNo8Lx/view"),
    "large": (79.9, 14.0, 1.2, 14_046_504, "https://drive.google.com/file/d/1FYyCHV1deCs02ims2Y-NybAMlo_a5o2p/view"),
}


def _cls_variant(size: str) -> Variant:
    top1, params_m, flops_g, n_params, link = _CLS_FACTS[size]
    letter = _LETTER[size]
    return Variant(
        name=f"seaformer_{size}",
        class_name=CLS_CLASS,
        kwargs=_cls_kwargs(size),
        aliases=(f"cls_{size}", f"SeaFormer_{letter}"),
        release_layout="timm",
        input_size=(224, 224),
        num_classes=1000,
        task="classification",
        meta={
            "official_keys": f"cls_{size}",
            "top1": top1,
            "params_M": params_m,
            "flops_G": flops_g,
            "num_parameters": n_params,
            "accuracy_source": _CLS_README,
            "checkpoint_file": (f"not named by the README (Google Drive / Baidu link only); the seg configs expect it "
                                f"as modelzoos/classification/SeaFormer_{letter}.pth"),
            "checkpoint_where": f"{link} ; Baidu Pan (password seaf)",
            "dataset": "ImageNet-1k",
            "paper": PAPER,
            "licence": LICENCE,
            "factory": f"seaformer-cls/seaformer.py SeaFormer_{letter}",
            "readme_name": f"SeaFormer-{_TITLE[size]}",
        },
    )


_NORM_CFG = {"type": "SyncBN", "requires_grad": True}
_LOSS = {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0}
_HEADS = {  # in_channels, channels, embed_dims
    "tiny": ([32, 128, 160], 96, [64, 96]),
    "small": ([48, 160, 192], 128, [96, 128]),
    "base": ([64, 192, 256], 160, [128, 160]),
    "large": ([128, 192, 256, 320], 192, [128, 160, 192]),
}


def _seg_kwargs(size: str, num_classes: int) -> dict[str, Any]:
    cfg = _CLS_CFGS[size]
    backbone: dict[str, Any] = {"cfgs": cfg["cfgs"], "channels": cfg["channels"], "emb_dims": cfg["emb_dims"],
                                "key_dims": cfg["key_dims"], "depths": cfg["depths"], "num_heads": cfg["num_heads"]}
    if size == "large":
        backbone["mlp_ratios"] = cfg["mlp_ratios"]
    backbone.update({"drop_path_rate": 0.1, "norm_cfg": dict(_NORM_CFG),
                     "init_cfg": {"type": "Pretrained",
                                  "checkpoint": f"modelzoos/classification/SeaFormer_{_LETTER[size]}.pth"}})
    in_channels, channels, embed_dims = _HEADS[size]
    decode_head = {"in_channels": in_channels, "in_index": list(range(len(in_channels))), "channels": channels,
                   "dropout_ratio": 0.1, "embed_dims": embed_dims, "num_classes": num_classes, "is_dw": True,
                   "norm_cfg": dict(_NORM_CFG), "align_corners": False, "loss_decode": dict(_LOSS)}
    return {"backbone": backbone, "decode_head": decode_head}


_ADE_FACTS = {  # README mIoU (2x8, 4x8 batch), params (M), FLOPs (G), measured parameter count
    "tiny": (35.0, 36.5, 1.7, 0.6, 1_667_318),
    "small": (38.9, 39.5, 4.0, 1.1, 3_990_118),
    "base": (41.2, 41.9, 8.6, 1.8, 8_605_654),
    "large": (43.0, 43.8, 14.0, 6.5, 13_951_510),
}
_CITY_FACTS = {  # README mIoU (1024x512 "h", 1024x1024 "f"), FLOPs (G) of each, measured parameter count
    "small": (71.1, 76.4, 2.0, 8.0, 3_973_219),
    "base": (72.2, 77.7, 3.4, 13.7, 8_584_563),
}


def _seg_meta(size: str, dataset: str, facts: dict[str, Any], configs: list[str]) -> dict[str, Any]:
    return {
        **facts,
        "accuracy_source": _SEG_README,
        "checkpoint_file": "not named by the README (Google Drive / Baidu links per config row)",
        "checkpoint_where": "seaformer-seg/README.md rows " + ", ".join(configs) + " (Baidu password seaf)",
        "configs": configs,
        "dataset": dataset,
        "paper": PAPER,
        "licence": LICENCE,
        "model_config": f"seaformer-seg/local_configs/seaformer/seaformer_{size}.py",
        "wrapping": (
            "mmcv save_checkpoint {'meta', 'state_dict', ('optimizer')} (not inspected: the files are on "
            "Drive/Baidu)"
        ),
        "paddleseg": f"{PADDLESEG_REPO} configs/seaformer (retrained, different weights; keys differ, see the spec)",
    }


def _ade_variant(size: str) -> Variant:
    miou_2x8, miou_4x8, params_m, flops_g, n_params = _ADE_FACTS[size]
    letter = _LETTER[size]
    return Variant(
        name=f"seaformer_seg_{size}",
        class_name=SEG_CLASS,
        kwargs=_seg_kwargs(size, 150),
        aliases=(f"seg_ade20k_{size}",),
        release_layout="mmseg",
        input_size=(512, 512),
        num_classes=150,
        task="segmentation",
        meta=_seg_meta(size, "ADE20K", {"official_keys": f"seg_ade20k_{size}", "miou_ss": miou_4x8,
                                        "miou_ss_2x8": miou_2x8, "params_M": params_m, "flops_G": flops_g,
                                        "num_parameters": n_params},
                       [f"SeaFormer-{letter}_512x512_2x8_160k", f"SeaFormer-{letter}_512x512_4x8_160k"]),
    )


def _city_variant(size: str) -> Variant:
    miou_h, miou_f, flops_h, flops_f, n_params = _CITY_FACTS[size]
    letter = _LETTER[size]
    return Variant(
        name=f"seaformer_seg_{size}_cityscapes",
        class_name=SEG_CLASS,
        kwargs=_seg_kwargs(size, 19),
        aliases=(f"seg_city_{size}",),
        release_layout="mmseg",
        input_size=(512, 1024),
        num_classes=19,
        task="segmentation",
        meta=_seg_meta(size, "Cityscapes", {"official_keys": f"seg_city_{size}", "miou": miou_h,
                                            "miou_1024x1024": miou_f, "flops_G": flops_h,
                                            "flops_G_1024x1024": flops_f, "num_parameters": n_params},
                       [f"SeaFormer-{letter}_1024x512_1x8_160k", f"SeaFormer-{letter}_1024x1024_1x8_160k"]),
    )


VARIANTS = (
    *(_cls_variant(size) for size in ("tiny", "small", "base", "large")),
    *(_ade_variant(size) for size in ("tiny", "small", "base", "large")),
    _city_variant("small"),
    _city_variant("base"),
)

# --------------------------------------------------------------------------------- reference cases
_SEG_CONSTRUCTOR = re.compile(r"(?:mmseg\s+)?EncoderDecoder\s*\(")


def _is_segmentation(case: Mapping[str, Any]) -> bool:
    constructor = str(case.get("constructor", ""))
    return case.get("task") == "segmentation" or bool(_SEG_CONSTRUCTOR.match(constructor))


def case_model(case: Mapping[str, Any]) -> ModelRef:
    """``SeaFormer(**kwargs)`` for classification cases, ``EncoderDecoder(backbone=SeaFormer(**kwargs.backbone),
    decode_head=LightHead(**kwargs.decode_head))`` for segmentation ones."""
    kwargs = dict(case.get("kwargs", {}))
    constructor = str(case.get("constructor", CLS_CLASS))
    if _is_segmentation(case):
        if "backbone" not in kwargs or "decode_head" not in kwargs:
            raise ReferenceCaseError(
                f"seaformer case {case.get('case', '?')!r}: a segmentation case needs kwargs.backbone "
                "and kwargs.decode_head"
            )
        return ModelRef(SEG_CLASS, kwargs)
    if constructor in (CLS_CLASS, "seaformer.SeaFormer"):
        return ModelRef(CLS_CLASS, kwargs)
    factories = {f"SeaFormer_{_LETTER[v.name.split('_')[1]]}": v for v in VARIANTS if v.class_name == CLS_CLASS}
    if constructor in factories:
        kwargs.pop("pretrained", None)
        return factories[constructor].model(**kwargs)
    known = ", ".join([CLS_CLASS, SEG_CLASS, *factories])
    raise ReferenceCaseError(
        f"seaformer case {case.get('case', '?')!r}: constructor {constructor!r} is not one of {known}"
    )


def case_features(case: Mapping[str, Any]) -> list[FeatureSet]:
    """Classification: forward hooks on ``smb{i}`` / ``trans{j}``. Segmentation: the list the backbone
    returns (``backbone_out{i}``) and the head's logits before the final resize (``decode_head_out``).
    The official fixtures hold float32 features only."""
    if _is_segmentation(case):
        outputs = {"backbone_out{i}": "backbone", "decode_head_out": "decode_head"}
        return [FeatureSet(pattern=r"backbone_out\d+|decode_head_out", outputs=outputs, dtypes=("float32",))]
    return [FeatureSet(pattern=r"smb\d+|trans\d+", dtypes=("float32",))]


def case_layout(case: Mapping[str, Any]) -> str | None:
    return "mmseg" if _is_segmentation(case) else "timm"


def input_rule(ref: ModelRef) -> InputRule:
    """3 channels: the stem conv is ``Conv2d_BN(3, channels[0])`` in both the classifier and the
    segmentation backbone (there is no ``in_chans``). No size constraint: every MobileNet conv pads
    ``k // 2`` (a stride-2 conv gives ceil(n / 2), never an empty map), the axial attention resamples
    its 16-long position embeddings to whatever length the map has, and the segmentation head resizes
    to the input; both frameworks run and agree (float64, ~1e-13) from 1x1 up."""
    return InputRule(channels=3, why="the stem convolution is built for 3 channels")


_CLS_AT = f"fudan-zvg/SeaFormer @ {OFFICIAL_COMMIT[:7]}, seaformer-cls/README.md"
_SEG_AT = f"fudan-zvg/SeaFormer @ {OFFICIAL_COMMIT[:7]}, seaformer-seg/README.md"
# variant -> (README row, README line, Google Drive id, Baidu share id); every Baidu share's password is seaf
_SEA_FILES = {
    "seaformer_tiny": ("SeaFormer-Tiny", 44, "1Qh1-8n-KUSGCoKVVcvjuHkTb3AWcX7o5", "1Kr6XEZUTHUZkZcAfSswMEw"),
    "seaformer_small": ("SeaFormer-Small", 45, "1_jpChZPVDFbHfxZPQFL3wKPuDcDgEtPK", "1LrySouv0BzRwqvi4D7vCzA"),
    "seaformer_base": ("SeaFormer-Base", 46, "1pTqkYXmEfGuRD2119vWikwd68lGNo8Lx", "1jXQmZKzneLy3g4GX8aaibQ"),
    "seaformer_large": ("SeaFormer-Large", 47, "1FYyCHV1deCs02ims2Y-NybAMlo_a5o2p", "12ZA6L4lcCLo3nEMidAI-wA"),
    # the 4x8-batch rows (the headline mIoU); the 2x8 rows are other files
    "seaformer_seg_tiny": ("SeaFormer-T_512x512_4x8_160k", 15, "1eIBkr2x5jv4eNaNUQpC-91tbIlktXSPi",
                           "1jCV8scTv--DRIlB0ml3yKg"),
    "seaformer_seg_small": ("SeaFormer-S_512x512_4x8_160k", 17, "1hGXFVc7F-vLAKe3BLjqnS06_8Fo7CO-L",
                            "1j7srQjz3F9WoGsIIjkSgBw"),
    "seaformer_seg_base": ("SeaFormer-B_512x512_4x8_160k", 19, "1flVg9imJTbgjcJrJiIn_3_lmYpaSKZuV",
                           "1QEsoxlDz-EdAnVQn5vJJww"),
    "seaformer_seg_large": ("SeaFormer-L_512x512_4x8_160k", 21, "1SUISoIpZujAYrxrvGPMJidzfYH2KYaAp",
                            "1Hybn3hKoxPdzRirVmqgjyw"),
    "seaformer_seg_small_cityscapes": ("SeaFormer-S_1024x512_1x8_160k", 26, "1MQ-nkCMyrzUF_SnWyNCrjra9bPTmr7Iq",
                                       "1AbG61WTa_SsUwrU-nrZuYA"),
    "seaformer_seg_base_cityscapes": ("SeaFormer-B_1024x512_1x8_160k", 28, "1xIcxkwjIJgvPrm4UK7UXH5A5ZkNrCqRt",
                                      "1V0iRz1KWssGiU_8Ai3bUzw"),
}


def _release(variant: Variant) -> Release:
    row, line, drive, baidu = _SEA_FILES[variant.name]
    seg = variant.task == "segmentation"
    at = _SEG_AT if seg else _CLS_AT
    letter = row.split("-")[1][0]
    file_name = f"{row}.pth" if seg else f"SeaFormer_{letter}.pth"
    value = variant.meta.get("miou_ss", variant.meta.get("miou")) if seg else variant.meta["top1"]
    dataset = str(variant.meta.get("dataset", "ImageNet-1k"))
    return Release(
        file_name=file_name,
        wrapping=Wrapping.MMCV if seg else Wrapping.TIMM_TRAIN,
        locations=(Location(SourceKind.GDRIVE, drive, filename=file_name),
                   Location(SourceKind.BAIDU, f"https://pan.baidu.com/s/{baidu}", code="seaf")),
        licence=LICENCE,
        accuracy=Accuracy("miou" if seg else "top1", float(value), dataset, f"{at} line {line}",
                          "single scale, whole image" if seg else "224, timm validate.py defaults (crop 0.875)"),
        verified=(f"row {row}: Google Drive {drive}, Baidu {baidu} ({at} line {line})",
                  f"{'mIoU' if seg else 'top-1'} {value} ({at} line {line})", f"Baidu password seaf ({at})",
                  f"Apache-2.0 (fudan-zvg/SeaFormer @ {OFFICIAL_COMMIT[:7]}, seaformer-cls/LICENSE)"),
        unverified=(f"file name {file_name}: " + ("porthub's name (the README names no file)" if seg else
                                                   "the name seaformer-seg/README.md copies a cls checkpoint to"),
                    ("mmcv runner checkpoint {meta, state_dict (backbone./decode_head.)}: inferred from training code"
                     if seg else ("timm training checkpoint; the reported accuracy very likely comes from "
                                  "state_dict_ema, which porthub reads first")),
                    "size and sha256: not published"),
    )


SOURCES = {variant.name: _release(variant) for variant in VARIANTS}


#: float16/bfloat16 against float32 (porthub.pairs.verify_half), measured on the CPU
HALF_TOLERANCE = HalfTolerance(
    float16=0.005,
    bfloat16=0.03,
    reason=("measured 2026-12-04 on the CPU (PyTorch 2.13, seaformer_tiny and seaformer_seg_tiny at the registered "
            "size, seeded weights, seeded noise batch 1 and 2): worst max|diff| / max(1, max|ref|) bfloat16 6.73e-03, "
            "float16 1.04e-03; each limit is 3x that or more, rounded up: half precision keeps 8 (bfloat16) / "
            "11 (float16) mantissa bits and its rounding adds up over the blocks, softmax and normalisation"),
    measured={"bfloat16": 0.00673, "float16": 0.00104},
)


SPEC = FamilySpec(
    family="seaformer",
    title="SeaFormer",
    layers=LAYERS,
    layouts=LAYOUTS,
    variants=VARIANTS,
    case_model=case_model,
    case_features=case_features,
    case_layout=case_layout,
    input_rule=input_rule,
    paper=PAPER,
    official_repo=f"{OFFICIAL_REPO} @ {OFFICIAL_COMMIT}",
    licence=LICENCE,
    half_tolerance=HALF_TOLERANCE,
    sources=SOURCES,
    # the classifiers' 1000-way layer (the segmentation models have none)
    classifier="linear",
    preprocessing={
        "classification": {
            # seaformer-cls/validate.py -> timm/data/config.py resolve_data_config: the model has no
            # default_cfg, so timm's defaults apply (interpolation 'bicubic', DEFAULT_CROP_PCT 0.875)
            "input_size": (224, 224),
            "resize": 256,
            "crop_fraction": 0.875,
            "interpolation": "bicubic",
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
        },
        "segmentation": {
            # local_configs/_base_/datasets/ade20k.py test pipeline; values on the 0-255 scale, RGB
            "ade20k_resize": "Resize(img_scale=(2048, 512), keep_ratio=True) then ResizeToMultiple(32)",
            "cityscapes_resize": "Resize(img_scale=(1024, 512) or (2048, 1024), keep_ratio=True)",
            "interpolation": "bilinear",
            "mean": (123.675, 116.28, 103.53),
            "std": (58.395, 57.12, 57.375),
            "to_rgb": True,
            "test_mode": "whole",
        },
    },
)
