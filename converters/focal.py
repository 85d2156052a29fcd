"""Focal Transformer (v1 "Focal") and Focal-fast (v2): the layer map between the official PyTorch
checkpoints and Paddle.

Facts from microsoft/Focal-Transformer @ 57bb303 (``classification/focal_transformer.py``,
``classification/focal_transformer_v2.py``, ``classification/build.py``, ``config.py``,
``configs/*.yaml``, ``utils.py``, README).

Both official files name their model class ``FocalTransformer``; porthub's twin modules hold v1 as
``FocalTransformer`` and v2 as ``FocalTransformerV2``, and :func:`case_model` tells them apart by the
case's official ``module``.

What is a Linear: ``qkv``/``proj``/``fc1``/``fc2``/``head``, the 'fc' window pooling
``pool_layers.k`` (``Linear(ws_k**2, 1)``) and v2's ``coord2rpb_all.l.{0,2}``. The 2-D position-bias
tables (``relative_position_bias_table`` ((2ws-1)**2, nH), ``..._to_windows.k`` (nH, n)) are plain
parameters and keep their layout. The int64 index buffers (``relative_position_index*``,
``valid_ind_rolled``, ``valid_ind_unfold_k``, v2 ``window_coords``, ``topk_cloest_indice_l``) and the
float32 ones (shift ``attn_mask``, v2 ``topk_cloest_coords_l``) are persistent in both frameworks and
travel with the weights: v2's top-k tables come from a ``topk`` over tied distances, so they are read
from the checkpoint rather than rebuilt.

Limitation: with the unreleased ``focal_pool="conv"``, ``pool_layers.k`` is a depthwise Conv2d at the
same path as the 'fc' Linear; rules match paths only, so such a model runs in each framework but its
checkpoints do not convert (the engine refuses a 4-D "Linear" weight).
"""

from __future__ import annotations

from typing import Any, Mapping

from porthub.catalogue import Accuracy, Location, Release, SourceKind, Wrapping
from porthub.errors import ReferenceCaseError
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

OFFICIAL_REPO = "https://github.com/microsoft/Focal-Transformer"
OFFICIAL_COMMIT = "57bb3031582a2afb2d2a6916612bc4311316f9fc"
PAPER = (
    "Focal Self-attention for Local-Global Interactions in Vision Transformers "
    "(Yang et al., NeurIPS 2021), arXiv:2107.00641"
)
LICENCE = "MIT (LICENSE of the official repository, Copyright (c) Microsoft Corporation)"

V1_CLASS = "FocalTransformer"
V2_CLASS = "FocalTransformerV2"
V1_MODULE = "classification/focal_transformer.py"
V2_MODULE = "classification/focal_transformer_v2.py"

_BLOCK = r"layers\.\d+\.blocks\.\d+"
LAYERS = (
    LayerRule(rf"{_BLOCK}\.attn\.(?:qkv|proj)", LayerKind.LINEAR),
    LayerRule(rf"{_BLOCK}\.attn\.coord2rpb_all\.\d+\.[02]", LayerKind.LINEAR),
    LayerRule(rf"{_BLOCK}\.pool_layers\.\d+", LayerKind.LINEAR),
    LayerRule(rf"{_BLOCK}\.mlp\.fc[12]", LayerKind.LINEAR),
    LayerRule(r"head", LayerKind.LINEAR),
)

LAYOUTS = (
    Layout(
        "official",
        TORCH,
        description=(
            "the released focal[v2]-*-is224-ws7.pth as utils.save_checkpoint writes them: {'model': state_dict, "
            "'optimizer', 'lr_scheduler', 'max_accuracy', 'epoch', 'config'}; third-party v2 loaders read "
            "ckpt['model'] strictly (the files themselves are no longer downloadable, see README issue #27)"
        ),
        containers=("model",),
        wrap="model",
    ),
    Layout(
        "paddle",
        PADDLE,
        description="porthub's Paddle state_dict (.pdparams): official keys, Linear weights [in, out]",
        default_format="pdparams",
    ),
    Layout(
        "bare",
        TORCH,
        description=(
            "a bare state_dict: utils.load_checkpoint wraps files named *focal* that lack 'model' "
            "({'model': ckpt}), so some released v1 files may be bare"
        ),
    ),
)

_SIZES = {
    "tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "drop_path_rate": 0.2},
    "small": {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24], "drop_path_rate": 0.3},
    "base": {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "drop_path_rate": 0.5},
}

# the kwargs build.py passes from config.py defaults and configs/*.yaml
_SHARED_KWARGS: Mapping[str, Any] = {
    "img_size": 224,
    "patch_size": 4,
    "in_chans": 3,
    "num_classes": 1000,
    "window_size": 7,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "qk_scale": False,
    "drop_rate": 0.0,
    "ape": False,
    "patch_norm": True,
    "use_shift": False,
    "expand_stages": [0, 1, 2, 3],
    "expand_sizes": [3, 3, 3, 3],
    "expand_layer": "all",
    "focal_pool": "fc",
    "focal_stages": [0, 1, 2, 3],
    "focal_windows": [7, 5, 3, 1],
    "focal_levels": [2, 2, 2, 2],
    "use_layerscale": False,
    "use_pre_norm": False,
    "use_checkpoint": False,
}

_BASE_URL = "https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k/"


def _variant(size: str, useconv: bool, v2: bool, top1: float, top5: float, params_m: float, n_params: int,
             flops_g: float, readme_line: int) -> Variant:
    letter = size[0].upper()
    conv = "_useconv" if useconv else ""
    name = f"focal{'v2' if v2 else ''}_{size}{conv}"
    kwargs = {**_SHARED_KWARGS, **_SIZES[size], "use_conv_embed": useconv}
    if v2:
        kwargs["focal_topK"] = 128
    file = f"focal{'v2' if v2 else ''}-{size}{'-useconv' if useconv else ''}-is224-ws7.pth"
    config = f"configs/{name}_patch4_window7_224.yaml"
    aliases = [f"{name}_patch4_window7_224"]
    if v2:
        aliases.append(f"focal_fast_{size}")
    elif not useconv:
        aliases.append(f"focal_{size}_srf")
    readme_name = f"Focal-fast-{letter}" if v2 else f"Focal-{letter} (Use Conv: {'Yes' if useconv else 'No'})"
    return Variant(
        name=name,
        class_name=V2_CLASS if v2 else V1_CLASS,
        kwargs=kwargs,
        aliases=tuple(aliases),
        release_layout="official",
        input_size=(224, 224),
        num_classes=1000,
        task="classification",
        meta={
            "top1": top1,
            "top5": top5,
            "params_M": params_m,
            "num_parameters": n_params,
            "flops_G": flops_g,
            "accuracy_source": f"README.md line {readme_line}, official repo @ {OFFICIAL_COMMIT[:7]}",
            "readme_name": readme_name,
            "checkpoint_file": file,
            "checkpoint_url": _BASE_URL + file,
            "checkpoint_note": "the storage account answers PublicAccessNotPermitted since 2024 (issue #27)",
            "config": config,
            "official_module": V2_MODULE if v2 else V1_MODULE,
            "dataset": "ImageNet-1k",
            "paper": PAPER,
            "licence": LICENCE,
        },
    )


VARIANTS = (
    _variant("tiny", False, False, 82.2, 95.9, 28.9, 28_880_380, 4.9, 77),
    _variant("tiny", True, False, 82.7, 96.1, 30.8, 30_825_244, 5.2, 78),
    _variant("small", False, False, 83.6, 96.2, 51.1, 51_141_940, 9.4, 79),
    _variant("small", True, False, 83.8, 96.5, 53.1, 53_086_804, 9.7, 80),
    _variant("base", False, False, 84.0, 96.5, 89.8, 89_815_400, 16.4, 81),
    _variant("base", True, False, 84.2, 97.1, 93.3, 93_268_712, 16.8, 82),
    _variant("tiny", True, True, 82.4, 96.0, 30.2, 30_220_564, 5.0, 42),
    _variant("small", True, True, 83.6, 96.4, 51.5, 51_526_540, 9.4, 44),
    _variant("base", True, True, 84.0, 96.6, 91.2, 91_186_824, 16.4, 46),
)

_CONSTRUCTORS = {V1_CLASS: V1_CLASS, V2_CLASS: V2_CLASS, "FocalTransformerV1": V1_CLASS}


def case_model(case: Mapping[str, Any]) -> ModelRef:
    """The model of a reference case: the official ``FocalTransformer(**kwargs)`` of the case's
    ``module`` (``classification/focal_transformer_v2.py`` means Focal-fast)."""
    constructor = str(case.get("constructor", V1_CLASS)).rsplit(".", 1)[-1]
    if constructor not in _CONSTRUCTORS:
        raise ReferenceCaseError(
            f"focal case {case.get('case', '?')!r}: constructor {constructor!r} is not one of {sorted(_CONSTRUCTORS)}"
        )
    class_name = _CONSTRUCTORS[constructor]
    module = str(case.get("module", "")).replace("\\", "/")
    if class_name == V1_CLASS and module.endswith("focal_transformer_v2.py"):
        class_name = V2_CLASS
    return ModelRef(class_name, dict(case.get("kwargs", {})))


FEATURES = r"patch_embed|layers\.\d+(?:\.blocks\.\d+)?|norm"


def case_features(case: Mapping[str, Any]) -> tuple[FeatureSet, ...]:
    """Forward-hook outputs (token layout B, L, C) of the stem, every block, every stage (after its
    downsample) and the final norm, on the case input; the official run saved them in float32 only."""
    return (FeatureSet(pattern=FEATURES, dtypes=("float32",)),)


def _side(value: Any, axis: int) -> int:
    return int(value[axis]) if isinstance(value, (list, tuple)) else int(value)


def input_rule(ref: ModelRef) -> InputRule:
    """``in_chans`` channels at exactly ``img_size`` (the stem checks it, and every block is built for
    its stage resolution). That size runs only if the construction-time grids (``img // patch // 2**i``)
    are what the convs produce: the useconv stem (k7 s4 p2) gives one row more when
    ``img % 4 == 3``, a useconv downsample (k3 s2 p1) rounds odd maps up, and Focal-fast (no padding)
    needs every stage map divisible by its window (``window_size``, or the map's short side when that
    is not larger). When it cannot, ``multiple_of`` names the first broken constraint."""
    kwargs = ref.kwargs
    img_size = kwargs.get("img_size", 224)
    fixed = (_side(img_size, 0), _side(img_size, 1))
    stages = len(list(kwargs.get("depths", (2, 2, 6, 2))))
    useconv = bool(kwargs.get("use_conv_embed", False))
    window = int(kwargs.get("window_size", 7))
    patch = (_side(kwargs.get("patch_size", 4), 0), _side(kwargs.get("patch_size", 4), 1))
    grids = [(fixed[0] // patch[0] // 2**i, fixed[1] // patch[1] // 2**i) for i in range(stages)]
    # (an empty last-stage map never gets here: the constructor refuses it, window_size becomes 0)
    multiple, broken = (1, 1), ""
    if useconv and any(side % 4 == 3 for side in fixed):
        multiple, broken = (
            (4, 4),
            "the useconv stem gives (img - 3) // 4 + 1 rows, one more than the blocks expect when img % 4 == 3",
        )
    else:
        for i, grid in enumerate(grids):
            scale = (patch[0] * 2**i, patch[1] * 2**i)
            if useconv and i < stages - 1 and (grid[0] % 2 or grid[1] % 2):
                multiple = (scale[0] * 2, scale[1] * 2)
                broken = f"the useconv downsample after stage {i} rounds its odd {grid[0]}x{grid[1]} map up"
                break
            stage_window = min(grid) if min(grid) <= window else window
            if ref.class_name == V2_CLASS and (grid[0] % stage_window or grid[1] % stage_window):
                multiple = (scale[0] * stage_window, scale[1] * stage_window)
                broken = (
                    f"Focal-fast has no padding and its stage {i} map {grid[0]}x{grid[1]} is not a multiple of "
                    f"the window {stage_window}"
                )
                break
    why = (
        f"the model is built for img_size={fixed[0] if fixed[0] == fixed[1] else list(fixed)}: rebuild it with "
        "img_size=H to run another size"
    )
    return InputRule(
        channels=int(kwargs.get("in_chans", 3)),
        multiple_of=multiple,
        fixed_size=fixed,
        why=f"{broken}; {why}" if broken else why,
    )


_AT = f"microsoft/Focal-Transformer @ {OFFICIAL_COMMIT[:7]}"


def _release(variant: Variant) -> Release:
    file_name = str(variant.meta["checkpoint_file"])
    v2 = variant.name.startswith("focalv2")
    line = str(variant.meta["accuracy_source"]).split(",")[0]
    return Release(
        file_name=file_name,
        # v1: utils.load_checkpoint wraps a file named *focal* that has no 'model' key, i.e. the released
        # v1 files are bare; third-party loaders read focalv2 files with ['model']. porthub reads either.
        wrapping=Wrapping.MODEL if v2 else Wrapping.BARE,
        locations=(Location(SourceKind.URL, str(variant.meta["checkpoint_url"]),
                            note="the storage account answers PublicAccessNotPermitted since 2024 (issue #27)"),),
        licence=LICENCE,
        accuracy=Accuracy("top1", float(variant.meta["top1"]), "ImageNet-1k", f"{_AT}, {line}",
                          "224, resize 256 bicubic, crop 224"),
        verified=(f"URL {variant.meta['checkpoint_url']} ({_AT}, {line})",
                  f"top-1 {variant.meta['top1']} / top-5 {variant.meta['top5']} ({_AT}, {line})",
                  f"MIT ({_AT}, LICENSE)",
                  f"utils.py load_checkpoint accepts a bare state dict for files named *focal* ({_AT}, utils.py)"),
        unverified=(("{'model': ...} wrapping: third-party loaders only; file not inspected" if v2 else
                     "bare state dict: inferred from utils.py's special case; file not inspected"),
                    "size and sha256: not published"),
    )


SOURCES = {variant.name: _release(variant) for variant in VARIANTS}


#: float16/bfloat16 against float32 (porthub.pairs.verify_half), measured on the CPU
HALF_TOLERANCE = HalfTolerance(
    float16=0.005,
    bfloat16=0.05,
    reason=("measured 2026-12-04 on the CPU (PyTorch 2.13, focal_tiny at the registered size, seeded "
            "weights, seeded noise batch 1 and 2): worst max|diff| / max(1, max|ref|) bfloat16 1.03e-02, float16 "
            "1.30e-03; each limit is 3x that or more, rounded up: half precision keeps 8 (bfloat16) / "
            "11 (float16) mantissa bits and its rounding adds up over the blocks, softmax and normalisation"),
    measured={"bfloat16": 0.0103, "float16": 0.0013},
)


SPEC = FamilySpec(
    family="focal",
    title="Focal Transformer / Focal-fast",
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
    # config.py + data/build.py (eval): Resize(int(256/224 * 224) = 256, bicubic), CenterCrop(224),
    # timm ImageNet mean/std
    preprocessing=IMAGENET_EVAL_224,
    sources=SOURCES,
)
