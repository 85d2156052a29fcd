"""Twins (PCPVT and SVT): the layer map between the official PyTorch checkpoints and Paddle.

Facts from Meituan-AutoML/Twins @ c1ff671 (``gvt.py``, ``segmentation/gvt.py``, ``datasets.py``, README,
``logs/*.txt``), PaddleClas ``ppcls/arch/backbone/model_zoo/gvt.py`` and timm ``twins.py``.

Layouts: the released classification files are bare state dicts; timm's ``twins_*`` weights and PaddleClas'
``.pdparams`` use the same keys (PaddleClas stores ``nn.Linear`` weights ``[in, out]``, and names its
classifier argument ``class_num``, which porthub's models do not take: pass ``num_classes``). The mmseg
(UperNet, ADE20K) checkpoints wrap the backbone as ``{"meta", "state_dict"}`` under ``backbone.``; the SVT
backbones add ``norm_list.*`` (``extra_norm=True``), so read them into a model built with
``features_only=True, extra_norm=True``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from porthub.catalogue import Accuracy, Location, Release, SourceKind, Wrapping
from porthub.errors import ReferenceCaseError
from porthub.inputs import smallest_side
from porthub.spec import (
    IMAGENET_EVAL_224,
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
    Variant,
)

OFFICIAL_REPO = "https://github.com/Meituan-AutoML/Twins"
OFFICIAL_COMMIT = "c1ff6714969ad8ef330e75cf97bd310f7488f529"
PAPER = (
    "Twins: Revisiting the Design of Spatial Attention in Vision Transformers "
    "(Chu et al., NeurIPS 2021), arXiv:2104.13840"
)
LICENCE = "Apache-2.0 (LICENSE of the official repository)"

PCPVT_CLASS = "CPVTV2"
SVT_CLASS = "ALTGVT"
CLASSES = (PCPVT_CLASS, "PCPVT", SVT_CLASS)

# Linear layers: GSA q/kv/proj, LSA and timm-block qkv/proj, MLP fc1/fc2, the classifier. Everything else
# (patch-embed, sub-sampling and PEG convs, LayerNorms) is PLAIN; there is no BatchNorm and no buffer.
LAYERS = (
    LayerRule(r"blocks\.\d+\.\d+\.attn\.(?:q|kv|qkv|proj)", LayerKind.LINEAR),
    LayerRule(r"blocks\.\d+\.\d+\.mlp\.fc[12]", LayerKind.LINEAR),
    LayerRule(r"head", LayerKind.LINEAR),
)

MMSEG_LAYOUT = "mmseg"

LAYOUTS = (
    Layout(
        "official",
        TORCH,
        description=(
            "the released pcpvt_{small,base,large}.pth / alt_gvt_{small,base,large}.pth: a bare state_dict "
            "(timm's first Twins version loaded these files strictly with no filter)"
        ),
    ),
    Layout(
        "paddle",
        PADDLE,
        description=(
            "Paddle state_dict (.pdparams): official keys, Linear weights [in, out]; the layout of PaddleClas' "
            "pcpvt_*/alt_gvt_*_pretrained.pdparams"
        ),
        default_format="pdparams",
    ),
    Layout(
        "timm",
        TORCH,
        description=(
            "timm twins_pcpvt_*/twins_svt_* weights (HF hub timm/twins_*.in1k): the official keys and shapes, "
            "no filter function"
        ),
        default_format="safetensors",
    ),
    Layout(
        MMSEG_LAYOUT,
        TORCH,
        description=(
            "the official mmseg UperNet checkpoints (README 'Semantic Segmentation'): mmcv {'meta', 'state_dict'} with "
            "the backbone under 'backbone.' (the unused classifier norm/head included; SVT adds norm_list.*); "
            "decode_head./auxiliary_head. are not part of porthub's model"
        ),
        containers=("state_dict",),
        wrap="state_dict",
        prefix="backbone.",
        ignore=(r"(?:backbone\.)?(?:decode_head|auxiliary_head)\..*",),
        extra={"meta": {"porthub": "backbone of an official Twins mmseg checkpoint"}},
    ),
)

_NORM = "functools.partial(torch.nn.LayerNorm, eps=1e-6)"
_COMMON: Mapping[str, Any] = {"patch_size": 4, "qkv_bias": True, "norm_layer": _NORM, "sr_ratios": [8, 4, 2, 1]}
_PCPVT: Mapping[str, Any] = {
    **_COMMON,
    "embed_dims": [64, 128, 320, 512],
    "num_heads": [1, 2, 5, 8],
    "mlp_ratios": [8, 8, 4, 4],
}
_SVT: Mapping[str, Any] = {**_COMMON, "mlp_ratios": [4, 4, 4, 4], "wss": [7, 7, 7, 7]}

_README = (
    'README.md "Image Classification" table (Acc@1, FLOPs(G), #Params (M)), official repo @ ' + OFFICIAL_COMMIT[:7]
)
_SEG_README = 'README.md "Semantic Segmentation" table (UperNet, ADE20K, mIoU ss/ms)'


def _variant(name, factory, class_name, kwargs, aliases, top1, flops_g, params_m, n_params, log, ckpt, paddleclas, seg):
    return Variant(
        name=name,
        class_name=class_name,
        kwargs=dict(kwargs),
        aliases=(factory, *aliases),
        release_layout="official",
        input_size=(224, 224),
        num_classes=1000,
        task="classification",
        meta={
            "top1": top1,
            "flops_G": flops_g,
            "params_M": params_m,
            "num_parameters": n_params,
            "num_parameters_source": f"n_parameters in the official training log {log}",
            "accuracy_source": _README,
            "checkpoint_file": ckpt,
            "checkpoint_where": "Google Drive links in the README (earlier Meituan S3, as referenced by timm)",
            "factory": f"gvt.{factory}",
            "timm_name": name,
            "paddleclas_name": paddleclas,
            "paddleclas_checkpoint": f"{paddleclas}_pretrained.pdparams",
            "segmentation": {**seg, "source": _SEG_README, "layout": MMSEG_LAYOUT},
            "dataset": "ImageNet-1k",
            "paper": PAPER,
            "licence": LICENCE,
        },
    )


VARIANTS = (
    _variant(
        "twins_pcpvt_small",
        "pcpvt_small_v0",
        PCPVT_CLASS,
        {**_PCPVT, "depths": [3, 4, 6, 3]},
        ("pcpvt_small", "Twins-PCPVT-S", "PCPVT-Small"),
        81.2,
        3.7,
        24.1,
        24_106_216,
        "logs/pcpvt_s.txt",
        "pcpvt_small.pth",
        "pcpvt_small",
        {"mIoU": "46.2/47.5", "backbone_class": "pcpvt_small_v0", "extra_norm": False},
    ),
    _variant(
        "twins_pcpvt_base",
        "pcpvt_base_v0",
        PCPVT_CLASS,
        {**_PCPVT, "depths": [3, 4, 18, 3]},
        ("pcpvt_base", "Twins-PCPVT-B", "PCPVT-Base"),
        82.7,
        6.4,
        43.8,
        43_828_456,
        "logs/pcpvt_b.txt",
        "pcpvt_base.pth",
        "pcpvt_base",
        {"mIoU": "47.1/48.4", "backbone_class": "pcpvt_base_v0", "extra_norm": False},
    ),
    _variant(
        "twins_pcpvt_large",
        "pcpvt_large_v0",
        PCPVT_CLASS,
        {**_PCPVT, "depths": [3, 8, 27, 3]},
        ("pcpvt_large", "Twins-PCPVT-L", "PCPVT-Large"),
        83.1,
        9.5,
        60.9,
        60_989_672,
        "logs/pcpvt_l.txt",
        "pcpvt_large.pth",
        "pcpvt_large",
        {"mIoU": "48.6/49.8", "backbone_class": "pcpvt_large", "extra_norm": False},
    ),
    _variant(
        "twins_svt_small",
        "alt_gvt_small",
        SVT_CLASS,
        {**_SVT, "embed_dims": [64, 128, 256, 512], "num_heads": [2, 4, 8, 16], "depths": [2, 2, 10, 4]},
        ("Twins-SVT-S", "ALTGVT-Small"),
        81.7,
        2.8,
        24.0,
        24_060_776,
        "logs/svt_s.txt",
        "alt_gvt_small.pth",
        "alt_gvt_small",
        {"mIoU": "46.2/47.1", "backbone_class": "alt_gvt_small", "extra_norm": True},
    ),
    _variant(
        "twins_svt_base",
        "alt_gvt_base",
        SVT_CLASS,
        {**_SVT, "embed_dims": [96, 192, 384, 768], "num_heads": [3, 6, 12, 24], "depths": [2, 2, 18, 2]},
        ("Twins-SVT-B", "ALTGVT-Base"),
        83.2,
        8.3,
        56.0,
        56_070_952,
        "logs/svt_b.txt",
        "alt_gvt_base.pth",
        "alt_gvt_base",
        {"mIoU": "47.4/48.9", "backbone_class": "alt_gvt_base", "extra_norm": True},
    ),
    _variant(
        "twins_svt_large",
        "alt_gvt_large",
        SVT_CLASS,
        {**_SVT, "embed_dims": [128, 256, 512, 1024], "num_heads": [4, 8, 16, 32], "depths": [2, 2, 18, 2]},
        ("Twins-SVT-L", "ALTGVT-Large"),
        83.7,
        14.8,
        99.2,
        99_271_400,
        "logs/svt_l.txt",
        "alt_gvt_large.pth",
        "alt_gvt_large",
        {"mIoU": "48.8/50.2", "backbone_class": "alt_gvt_large", "extra_norm": True},
    ),
)

_AT = f"Meituan-AutoML/Twins @ {OFFICIAL_COMMIT[:7]}, README.md"
_TIMM_RELEASE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vt3p-weights/"
_NOTES_SHA = "sha256 of timm's Hub model.safetensors: from the shared notes (HF file pages), not re-read here"
#: the Hub copies whose sha256 and size were read on their HF file pages
#: (huggingface.co/timm/<repo>/blob/main/model.safetensors)
_HUB_SHA_READ = {"twins_pcpvt_base": 175_000_000, "twins_pcpvt_large": 244_000_000}
# variant -> (Drive file id of the classification file, timm release file, timm Hub sha256 or "", timm Hub size or None)
_TWINS_FILES = {
    "twins_pcpvt_small": ("1TWIx_8M-4y6UOKtbCgm1v-UVQ-_lYe6X", "twins_pcpvt_small-e70e7e7a.pth", "", None),
    "twins_pcpvt_base": ("1BsD3ZRivvPsHoZB1AX-tbirFLtCln8ky", "twins_pcpvt_base-e5ecb09b.pth",
                         "5722f0d29662fd5ff69a21701caaf5feebd1d657adb62391a75798c43b37760f", None),
    "twins_pcpvt_large": ("17xZXOWEcSGs0quBmMEkBYCxjPRYH-L45", "twins_pcpvt_large-d273f802.pth",
                          "423acdd738d41f7ed50bbafbfbf3e50f6ea098b5704bb749a969f1992ddd84c3", None),
    "twins_svt_small": ("131SVOphM_-SaBytf4kWjo3ony5hpOt4S", "twins_svt_small-42e5f78c.pth",
                        "46e4bd7b30ae9ae3f2e9ec4fb669439c5f9676c6bc787687923424d704a06c1a", None),
    "twins_svt_base": ("1s83To8xgDWY6Ad8VBP3Nx9gqY709rrGu", "twins_svt_base-c2265010.pth", "", None),
    "twins_svt_large": ("1um39wxIaicmOquP2fr_SiZdxNCUou8w-", "twins_svt_large-90f6aaa9.pth",
                        "2fbe754f6e595bd07294f381302e0b3f1d449176977e35e4f30200fe4f3bcf97", None),
}


def _release(variant: Variant) -> Release:
    drive, timm_file, hub_sha, hub_size = _TWINS_FILES[variant.name]
    file_name = str(variant.meta["checkpoint_file"])
    hub_repo = "timm/" + variant.name + ".in1k"
    if variant.name in _HUB_SHA_READ:
        sha_fact = (f"sha256 {hub_sha[:12]}... of {hub_repo}/model.safetensors (about "
                    f"{_HUB_SHA_READ[variant.name] // 1_000_000} MB): read on its HF file page")
    else:
        sha_fact = _NOTES_SHA if hub_sha else "sha256 of timm's Hub copy: not known"
    return Release(
        file_name=file_name,
        wrapping=Wrapping.BARE,
        locations=(
            Location(SourceKind.GDRIVE, drive, filename=file_name),
            Location(
                SourceKind.URL,
                _TIMM_RELEASE + timm_file,
                copy_of_original=False,
                wrapping=Wrapping.BARE,
                note="timm's 2021 mirror of the Meituan S3 originals; the 8-hex suffix starts its sha256",
            ),
            Location(
                SourceKind.HF,
                hub_repo,
                filename="model.safetensors",
                copy_of_original=False,
                sha256=hub_sha,
                size=hub_size,
                wrapping=Wrapping.SAFETENSORS,
                note="timm's re-save (fp32, timm key names = official keys); timm evaluates it at crop 0.9, "
                "the authors at 0.875",
            ),
        ),
        licence=LICENCE,
        accuracy=Accuracy(
            "top1",
            float(variant.meta["top1"]),
            "ImageNet-1k",
            f"{_AT} (Image Classification, Acc@1)",
            "224, resize 256 bicubic, crop 224 (crop fraction 0.875)",
        ),
        verified=(
            f"file name {file_name} and Google Drive id {drive} ({_AT}, Image Classification table)",
            f"Acc@1 {variant.meta['top1']} ({_AT})",
            f"Apache-2.0 (Meituan-AutoML/Twins @ {OFFICIAL_COMMIT[:7]}, LICENSE)",
            f"the Semantic Segmentation table reuses the name {file_name} for a different Drive file ({_AT})",
            *([sha_fact] if variant.name in _HUB_SHA_READ else []),
        ),
        unverified=(
            "bare state dict: inferred from timm loading the originals strictly, no filter; file not inspected",
            "size and sha256 of the authors' file: not published",
            f"timm mirror URL {timm_file}: from timm's git history (shared notes), not read here",
            *([] if variant.name in _HUB_SHA_READ else [sha_fact]),
        ),
        notes=(
            "the segmentation checkpoints carry the same file names: porthub keys its cache by location, never by name",
        ),
    )


SOURCES = {variant.name: _release(variant) for variant in VARIANTS}

# gvt.py factories take **kwargs on top of their own; segmentation/gvt.py's factory classes ignore every
# argument and build the backbone with extra_norm=True for SVT (their drop-path rates do not matter in eval).
_FACTORIES = {variant.aliases[0]: variant for variant in VARIANTS}
_SEG_FACTORIES = {"pcpvt_small_v0": "pcpvt_small_v0", "pcpvt_base_v0": "pcpvt_base_v0", "pcpvt_large": "pcpvt_large_v0",
                  "alt_gvt_small": "alt_gvt_small", "alt_gvt_base": "alt_gvt_base", "alt_gvt_large": "alt_gvt_large"}
_DENSE_FILES = ("segmentation/gvt.py", "detection/gvt.py")


def _is_dense(case: Mapping[str, Any]) -> bool:
    return str(case.get("official_file", "gvt.py")) in _DENSE_FILES


def case_model(case: Mapping[str, Any]) -> ModelRef:
    """The model of a reference case: ``gvt.CPVTV2`` / ``gvt.ALTGVT`` / ``gvt.PCPVT`` with the case's kwargs, or
    a factory (``gvt.pcpvt_small_v0`` ...) extended by them. Cases of ``segmentation/gvt.py`` or
    ``detection/gvt.py`` build the dense backbone (``features_only=True``)."""
    constructor = str(case.get("constructor", f"gvt.{PCPVT_CLASS}"))
    name = constructor.rsplit(".", 1)[-1]
    kwargs = dict(case.get("kwargs", {}))
    kwargs.pop("pretrained", None)
    dense = _is_dense(case)
    if name in CLASSES:
        ref = ModelRef(name, kwargs)
    elif dense and name in _SEG_FACTORIES:
        variant = _FACTORIES[_SEG_FACTORIES[name]]
        ref = variant.model(extra_norm=variant.class_name == SVT_CLASS)
    elif name in _FACTORIES:
        ref = _FACTORIES[name].model(**kwargs)
    else:
        known = ", ".join([*CLASSES, *_FACTORIES])
        raise ReferenceCaseError(
            f"twins case {case.get('case', '?')!r}: constructor {constructor!r} is not one of {known}"
        )
    if dense:
        return ModelRef(ref.class_name, {**ref.kwargs, "features_only": True})
    return ref


def _features_extra_norm(case: Mapping[str, Any], class_name: str) -> bool:
    """The official dense backbones use extra_norm=True for SVT and False for PCPVT; a case's
    ``features.source`` may say otherwise explicitly."""
    source = str(case.get("features", {}).get("source", ""))
    match = re.search(r"extra_norm\s*=\s*(True|False)", source)
    if match:
        return match.group(1) == "True"
    return class_name == SVT_CLASS


def case_features(case: Mapping[str, Any]) -> list[FeatureSet]:
    """``stage{i}`` of ``<case>.features.npz``: the official segmentation backbone on ``features_input``, i.e.
    the case's model with ``features_only=True`` (``extra_norm`` as that backbone has it), weights from
    ``<case>.backbone.pth`` when the backbone has keys the classifier lacks."""
    features = case.get("features")
    if not features:
        return []
    ref = case_model(case)
    kwargs = {**ref.kwargs, "features_only": True}
    if "extra_norm" not in kwargs:
        kwargs["extra_norm"] = _features_extra_norm(case, ref.class_name)
    files = case.get("files", {})
    has_backbone = "backbone_pth" in files or bool(features.get("backbone_state_dict_keys_extra_vs_cls"))
    npz_keys = str(features.get("npz_keys", ""))
    return [
        FeatureSet(
            pattern=r"stage\d+",
            input="features_input" if "features_input.npy" in files or "input_file" in features else "input",
            model=ModelRef(ref.class_name, kwargs),
            outputs={"stage{i}": ""},
            checkpoint_suffix=".backbone.pth" if has_backbone else None,
            dtypes=("float32", "float64") if ("_f64" in npz_keys or not npz_keys) else ("float32",),
        )
    ]


# the constructor defaults the rule falls back on: (depths, sr_ratios, block class)
_CLASS_DEFAULTS = {
    PCPVT_CLASS: ((3, 4, 6, 3), (8, 4, 2, 1), "Block"),
    "PCPVT": ((4, 4, 4), (4, 2, 1), "SBlock"),
    SVT_CLASS: ((4, 4, 4), (4, 2, 1), "GroupBlock"),
}


def _axis(value: Any, axis: int) -> int:
    return int(value[axis]) if isinstance(value, (list, tuple)) else int(value)


def input_rule(ref: ModelRef) -> InputRule:
    """Any channel count ``in_chans`` says; per side, the stage grids are floor(n / patch_size), then
    floor(/ 2) per stage (``strides`` for custom SVT strides). Every grid must be at least one token,
    GSA needs at least ``sr_ratio`` tokens (its k = s = sr conv), and the classification SVT's LSA
    needs each stage grid divisible by its window ``wss[i]`` (only the dense backbone,
    ``features_only=True``, pads); the rule asks for sides that are multiples of patch x strides x ws,
    so that no pixel is silently dropped by the floors."""
    kwargs = ref.kwargs
    default_depths, default_srs, default_block = _CLASS_DEFAULTS.get(ref.class_name, _CLASS_DEFAULTS[PCPVT_CLASS])
    depths = list(kwargs.get("depths", default_depths))
    sr_ratios = list(kwargs.get("sr_ratios", default_srs))
    block = kwargs.get("block_cls", default_block)
    block = (block if isinstance(block, str) else getattr(block, "__name__", "")).rsplit(".", 1)[-1]
    wss = list(kwargs.get("wss", (7, 7, 7))) if block == "GroupBlock" else []
    strides = list(kwargs.get("strides", (2, 2, 2))) if ref.class_name == SVT_CLASS else [2] * len(depths)
    pads_windows = bool(kwargs.get("features_only", False))
    gsa_stages = [k for k, depth in enumerate(depths)
                  if depth and (block == "Block" or (block == "GroupBlock" and (depth > 1 or wss[k] == 1)))]
    lsa_stages = [] if pads_windows else [k for k, depth in enumerate(depths) if depth and wss and wss[k] > 1]
    min_size, multiple, strides_text = [], [], ""
    for axis in (0, 1):
        scales = [_axis(kwargs.get("patch_size", 4), axis)]
        for i in range(1, len(depths)):
            scales.append(scales[-1] * int(strides[i - 1]))
        step = 1
        for k in lsa_stages:
            step = step * scales[k] * int(wss[k]) // math.gcd(step, scales[k] * int(wss[k]))

        def accepts(side: int, scales: list[int] = scales, step: int = step) -> bool:
            # each k = s conv floors: the grid of stage k is side // scales[k]
            grids = [side // scale for scale in scales]
            return side % step == 0 and min(grids) >= 1 and all(grids[k] >= int(sr_ratios[k]) for k in gsa_stages)

        min_size.append(smallest_side(accepts))
        multiple.append(step)
        strides_text = strides_text or "/".join(str(scale) for scale in scales)
    if lsa_stages:
        why = (f"the classification SVT attends in whole {'/'.join(str(w) for w in wss)} windows of the stride "
               f"{strides_text} stage grids and has no padding (build with features_only=True for the dense "
               f"backbone, which pads)")
    else:
        why = (
            f"the stage grids are the input / {strides_text} and GSA sub-samples them with k = s = sr_ratio convs "
            f"({sr_ratios})"
        )
    return InputRule(channels=int(kwargs.get("in_chans", 3)), min_size=(min_size[0], min_size[1]),
                     multiple_of=(multiple[0], multiple[1]), why=why)


#: float16/bfloat16 against float32 (porthub.pairs.verify_half), measured on the CPU
HALF_TOLERANCE = HalfTolerance(
    float16=0.01,
    bfloat16=0.05,
    reason=("measured 2026-12-04 on the CPU (PyTorch 2.13, twins_svt_small at the registered size, seeded "
            "weights, seeded noise batch 1 and 2): worst max|diff| / max(1, max|ref|) bfloat16 1.03e-02, float16 "
            "1.72e-03; each limit is 3x that or more, rounded up: half precision keeps 8 (bfloat16) / "
            "11 (float16) mantissa bits and its rounding adds up over the blocks, softmax and normalisation"),
    measured={"bfloat16": 0.0103, "float16": 0.00172},
)


SPEC = FamilySpec(
    family="twins",
    title="Twins (PCPVT and SVT)",
    layers=LAYERS,
    layouts=LAYOUTS,
    variants=VARIANTS,
    case_model=case_model,
    case_features=case_features,
    input_rule=input_rule,
    paper=PAPER,
    official_repo=f"{OFFICIAL_REPO} @ {OFFICIAL_COMMIT}",
    licence=LICENCE,
    half_tolerance=HALF_TOLERANCE,
    # datasets.build_transform (eval): Resize(int(256/224 * size), interpolation=3 = bicubic), CenterCrop(size),
    # timm IMAGENET_DEFAULT_MEAN/STD
    preprocessing=IMAGENET_EVAL_224,
    sources=SOURCES,
)
