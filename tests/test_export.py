"""Deployment export (issue 17, Paddle side), registry-driven: every family's smallest variant and the smallest
segmentation model.

* ``paddle.jit.to_static`` + ``paddle.jit.save`` + ``paddle.jit.load`` work directly on each porthub Paddle
  model (as ``build_model`` gives it, input check included) and give the eager outputs;
* ``porthub export MODEL --format paddle-inference --weights OFFICIAL.pth`` writes inference.json,
  .pdiparams, inference.yml (PaddleX's fields) and export.json; the artefact, run standalone by a fresh
  Paddle Inference predictor, gives the PyTorch model's outputs within 1e-4 relative;
* an existing folder is refused without ``--force``; a failed verification leaves nothing; bad input is one
  line (JSON with ``--json``) before any model is built.

Full-size exports of the larger smallest variants take a minute each on two busy cores: they are ``slow``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections import OrderedDict

import numpy as np
import pytest
from registry_cases import learned_size, smallest

from porthub.cli import main
from porthub.compare import limit, max_abs_diff
from porthub.engine import from_canonical
from porthub.errors import ExportVerificationError
from porthub.io import save_checkpoint
from porthub.pairs import pair_state, seeded_input, seeded_state
from porthub.registry import resolve
from porthub.spec import PADDLE, TORCH

#: exports up to this cost run in the default (fast) set: learned values times input pixels over 224x224
#: (seaformer_tiny; the 1.7M-parameter segmenter runs at 512x512, five times the work)
_FAST_COST = 2_000_000


def _cost(spec, variant) -> float:
    h, w = variant.input_size
    return learned_size(spec, variant) * h * w / (224 * 224)


def _smallest():
    """The smallest variant of each family and task (classification, segmentation)."""
    return [
        pytest.param(variant.name, id=variant.name,
                     marks=[pytest.mark.slow] if _cost(spec, variant) > _FAST_COST else [])
        for spec, variant in smallest()
    ]


MODELS = _smallest()


def _outputs(out):
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]


def _assert_close(ref, got, tol):
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        diff = max_abs_diff(g, r)
        assert diff <= limit(tol, r), (diff, limit(tol, r))


# ------------------------------------------------------------------------------------------ jit save/load
@pytest.mark.parametrize("name", MODELS)
def test_jit_to_static_save_load_equals_eager(name, tmp_path):
    import paddle
    from paddle.static import InputSpec

    from porthub.runtime import build_model, load_state, run_model

    spec, variant = resolve(name)
    model = build_model(spec, variant.model(), PADDLE)
    load_state(model, seeded_state(spec, variant.model()), spec, PADDLE, name)
    x = seeded_input(variant)
    eager = _outputs(run_model(model, x, PADDLE)[0])
    static = paddle.jit.to_static(model, input_spec=[InputSpec([None, 3, *variant.input_size], "float32", "x")],
                                  full_graph=True)
    prefix = str(tmp_path / "inference")
    paddle.jit.save(static, prefix)
    assert (tmp_path / "inference.json").is_file() and (tmp_path / "inference.pdiparams").is_file()
    loaded = paddle.jit.load(prefix)
    loaded.eval()
    with paddle.no_grad():
        got = _outputs([o.numpy() for o in _outputs_tensors(loaded(paddle.to_tensor(x)))])
    _assert_close(eager, got, 2e-5)


def _outputs_tensors(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


# ------------------------------------------------------------------------------------------ CLI export
def _official_file(name, path):
    """An official-layout checkpoint of ``name`` (the release's keys and container) from seeded weights."""
    spec, variant = resolve(name)
    state = seeded_state(spec, variant.model())
    layout = spec.layout(variant.release_layout)
    # the container (``{"model": ...}`` or a bare state dict) as the release has it
    save_checkpoint(OrderedDict(from_canonical(state, layout, spec, variant.kwargs)), str(path), "pth")
    return str(path)


@pytest.fixture(scope="module", params=MODELS)
def exported(request, tmp_path_factory):
    """(name, weights file, export folder, the CLI's JSON): one export per model for every test below."""
    name = request.param
    root = tmp_path_factory.mktemp(f"export_{name}")
    weights = _official_file(name, root / f"{name}_official.pth")
    out = root / "pi"
    buf = io.StringIO()
    # a oneDNN fallback is one RuntimeWarning (checked where the runner is loaded again, below)
    with contextlib.redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rc = main(["export", name, "--format", "paddle-inference", "--weights", weights, "--out", str(out),
                   "--json"])
    assert rc == 0
    return name, weights, str(out), json.loads(buf.getvalue().strip().splitlines()[-1])


def test_export_writes_the_paddle_inference_files_and_its_report(exported):
    name, _weights, out, report = exported
    assert sorted(os.listdir(out)) == ["export.json", "inference.json", "inference.pdiparams", "inference.yml"]
    with open(os.path.join(out, "export.json"), encoding="utf-8") as fh:
        kept = json.load(fh)
    assert kept["model"] == name and kept["format"] == "paddle-inference" and kept["dtype"] == "float32"
    assert kept["files"] == ["export.json", "inference.json", "inference.pdiparams", "inference.yml"]
    assert kept["verification"]["dynamic"]["ok"] and kept["verification"]["torch"]["ok"]
    assert kept["verification"]["dynamic"]["max_abs_diff"] <= 2e-5 * 100
    assert isinstance(kept["runtime"]["onednn_probe_ok"], bool) and kept["runtime"]["paddle_version"]
    assert report["ok"] is True and report["model"] == name
    # no temporary left beside it
    assert [n for n in os.listdir(os.path.dirname(out)) if n.endswith(".partial")] == []


def test_standalone_predictor_gives_pytorch_outputs(exported):
    import paddle.inference as paddle_infer

    from porthub.runtime import build_model, load_state, run_model

    name, weights, out, _report = exported
    spec, variant = resolve(name)
    x = seeded_input(variant, seed=7)
    torch_model = build_model(spec, variant.model(), TORCH)
    load_state(torch_model, pair_state(name, weights), spec, TORCH, name)
    ref = _outputs(run_model(torch_model, x, TORCH)[0])
    del torch_model
    # a predictor as a Paddle Inference user makes it, without porthub (oneDNN off: Paddle 3.3.1's oneDNN is
    # what the export's probe checks; here the program itself is under test)
    config = paddle_infer.Config(os.path.join(out, "inference.json"), os.path.join(out, "inference.pdiparams"))
    config.disable_gpu()
    config.disable_mkldnn()
    config.disable_glog_info()
    predictor = paddle_infer.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    got = [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
    _assert_close(ref, got, 1e-4)
    # porthub's own runner of the folder (oneDNN as the probe recorded) agrees too
    from porthub.export import load_exported

    recorded = json.load(open(os.path.join(out, "export.json"), encoding="utf-8"))["runtime"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner = load_exported(out)
    fallback = [str(w.message) for w in caught if "oneDNN off" in str(w.message)]
    # the probe is cached in export.json: loading again gives the same choice, one line when it is a fallback
    assert runner.info["onednn"] is recorded["onednn_probe_ok"]
    assert len(fallback) == (0 if recorded["onednn_probe_ok"] else 1)
    if fallback:
        assert recorded["onednn_probe_cause"] in fallback[0]
    assert runner.fmt == "paddle-inference" and runner.model_name == name
    _assert_close(ref, runner(x), 1e-4)


def test_inference_yml_has_paddlex_fields(exported):
    yaml = pytest.importorskip("yaml")
    name, _weights, out, _report = exported
    spec, variant = resolve(name)
    with open(os.path.join(out, "inference.yml"), encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    assert cfg["Global"]["model_name"] == name
    h, w = variant.input_size
    if variant.task == "segmentation":
        transforms = cfg["Deploy"]["transforms"]
        assert transforms[0]["type"] == "Resize" and transforms[0]["target_size"] == [w, h]
        assert transforms[1]["type"] == "Normalize" and len(transforms[1]["mean"]) == 3
        return
    ops = [next(iter(op)) for op in cfg["PreProcess"]["transform_ops"]]
    assert ops == ["ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage"]
    steps = {next(iter(op)): op[next(iter(op))] for op in cfg["PreProcess"]["transform_ops"]}
    from porthub import data_config

    config = data_config(name)
    assert steps["ResizeImage"]["resize_short"] == round(h / config["crop_pct"])
    assert steps["CropImage"]["size"] == h
    assert steps["NormalizeImage"]["mean"] == pytest.approx(list(config["mean"]))
    assert steps["NormalizeImage"]["scale"] == pytest.approx(1 / 255)
    topk = cfg["PostProcess"]["Topk"]
    assert topk["topk"] == 5 and len(topk["label_list"]) == variant.num_classes == 1000
    assert topk["label_list"][0] == "tench"


def test_existing_out_is_refused_without_force(exported, capsys):
    name, weights, out, _report = exported
    before = {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)}
    capsys.readouterr()
    rc = main(["export", name, "--format", "paddle-inference", "--weights", weights, "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "exists" in err[0]
    assert {n: os.path.getmtime(os.path.join(out, n)) for n in os.listdir(out)} == before


# ------------------------------------------------------------------------------------------ failures
def test_failed_verification_leaves_no_folder(tmp_path, monkeypatch):
    import porthub.export.paddle_inference as pi

    real = pi.runner

    def wrong(out_dir, **kwargs):
        run = real(out_dir, **kwargs)

        def call(x):
            return [o + 1.0 for o in run(x)]

        return call

    monkeypatch.setattr(pi, "runner", wrong)
    from porthub.export import export_model

    out = tmp_path / "never"
    # a small input keeps it quick: the rule of seaformer takes any size
    with pytest.raises(ExportVerificationError, match="nothing was kept"):
        export_model("seaformer_tiny", "paddle-inference", out=str(out), input_size=(64, 64),
                     options={"onednn": False})
    assert os.listdir(tmp_path) == []


def test_force_refuses_a_folder_that_is_not_an_export(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    rc = main(["export", "seaformer_tiny", "--format", "paddle-inference", "--out", str(mine), "--force"])
    assert rc == 1 and "not an earlier export" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "precious"


BAD = [
    (["nope", "--format", "paddle-inference"], "unknown model"),
    (["twins_svt_small", "--format", "paddle-inference", "--input-size", "100", "100"], "multiple"),
    (["seaformer_tiny", "--format", "paddle-inference", "--dtype", "float16"], "float16 on the CPU"),
    (["seaformer_tiny", "--format", "paddle-inference", "--legacy-pdmodel"], "FLAGS_enable_pir_api=0"),
    (["seaformer_tiny", "--format", "paddle-inference", "--weights", "/nonexistent.pth"], "does not exist"),
    (["seaformer_tiny", "--format", "paddle-inference", "--device", "tpu"], "unknown device"),
    (["seaformer_tiny", "--format", "paddle-inference", "--out", "/nonexistent/dir/x"], "does not exist"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[b[1] for b in BAD])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_bad_input_is_one_line_before_any_model(argv, message, as_json, capsys, monkeypatch, tmp_path):
    import porthub.runtime as runtime

    def no_build(*_a, **_k):
        raise AssertionError("a model was built before the input was checked")

    monkeypatch.setattr(runtime, "build_model", no_build)
    monkeypatch.chdir(tmp_path)
    rc = main(["export", *argv, *(["--json"] if as_json else [])])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and message in err[0], err
    if as_json:
        line = json.loads(captured.out.strip())
        assert line["ok"] is False and message in line["error"]
    assert os.listdir(tmp_path) == []


def test_fixed_shape_save_runs_the_model_code_as_is_and_leaves_paddle_as_it_was(tmp_path, monkeypatch):
    """porthub's fixed-shape ``jit.save`` lets dy2static run the model's own package as plain Python (Paddle 3.3
    re-translates every sublayer's source at every call otherwise: crossformer_pp_huge 41 s -> 4.6 s) only
    while it saves: Paddle's ignore list is back as it was after it, and a free-batch save of Shunted, whose
    ``reshape([B, H, W, -1])`` needs the rewritten source, still works in the same process."""
    import paddle
    from conftest import reference_cases
    from paddle.jit.dy2static import convert_call_func

    from porthub.registry import get_spec
    from porthub.runtime import build_model, load_state, run_model
    from porthub.runtime.paddle import jit_save_inference
    from porthub.verify import load_case

    case, stem = load_case(next(p for p in reference_cases() if "/shunted/" in p))
    spec = get_spec("shunted")
    ref = spec.case_model(case)
    x = np.load(f"{stem}.input.npy").astype(np.float32)
    before = list(convert_call_func.BUILTIN_LIKELY_MODULES)
    as_is = []
    real = convert_call_func.is_unsupported

    def recorded(func):
        if real(func):
            as_is.append(func)
            return True
        return False

    monkeypatch.setattr(convert_call_func, "is_unsupported", recorded)

    def saved(shape, folder):
        model = build_model(spec, ref, PADDLE)
        load_state(model, seeded_state(spec, ref), spec, PADDLE, "shunted")
        eager = run_model(model, x, PADDLE)[0]
        jit_save_inference(model, str(tmp_path / folder / "inference"), shape, "float32")
        loaded = paddle.jit.load(str(tmp_path / folder / "inference"))
        with paddle.no_grad():
            got = loaded(paddle.to_tensor(x)).numpy()
        _assert_close(_outputs(eager), [got], 2e-5)

    saved(list(x.shape), "fixed")
    ran_as_is = {getattr(f, "__qualname__", "") for f in as_is if "paddle_models" in getattr(f, "__module__", "")}
    # the entry forward is rewritten; what it calls of the model's package runs as is (and all below it)
    assert any(name.endswith(".forward_features") for name in ran_as_is), ran_as_is
    assert convert_call_func.BUILTIN_LIKELY_MODULES == before
    as_is.clear()
    saved([None, *x.shape[1:]], "free")
    assert not [f for f in as_is if "paddle_models" in getattr(f, "__module__", "")]
