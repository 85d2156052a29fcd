"""ONNX and TorchScript export (issue 17), registry- and case-driven.

* Every reference case (the official code's small models, their official ``.pth`` files): the PyTorch model
  exported to ONNX with a free batch axis passes ``onnx.checker``; ONNX Runtime, run standalone on the file,
  gives the official float64 output within the float32 rule (2e-5 relative) and PyTorch's within 1e-4
  relative, at batch 1 and 3; the TorchScript file traced from it gives PyTorch's output.
* Every family's smallest variant and the smallest segmentation variant at full size (``slow``): exported from
  an official-layout file written from seeded weights, ONNX Runtime within 1e-4 relative of PyTorch at batch 1
  and 3; TorchScript likewise.
* ONNX from the Paddle model through paddle2onnx (``via="paddle2onnx"``, PaddleX's high-performance inference
  route to ONNX Runtime): every reference case's Paddle model with its official weights, ONNX Runtime within the
  float32 rule of the official float64 output and 1e-4 relative of Paddle and PyTorch, at batch 1 and 3; every
  family's smallest variant through ``export_model`` (``slow``).
* The format modules' contract: FRAMEWORK, FILES, options refused in one line, fixed batch when not asked.
"""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import pytest
from conftest import reference_cases
from registry_cases import smallest

from porthub.compare import compare_outputs, limit, max_abs_diff
from porthub.convert import resolve_target
from porthub.engine import from_canonical, read_state
from porthub.errors import DeviceError, InputError
from porthub.io import load_checkpoint, save_checkpoint
from porthub.pairs import pair_state, seeded_input, seeded_state
from porthub.runtime import build_model, load_state, run_model
from porthub.spec import TORCH
from porthub.verify import load_case

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from porthub.export import onnx as onnx_format  # noqa: E402
from porthub.export import torchscript as ts_format  # noqa: E402

#: the deployment target of the issue: an artefact run by its own runtime within 1e-4 relative of PyTorch
DEPLOY_TOL = 1e-4
#: the float32 rule of porthub (against the official float64 output)
FLOAT32_TOL = 2e-5


def _case_params() -> list:
    return [pytest.param(path, id=f"{load_case(path)[0]['family']}-{os.path.basename(path)[:-5]}")
            for path in reference_cases()]


def _smallest() -> list:
    """The smallest registered variant of every family and task (so SeaFormer's segmentation model too)."""
    return [pytest.param(variant.name, id=variant.name) for _, variant in smallest()]


def _dim0(path: str):
    dim = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_param or dim.dim_value


def _export(model, x, folder) -> dict:
    """One ONNX export (free batch axis) and one TorchScript export of ``model``, with the timings."""
    import time

    os.makedirs(folder)
    start = time.perf_counter()
    files = onnx_format.write(model, x, str(folder), dynamic_batch=True, dtype="float32", options={})
    seconds = time.perf_counter() - start
    ts_files = ts_format.write(model, x, str(folder), dynamic_batch=False, dtype="float32", options={})
    return {"files": files, "ts_files": ts_files, "seconds": seconds,
            "onnx": onnx_format.runner(str(folder), device="cpu", options={}),
            "ts": ts_format.runner(str(folder), device="cpu", options={})}


@pytest.fixture(scope="module", params=_case_params())
def case_export(request, tmp_path_factory):
    """A reference case's PyTorch model with its official weights, exported once."""
    path = request.param
    case, stem = load_case(path)
    target = resolve_target(case["family"], path)
    reading = read_state(load_checkpoint(stem + ".pth"), target.spec, target.manifest(), (TORCH,),
                         prefer=target.spec.case_layout(case))
    model = build_model(target.spec, target.ref, TORCH, name=target.name)
    load_state(model, reading.state, target.spec, TORCH, target.name)
    x = np.load(stem + ".input.npy")
    folder = tmp_path_factory.mktemp("case") / "export"
    exported = _export(model, x[:1], folder)
    return {"model": model, "x": x, "out64": np.load(stem + ".out64.npy"), "folder": str(folder), **exported}


def test_case_files_and_checker(case_export):
    assert case_export["files"] == ["model.onnx"] and case_export["ts_files"] == ["model.pt"]
    path = os.path.join(case_export["folder"], "model.onnx")
    onnx.checker.check_model(path)
    assert _dim0(path) == "batch"
    model = onnx.load(path, load_external_data=False)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17


def test_case_onnx_runtime_matches_official_and_torch(case_export):
    x, out64 = case_export["x"], case_export["out64"]
    got = case_export["onnx"](x)
    assert len(got) == 1
    torch_out = run_model(case_export["model"], x, TORCH)[0]
    # against the official code's float64 run: the float32 rule every porthub model meets
    official = compare_outputs(out64, got[0], FLOAT32_TOL, "onnxruntime")
    assert all(r.ok for r in official), [r.as_dict() for r in official]
    ours = compare_outputs(torch_out, got[0], DEPLOY_TOL, "onnxruntime")
    assert all(r.ok for r in ours), [r.as_dict() for r in ours]


@pytest.mark.parametrize("batch", [1, 3])
def test_case_dynamic_batch(case_export, batch):
    x = np.concatenate([case_export["x"]] * 2)[:batch]
    got = case_export["onnx"](x)[0]
    ref = run_model(case_export["model"], x, TORCH)[0]
    assert got.shape[0] == batch
    assert max_abs_diff(got, ref) <= limit(DEPLOY_TOL, ref)


@pytest.mark.parametrize("batch", [1, 3])
def test_case_torchscript_round_trip(case_export, batch):
    x = np.concatenate([case_export["x"]] * 2)[:batch]
    got = case_export["ts"](x)
    ref = run_model(case_export["model"], x, TORCH)[0]
    assert len(got) == 1 and got[0].shape[0] == batch
    # the traced graph runs the same kernels in the same order: the float32 rule, measured 0.0
    assert max_abs_diff(got[0], ref) <= limit(FLOAT32_TOL, ref)


@pytest.fixture(scope="module", params=_smallest())
def variant_export(request, tmp_path_factory):
    """A full-size variant exported from an official-layout file (the release layout, written from seeded
    weights as the official code's state_dict holds them)."""
    from porthub.registry import resolve

    spec, variant = resolve(request.param)
    model = build_model(spec, variant.model(), TORCH, name=variant.name)
    state = seeded_state(spec, variant.model(), model=model)
    layout = spec.layout(variant.release_layout)
    released = from_canonical(state, layout, spec, variant.kwargs)
    if layout.wrap is not None:
        released = released[layout.wrap]
    base = tmp_path_factory.mktemp(variant.name)
    weights = str(base / f"{variant.name}.pth")
    save_checkpoint(OrderedDict(released), weights, "pth")
    del state, released
    load_state(model, pair_state(variant.name, weights), spec, TORCH, variant.name)
    x = seeded_input(variant)
    exported = _export(model, x, base / "export")
    return {"model": model, "variant": variant, "folder": str(base / "export"), **exported}


@pytest.mark.slow
def test_smallest_variants_export_and_agree(variant_export):
    path = os.path.join(variant_export["folder"], "model.onnx")
    onnx.checker.check_model(path)
    assert _dim0(path) == "batch"
    model, variant = variant_export["model"], variant_export["variant"]
    for batch in (1, 3):
        x = seeded_input(variant, batch)
        ref = run_model(model, x, TORCH)[0]
        got = variant_export["onnx"](x)[0]
        assert max_abs_diff(got, ref) <= limit(DEPLOY_TOL, ref), (variant.name, batch, max_abs_diff(got, ref))
    x = seeded_input(variant)
    ref = run_model(model, x, TORCH)[0]
    assert max_abs_diff(variant_export["ts"](x)[0], ref) <= limit(FLOAT32_TOL, ref)


@pytest.fixture(scope="module")
def small_case():
    """The smallest reference case's model and input (for the contract tests)."""
    path = min(reference_cases(), key=lambda p: np.load(load_case(p)[1] + ".input.npy", mmap_mode="r").size)
    case, stem = load_case(path)
    target = resolve_target(case["family"], path)
    reading = read_state(load_checkpoint(stem + ".pth"), target.spec, target.manifest(), (TORCH,),
                         prefer=target.spec.case_layout(case))
    model = build_model(target.spec, target.ref, TORCH, name=target.name)
    load_state(model, reading.state, target.spec, TORCH, target.name)
    return model, np.load(stem + ".input.npy")[:1]


def test_contract_constants():
    assert onnx_format.FRAMEWORK == "torch" and onnx_format.FILES == ("model.onnx",)
    assert ts_format.FRAMEWORK == "torch" and ts_format.FILES == ("model.pt",)


def test_fixed_batch_when_not_asked(small_case, tmp_path):
    model, x = small_case
    onnx_format.write(model, x, str(tmp_path), dynamic_batch=False, dtype="float32", options={})
    assert _dim0(str(tmp_path / "model.onnx")) == 1
    run = onnx_format.runner(str(tmp_path), device="cpu", options={"threads": 1})
    ref = run_model(model, x, TORCH)[0]
    assert max_abs_diff(run(x)[0], ref) <= limit(DEPLOY_TOL, ref)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run(np.concatenate([x, x]))


@pytest.mark.parametrize("options,match", [({"via": "tf2onnx"}, "not built"), ({"opset": 13}, "too old"),
                                           ({"opset_version": 18}, "unknown ONNX option")])
def test_refused_options_write_nothing(small_case, tmp_path, options, match):
    model, x = small_case
    with pytest.raises(InputError, match=match):
        onnx_format.check_options(options)
    with pytest.raises(InputError, match=match):
        onnx_format.write(model, x, str(tmp_path), dynamic_batch=False, dtype="float32", options=options)
    assert os.listdir(tmp_path) == []


def test_runner_records_its_runtime(case_export):
    info = case_export["onnx"].info
    assert info["providers"][0] == "CPUExecutionProvider" and info["threads"] >= 1
    assert case_export["ts"].info["runtime"].startswith("torch.jit")
    fields = onnx_format.report_fields()["onnx"]
    assert fields["opset"] >= 17 and "dynamo=False" in fields["exporter"]


def test_gpu_device_without_cuda_provider_is_refused(case_export):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        run = onnx_format.runner(case_export["folder"], device="cuda:0", options={})
        ref = run_model(case_export["model"], case_export["x"], TORCH)[0]
        assert max_abs_diff(run(case_export["x"])[0], ref) <= limit(DEPLOY_TOL, ref)
        return
    with pytest.raises(DeviceError, match="CUDAExecutionProvider"):
        onnx_format.runner(case_export["folder"], device="cuda:0", options={})
    with pytest.raises(DeviceError, match="unknown device"):
        onnx_format.runner(case_export["folder"], device="tpu", options={})


# ------------------------------------------------------------------------------------------ via paddle2onnx
def _paddle2onnx_cases() -> list:
    """Every reference case; all but the one with the smallest official file under ``slow`` (a Paddle program
    saved and converted per case takes 5-20 s on two cores)."""
    smallest_case = min(reference_cases(), key=lambda p: os.path.getsize(load_case(p)[1] + ".pth"))
    return [pytest.param(*p.values, id=p.id, marks=() if p.values[0] == smallest_case else pytest.mark.slow)
            for p in _case_params()]


@pytest.fixture(scope="module", params=_paddle2onnx_cases())
def case_paddle2onnx(request, tmp_path_factory):
    """A reference case's Paddle model with the official weights (converted), exported through paddle2onnx."""
    pytest.importorskip("paddle2onnx")
    from porthub.spec import PADDLE

    path = request.param
    case, stem = load_case(path)
    target = resolve_target(case["family"], path)
    reading = read_state(load_checkpoint(stem + ".pth"), target.spec, target.manifest(), (TORCH,),
                         prefer=target.spec.case_layout(case))
    models = {}
    for framework in (TORCH, PADDLE):
        models[framework] = build_model(target.spec, target.ref, framework, name=target.name)
        load_state(models[framework], reading.state, target.spec, framework, target.name)
    x = np.load(stem + ".input.npy")
    folder = tmp_path_factory.mktemp("p2o")
    options = {"via": "paddle2onnx"}
    assert onnx_format.framework(options) == PADDLE
    files = onnx_format.write(models[PADDLE], x[:1], str(folder), dynamic_batch=True, dtype="float32",
                              options=options)
    return {"models": models, "x": x, "out64": np.load(stem + ".out64.npy"), "folder": str(folder), "files": files,
            "onnx": onnx_format.runner(str(folder), device="cpu", options=options)}


@pytest.mark.parametrize("batch", [1, 3])
def test_case_paddle2onnx_matches_official_paddle_and_torch(case_paddle2onnx, batch):
    from porthub.spec import PADDLE

    c = case_paddle2onnx
    assert c["files"] == ["model.onnx"] and os.listdir(c["folder"]) == ["model.onnx"]  # no Paddle program left
    onnx.checker.check_model(os.path.join(c["folder"], "model.onnx"))
    assert _dim0(os.path.join(c["folder"], "model.onnx")) not in (1, 3)  # a free batch axis
    x = np.concatenate([c["x"]] * 3)[:batch]
    got = c["onnx"](x)
    assert len(got) == 1 and got[0].shape[0] == batch
    official = compare_outputs(np.concatenate([c["out64"]] * 3)[:batch], got[0], FLOAT32_TOL, "paddle2onnx")
    assert all(r.ok for r in official), [r.as_dict() for r in official]
    for framework in (PADDLE, TORCH):
        ref = run_model(c["models"][framework], x, framework)[0]
        assert max_abs_diff(got[0], ref) <= limit(DEPLOY_TOL, ref), (framework, max_abs_diff(got[0], ref))


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.values[0] for p in _smallest()])
def test_smallest_variants_export_via_paddle2onnx(name, tmp_path):
    """export_model from an official-layout file through paddle2onnx: verified against Paddle (2e-5) and PyTorch
    (1e-4) inside the export, then ONNX Runtime against PyTorch at batch 1 and 3 here."""
    pytest.importorskip("paddle2onnx")
    from porthub.export import export_model, load_exported
    from porthub.registry import resolve

    spec, variant = resolve(name)
    model = build_model(spec, variant.model(), TORCH, name=variant.name)
    state = seeded_state(spec, variant.model(), model=model)
    layout = spec.layout(variant.release_layout)
    released = from_canonical(state, layout, spec, variant.kwargs)
    weights = str(tmp_path / f"{name}.pth")
    save_checkpoint(OrderedDict(released[layout.wrap] if layout.wrap else released), weights, "pth")
    load_state(model, pair_state(name, weights), spec, TORCH, name)
    result = export_model(name, "onnx", weights=weights, out=str(tmp_path / "out"), dynamic_batch=True,
                          options={"via": "paddle2onnx"})
    report = result.report
    assert report["framework"] == "paddle" and report["onnx"]["exporter"].startswith("paddle2onnx")
    assert report["verification"]["dynamic"]["ok"] and report["verification"]["torch"]["ok"]
    run = load_exported(result.out_dir)
    for batch in (1, 3):
        x = seeded_input(variant, batch)
        ref = run_model(model, x, TORCH)[0]
        got = run(x)[-1]
        assert max_abs_diff(got, ref) <= limit(DEPLOY_TOL, ref), (name, batch, max_abs_diff(got, ref))
