"""Registry-driven checks of every family and variant: a new variant is tested with no new test code.

* the shipped manifests equal the official key lists (keys, shapes, dtypes, order);
* each layout maps the canonical state to its file form and back bit for bit;
* the spec's layer kinds agree with the module classes of both implementations, and the Paddle
  model has exactly the keys and shapes the spec predicts (slow: full-size models);
* the twin files have the same classes, methods and attribute assignments in the same order.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections import OrderedDict

import numpy as np
import pytest
from conftest import DATA

from porthub.engine import Manifest, framework_keys, from_canonical, to_canonical, unwrap
from porthub.manifest import load_manifest
from porthub.registry import all_specs
from porthub.spec import PADDLE, TORCH, LayerKind

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = {spec.family: spec for spec in all_specs()}
VARIANTS = [pytest.param(spec.family, v.name, id=v.name) for spec in SPECS.values() for v in spec.variants]


def _variant(family, name):
    spec = SPECS[family]
    return spec, next(v for v in spec.variants if v.name == name)


def _official_rows(path):
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    rows = data.get("state_dict") or data.get("entries")
    return [(r[0], tuple(r[1]), r[2]) for r in rows]


def _official_file(spec, variant, suffix=".keys.json"):
    names = [variant.meta.get("official_keys"), variant.name, *variant.aliases]
    for name in names:
        if name and os.path.exists(path := os.path.join(DATA, spec.family, f"{name}{suffix}")):
            return path
    return None


def _random_state(manifest: Manifest, seed: int = 0) -> "OrderedDict[str, np.ndarray]":
    rng = np.random.default_rng(seed)
    out = OrderedDict()
    for key, (shape, dtype) in manifest.entries.items():
        if np.dtype(dtype).kind == "f":
            out[key] = rng.standard_normal(shape).astype(dtype)
        elif key.endswith(".num_batches_tracked"):
            # Paddle keeps no batch counter; converting back restores 0, as a fresh PyTorch model has
            out[key] = np.zeros(shape, dtype)
        else:
            out[key] = rng.integers(0, 100, size=shape).astype(dtype)
    return out


@pytest.mark.parametrize("family,name", VARIANTS)
def test_manifest_is_the_official_key_list(family, name):
    spec, variant = _variant(family, name)
    path = _official_file(spec, variant)
    assert path is not None, f"no official key list for {name} in tests/data/official/{family}/"
    manifest = load_manifest(spec, variant)
    assert manifest is not None, f"converters/manifests/{family}.json has no {name}; run `porthub manifests {family}`"
    assert [(k, s, d) for k, (s, d) in manifest.entries.items()] == _official_rows(path)


@pytest.mark.parametrize("family,name", VARIANTS)
def test_release_layout_writes_the_released_keys(family, name):
    """Writing the release layout gives exactly the keys of the released files (e.g. CrossFormer's
    2021 files, which carry constant buffers the current code does not)."""
    spec, variant = _variant(family, name)
    path = _official_file(spec, variant, ".keys_v1.json") or _official_file(spec, variant)
    manifest = load_manifest(spec, variant)
    layout = spec.layout(variant.release_layout)
    file_state = unwrap(from_canonical(_random_state(manifest), layout, spec, variant.kwargs), layout)
    official = _official_rows(path)
    assert [k[len(layout.prefix) :] for k in file_state] == [r[0] for r in official]
    assert [tuple(v.shape) for v in file_state.values()] == [r[1] for r in official]


@pytest.mark.parametrize("family,name", VARIANTS)
def test_every_layout_round_trips_bit_for_bit(family, name):
    spec, variant = _variant(family, name)
    manifest = load_manifest(spec, variant)
    state = _random_state(manifest)
    for layout in spec.layouts:
        if not layout.applies_to(variant.task):
            continue
        file_obj = from_canonical(state, layout, spec, variant.kwargs)
        back, strays = to_canonical(unwrap(file_obj, layout), layout, spec)
        assert strays == [], (layout.name, strays[:3])
        # keys a layout ignores are, by its declaration, not read from its files (e.g. CrossFormer's
        # backbone_init reads a classifier checkpoint into the dense backbone, which has no norm/head)
        kept = [k for k in state if not any(re.fullmatch(p, layout.prefix + k) for p in layout.ignore)]
        assert list(back) == kept, layout.name
        for key in kept:
            assert back[key].dtype == state[key].dtype and np.array_equal(back[key], state[key]), (layout.name, key)


@pytest.mark.parametrize("family", sorted(SPECS))
def test_renames_are_reversible(family):
    spec = SPECS[family]
    components = {
        part for v in spec.variants if (m := load_manifest(spec, v)) for k in m.entries for part in k.split(".")
    }
    for layout in spec.layouts:
        for rename in layout.renames:
            assert rename.file not in components, f"{layout.name}: {rename.file} is already a canonical component"


def _kind_of_module(module, framework):
    if framework == TORCH:
        import torch.nn as nn

        linear, bns = nn.Linear, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    else:
        import paddle.nn as nn

        linear, bns = nn.Linear, (nn.BatchNorm, nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.SyncBatchNorm)
    if isinstance(module, linear):
        return LayerKind.LINEAR
    if isinstance(module, bns):
        return LayerKind.BATCHNORM
    return LayerKind.PLAIN


def _check_kinds(spec, model, framework):
    modules = model.named_modules() if framework == TORCH else model.named_sublayers()
    wrong = []
    for path, module in modules:
        own = list(
            module.named_parameters(recurse=False)
            if framework == TORCH
            else module.named_parameters(include_sublayers=False)
        )
        if not own and _kind_of_module(module, framework) is LayerKind.PLAIN:
            continue
        if spec.kind_of(path) is not _kind_of_module(module, framework):
            wrong.append(f"{path}: {type(module).__name__} declared {spec.kind_of(path).value}")
    assert not wrong, wrong[:8]


def _entries(model, framework):
    prefix = "torch." if framework == TORCH else "paddle."
    return OrderedDict((k, (tuple(v.shape), str(v.dtype).replace(prefix, ""))) for k, v in model.state_dict().items())


@pytest.mark.slow
@pytest.mark.parametrize("family,name", VARIANTS)
def test_full_size_official_checkpoint_converts_loads_strictly_and_agrees(family, name, tmp_path):
    """Each full-size variant: the PyTorch model has the manifest and the declared kinds; an
    official-layout checkpoint (seeded weights) loads into it with torch's strict loading, converts to
    .pdparams that paddle.load + set_state_dict take with nothing missing or unexpected, converts back
    bit for bit, and both frameworks give the same output."""
    import paddle
    import torch

    from porthub.convert import convert_file, resolve_target
    from porthub.io import save_checkpoint
    from porthub.pairs import seeded_input, seeded_state
    from porthub.runtime import build_model, run_model

    spec, variant = _variant(family, name)
    manifest = load_manifest(spec, variant)
    torch.manual_seed(0)
    tmodel = build_model(spec, variant.model(), TORCH)
    assert _entries(tmodel, TORCH) == manifest.entries
    _check_kinds(spec, tmodel, TORCH)
    state = seeded_state(spec, variant.model(), model=tmodel)
    layout = spec.layout(variant.release_layout)
    official = tmp_path / "official.pth"
    save_checkpoint(from_canonical(state, layout, spec, variant.kwargs), str(official), "pth")
    raw = torch.load(official, map_location="cpu", weights_only=True)
    raw = raw[layout.wrap] if layout.wrap else raw
    # a release layout's declared constants (CrossFormer 2021's coordinate tables) are not model state
    tmodel.load_state_dict(
        {k: v for k, v in raw.items() if not any(re.fullmatch(p, k) for p in layout.constants)}, strict=True
    )

    target = resolve_target(name)
    pd, back = tmp_path / "m.pdparams", tmp_path / "back.pth"
    convert_file(target, str(official), "paddle", str(pd))
    convert_file(target, str(pd), "torch", str(back))
    a = torch.load(official, map_location="cpu", weights_only=True)
    b = torch.load(back, map_location="cpu", weights_only=True)
    a, b = (a[layout.wrap], b[layout.wrap]) if layout.wrap else (a, b)
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith("num_batches_tracked"))

    pmodel = build_model(spec, variant.model(), PADDLE)
    entries = _entries(pmodel, PADDLE)
    predicted = framework_keys(spec, manifest, PADDLE)
    assert set(entries) == set(predicted), sorted(set(entries) ^ set(predicted))[:8]
    assert {k: entries[k] for k in predicted} == dict(predicted)
    _check_kinds(spec, pmodel, PADDLE)
    missing, unexpected = pmodel.set_state_dict(paddle.load(str(pd)))
    assert not missing and not unexpected

    x = seeded_input(variant)
    out_t, _ = run_model(tmodel, x, TORCH)
    out_p, _ = run_model(pmodel, x, PADDLE)
    out_t = np.asarray(out_t[-1] if isinstance(out_t, list) else out_t)
    out_p = np.asarray(out_p[-1] if isinstance(out_p, list) else out_p)
    limit = spec.tolerance(PADDLE).float32 * max(1.0, float(np.abs(out_t).max()))
    assert np.abs(out_p - out_t).max() <= limit


def _structure(path):
    """Classes, their methods, and the ``self.<name>`` assignments of each method, in order."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    attrs = [
                        t.attr
                        for sub in ast.walk(item)
                        if isinstance(sub, ast.Assign)
                        for t in sub.targets
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                    ]
                    out.append((node.name, item.name, tuple(attrs)))
        elif isinstance(node, ast.FunctionDef):
            out.append(("<module>", node.name, ()))
    return out


@pytest.mark.parametrize("module", sorted({spec.module for spec in SPECS.values()} | {"layers"}))
def test_twin_files_have_the_same_structure(module):
    torch_file = os.path.join(ROOT, "torch_models", f"{module}.py")
    paddle_file = os.path.join(ROOT, "paddle_models", f"{module}.py")
    assert _structure(torch_file) == _structure(paddle_file)
