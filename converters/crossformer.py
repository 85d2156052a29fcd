"""CrossFormer and CrossFormer++ (cheerss/CrossFormer): the declarative layer map.

The group geometry (effective group sizes, DPB coordinate tables, padding masks) lives in
:mod:`porthub.geometry.crossformer`, shared with both model files; the ``official_v1`` layout rebuilds
the constant buffers the 2021 release files carry, bit for bit, from the kwargs alone with it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # numpy is imported where the geometry is computed: `porthub list` must not pay for it
    import numpy as np

from porthub.catalogue import Accuracy, Location, Release, SourceKind, Wrapping
from porthub.errors import ReferenceCaseError
from porthub.geometry.crossformer import GROUP_TYPES, NEG_INF, compute_group_size, dpb_tables, group_mask, pad_amounts
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
    LayerTolerance,
    Layout,
    ModelRef,
    Tolerance,
    Variant,
)

__all__ = [
    "NEG_INF",
    "GROUP_TYPES",
    "compute_group_size",
    "dpb_tables",
    "pad_amounts",
    "group_mask",
    "block_plan",
    "v1_constants",
    "SPEC",
]

def _list(value, count: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


def block_plan(kwargs: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    """Per stage, per block of the classification ``CrossFormer(**kwargs)``: the effective group size
    ``G``, ``lsda`` (0 SDA, 1 LDA), interval ``I``, ``acl`` and ``pads``, as the main code fixes them
    at construction (a block whose map is not larger than its group falls back to one SDA group of
    ``min(H, W)``)."""
    import numpy as np

    img_size = kwargs.get("img_size", 224)
    img = img_size[0] if isinstance(img_size, (list, tuple)) else img_size
    patch_size = _list(kwargs.get("patch_size", [4]), 1)
    depths = list(kwargs.get("depths", [2, 2, 6, 2]))
    interval = _list(kwargs.get("crs_interval", [8, 4, 2, 1]), len(depths))
    grid = img // patch_size[0]
    groups = compute_group_size(
        _list(kwargs.get("group_size", [7, 7, 7, 7]), len(depths)),
        depths,
        [grid, grid],
        kwargs.get("group_type", "constant"),
    )
    use_acl = bool(kwargs.get("use_acl", False))
    plan = []
    for i_stage, depth in enumerate(depths):
        res = grid // 2**i_stage
        stage = []
        for j in range(depth):
            g, lsda, inter = groups[i_stage][j], j % 2, interval[i_stage]
            if res <= g:
                g, lsda = res, 0
            if kwargs.get("adaptive_interval", False):
                inter = int(np.ceil(res / g))
            size_div = inter * g if lsda == 1 else g
            stage.append(
                {
                    "G": g,
                    "lsda": lsda,
                    "I": inter,
                    "acl": (j + 1) % 3 == 0 and j < depth - 1 and use_acl,
                    "pads": pad_amounts(res, res, size_div, kwargs.get("pad_type", 0)),
                }
            )
        plan.append(stage)
    return plan


_V1_CONSTANT = re.compile(r"layers\.(\d+)\.blocks\.(\d+)\.attn\.(biases|relative_position_index)")


def v1_constants(kwargs: Mapping[str, Any], keys: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The persistent buffers of the 2021 (v1) code, ``attn.biases`` and ``attn.relative_position_index``
    of every block, from the model kwargs; they depend only on each block's effective group size."""
    if kwargs.get("use_cpe", False):
        return {}
    out: dict[str, np.ndarray] = {}
    for i, stage in enumerate(block_plan(kwargs)):
        for j, block in enumerate(stage):
            biases, index = dpb_tables(block["G"], block["G"])
            out[f"layers.{i}.blocks.{j}.attn.biases"] = biases
            out[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = index
    return out


# ----------------------------------------------------------------------------------------------- spec
OFFICIAL_REPO = "https://github.com/cheerss/CrossFormer"
OFFICIAL_COMMIT_MAIN = "795201075f0066e78408882617312084e25aef61"
OFFICIAL_COMMIT_V1 = "4fbf7501d6923f2564e8cb6d08a2d0138fc24a16"
PAPER = (
    "CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention (Wang et al., ICLR 2022), "
    "arXiv:2108.00154; CrossFormer++: A Versatile Vision Transformer Hinging on Cross-scale Attention "
    "(Wang et al., IEEE TPAMI 2023), arXiv:2303.06908"
)
LICENCE = "MIT (LICENSE of the official repository)"

CLASSIFIER = "CrossFormer"
BACKBONE = "CrossFormerBackbone"

# Linear layers: attention qkv/proj, the DPB MLP (pos_proj and the Linear at index 2 of pos1..pos3), the
# block MLP and the classifier. Convs (embedding, merging, ACL ex_conv, CPE), LayerNorms and the DPB
# tables are PLAIN; there is no BatchNorm.
_BLOCK = r"layers\.\d+\.blocks\.\d+"
LAYERS = (
    LayerRule(_BLOCK + r"\.attn\.(?:qkv|proj)", LayerKind.LINEAR),
    LayerRule(_BLOCK + r"\.attn\.pos\.(?:pos_proj|pos[123]\.2)", LayerKind.LINEAR),
    LayerRule(_BLOCK + r"\.mlp\.fc[12]", LayerKind.LINEAR),
    LayerRule(r"head", LayerKind.LINEAR),
)

_V1_BUFFERS = _BLOCK + r"\.attn\.(?:biases|relative_position_index)"
_CLASSIFIER_ONLY = (r"norm\.(?:weight|bias)", r"head\.(?:weight|bias)", _V1_BUFFERS)

LAYOUTS = (
    Layout(
        "official",
        TORCH,
        description=(
            "main-branch checkpoints (the CrossFormer++ release and anything utils.save_checkpoint writes today): "
            "{'model': state_dict} without the DPB tables (non-persistent in main)"
        ),
        containers=("model",),
        wrap="model",
    ),
    Layout(
        "official_v1",
        TORCH,
        description=(
            "the released CrossFormer-T/S/B/L files (2021 code, branch crossformer): {'model': state_dict} that also "
            "holds each block's persistent attn.biases (float32) and attn.relative_position_index (int64); both are "
            "constants of the block's effective group size, dropped on reading and rebuilt exactly on writing"
        ),
        containers=("model",),
        wrap="model",
        constants=(_V1_BUFFERS,),
        constant_fn=v1_constants,
    ),
    Layout(
        "paddle",
        PADDLE,
        description="Paddle state_dict (.pdparams): official keys, Linear weights [in, out], no DPB tables",
        default_format="pdparams",
    ),
    Layout(
        "backbone_init",
        TORCH,
        description=(
            "a classification checkpoint (either release) read into the dense backbone, as the main det/seg "
            "init_weights does (it unwraps 'state_dict' or 'model' and loads non-strictly): the classifier's "
            "norm/head and the v1 DPB tables are not backbone weights"
        ),
        containers=("model", "state_dict"),
        wrap="model",
        ignore=_CLASSIFIER_ONLY,
    ),
    Layout(
        "dense",
        TORCH,
        description=(
            "official mmdet/mmseg checkpoints (detection/README.md, segmentation/README.md): mmcv {'meta', "
            "'state_dict'} "
            "with the backbone under 'backbone.'; necks and heads are not part of porthub's model. The released v1 "
            "det/seg models were trained with the v1 backbone (see CrossFormerBackbone)"
        ),
        containers=("state_dict",),
        wrap="state_dict",
        prefix="backbone.",
        ignore=(r"(?!backbone\.).*",),
        extra={"meta": {"porthub": "backbone of an official CrossFormer mmdet/mmseg checkpoint"}},
    ),
)

_COMMON: Mapping[str, Any] = {
    "img_size": 224,
    "patch_size": [4, 8, 16, 32],
    "in_chans": 3,
    "num_classes": 1000,
    "mlp_ratio": [4.0, 4.0, 4.0, 4.0],
    "qkv_bias": True,
    "qk_scale": None,
    "drop_rate": 0.0,
    "ape": False,
    "patch_norm": True,
    "use_checkpoint": False,
    "merge_size": [[2, 4], [2, 4], [2, 4]],
    "group_type": "constant",
    "use_cpe": False,
    "pad_type": 0,
    "no_mask": False,
    "adaptive_interval": False,
}
_V1_KW = {**_COMMON, "group_size": [7, 7, 7, 7], "crs_interval": [8, 4, 2, 1], "use_acl": False}
_PP_KW = {**_COMMON, "group_size": [4, 4, 14, 7], "crs_interval": [4, 2, 1, 1], "use_acl": True}
_README = 'README.md "Image Classification" table (Params, FLOPs, Acc@1), official repo @ ' + OFFICIAL_COMMIT_MAIN[:7]


# the order of the official constructor's arguments
_KW_ORDER = (
    "img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depths", "num_heads", "group_size",
    "crs_interval", "mlp_ratio", "qkv_bias", "qk_scale", "drop_rate", "drop_path_rate", "ape", "patch_norm",
    "use_checkpoint", "merge_size", "group_type", "use_cpe", "pad_type", "no_mask", "adaptive_interval", "use_acl",
)


def _variant(name, short, paper_name, base, arch, top1, params_m, flops_g, n_params, config, link, ckpt, layout):
    merged = {**base, **arch}
    return Variant(
        name=name,
        class_name=CLASSIFIER,
        kwargs={key: merged[key] for key in _KW_ORDER},
        aliases=(short, paper_name),
        release_layout=layout,
        input_size=(224, 224),
        num_classes=1000,
        task="classification",
        meta={
            "official_keys": short,
            "top1": top1,
            "params_M": params_m,
            "flops_G": flops_g,
            "num_parameters": n_params,
            "accuracy_source": _README,
            "config_file": config,
            "checkpoint_file": ckpt,
            "checkpoint_where": link,
            "checkpoint_wrapping": "{'model': state_dict}"
            + (" with the v1 DPB tables" if layout == "official_v1" else ""),
            "dataset": "ImageNet-1k",
            "paper": PAPER,
            "licence": LICENCE,
        },
    )


VARIANTS = (
    _variant("crossformer_tiny", "crossformer_t", "CrossFormer-T", _V1_KW,
             {"embed_dim": 64, "depths": [1, 1, 8, 6], "num_heads": [2, 4, 8, 16], "drop_path_rate": 0.1},
             81.5, 27.8, 2.9, 27_776_794, "configs/crossformer/tiny_patch4_group7_224.yaml",
             "README: Google Drive 1YSkU9enn-ITyrbxLH13zNcBYvWSEidfq, BaiduCloud 1M45YXZgVvp6Ew9DO8UhdlA (nkju)",
             "crossformer-t.pth (name by the pattern of the det/seg READMEs)", "official_v1"),
    _variant("crossformer_small", "crossformer_s", "CrossFormer-S", _V1_KW,
             {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "drop_path_rate": 0.2},
             82.5, 30.7, 4.9, 30_657_394, "configs/crossformer/small_patch4_group7_224.yaml",
             "README: Google Drive 1RAkigsgr33va0RZ85S2Shs2BhXYcS6U8, BaiduCloud 1Xf4MXfb_soCnJFBeNDmoQQ (fgqj)",
             "crossformer-s.pth (named in detection/README.md and segmentation/README.md)", "official_v1"),
    _variant("crossformer_base", "crossformer_b", "CrossFormer-B", _V1_KW,
             {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24], "drop_path_rate": 0.3},
             83.4, 52.0, 9.2, 51_971_554, "configs/crossformer/base_patch4_group7_224.yaml",
             "README: Google Drive 1bK8biVCi17nz_nkt7rBfio_kywUpllSU, BaiduCloud 1f5dH__UGDXb-HoOPHT5p0A (7md9)",
             "crossformer-b.pth (name by the pattern of the det/seg READMEs)", "official_v1"),
    _variant("crossformer_large", "crossformer_l", "CrossFormer-L", _V1_KW,
             {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "drop_path_rate": 0.5},
             84.0, 92.0, 16.1, 91_971_184, "configs/crossformer/large_patch4_group7_224.yaml",
             "README: Google Drive 1zRWByVW_KIZ87NgaBkDIm60DAsGJErdG, BaiduCloud 1YJLeHy_cxLBrZLklQBCA_A (cc89)",
             "crossformer-l.pth (name by the pattern of the det/seg READMEs)", "official_v1"),
    _variant("crossformer_pp_small", "crossformerpp_s", "CrossFormer++-S", _PP_KW,
             {"embed_dim": 64, "depths": [2, 2, 18, 2], "num_heads": [2, 4, 8, 16], "drop_path_rate": 0.2},
             83.2, 23.3, 4.9, 23_325_340, "configs/crossformer_pp/small_patch4_group_const_224.yaml",
             "README: BaiduCloud 1smc_kRoogd0Ig5vfqwuGTA (crsf)", "unknown (BaiduCloud only)", "official"),
    _variant("crossformer_pp_base", "crossformerpp_b", "CrossFormer++-B", _PP_KW,
             {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24], "drop_path_rate": 0.3},
             84.2, 52.0, 9.5, 51_994_594, "configs/crossformer_pp/base_patch4_group_const_224.yaml",
             "README: BaiduCloud 13XVP0ebtNcyRMmkl11ALYg (crsf)", "unknown (BaiduCloud only)", "official"),
    _variant("crossformer_pp_large", "crossformerpp_l", "CrossFormer++-L", _PP_KW,
             {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "drop_path_rate": 0.5},
             84.7, 92.0, 16.6, 92_001_904, "configs/crossformer_pp/large_patch4_group_const_224.yaml",
             "README: BaiduCloud 1xtPh-ndcOxRM7fPYYxIIRg (crsf)", "unknown (BaiduCloud only)", "official"),
    _variant("crossformer_pp_huge", "crossformerpp_h", "CrossFormer++-H", _PP_KW,
             {"embed_dim": 128, "depths": [6, 6, 18, 2], "num_heads": [4, 8, 16, 32], "drop_path_rate": 0.5},
             84.9, 96.0, 21.8, 95_962_944, "configs/crossformer_pp/huge_patch4_group_const_224.yaml",
             "README: BaiduCloud 1xtPh-ndcOxRM7fPYYxIIRg (crsf) -- the README reuses the ++-L link for ++-H",
             "unknown (BaiduCloud only)", "official"),
)

_REPO_AT = f"cheerss/CrossFormer @ {OFFICIAL_COMMIT_MAIN[:7]}"
_AT = f"{_REPO_AT}, README.md"
# variant -> (file name, name read in an official file?, Drive id or "", Baidu share id, extraction code)
_CROSS_FILES = {
    "crossformer_tiny": ("crossformer-t.pth", False, "1YSkU9enn-ITyrbxLH13zNcBYvWSEidfq", "1M45YXZgVvp6Ew9DO8UhdlA",
                         "nkju"),
    "crossformer_small": ("crossformer-s.pth", True, "1RAkigsgr33va0RZ85S2Shs2BhXYcS6U8", "1Xf4MXfb_soCnJFBeNDmoQQ",
                          "fgqj"),
    "crossformer_base": ("crossformer-b.pth", False, "1bK8biVCi17nz_nkt7rBfio_kywUpllSU", "1f5dH__UGDXb-HoOPHT5p0A",
                         "7md9"),
    "crossformer_large": ("crossformer-l.pth", False, "1zRWByVW_KIZ87NgaBkDIm60DAsGJErdG", "1YJLeHy_cxLBrZLklQBCA_A",
                          "cc89"),
    # CrossFormer++ file names are printed nowhere: these are porthub's names for the downloads
    "crossformer_pp_small": ("crossformer_pp_small.pth", False, "", "1smc_kRoogd0Ig5vfqwuGTA", "crsf"),
    "crossformer_pp_base": ("crossformer_pp_base.pth", False, "", "13XVP0ebtNcyRMmkl11ALYg", "crsf"),
    "crossformer_pp_large": ("crossformer_pp_large.pth", False, "", "1xtPh-ndcOxRM7fPYYxIIRg", "crsf"),
    "crossformer_pp_huge": ("crossformer_pp_huge.pth", False, "", "1xtPh-ndcOxRM7fPYYxIIRg", "crsf"),
}


def _release(variant: Variant) -> Release:
    file_name, name_read, drive, baidu, code = _CROSS_FILES[variant.name]
    paper_name = variant.aliases[1]
    locations = ((Location(SourceKind.GDRIVE, drive, filename=file_name),) if drive else ()) + (
        Location(SourceKind.BAIDU, f"https://pan.baidu.com/s/{baidu}" + ("?pwd=crsf" if not drive else ""), code=code),)
    shared = [other for other, row in _CROSS_FILES.items() if other != variant.name and row[3] == baidu]
    drive_text = f"Google Drive {drive} and " if drive else ""
    verified = [f"{drive_text}BaiduCloud {baidu} key {code} for {paper_name} ({_AT})",
                f"top-1 {variant.meta['top1']}% ({_AT}, Image Classification table)",
                f"MIT (cheerss/CrossFormer @ {OFFICIAL_COMMIT_MAIN[:7]}, LICENSE)",
                (f"{{'model': ...}} wrapping: the detection/segmentation READMEs do ckpt['model'] on crossformer-s.pth "
                 f"({_REPO_AT}, detection/README.md)")]
    if name_read:
        verified.append(f"file name {file_name} ({_REPO_AT}, detection/README.md and segmentation/README.md)")
    unverified = ["size and sha256: not published",
                  "whether the file still holds optimizer/config entries besides 'model' (file not inspected)"]
    if not name_read:
        unverified.append(f"file name {file_name}: " + ("by the pattern of crossformer-s.pth" if drive else
                                                        "not printed anywhere; porthub's name for the download"))
    notes = []
    if shared:
        notes.append(f"the official README links {paper_name} to the same Baidu file as {', '.join(shared)}: "
                     "it may not be this model's file; porthub checks every key and shape and refuses a file of "
                     "another model")
    return Release(file_name=file_name, wrapping=Wrapping.MODEL, locations=locations, licence=LICENCE,
                   accuracy=Accuracy("top1", float(variant.meta["top1"]), "ImageNet-1k",
                                     f"{_AT} (Image Classification table)", "224, resize 256 bicubic, crop 224"),
                   verified=tuple(verified), unverified=tuple(unverified), notes=tuple(notes))


SOURCES = {variant.name: _release(variant) for variant in VARIANTS}


def _is_backbone(constructor: str) -> bool:
    return "backbone" in constructor.lower()


def case_model(case: Mapping[str, Any]) -> ModelRef:
    """``models.crossformer.CrossFormer`` (classification) with the case's kwargs; a constructor of
    ``crossformer_backbone_det.py``/``_seg.py`` builds the dense backbone."""
    constructor = str(case.get("constructor", "models.crossformer.CrossFormer"))
    names = re.findall(r"[A-Za-z_]\w*", constructor.split("(")[0])
    name = names[-1] if names else ""
    if name != CLASSIFIER:
        raise ReferenceCaseError(
            f"crossformer case {case.get('case', '?')!r}: constructor {constructor!r} is not a CrossFormer class"
        )
    kwargs = dict(case.get("kwargs") or {})
    return ModelRef(BACKBONE if _is_backbone(constructor) else CLASSIFIER, kwargs)


def case_layout(case: Mapping[str, Any]) -> str | None:
    """``official_v1`` when the case's checkpoint holds the 2021 code's persistent DPB tables."""
    keys = list(case.get("state_dict_keys_in_pth") or ())
    v1_check = case.get("v1_code_check") or {}
    if any(re.fullmatch(_V1_BUFFERS, k) for k in keys) or v1_check.get("v1_only_keys_in_pth"):
        return "official_v1"
    return None


def case_features(case: Mapping[str, Any]) -> list[FeatureSet]:
    """``stage{i}`` of ``<case>.features.npz``: the main det/seg backbone built from
    ``features.main.constructor_kwargs`` on ``features_input``, with the case checkpoint's weights (its
    classifier-only keys ignored). Float32 only when the official backbone could not run float64."""
    main = (case.get("features") or {}).get("main")
    if not main:
        return []
    files = case.get("files") or {}
    float64 = str(main.get("float64", "not produced"))
    return [
        FeatureSet(
            pattern=r"stage\d+",
            input="features_input" if "features_input.npy" in files else "input",
            model=ModelRef(BACKBONE, dict(main.get("constructor_kwargs") or {})),
            outputs={"stage{i}": ""},
            layout="backbone_init",
            dtypes=("float32",) if float64.startswith("not produced") else ("float32", "float64"),
        )
    ]


def input_rule(ref: ModelRef) -> InputRule:
    """``in_chans`` channels. The classifier takes exactly its square ``img_size`` (PatchEmbed checks it;
    stage resolutions, group fallbacks and padding masks are fixed at construction), and that size
    only runs when every merged stage map is even. The dense backbone takes any size whose sides are
    multiples of ``patch_size[0] * 2**(stages - 1)`` (32): its merging halves even maps only."""
    kwargs = ref.kwargs
    channels = int(kwargs.get("in_chans", 3))
    patch = int(_list(kwargs.get("patch_size", [4]), 1)[0])
    stages = len(list(kwargs.get("depths", [2, 2, 6, 2])))
    step = patch * 2 ** (stages - 1)
    if ref.class_name == BACKBONE:
        return InputRule(
            channels=channels,
            min_size=(step, step),
            multiple_of=(step, step),
            why=f"the stage maps are the input / {patch}, then halved by {stages - 1} merges that need even maps",
        )
    img_size = kwargs.get("img_size", 224)
    img = int(img_size[0]) if isinstance(img_size, (list, tuple)) else int(img_size)
    fixed = (img, int(img_size[1])) if isinstance(img_size, (list, tuple)) else (img, img)
    multiple = 1
    for i in range(stages - 1):
        if (img // patch // 2**i) % 2:
            # the merge after stage i sees an odd map: no input runs; name the size that would
            multiple = patch * 2 ** (i + 1)
            break
    return InputRule(channels=channels, fixed_size=fixed, multiple_of=(multiple, multiple),
                     why=f"the classifier is built for img_size={img}: rebuild with img_size=H (square, a multiple of "
                         f"{step}) or use the dense backbone {BACKBONE}, which takes any multiple of {step}")


#: float16/bfloat16 against float32 (porthub.pairs.verify_half), measured on the CPU
HALF_TOLERANCE = HalfTolerance(
    float16=0.005,
    bfloat16=0.05,
    reason=("measured 2026-12-04 on the CPU (PyTorch 2.13, crossformer_pp_small at the registered size, seeded "
            "weights, seeded noise batch 1 and 2): worst max|diff| / max(1, max|ref|) bfloat16 1.57e-02, float16 "
            "1.43e-03; each limit is 3x that or more, rounded up: half precision keeps 8 (bfloat16) / "
            "11 (float16) mantissa bits and its rounding adds up over the blocks, softmax and normalisation"),
    measured={"bfloat16": 0.0157, "float16": 0.00143},
)


SPEC = FamilySpec(
    family="crossformer",
    title="CrossFormer and CrossFormer++",
    layers=LAYERS,
    layouts=LAYOUTS,
    variants=VARIANTS,
    case_model=case_model,
    case_features=case_features,
    case_layout=case_layout,
    input_rule=input_rule,
    layer_tolerances=(
        LayerTolerance(PADDLE, r".*attn\.pos\.pos\d\.0", Tolerance(
            float64=5e-8,
            reason=("Paddle's CPU float64 LayerNorm over few features (the DPB MLP normalises pos_dim = dim/16 "
                    "features, 1-8 in the minis) is off by up to ~5e-9 from the exact value where PyTorch is at "
                    "1e-16; measured 4.9e-9 locally on crossformer_pp_small, final outputs stay near 1e-12"),
        )),
    ),
    paper=PAPER,
    official_repo=f"{OFFICIAL_REPO} @ {OFFICIAL_COMMIT_MAIN} (main); @ {OFFICIAL_COMMIT_V1} (branch crossformer, 2021)",
    licence=LICENCE,
    half_tolerance=HALF_TOLERANCE,
    # data/build.py build_transform (eval, TEST.CROP=True): Resize(int(256/224 * 224)), bicubic
    # (DATA.INTERPOLATION), CenterCrop(224), timm IMAGENET_DEFAULT_MEAN/STD
    preprocessing=IMAGENET_EVAL_224,
    sources=SOURCES,
)
