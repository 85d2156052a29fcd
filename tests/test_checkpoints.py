"""Checkpoints as users really have them (issue 15): one reading rule for every family, and no file
ever destroyed.

Driven by the registry and the reference cases: every family's mini case (Twins PCPVT and SVT,
CrossFormer and CrossFormer++, SeaFormer classification and segmentation included) is saved the ways
training code and releases save it (bare, ``{"model"}`` with training entries, mmcv
``{"meta", "state_dict"}``, timm's ``{"state_dict", "state_dict_ema"}``, DataParallel's ``module.``,
torch.compile's ``_orig_mod.``, a yacs config entry, float16), each with ``torch.save``. Each converts
to Paddle; the float32 forms give byte-identical files, which load strictly into porthub's Paddle
model and match the PyTorch model's output within the float32 rule (float16: the same, against the
PyTorch model given the same float16 weights). Every registered variant's full-size key list
converts as a bare state dict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
from conftest import DATA, reference_cases

from porthub.convert import (
    closest_variants,
    convert,
    convert_file,
    default_output,
    read_checkpoint,
    resolve_target,
)
from porthub.engine import (
    CONTAINERS,
    find_state,
    framework_keys,
    from_canonical,
    read_state,
)
from porthub.errors import (
    KeyMismatchError,
    LayoutError,
    OutputExistsError,
    OutputPathError,
    PorthubError,
    UnknownLayoutError,
)
from porthub.io import load_checkpoint, save_checkpoint
from porthub.io.dtypes import cast_floats, is_bfloat16
from porthub.manifest import load_manifest
from porthub.registry import all_specs
from porthub.spec import PADDLE, TORCH

SPECS = {spec.family: spec for spec in all_specs()}
CASES = [
    pytest.param(path, id=f"{os.path.basename(os.path.dirname(path))}-{os.path.basename(path)[:-5]}")
    for path in reference_cases()
]
FORMS = (
    "bare",
    "model_training",
    "meta_state_dict",
    "ema",
    "module_prefix",
    "orig_mod_prefix",
    "yacs_config",
    "float16",
)
#: the container each form's weights are found in
CONTAINER = {
    "bare": None,
    "model_training": "model",
    "meta_state_dict": "state_dict",
    "ema": "state_dict_ema",
    "module_prefix": None,
    "orig_mod_prefix": None,
    "yacs_config": "model",
    "float16": None,
}


def _case(path):
    with open(path, encoding="utf-8") as fh:
        case = json.load(fh)
    return case, SPECS[case["family"]]


def test_every_family_has_a_mini_case():
    families = {_case(path)[0]["family"] for path in reference_cases()}
    assert families == set(SPECS), (
        f"families without a reference case to test checkpoint forms on: {set(SPECS) - families}"
    )


def _released_state(path):
    """The case's weights as the official code's state_dict() holds them (the released layout's
    keys, without its container), and the target to convert them for."""
    case, spec = _case(path)
    target = resolve_target(case["family"], path)
    reading = read_state(
        load_checkpoint(path[:-5] + ".pth"), spec, target.manifest(), (TORCH,), prefer=spec.case_layout(case)
    )
    layout = reading.layout
    released = from_canonical(reading.state, layout, spec, target.ref.kwargs)
    if layout.wrap is not None:
        released = released[layout.wrap]
    return target, reading.state, OrderedDict(released)


def _torch_save(obj, path):
    import torch

    def tensors(value):
        if isinstance(value, np.ndarray):
            return torch.from_numpy(np.array(value))
        if isinstance(value, dict) and not type(value).__module__.startswith("yacs"):
            return type(value)((k, tensors(v)) for k, v in value.items())
        return value

    torch.save(tensors(obj), str(path))


def _training_entries(sd):
    first = next(k for k, v in sd.items() if v.dtype.kind == "f")
    return {
        "optimizer": {
            "state": {
                0: {
                    "step": np.array(10.0, np.float32),
                    "exp_avg": np.ones_like(sd[first]),
                    "exp_avg_sq": np.ones_like(sd[first]),
                }
            },
            "param_groups": [{"lr": 1e-3, "weight_decay": 0.05, "params": [0]}],
        },
        "lr_scheduler": {"last_epoch": 3, "base_lrs": [1e-3]},
        "scaler": {"scale": 65536.0, "_growth_tracker": 7},
        "epoch": 3,
        "max_accuracy": 81.2,
        "args": argparse.Namespace(model="x", lr=1e-3),
    }


def _yacs_config():
    from yacs.config import CfgNode

    config = CfgNode()
    config.MODEL = CfgNode()
    config.MODEL.TYPE = "mini"
    config.MODEL.DROP_PATH_RATE = 0.1
    config.TRAIN = CfgNode()
    config.TRAIN.BASE_LR = 5e-4
    config.freeze()
    return config


def _form(form, sd):
    if form == "bare":
        return sd
    if form == "model_training":
        return {"model": sd, **_training_entries(sd)}
    if form == "meta_state_dict":
        return {
            "meta": {"mmseg_version": "0.20.2", "CLASSES": ["a", "b"], "config": "model = dict(...)"},
            "state_dict": sd,
            "optimizer": _training_entries(sd)["optimizer"],
        }
    if form == "ema":
        # the raw weights differ from the EMA weights: the file converts to the EMA ones
        raw = OrderedDict((k, v * 0.5 if v.dtype.kind == "f" else v) for k, v in sd.items())
        return {
            "state_dict": raw,
            "state_dict_ema": sd,
            "optimizer": _training_entries(sd)["optimizer"],
            "version": 2,
            "arch": "mini",
            "epoch": 299,
            "metric": 68.1,
        }
    if form == "module_prefix":
        return OrderedDict((f"module.{k}", v) for k, v in sd.items())
    if form == "orig_mod_prefix":
        return OrderedDict((f"_orig_mod.{k}", v) for k, v in sd.items())
    if form == "yacs_config":
        return {"model": sd, "config": _yacs_config(), "epoch": 10, "max_accuracy": 70.0}
    if form == "float16":
        return OrderedDict((k, v.astype(np.float16) if v.dtype.kind == "f" else v) for k, v in sd.items())
    raise AssertionError(form)


def _digest(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _outputs_match(spec, target, case_path, canonical, pd_path, float16=False):
    """Load the converted Paddle file strictly into porthub's Paddle model; its output on the case's
    input must match the PyTorch model holding the same weights, within the float32 rule."""
    from porthub.runtime import build_model, load_state, run_model

    x = np.load(case_path[:-5] + ".input.npy")
    paddle_state = read_state(load_checkpoint(pd_path), spec, target.manifest(), (PADDLE,))
    assert paddle_state.layout.framework == PADDLE
    for key, value in paddle_state.state.items():
        assert value.dtype == (np.float16 if float16 and canonical[key].dtype.kind == "f" else canonical[key].dtype), (
            key
        )
    paddle_model = build_model(spec, target.ref, PADDLE)
    load_state(paddle_model, paddle_state.state, spec, PADDLE)  # strict: every key, every shape
    torch_weights = OrderedDict(
        (k, v.astype(np.float16) if float16 and v.dtype.kind == "f" else v) for k, v in canonical.items()
    )
    torch_model = build_model(spec, target.ref, TORCH)
    load_state(torch_model, torch_weights, spec, TORCH)
    ref, _ = run_model(torch_model, x, TORCH)
    got, _ = run_model(paddle_model, x, PADDLE)
    refs, gots = (ref if isinstance(ref, list) else [ref]), (got if isinstance(got, list) else [got])
    assert len(refs) == len(gots)
    tol = spec.tolerance(PADDLE).float32
    for r, g in zip(refs, gots):
        r, g = np.asarray(r, np.float64), np.asarray(g, np.float64)
        assert r.shape == g.shape
        limit = tol * max(1.0, float(np.abs(r).max()))
        assert float(np.abs(r - g).max()) <= limit, (float(np.abs(r - g).max()), limit)


@pytest.mark.parametrize("case_path", CASES)
def test_every_saved_form_converts_and_matches(case_path, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("paddle")
    pytest.importorskip("yacs")
    _case_data, spec = _case(case_path)
    target, canonical, released = _released_state(case_path)
    digests = {}
    for form in FORMS:
        src = tmp_path / f"{form}.pth"
        _torch_save(_form(form, released), src)
        before = _digest(src)
        result = convert_file(target, str(src), "paddle", str(tmp_path / f"{form}.pdparams"))
        assert result["container"] == CONTAINER[form], (form, result)
        assert result["stripped"] == {"module_prefix": ["module."], "orig_mod_prefix": ["_orig_mod."]}.get(form, []), (
            form
        )
        assert result["dtypes"] == (["float16"] if form == "float16" else ["float32"]), form
        assert _digest(src) == before
        written = load_checkpoint(result["out"])
        assert result["tensors"] == len(written) == len(framework_keys(spec, target.manifest(), PADDLE))
        digests[form] = _digest(result["out"])
    # every float32 form holds the same weights, so the Paddle files are the same bytes
    float32_forms = [f for f in FORMS if f != "float16"]
    assert len({digests[f] for f in float32_forms}) == 1, {f: digests[f][:8] for f in float32_forms}
    _outputs_match(spec, target, case_path, canonical, str(tmp_path / "bare.pdparams"))
    _outputs_match(spec, target, case_path, canonical, str(tmp_path / "float16.pdparams"), float16=True)


def test_training_entries_are_skipped_unread():
    """The reading rule never looks inside the entries it skips: an entry that fails on any access
    is never touched."""

    class Untouchable:
        def __getattribute__(self, name):
            raise AssertionError(f"the reading rule looked at a skipped entry ({name})")

    sd = OrderedDict(w=np.zeros(3, np.float32))
    for raw in (
        {"model": sd, "optimizer": Untouchable(), "config": Untouchable()},
        {"w": sd["w"], "optimizer": Untouchable(), "epoch": 3},
    ):
        state, _container, _stripped, skipped = find_state(raw)
        assert list(state) == ["w"] and "optimizer" in skipped


def test_container_precedence_is_ema_first():
    arrays = {name: OrderedDict(w=np.full(2, i, np.float32)) for i, name in enumerate(CONTAINERS)}
    for i in range(len(CONTAINERS)):
        raw = {name: arrays[name] for name in CONTAINERS[i:]}
        state, container, _, _ = find_state(raw)
        assert container == CONTAINERS[i] and state["w"][0] == i


def test_a_file_with_no_state_dict_says_where_porthub_looks():
    with pytest.raises(LayoutError, match="holds no state dict.*state_dict_ema"):
        find_state({"optimizer": {"lr": 1.0}, "epoch": 3})


def test_module_and_compile_prefixes_nest():
    state, _, stripped, _ = find_state({"module._orig_mod.a.weight": np.zeros(1, np.float32)})
    assert list(state) == ["a.weight"] and stripped == ("module.", "_orig_mod.")


def test_yacs_config_reads_as_inert_data(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("yacs")
    path = tmp_path / "cfg.pth"
    _torch_save({"config": _yacs_config(), "model": {"w": np.ones(2, np.float32)}}, path)
    raw = load_checkpoint(str(path))
    assert type(raw["config"]) is dict and raw["config"]["MODEL"]["TYPE"] == "mini"
    assert not any(callable(v) for v in raw["config"].values())


def test_yacs_config_is_not_imported_when_read(tmp_path):
    """The stand-in is porthub's: reading a yacs config in a process without yacs works and imports nothing."""
    pytest.importorskip("torch")
    pytest.importorskip("yacs")
    path = tmp_path / "cfg.pth"
    _torch_save({"config": _yacs_config(), "model": {"w": np.ones(2, np.float32)}}, path)
    code = (
        "import sys; sys.modules['yacs'] = None; sys.modules['torch'] = None; from porthub.io import load_checkpoint; "
        f"raw = load_checkpoint({str(path)!r}); print(raw['config']['TRAIN']['BASE_LR'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "0.0005", proc.stderr


# ---------------------------------------------------------------------------------- layouts
def test_from_layout_forces_the_layout(tmp_path):
    path = os.path.join(DATA, "shunted", "mini_a.json")
    target = resolve_target("shunted", path)
    pth = os.path.join(DATA, "shunted", "mini_a.pth")
    result = convert_file(target, pth, "paddle", str(tmp_path / "a.pdparams"), source_layout="main_py")
    assert result["from_layout"] == "main_py"
    with pytest.raises(UnknownLayoutError, match=r"no layout 'nope'; known layouts: official \(torch\), paddle"):
        convert_file(target, pth, "paddle", str(tmp_path / "b.pdparams"), source_layout="nope")
    assert not (tmp_path / "b.pdparams").exists()


def test_paddleclas_is_the_paddle_layout(tmp_path):
    target = resolve_target("shunted", os.path.join(DATA, "shunted", "mini_a.json"))
    pth = os.path.join(DATA, "shunted", "mini_a.pth")
    a = convert_file(target, pth, "paddle", str(tmp_path / "a.pdparams"), layout="paddleclas")
    b = convert_file(target, pth, "paddle", str(tmp_path / "b.pdparams"))
    assert a["to_layout"] == "paddle" and _digest(a["out"]) == _digest(b["out"])


def test_class_num_is_num_classes(tmp_path):
    with open(os.path.join(DATA, "twins", "pcpvt_mini_a.json"), encoding="utf-8") as fh:
        case = json.load(fh)
    config = {"constructor": case["constructor"], "kwargs": dict(case["kwargs"])}
    config["kwargs"]["class_num"] = config["kwargs"].pop("num_classes")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    target = resolve_target("twins", str(path))
    assert target.ref.kwargs["num_classes"] == case["kwargs"]["num_classes"] and "class_num" not in target.ref.kwargs


def test_paddleseg_config_names_lead_to_the_segmentation_variant():
    assert resolve_target("seaformer_tiny_ade20k_512x512_160k").name == "seaformer_seg_tiny"
    assert resolve_target("seaformer_base_cityscapes_1024x1024_160k").name == "seaformer_seg_base_cityscapes"


def _zero_state(spec, variant, manifest):
    """The release file's keys and shapes at full size, as zero-stride arrays (no memory)."""
    state = OrderedDict((k, np.broadcast_to(np.zeros((), d), s)) for k, (s, d) in manifest.entries.items())
    layout = spec.layout(variant.release_layout)
    released = from_canonical(state, layout, spec, variant.kwargs)
    return state, (released[layout.wrap] if layout.wrap is not None else released)


VARIANTS = [pytest.param(spec.family, v.name, id=v.name) for spec in all_specs() for v in spec.variants]


@pytest.mark.parametrize("family,name", VARIANTS)
def test_full_size_official_keys_convert_as_a_bare_state_dict(family, name):
    spec = SPECS[family]
    variant = next(v for v in spec.variants if v.name == name)
    manifest = load_manifest(spec, variant)
    _state, bare = _zero_state(spec, variant, manifest)
    reading = read_state(OrderedDict(bare), spec, manifest, (TORCH,), task=variant.task)
    assert reading.container is None and list(reading.state) == manifest.keys()
    paddle = from_canonical(reading.state, spec.default_layout(PADDLE), spec, variant.kwargs)
    assert {k: tuple(v.shape) for k, v in paddle.items()} == {
        k: s for k, (s, _) in framework_keys(spec, manifest, PADDLE).items()
    }
    # and the mmcv / training forms of the same keys
    for raw in (
        {"state_dict": bare, "meta": {}},
        {"model": bare, "epoch": 1},
        {f"module.{k}": v for k, v in bare.items()},
    ):
        assert list(read_state(raw, spec, manifest, (TORCH,), task=variant.task).state) == manifest.keys()


def test_a_file_of_another_variant_is_named():
    spec = SPECS["twins"]
    small = next(v for v in spec.variants if v.name == "twins_pcpvt_small")
    _, bare = _zero_state(spec, small, load_manifest(spec, small))
    assert closest_variants(OrderedDict(bare))[0] == ("twins_pcpvt_small", 1.0)


def test_mismatch_error_names_the_variant_the_file_fits(tmp_path):
    spec = SPECS["twins"]
    small = next(v for v in spec.variants if v.name == "twins_pcpvt_small")
    state = OrderedDict((k, np.zeros(s, d)) for k, (s, d) in load_manifest(spec, small).entries.items())
    src = tmp_path / "pcpvt_small.pth"
    save_checkpoint(state, str(src), "pth")
    with pytest.raises(KeyMismatchError, match="this looks like a checkpoint of twins_pcpvt_small") as err:
        convert("twins_svt_small", str(src), "paddle", str(tmp_path / "x.pdparams"))
    assert "Details: checkpoint does not fit twins_svt_small" in str(err.value)
    assert not (tmp_path / "x.pdparams").exists()


def test_segmentation_file_under_the_classification_name_says_so(tmp_path):
    spec = SPECS["seaformer"]
    seg = next(v for v in spec.variants if v.name == "seaformer_seg_tiny")
    state = OrderedDict((k, np.zeros(s, d)) for k, (s, d) in load_manifest(spec, seg).entries.items())
    src = tmp_path / "seg.pth"
    save_checkpoint({"meta": {}, "state_dict": state}, str(src), "pth")
    with pytest.raises(KeyMismatchError, match="looks like a checkpoint of seaformer_seg_tiny \\(segmentation"):
        convert("SeaFormer_tiny", str(src), "paddle", str(tmp_path / "x.pdparams"))
    result = convert("seaformer_tiny_ade20k_512x512_160k", str(src), "paddle", str(tmp_path / "x.pdparams"))
    assert result["model"] == "seaformer_seg_tiny" and result["from_layout"] == "mmseg"
    assert len(result["notes"]) == 1 and "'paddleseg'" in result["notes"][0]
    assert (
        convert("seaformer_seg_tiny", str(src), "paddle", str(tmp_path / "y.pdparams"), layout="paddleseg")["notes"]
        == []
    )


# -------------------------------------------------------------------------------- half types
def test_bfloat16_converts_word_for_word(tmp_path):
    torch = pytest.importorskip("torch")
    case = os.path.join(DATA, "shunted", "mini_a.json")
    target = resolve_target("shunted", case)
    sd = torch.load(os.path.join(DATA, "shunted", "mini_a.pth"), weights_only=True)
    bf = {k: (v.bfloat16() if v.is_floating_point() else v) for k, v in sd.items()}
    src = tmp_path / "bf16.pth"
    torch.save(bf, str(src))
    pd = convert_file(target, str(src), "paddle", str(tmp_path / "bf16.pdparams"))
    assert pd["dtypes"] == ["bfloat16"]
    back = convert_file(target, pd["out"], "torch", str(tmp_path / "back.pth"))
    again = torch.load(back["out"], weights_only=True)
    for key, value in bf.items():
        assert again[key].dtype == value.dtype and torch.equal(again[key], value), key
    st = convert_file(target, str(src), "torch", str(tmp_path / "bf16.safetensors"), fmt="safetensors")
    assert all(is_bfloat16(v) for k, v in load_checkpoint(st["out"]).items() if "num_batches" not in k)
    # Paddle reads the words as bfloat16
    paddle = pytest.importorskip("paddle")
    loaded = paddle.load(pd["out"])
    key = next(k for k in loaded if k.endswith("head.weight"))
    assert str(loaded[key].dtype) == "paddle.bfloat16"
    np.testing.assert_array_equal(loaded[key].astype("float32").numpy(), bf["head.weight"].float().numpy().T)
    # reading the file for a model, porthub takes Paddle's uint16 as the bfloat16 it is
    state, found = read_checkpoint(pd["out"], "shunted", config=case)
    assert found.dtypes == ("bfloat16",) and is_bfloat16(state["head.weight"])
    np.testing.assert_array_equal(cast_floats(state["head.weight"], "float32"), bf["head.weight"].float().numpy())


def test_dtype_casts_only_when_asked(tmp_path):
    target = resolve_target("shunted", os.path.join(DATA, "shunted", "mini_a.json"))
    pth = os.path.join(DATA, "shunted", "mini_a.pth")
    half = convert_file(target, pth, "paddle", str(tmp_path / "h.pdparams"), dtype="float16")
    state = load_checkpoint(half["out"])
    assert {str(v.dtype) for v in state.values() if v.dtype.kind == "f"} == {"float16"}
    assert half["dtypes"] == ["float16"]
    assert {v.dtype.kind for k, v in state.items() if v.dtype.kind != "f"} <= {"i"}


# ------------------------------------------------------------------------- never destroy a file
CASE = os.path.join(DATA, "shunted", "mini_a.json")
PTH = os.path.join(DATA, "shunted", "mini_a.pth")


def _porthub(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "porthub.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False
    )


def _snapshot(folder):
    return {name: _digest(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


def test_out_equal_to_src_is_refused_even_with_force(tmp_path):
    src = tmp_path / "ckpt_T.pth"
    shutil.copyfile(PTH, src)
    before = _snapshot(tmp_path)
    for extra in ((), ("--force",)):
        p = _porthub(
            "convert", "shunted", "--config", CASE, "--to", "torch", "--src", str(src), "--out", str(src), *extra
        )
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and "never writes over its source" in p.stderr, p.stderr
    # and through another name for the same file
    (tmp_path / "link.pth").symlink_to(src)
    p = _porthub(
        "convert",
        "shunted",
        "--config",
        CASE,
        "--to",
        "torch",
        "--src",
        str(tmp_path / "link.pth"),
        "--out",
        str(src),
        "--force",
    )
    assert p.returncode == 1 and "never writes over its source" in p.stderr
    with pytest.raises(OutputExistsError):
        convert_file(resolve_target("shunted", CASE), str(src), "torch", str(src), force=True)
    (tmp_path / "link.pth").unlink()
    assert _snapshot(tmp_path) == before


def test_existing_output_needs_force(tmp_path):
    src = tmp_path / "ckpt_T.pth"
    shutil.copyfile(PTH, src)
    out = tmp_path / "mine.pdparams"
    out.write_bytes(b"the user's own file")
    before = _snapshot(tmp_path)
    p = _porthub("convert", "shunted", "--config", CASE, "--to", "paddle", "--src", str(src), "--out", str(out))
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "--force" in p.stderr and "exists" in p.stderr, p.stderr
    assert ".partial" not in p.stderr and "Traceback" not in p.stderr
    assert _snapshot(tmp_path) == before
    p = _porthub(
        "convert", "shunted", "--config", CASE, "--to", "paddle", "--src", str(src), "--out", str(out), "--force"
    )
    assert p.returncode == 0, p.stderr
    assert load_checkpoint(str(out)) and _digest(src) == before["ckpt_T.pth"]


def test_default_output_of_a_round_trip_keeps_every_file(tmp_path):
    src = tmp_path / "ckpt_T.pth"
    shutil.copyfile(PTH, src)
    p = _porthub("convert", "shunted", "--config", CASE, "--to", "paddle", "--src", "ckpt_T.pth", cwd=tmp_path)
    assert p.returncode == 0 and "ckpt_T.pdparams" in p.stdout, p.stderr
    before = _snapshot(tmp_path)
    p = _porthub("convert", "shunted", "--config", CASE, "--to", "torch", "--src", "ckpt_T.pdparams", cwd=tmp_path)
    assert p.returncode == 0 and "ckpt_T_torch.pth" in p.stdout, p.stderr
    after = _snapshot(tmp_path)
    assert {k: after[k] for k in before} == before and set(after) - set(before) == {"ckpt_T_torch.pth"}
    # a second time the default name exists too: refused, nothing changes
    p = _porthub("convert", "shunted", "--config", CASE, "--to", "torch", "--src", "ckpt_T.pdparams", cwd=tmp_path)
    assert p.returncode == 1 and "exists" in p.stderr and _snapshot(tmp_path) == after
    assert default_output("a/x.pth", "torch", "pth") == "a/x_torch.pth"


def test_out_directory_gets_the_default_name_and_missing_parent_is_an_error(tmp_path):
    (tmp_path / "outdir").mkdir()
    p = _porthub(
        "convert", "shunted", "--config", CASE, "--to", "paddle", "--src", PTH, "--out", str(tmp_path / "outdir")
    )
    assert p.returncode == 0, p.stderr
    assert os.listdir(tmp_path / "outdir") == ["mini_a.pdparams"]
    p = _porthub(
        "convert",
        "shunted",
        "--config",
        CASE,
        "--to",
        "paddle",
        "--src",
        PTH,
        "--out",
        str(tmp_path / "typo" / "m.pdparams"),
    )
    assert (
        p.returncode == 1 and p.stderr.count("\n") == 1 and "does not exist" in p.stderr and ".partial" not in p.stderr
    )
    assert not (tmp_path / "typo").exists()
    with pytest.raises(OutputPathError):
        convert_file(resolve_target("shunted", CASE), PTH, "paddle", str(tmp_path / "typo" / "m.pdparams"))


def test_summary_names_layout_container_and_tensors(tmp_path):
    src = tmp_path / "train.pth"
    save_checkpoint({"model": load_checkpoint(PTH), "epoch": 3, "optimizer": {"state": {}}}, str(src), "pth")
    p = _porthub(
        "convert",
        "shunted",
        "--config",
        CASE,
        "--to",
        "paddle",
        "--src",
        str(src),
        "--out",
        str(tmp_path / "o.pdparams"),
    )
    assert p.returncode == 0, p.stderr
    n = len(load_checkpoint(str(tmp_path / "o.pdparams")))
    assert f"{n} tensors" in p.stdout and "layout main_py ('model' entry)" in p.stdout, p.stdout


def test_python_api(tmp_path):
    state, found = read_checkpoint(PTH, "shunted", config=CASE)
    assert found.layout == "official" and found.container is None and len(state) > 100
    result = convert("shunted", PTH, "paddle", out=str(tmp_path / "m.pdparams"), config=CASE)
    assert result["out"] == str(tmp_path / "m.pdparams")
    with pytest.raises(OutputExistsError):
        convert("shunted", PTH, "paddle", out=str(tmp_path / "m.pdparams"), config=CASE)
    assert (
        convert("shunted", PTH, "paddle", out=str(tmp_path / "m.pdparams"), config=CASE, force=True)["tensors"]
        == result["tensors"]
    )
    back, found = read_checkpoint(str(tmp_path / "m.pdparams"), "shunted", config=CASE)
    assert found.layout == "paddle" and list(back) == list(state)
    assert all(isinstance(e, PorthubError) for e in (OutputExistsError("x"), OutputPathError("x")))
    # the package-level names, before and after the porthub.convert module is imported
    import porthub

    result = porthub.convert("shunted", PTH, to="paddle", out=str(tmp_path / "n.pdparams"), config=CASE)
    assert result["tensors"] == len(load_checkpoint(str(tmp_path / "n.pdparams")))
    state2, found2 = porthub.read_checkpoint(result["out"], "shunted", config=CASE)
    assert found2.layout == "paddle" and list(state2) == list(state)


# ------------------------------------------------------------------------------- verify flags
def test_verify_refuses_impossible_combinations_before_any_work(tmp_path):
    for args, words in (
        (("shunted_t", "--checkpoint", str(tmp_path / "nope.pth")), "no such checkpoint"),
        (
            ("--reference", os.path.join(DATA, "shunted", "mini_a.json"), "--weights", str(tmp_path / "nope.pth")),
            "no such checkpoint",
        ),
        (("seaformer_seg_tiny", "--topk", "5"), "segmentation model"),
        (("shunted_t", "--framework", "torch"), "--reference"),
        (("shunted_t", "--weights", PTH, "--checkpoint", CASE), "pass one"),
    ):
        p = _porthub("verify", *args)
        assert p.returncode == 1 and p.stderr.count("\n") == 1 and words in p.stderr, (args, p.stderr)


def test_verify_reference_honours_checkpoint_and_framework(tmp_path):
    """--checkpoint replaces the case's weights: other weights make the comparison fail."""
    other = tmp_path / "other.pth"
    save_checkpoint(
        {k: (v * 1.5 if v.dtype.kind == "f" else v) for k, v in load_checkpoint(PTH).items()}, str(other), "pth"
    )
    p = _porthub(
        "verify", "--reference", CASE, "--checkpoint", str(other), "--framework", "torch", "--no-features", "--json"
    )
    report = json.loads(p.stdout)
    assert p.returncode == 1 and not report["ok"] and {r["framework"] for r in report["results"]} == {"torch"}


def test_verify_model_without_features_says_weights_are_seeded():
    p = _porthub("verify", "shunted_t", "--no-features")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("weights: seeded random") and "per layer: not compared" in p.stdout


def test_importing_paddle_through_porthub_is_quiet_but_not_silent(tmp_path):
    """A stand-in paddle package that makes Paddle's noise and one real message: only the real one
    reaches stderr, and the root logger is as it was."""
    fake = tmp_path / "paddle"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        "import logging, os, sys, warnings\n"
        "n = int(os.environ.get('OMP_NUM_THREADS', '1'))\n"
        "if n > 1:\n"
        "    print(f'WARNING: OMP_NUM_THREADS set to {n}, not 1. "
        "The computation speed will not be optimized.', file=sys.stderr)\n"
        "    print('PLEASE USE OMP_NUM_THREADS WISELY.', file=sys.stderr)\n"
        "warnings.warn('No ccache found. Please be aware that recompiling all source files may be required.')\n"
        "print('a real problem', file=sys.stderr)\n"
        "logging.basicConfig(level=logging.INFO)\n"
    )
    code = (
        "import logging; from porthub.runtime import import_framework; import_framework('paddle'); "
        "print(len(logging.getLogger().handlers), logging.getLogger().level)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "a real problem\n", p.stderr
    assert p.stdout.split() == ["0", "30"]


def test_a_closed_pipe_is_not_an_error_message():
    """`porthub list | head -1`: the reader stops early; porthub says nothing about it."""
    reader = subprocess.Popen(
        [sys.executable, "-m", "porthub.cli", "list", "--aliases"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    reader.stdout.close()  # what `head -1` does after its line, here before porthub writes anything
    _, err = reader.communicate(timeout=120)
    assert b"Broken pipe" not in err and b"Traceback" not in err, err


#: the first registered variant of each family and task (every variant's keys are read in memory above)
FIRST_VARIANTS = [
    pytest.param(spec.family, v.name, id=v.name)
    for spec in all_specs()
    for v in {v.task: v for v in reversed(spec.variants)}.values()
]


@pytest.mark.slow
@pytest.mark.parametrize("family,name", FIRST_VARIANTS)
def test_full_size_bare_files_convert_both_ways(family, name, tmp_path):
    """The same as files: a full-size bare state dict (zeros: the bytes do not matter, the keys and
    shapes do) converts to Paddle and back to the released layout with every key and shape."""
    spec = SPECS[family]
    variant = next(v for v in spec.variants if v.name == name)
    manifest = load_manifest(spec, variant)
    _state, bare = _zero_state(spec, variant, manifest)
    src = tmp_path / f"{name}.pth"
    save_checkpoint(OrderedDict(bare), str(src), "pth")
    to = convert(name, str(src), "paddle", str(tmp_path / "p.pdparams"))
    assert to["container"] is None and to["tensors"] == len(framework_keys(spec, manifest, PADDLE))
    back = convert(name, to["out"], "torch", str(tmp_path / "back.pth"))
    released = load_checkpoint(back["out"])
    layout = spec.layout(variant.release_layout)
    released = released[layout.wrap] if layout.wrap is not None else released
    assert [(k, tuple(v.shape)) for k, v in released.items()] == [(k, tuple(v.shape)) for k, v in bare.items()]


def test_json_errors_are_json(tmp_path):
    p = _porthub("convert", "shunted_t", "--to", "paddle", "--src", str(tmp_path / "nope.pth"), "--json")
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    error = json.loads(p.stdout)
    assert error == {"ok": False, "error": f"no such checkpoint: {tmp_path / 'nope.pth'}", "type": "FileNotFoundError"}
    p = _porthub(
        "convert", "shunted", "--config", CASE, "--to", "paddle", "--src", PTH, "--from-layout", "nope", "--json"
    )
    assert json.loads(p.stdout)["error"].startswith("shunted has no layout 'nope'")  # no KeyError quotes


_PEAK = """import sys; sys.modules['torch'] = None; sys.modules['paddle'] = None
from porthub.convert import convert
convert(sys.argv[1], sys.argv[2], 'paddle', sys.argv[3])
print([int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')][0] * 1024)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_training_entries_cost_no_memory(tmp_path):
    """A training save three times the weights' size (AdamW's two moments) converts in the memory the
    bare weights take: the skipped tensors stay unread pages of the mapped file."""
    spec = SPECS["shunted"]
    variant = spec.variants[0]
    rng = np.random.default_rng(0)
    state = OrderedDict(
        (k, rng.standard_normal(s).astype(d) if np.dtype(d).kind == "f" else np.zeros(s, d))
        for k, (s, d) in load_manifest(spec, variant).entries.items()
    )
    bare, train = tmp_path / "bare.pth", tmp_path / "train.pth"
    save_checkpoint(state, str(bare), "pth")
    moments = {i: {"exp_avg": v, "exp_avg_sq": v} for i, v in enumerate(state.values()) if v.dtype.kind == "f"}
    save_checkpoint({"model": state, "optimizer": {"state": moments}, "epoch": 3}, str(train), "pth")
    assert os.path.getsize(train) > 2.9 * os.path.getsize(bare)
    peaks = {}
    for name, src in (("bare", bare), ("train", train)):
        p = subprocess.run(
            [sys.executable, "-c", _PEAK, variant.name, str(src), str(tmp_path / f"{name}.pdparams")],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert p.returncode == 0, p.stderr
        peaks[name] = int(p.stdout.split()[-1])
    assert _digest(tmp_path / "bare.pdparams") == _digest(tmp_path / "train.pdparams")
    # the extra is the bigger pickle and zip directory (per entry), far below the skipped tensors' bytes
    skipped = os.path.getsize(train) - os.path.getsize(bare)
    assert peaks["train"] - peaks["bare"] < 0.25 * skipped, (peaks, skipped)
