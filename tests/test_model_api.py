"""The timm-style model API (issue 16), registry-driven, in both frameworks: the smallest classifier of every
family and model class, plus the smallest model of every other class (segmentation).

* ``num_classes`` sizes the classifier; ``get_classifier``/``reset_classifier``; ``forward_features`` then
  ``forward_head`` is ``forward``, ``pre_logits=True`` the pooled features;
* unknown keyword arguments raise TypeError;
* ``features_only=True`` (and ``out_indices``) gives NCHW maps equal between the frameworks on the same
  weights (the output tolerance rule), described by ``feature_info`` (channels, stride, module);
* ``pretrained=True, num_classes=10`` from a local hub (``porthub push`` into a temporary PORTHUB_HOME)
  loads every weight but the classifier, which stays freshly initialised, with one warning;
* ``data_config``/``create_transform`` give the family's evaluation preprocessing, the same array for both
  frameworks.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import porthub
from porthub.manifest import load_manifest
from porthub.registry import all_specs
from porthub.spec import PADDLE, TORCH

try:  # the runtime package after the architecture move (issue 14); porthub.runtime before it
    from porthub.runtime import build_model, load_state, named_modules, run_model, to_numpy
except ImportError:
    from porthub.runtime import build_model, load_state, named_modules, run_model, to_numpy

from porthub.pairs import seeded_input, seeded_state

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = (TORCH, PADDLE)


def _size(spec, variant):
    manifest = load_manifest(spec, variant)
    return sum(int(np.prod(shape)) for shape, _ in manifest.entries.values())


def _smallest(task=None, per_class=True):
    """The smallest registered variant of each family (and model class when ``per_class``)."""
    out = {}
    for spec in all_specs():
        for variant in spec.variants:
            if task is not None and variant.task != task:
                continue
            key = (spec.family, variant.class_name if per_class else "")
            if key not in out or _size(spec, variant) < _size(spec, out[key][1]):
                out[key] = (spec, variant)
    return [pytest.param(spec, variant, id=variant.name) for spec, variant in out.values()]


NORM = "functools.partial(torch.nn.LayerNorm, eps=1e-6)"
#: small constructor arguments per model class (on top of the variant's own) and the input size they run at;
#: a class not listed here is tested at its registered size
TINY = {
    "ShuntedTransformer": ({"embed_dims": [64, 16, 32, 24], "num_heads": [2, 4, 2, 2], "depths": [1, 2, 1, 1],
                            "mlp_ratios": [2, 2, 2, 2]}, (64, 64)),
    "CPVTV2": ({"embed_dims": [16, 24, 32, 40], "num_heads": [2, 3, 4, 5], "mlp_ratios": [2, 3, 2, 1],
                "depths": [1, 2, 1, 1]}, (64, 64)),
    "ALTGVT": ({"embed_dims": [16, 24, 32, 40], "num_heads": [2, 3, 4, 5], "mlp_ratios": [2, 3, 2, 1],
                "depths": [2, 1, 3, 2], "wss": [4, 4, 2, 2]}, (64, 64)),
    "CrossFormer": ({"img_size": 64, "embed_dim": 32, "depths": [1, 1, 4, 1], "num_heads": [2, 2, 4, 4],
                     "group_size": [4, 4, 4, 4], "crs_interval": [2, 2, 1, 1]}, (64, 64)),
    "FocalTransformer": ({"img_size": 128, "embed_dim": 8, "depths": [1, 2, 1, 1], "num_heads": [1, 2, 2, 4],
                          "mlp_ratio": 2.0}, (128, 128)),
    # Focal-fast does not pad: every stage map a multiple of the window (7)
    "FocalTransformerV2": ({"img_size": 224, "embed_dim": 8, "depths": [1, 2, 1, 1], "num_heads": [1, 2, 2, 4],
                            "mlp_ratio": 2.0, "focal_topK": 12}, (224, 224)),
    "SeaFormer": ({"cfgs": [[[3, 1, 8, 1], [3, 4, 16, 2]], [[5, 3, 16, 2]], [[3, 3, 24, 2]], [[5, 3, 32, 2]],
                            [[3, 4, 40, 2]]],
                   "channels": [8, 16, 16, 24, 32, 40], "emb_dims": [24, 32, 40], "key_dims": [8, 12, 8],
                   "depths": [1, 2, 1], "num_heads": 3, "mlp_ratios": [2, 3, 4]}, (128, 128)),
}


def _tiny(variant):
    overrides, size = TINY.get(variant.class_name, ({}, variant.input_size))
    return dict(overrides), size


def _input(variant, seed=1):
    size = _tiny(variant)[1]
    return np.random.default_rng(seed).standard_normal((1, 3, *size)).astype(np.float32)


CLASSIFIERS = _smallest("classification")
EVERY_CLASS = _smallest()
#: pretrained loading needs the registered (full-size) variant: above this many parameters it is marked slow
_FAST_PARAMS = 5_000_000  # SeaFormer-T in the default run; shunted_t (11.6M, 12 s) and larger under slow
FAMILY_CLASSIFIERS = [
    pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow] if _size(*p.values) > _FAST_PARAMS else [])
    for p in _smallest("classification", per_class=False)
]


def _tensor(x, framework):
    import importlib

    fw = importlib.import_module(framework)
    return fw.from_numpy(x) if framework == TORCH else fw.to_tensor(x)


def _no_grad(framework):
    import importlib

    return importlib.import_module(framework).no_grad()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("spec,variant", EVERY_CLASS)
def test_unknown_keyword_raises_type_error(spec, variant, framework):
    with pytest.raises(TypeError, match="num_clases"):
        porthub.create_model(variant.name, framework=framework, num_clases=10)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("spec,variant", CLASSIFIERS)
def test_num_classes_reset_classifier_and_head_split(spec, variant, framework):
    model = porthub.create_model(variant.name, framework=framework, num_classes=10, **_tiny(variant)[0])
    assert model.num_classes == 10
    assert model.get_classifier() is named_modules(model, framework)[spec.classifier]
    x = _tensor(_input(variant), framework)
    with _no_grad(framework):
        logits = model(x)
        assert tuple(logits.shape) == (1, 10)
        features = model.forward_features(x)
        # forward is exactly forward_features then forward_head
        assert np.array_equal(to_numpy(model.forward_head(features)), to_numpy(logits))
        pooled = to_numpy(model.forward_head(features, pre_logits=True))
        assert pooled.shape == (1, model.num_features)

        model.reset_classifier(3)
        assert model.num_classes == 3 and tuple(model(x).shape) == (1, 3)
        assert model.get_classifier() is named_modules(model, framework)[spec.classifier]
        model.reset_classifier(0)
        # no classifier: the pooled features, unchanged by the other heads
        assert np.array_equal(to_numpy(model(x)), pooled)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-1)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("spec,variant", CLASSIFIERS)
def test_reset_classifier_keeps_the_models_dtype(spec, variant, framework):
    model = porthub.create_model(variant.name, framework=framework, dtype="float64", **_tiny(variant)[0])
    model.reset_classifier(5)
    head = model.get_classifier()
    assert "float64" in str(head.weight.dtype)
    with _no_grad(framework):
        assert tuple(model(_tensor(_input(variant).astype("float64"), framework)).shape) == (1, 5)


def _check_feature_info(model, maps, size):
    info = model.feature_info
    assert len(info) == len(maps) and info.channels() == [m["num_chs"] for m in info]
    modules = named_modules(model, TORCH if hasattr(model, "named_modules") else PADDLE)
    for entry, arr in zip(info, maps):
        assert set(entry) == {"num_chs", "reduction", "module"} and entry["module"] in modules
        assert arr.ndim == 4 and arr.shape[1] == entry["num_chs"], (entry, arr.shape)
        assert arr.shape[2:] == tuple(math.ceil(s / entry["reduction"]) for s in size), (entry, arr.shape)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec,variant", CLASSIFIERS)
def test_features_only_maps_agree_between_frameworks(spec, variant, dtype):
    overrides, size = _tiny(variant)
    ref = variant.model(features_only=True, **overrides)
    tmodel = build_model(spec, ref, TORCH, dtype, name=variant.name)
    state = seeded_state(spec, ref, seed=5)
    load_state(tmodel, state, spec, TORCH, variant.name)
    pmodel = build_model(spec, ref, PADDLE, dtype, name=variant.name)
    load_state(pmodel, state, spec, PADDLE, variant.name)
    x = _input(variant, seed=9)
    out_t, _ = run_model(tmodel, x, TORCH, dtype)
    out_p, _ = run_model(pmodel, x, PADDLE, dtype)
    assert isinstance(out_t, list) and len(out_t) == len(out_p) == len(tmodel.feature_info) >= 3
    tol = spec.tolerance(PADDLE).for_dtype(dtype)
    for i, (a, b) in enumerate(zip(out_t, out_p)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype == np.dtype(dtype)
        limit = tol * max(1.0, float(np.abs(a).max()))
        assert float(np.abs(a - b).max()) <= limit, (i, float(np.abs(a - b).max()), limit)
    _check_feature_info(tmodel, out_t, size)
    _check_feature_info(pmodel, out_p, size)
    assert tmodel.feature_info == pmodel.feature_info
    if spec.family != "seaformer":
        # the four stages at strides 4, 8, 16, 32
        assert tmodel.feature_info.reduction() == [4, 8, 16, 32]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("spec,variant", CLASSIFIERS)
def test_out_indices_pick_maps_and_describe_them(spec, variant, framework):
    tiny = _tiny(variant)[0]
    full = porthub.create_model(variant.name, framework=framework, features_only=True, **tiny)
    picked = porthub.create_model(variant.name, framework=framework, features_only=True, out_indices=(1, -1), **tiny)
    picked.set_state_dict(full.state_dict()) if framework == PADDLE else picked.load_state_dict(full.state_dict())
    x = _input(variant)
    maps_full, _ = run_model(full, x, framework)
    maps, _ = run_model(picked, x, framework)
    assert len(maps) == 2 and list(picked.feature_info) == [full.feature_info[1], full.feature_info[-1]]
    assert np.array_equal(maps[0], maps_full[1]) and np.array_equal(maps[1], maps_full[-1])
    for bad in ((7,), (), (1, 1)):
        with pytest.raises(ValueError, match="out_indices"):
            porthub.create_model(variant.name, framework=framework, features_only=True, out_indices=bad, **tiny)


# ------------------------------------------------------------------------------ pretrained, local hub
_PUSHED: dict[str, Path] = {}


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory):
    return tmp_path_factory.mktemp("porthub_home_api")


def _env(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PORTHUB_", "HUGGINGFACE_"))}
    env.update({"PORTHUB_HOME": str(home), "PORTHUB_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
                "HF_HUB_DISABLE_TELEMETRY": "1"})
    return env


def _pushed(spec, variant, home, tmp_path_factory):
    """``porthub push`` of a seeded full-size checkpoint of ``variant`` into the local hub ``home``, once."""
    from porthub.io import save_checkpoint

    if variant.name not in _PUSHED:
        folder = tmp_path_factory.mktemp(f"src_{variant.name}")
        state = seeded_state(spec, variant.model(), seed=21)
        ckpt = folder / "official.pth"
        save_checkpoint(state, str(ckpt), "pth")
        command = [sys.executable, "-m", "porthub.cli", "push", variant.name, "--weights", str(ckpt), "--json"]
        done = subprocess.run(command, env=_env(home), cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads(done.stdout)["model"] == variant.name
        np.savez(folder / "state.npz", **state)
        _PUSHED[variant.name] = folder / "state.npz"
    return dict(np.load(_PUSHED[variant.name]))


def _canonical(model, spec, framework):
    state = {k: to_numpy(v) for k, v in model.state_dict().items()}
    if framework == TORCH:
        return state
    from porthub.engine import to_canonical
    from porthub.spec import Layout

    return to_canonical(state, Layout(name="paddle-model", framework=PADDLE), spec)[0]


@pytest.mark.parametrize("spec,variant", FAMILY_CLASSIFIERS)
def test_pretrained_with_a_new_head_loads_everything_else(spec, variant, hub_home, tmp_path_factory, monkeypatch):
    source = _pushed(spec, variant, hub_home, tmp_path_factory)
    for key, value in _env(hub_home).items():
        monkeypatch.setenv(key, value)
    prefix = spec.classifier + "."
    for framework in FRAMEWORKS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the same head: loaded, no warning
            same = porthub.create_model(variant.name, framework=framework, pretrained=True)
        got = _canonical(same, spec, framework)
        assert all(np.array_equal(got[k], source[k]) for k in got if k.startswith(prefix))

        with pytest.warns(UserWarning, match=r"freshly initialised for 10 classes .*1000") as caught:
            model = porthub.create_model(variant.name, framework=framework, pretrained=True, num_classes=10)
        assert len(caught) == 1
        got = _canonical(model, spec, framework)
        assert set(got) == set(source)
        for key in source:
            if key.startswith(prefix):
                assert got[key].shape[0] == 10 and source[key].shape[0] == 1000
            else:
                assert np.array_equal(got[key], source[key]), key
        with _no_grad(framework):
            assert tuple(model(_tensor(seeded_input(variant), framework)).shape) == (1, 10)

        with pytest.warns(UserWarning, match="freshly initialised for 0 classes"):
            bare = porthub.create_model(variant.name, framework=framework, pretrained=True, num_classes=0)
        got = _canonical(bare, spec, framework)
        assert not any(k.startswith(prefix) for k in got) and all(np.array_equal(got[k], source[k]) for k in got)


# ------------------------------------------------------------------------------------- data config
@pytest.mark.parametrize("spec,variant", EVERY_CLASS)
def test_data_config_and_transform_give_both_frameworks_the_same_array(spec, variant):
    from PIL import Image

    config = porthub.data_config(variant.name)
    assert set(config) == {"input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode"}
    assert config["input_size"] == (3, *variant.input_size)
    assert len(config["mean"]) == len(config["std"]) == 3 and max(config["mean"]) < 1.0
    rgb = np.random.default_rng(0).integers(0, 256, (300, 410, 3), dtype=np.uint8)
    arr = porthub.create_transform(config)(Image.fromarray(rgb))
    assert arr.shape == config["input_size"] and arr.dtype == np.float32
    assert np.array_equal(porthub.create_transform(config)(rgb), arr)
    for framework in FRAMEWORKS:
        assert np.array_equal(to_numpy(porthub.create_transform(config, framework=framework)(rgb)), arr)
    model = porthub.create_model(variant.name, framework=TORCH)
    assert porthub.data_config(model) == config


def test_transform_is_the_family_recipe():
    """ImageNet evaluation: short side to 256 (bicubic), centre crop 224, ImageNet mean/std."""
    from PIL import Image

    config = porthub.data_config("shunted_t")
    assert config["crop_pct"] == 0.875 and config["interpolation"] == "bicubic" and config["crop_mode"] == "center"
    rgb = np.random.default_rng(1).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    img = Image.fromarray(rgb).resize((320, 256), Image.Resampling.BICUBIC)  # already 256 on the short side
    crop = np.asarray(img, dtype=np.float32)[16:240, 48:272] / np.float32(255.0)
    want = ((crop - np.float32(config["mean"])) / np.float32(config["std"])).transpose(2, 0, 1)
    assert np.allclose(porthub.create_transform(config)(rgb), want, atol=1e-6)
    seg = porthub.data_config("seaformer_seg_tiny")
    assert seg["crop_mode"] == "squash" and seg["crop_pct"] == 1.0
    assert np.allclose(seg["mean"], (0.485, 0.456, 0.406)) and np.allclose(seg["std"], (0.229, 0.224, 0.225))
    with pytest.raises(ValueError, match="crop_pct"):
        porthub.create_transform({**config, "crop_pct": 1.5})


@pytest.mark.parametrize("spec,variant", EVERY_CLASS)
def test_info_and_card_show_the_preprocessing(spec, variant):
    from porthub.hub.card import preprocessing_line

    config = porthub.data_config(variant.name)
    mean = ", ".join(f"{m:.4g}" for m in config["mean"])
    line = preprocessing_line(variant)
    assert f"mean {[round(m, 4) for m in config['mean']]}" in line and config["interpolation"] in line
    run = [sys.executable, "-m", "porthub.cli", "info", variant.name]
    text = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"mean {mean};" in text and "x".join(map(str, config["input_size"])) in text and not text.startswith("{")
    machine = json.loads(subprocess.run([*run, "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                        check=True).stdout)
    assert machine["name"] == variant.name and machine["data_config"]["crop_pct"] == config["crop_pct"]
    assert machine["data_config"]["mean"] == list(config["mean"])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_dense_backbones_describe_their_maps(framework):
    """The official dense backbones (CrossFormer's detection/segmentation class, SeaFormer's segmentation
    backbone) carry feature_info too; CrossFormer's takes out_indices."""
    from porthub.registry import get_spec

    try:
        from porthub.runtime import model_class
    except ImportError:
        from porthub.frameworks import model_class

    cross = dict(TINY["CrossFormer"][0])
    for kwargs, out_indices in ((cross, (0, 1, 2, 3)), ({**cross, "out_indices": (2, 3)}, (2, 3))):
        model = model_class(get_spec("crossformer"), "CrossFormerBackbone", framework)(**kwargs)
        model.eval()
        maps, _ = run_model(model, np.ones((1, 3, 96, 64), "float32"), framework)
        assert len(maps) == len(out_indices)
        assert model.feature_info.module_name() == [f"layers.{i}" for i in out_indices]
        _check_feature_info(model, [np.asarray(m) for m in maps], (96, 64))
    sea = dict(TINY["SeaFormer"][0], num_heads=4)
    model = model_class(get_spec("seaformer"), "SeaFormerBackbone", framework)(**sea)
    model.eval()
    maps, _ = run_model(model, np.ones((1, 3, 128, 128), "float32"), framework)
    _check_feature_info(model, [np.asarray(m) for m in maps], (128, 128))
    with pytest.raises(TypeError, match="num_clases"):
        model_class(get_spec("crossformer"), "CrossFormerBackbone", framework)(**cross, num_clases=3)
