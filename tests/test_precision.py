"""Half precision (issue 17), driven by the registry: every family declares how far float16 and bfloat16 may be
from float32 (``FamilySpec.half_tolerance``, measured, with a reason), and each family's smallest variant
stays within it on seeded weights and input: PyTorch on the CPU here, Paddle on a GPU (its CPU build has no
half-precision kernels, which porthub refuses in one line before building anything)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from registry_cases import learned_size, smallest

import porthub
from porthub.cli import main
from porthub.errors import DeviceError, SpecError
from porthub.pairs import verify_half
from porthub.registry import all_specs
from porthub.runtime import resolve_device
from porthub.spec import PADDLE, TORCH, HalfTolerance

HALF = ("bfloat16", "float16")
#: full-size forwards above this many parameters are marked slow (as in tests/test_model_api.py)
_FAST_PARAMS = 12_000_000


def _smallest():
    """The smallest registered variant of each family and task (seaformer: classifier and segmenter)."""
    return [
        pytest.param(spec, variant, id=variant.name,
                     marks=[pytest.mark.slow] if learned_size(spec, variant) > _FAST_PARAMS else [])
        for spec, variant in smallest()
    ]


SMALLEST = _smallest()


def _gpu(framework):
    try:
        resolve_device("gpu:0", framework)
    except DeviceError:
        return False
    return True


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.family)
def test_every_family_declares_measured_half_tolerances(spec):
    tol = spec.half_tolerance
    assert isinstance(tol, HalfTolerance), f"{spec.family} declares no half-precision tolerance"
    assert "measured" in tol.reason and len(tol.reason) > 40
    for dtype in HALF:
        seen = tol.measured[dtype]
        # a limit with margin over what was measured, and not so loose it would pass a broken model
        assert 0 < seen <= tol.for_dtype(dtype) <= 0.1
    with pytest.raises(SpecError):
        tol.for_dtype("float32")


def test_a_limit_below_its_own_measurement_is_refused():
    with pytest.raises(SpecError, match="below its own measured"):
        HalfTolerance(float16=1e-3, bfloat16=1e-2, reason="measured", measured={"float16": 2e-3})


@pytest.mark.parametrize("spec, variant", SMALLEST)
@pytest.mark.parametrize("dtype", HALF)
def test_torch_half_precision_within_the_declared_limit(spec, variant, dtype):
    device = "cuda:0" if _gpu(TORCH) else "cpu"
    report = verify_half(variant.name, dtype, device=device, frameworks=(TORCH,))
    assert report["results"], "nothing was compared"
    assert report["ok"], [r for r in report["results"] if not r["ok"]]
    for r in report["results"]:
        assert r["dtype"] == dtype and r["framework"] == TORCH
        # a half model that silently ran in float32 would be exact: the difference must be there
        assert r["max_abs_diff"] > 0


@pytest.mark.skipif(not _gpu(PADDLE), reason="no paddlepaddle-gpu with a GPU here (Paddle's CPU build has no "
                    "half-precision kernels; test_paddle_half_precision_on_the_cpu_is_refused covers the CPU)")
@pytest.mark.parametrize("spec, variant", SMALLEST)
@pytest.mark.parametrize("dtype", HALF)
def test_paddle_half_precision_on_the_gpu_within_the_declared_limit(spec, variant, dtype):
    report = verify_half(variant.name, dtype, device="gpu:0", frameworks=(PADDLE,))
    assert report["results"] and report["ok"], report["results"]
    assert all(r["max_abs_diff"] > 0 for r in report["results"])


@pytest.mark.parametrize("dtype", HALF)
def test_paddle_half_precision_on_the_cpu_is_refused(dtype, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("a model was built before the dtype was checked")

    monkeypatch.setattr("porthub.runtime.model_class", no_build)
    with pytest.raises(DeviceError, match=f"paddle cannot run {dtype} on the CPU"):
        porthub.create_model("shunted_t", framework=PADDLE, dtype=dtype)
    with pytest.raises(DeviceError, match=f"paddle cannot run {dtype} on the CPU"):
        verify_half("shunted_t", dtype, frameworks=(TORCH, PADDLE))


def test_create_model_in_bfloat16_runs_and_returns_float32_numpy():
    model = porthub.create_model("seaformer_tiny", framework=TORCH, dtype="bfloat16")
    assert all(str(p.dtype) == "torch.bfloat16" for p in model.parameters())
    from porthub.pairs import seeded_input
    from porthub.registry import resolve
    from porthub.runtime import run_model

    _, variant = resolve("seaformer_tiny")
    out, _ = run_model(model, seeded_input(variant), TORCH, "bfloat16")
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_cli_verify_half_precision(capsys):
    assert main(["verify", "seaformer_tiny", "--dtype", "bfloat16", "--framework", "torch", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["dtype"] == "bfloat16" and report["reference"] == "float32"
    assert report["results"] and all(0 < r["relative"] <= 0.1 for r in report["results"])
    # both frameworks on the CPU: refused in one line, nothing built
    assert main(["verify", "seaformer_tiny", "--dtype", "float16", "--json"]) != 0
    out = capsys.readouterr().out
    assert "paddle cannot run float16 on the CPU" in json.loads(out)["error"]
    assert main(["verify", "--reference", "x.json", "--dtype", "float16", "--json"]) != 0
    assert "half-precision" in json.loads(capsys.readouterr().out)["error"]
