"""Model input rules (issue 10): every family's models, in both frameworks, refuse a wrong channel
count and a size outside the family's rule with an InputError naming the constraint, and run the
smallest valid size and a non-square valid one. The rules are held tight against the PyTorch models
themselves: without the check, the size just outside a rule fails in the model."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import reference_cases

from porthub.errors import InputError, PorthubError
from porthub.inputs import InputCheck, check_input, describe, smallest_side
from porthub.registry import FAMILIES, get_spec, resolve
from porthub.runtime import build_model, run_model
from porthub.spec import InputRule, ModelRef
from porthub.verify import load_case

FRAMEWORKS = ("torch", "paddle")

# registered variants with their size-relevant constructor arguments (sr_ratios, wss, img_size,
# use_conv_embed, group sizes) kept and the width/depth shrunk so that building them is cheap
SMALL_VARIANTS = {
    "shunted_t": {
        "depths": [1, 1, 1, 1],
        "embed_dims": [64, 16, 32, 32],
        "num_heads": [2, 2, 2, 2],
        "mlp_ratios": [1, 1, 1, 1],
    },
    "twins_pcpvt_small": {"depths": [1, 1, 1, 1], "embed_dims": [16, 16, 16, 16], "num_heads": [1, 1, 1, 1]},
    "twins_svt_small": {"depths": [2, 2, 2, 2], "embed_dims": [16, 16, 16, 16], "num_heads": [1, 1, 1, 1]},
    "crossformer_pp_small": {"depths": [2, 2, 2, 1], "embed_dim": 16, "num_heads": [1, 1, 1, 1], "num_classes": 10},
    "focalv2_tiny_useconv": {"depths": [1, 1, 1, 1], "embed_dim": 8, "num_heads": [1, 1, 1, 1], "num_classes": 10},
    "seaformer_seg_tiny": {},
}


def _models() -> list:
    """(id, family, ModelRef): each reference case's model and feature models, then SMALL_VARIANTS."""
    found, seen = [], set()
    for path in reference_cases():
        case, _ = load_case(path)
        spec = get_spec(case["family"])
        refs = [spec.case_model(case)] + [fs.model for fs in spec.case_features(case) if fs.model is not None]
        for i, ref in enumerate(refs):
            key = (spec.family, ref.class_name, repr(sorted(ref.kwargs.items(), key=str)))
            if key not in seen:
                seen.add(key)
                found.append(
                    pytest.param(
                        spec.family,
                        ref,
                        id=f"{spec.family}/{os.path.basename(path)[:-5]}{'' if i == 0 else f'-features{i}'}",
                    )
                )
    for name, overrides in SMALL_VARIANTS.items():
        spec, variant = resolve(name)
        found.append(pytest.param(spec.family, variant.model(**overrides), id=name))
    return found


MODELS = _models()


def test_every_family_is_covered():
    assert {p.values[0] for p in MODELS} == set(FAMILIES)


def _smallest(rule: InputRule) -> tuple[int, int]:
    if rule.fixed_size is not None:
        return tuple(rule.fixed_size)
    return tuple(-(-least // step) * step for least, step in zip(rule.min_size, rule.multiple_of))


def _outside(rule: InputRule) -> tuple[tuple[int, int], str]:
    """A size just outside the rule and the words the error must contain."""
    h, w = _smallest(rule)
    if rule.fixed_size is not None:
        return (h + 32, w), f"takes {h}x{w} inputs"
    if rule.multiple_of != (1, 1):
        # one less than the next multiple: past the rows a floor-dividing stem would drop silently
        return (h + rule.multiple_of[0] - 1, w), "multiples of"
    return (rule.min_size[0] - 1, w), "at least"


def _x(shape, dtype="float32"):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


_BUILT: dict = {}


def _model(family: str, ref: ModelRef, framework: str, check: bool = True):
    # one build per model and framework for the whole module: paddle builds cost seconds on 2 cores
    key = (family, ref.class_name, repr(sorted(ref.kwargs.items(), key=str)), framework, check)
    if key not in _BUILT:
        _BUILT[key] = build_model(get_spec(family), ref, framework, check_input=check)
    return _BUILT[key]


def _call(model, arr: np.ndarray, framework: str):
    """The model on ``arr`` as it is (run_model would cast it to the model's dtype)."""
    if framework == "torch":
        import torch

        return model(torch.from_numpy(arr))
    import paddle

    return model(paddle.to_tensor(arr))


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("family,ref", MODELS)
def test_wrong_channels_are_refused_naming_them(family, ref, framework):
    rule = get_spec(family).input_rule(ref)
    h, w = _smallest(rule)
    channels = 1 if rule.channels != 1 else 3
    with pytest.raises(InputError) as err:
        run_model(_model(family, ref, framework), _x((1, channels, h, w)), framework)
    msg = str(err.value)
    assert f"{rule.channels}-channel" in msg and f"got {channels}x{h}x{w}" in msg and "\n" not in msg


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("family,ref", MODELS)
def test_size_outside_the_rule_is_refused_naming_the_constraint(family, ref, framework):
    rule = get_spec(family).input_rule(ref)
    (h, w), words = _outside(rule)
    with pytest.raises(InputError) as err:
        run_model(_model(family, ref, framework), _x((1, rule.channels, h, w)), framework)
    msg = str(err.value)
    assert words in msg and f"got {rule.channels}x{h}x{w}" in msg and "\n" not in msg
    assert isinstance(err.value, ValueError) and isinstance(err.value, PorthubError)


@pytest.mark.parametrize("family,ref", MODELS)
def test_the_rule_is_tight_in_the_model_itself(family, ref):
    """Without the check, the PyTorch model (the official semantics) fails at the size just outside
    the rule: the rule refuses nothing the model could run, at that boundary."""
    rule = get_spec(family).input_rule(ref)
    (h, w), _ = _outside(rule)
    model = _model(family, ref, "torch", check=False)
    if h < 1:
        # nothing but empty inputs is refused: then the model must run the smallest non-empty one
        out, _ = run_model(model, _x((1, rule.channels, 1, 1)), "torch")
        assert all(np.isfinite(a).all() for a in (out if isinstance(out, list) else [out]))
        return
    with pytest.raises((ValueError, RuntimeError)):
        run_model(model, _x((1, rule.channels, h, w)), "torch")


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("family,ref", MODELS)
def test_smallest_and_non_square_valid_sizes_run(family, ref, framework):
    rule = get_spec(family).input_rule(ref)
    h, w = _smallest(rule)
    sizes = [(h, w)]
    if rule.fixed_size is None:
        sizes.append((h, w + (rule.multiple_of[1] if rule.multiple_of[1] > 1 else 3)))
    model = _model(family, ref, framework)
    for size in sizes:
        check_input(rule, (2, rule.channels, *size), "m", "float32")
        out, _ = run_model(model, _x((2, rule.channels, *size)), framework)
        for arr in out if isinstance(out, list) else [out]:
            assert np.asarray(arr).shape[0] == 2 and np.isfinite(arr).all()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_non_4d_and_integer_inputs_are_refused(framework):
    spec, variant = resolve("shunted_t")
    ref = variant.model(**SMALL_VARIANTS["shunted_t"])
    model = _model("shunted", ref, framework)
    with pytest.raises(InputError, match=r"4-D batch .* got shape \[3, 64, 64\]: add the batch axis"):
        _call(model, _x((3, 64, 64)), framework)
    with pytest.raises(InputError, match="floating-point input; got int64"):
        _call(model, np.zeros((1, 3, 64, 64), "int64"), framework)


def test_the_hook_names_the_variant_and_survives_pickling():
    import torch

    model = build_model(
        get_spec("shunted"), resolve("shunted_t")[1].model(**SMALL_VARIANTS["shunted_t"]), "torch", name="mine"
    )
    with pytest.raises(InputError, match=r"^mine takes 3-channel inputs of at least 31x31"):
        model(torch.zeros(1, 3, 16, 16))
    again = pickle.loads(pickle.dumps(model))
    with pytest.raises(InputError, match="^mine takes"):
        again(torch.zeros(1, 3, 16, 16))
    unchecked = build_model(
        get_spec("shunted"), resolve("shunted_t")[1].model(**SMALL_VARIANTS["shunted_t"]), "torch", check_input=False
    )
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        unchecked(torch.zeros(1, 3, 16, 16))


def test_create_model_checks_inputs_under_the_variant_name():
    import torch

    import porthub

    model = porthub.create_model("seaformer_tiny")
    with pytest.raises(InputError, match=r"^seaformer_tiny takes 3-channel input .* got 4x64x64"):
        model(torch.zeros(1, 4, 64, 64))


# ------------------------------------------------------------------------------ rules as data
def test_rules_of_the_registered_variants():
    """The released configurations, derived from their constructor arguments."""

    def rule(name, **overrides):
        spec, variant = resolve(name)
        return spec.input_rule(variant.model(**overrides))

    assert rule("shunted_b") == InputRule(3, (31, 31), (1, 1), None, rule("shunted_b").why)
    assert rule("shunted_t", in_chans=1).channels == 3  # the stem ignores in_chans
    assert (rule("twins_pcpvt_large").min_size, rule("twins_pcpvt_large").multiple_of) == ((32, 32), (1, 1))
    assert (rule("twins_svt_base").min_size, rule("twins_svt_base").multiple_of) == ((224, 224), (224, 224))
    assert (
        rule("twins_svt_base", features_only=True).min_size,
        rule("twins_svt_base", features_only=True).multiple_of,
    ) == ((32, 32), (1, 1))
    assert rule("twins_svt_small", in_chans=4).channels == 4
    assert rule("crossformer_tiny").fixed_size == (224, 224) and rule("crossformer_tiny", img_size=384).fixed_size == (
        384,
        384,
    )
    assert rule("crossformer_tiny", img_size=200).multiple_of == (16, 16)  # 50 -> 25: the second merge sees an odd map
    assert rule("focal_base").fixed_size == (224, 224) and rule("focal_base").multiple_of == (1, 1)
    assert rule("focal_tiny_useconv", img_size=227).multiple_of == (4, 4)
    assert rule("focalv2_tiny_useconv", img_size=96).multiple_of == (28, 28)
    assert rule("seaformer_seg_large") == InputRule(3, why=rule("seaformer_seg_large").why)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_variant_accepts_its_own_input_size(family):
    spec = get_spec(family)
    for variant in spec.variants:
        check_input(spec.input_rule(variant.model()), (1, 3, *variant.input_size), variant.name, "float32")


def test_check_input_messages():
    fixed = InputRule(fixed_size=(224, 224), why="built for img_size=224")
    with pytest.raises(
        InputError,
        match=r"^m takes 224x224 inputs \(built for img_size=224\); got 3x200x200: resize or crop to 224x224$",
    ):
        check_input(fixed, (1, 3, 200, 200), "m")
    broken = InputRule(fixed_size=(200, 200), multiple_of=(16, 16))
    with pytest.raises(
        InputError, match=r"^m was built for 200x200 inputs, which its stages cannot run .* multiples of 16 and 16"
    ):
        check_input(broken, (1, 3, 200, 200), "m")
    grid = InputRule(min_size=(32, 32), multiple_of=(32, 32))
    with pytest.raises(
        InputError, match=r"at least 32x32 whose sides are multiples of 32; got 3x64x65: .* \(e\.g\. 64x96\)"
    ):
        check_input(grid, (2, 3, 64, 65), "m")
    with pytest.raises(InputError, match="resize to at least 32x32"):
        check_input(grid, (2, 3, 0, 64), "m")
    with pytest.raises(InputError, match="floating-point input; got uint8"):
        check_input(grid, (1, 3, 64, 64), "m", np.dtype("uint8"))
    with pytest.raises(InputError, match=r"got shape \[64, 64\]: pass one batch of images"):
        check_input(grid, (64, 64), "m")
    check_input(grid, (1, 3, 96, 64), "m", "paddle.float64")
    check_input(InputRule(channels=1), (0, 1, 5, 7), "m", "torch.bfloat16")
    assert describe(grid) == "3-channel inputs of at least 32x32 whose sides are multiples of 32"
    assert (
        describe(InputRule(channels=4, multiple_of=(8, 16)))
        == "4-channel inputs whose height and width are multiples of 8 and 16"
    )


def test_hook_refuses_non_tensors():
    with pytest.raises(InputError, match="takes a tensor .* got list"):
        InputCheck(InputRule(), "m")(None, ([[1.0]],))


def test_smallest_side():
    assert smallest_side(lambda n: n * n >= 50) == 8
    with pytest.raises(ValueError, match="no side length up to 4"):
        smallest_side(lambda n: False, limit=4)


# ------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("shape,words", [((1, 1, 224, 224), "[N, 3, H, W]"), ((1, 3, 20, 20), "at least 31x31")])
def test_cli_verify_refuses_a_bad_npy_in_one_line(tmp_path, shape, words):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(shape, "float32"))
    p = subprocess.run(
        [sys.executable, "-m", "porthub.cli", "verify", "shunted_t", "--input", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode != 0
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("porthub: error: ") and words in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
