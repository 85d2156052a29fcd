"""Devices (issue 17): one parser for both frameworks' spellings, a clear refusal of a GPU the installed
build cannot use (before any model is built), models built and run where asked, outputs back on the host.
The GPU tests run only where the framework's CUDA build sees a GPU, and then assert on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from registry_cases import smallest

import porthub
from porthub.cli import main
from porthub.compare import compare_outputs
from porthub.devices import Device, check_dtype, check_gpu_build, parse_device
from porthub.errors import DeviceError, PorthubError
from porthub.pairs import seeded_input, seeded_state
from porthub.runtime import (
    build_model,
    from_numpy,
    load_state,
    model_device,
    on_device,
    resolve_device,
    run_model,
    to_numpy,
)
from porthub.spec import FRAMEWORKS, PADDLE, TORCH


def _gpu(framework: str) -> bool:
    try:
        resolve_device("gpu:0", framework)
    except DeviceError:
        return False
    return True


def _smallest():
    """The smallest classifier of each family (fewest learned values in its shipped manifest)."""
    pairs = smallest(key=lambda spec, variant: spec.family,
                     where=lambda spec, variant: variant.task == "classification")
    return [pytest.param(spec, variant, id=spec.family) for spec, variant in pairs]


SMALLEST = _smallest()


@pytest.mark.parametrize(
    "text, framework, want",
    [
        ("cpu", TORCH, "cpu"),
        (" CPU ", PADDLE, "cpu"),
        (None, TORCH, "cpu"),
        ("cuda", TORCH, "cuda:0"),
        ("cuda:3", TORCH, "cuda:3"),
        ("gpu:3", TORCH, "cuda:3"),
        ("gpu", PADDLE, "gpu:0"),
        ("cuda:1", PADDLE, "gpu:1"),
        ("GPU:2", PADDLE, "gpu:2"),
    ],
)
def test_parse_device_maps_either_spelling(text, framework, want):
    device = parse_device(text, framework)
    assert device.name == want and str(device) == want
    assert device.is_gpu == (want != "cpu")
    assert parse_device(device, TORCH if framework == PADDLE else PADDLE).index == device.index


@pytest.mark.parametrize("text", ["tpu", "cuda:", "cuda:-1", "gpu:x", "cpu:0", "cuda:0:1", "", "mps", 0])
def test_parse_device_refuses_bad_text(text):
    with pytest.raises(DeviceError) as caught:
        parse_device(text, TORCH)
    assert isinstance(caught.value, PorthubError) and isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)


def test_parse_device_refuses_an_unknown_framework():
    with pytest.raises(DeviceError, match="framework must be"):
        parse_device("cpu", "jax")


def test_check_gpu_build_messages():
    gpu = parse_device("gpu:0", PADDLE)
    want = r"paddlepaddle 3\.3\.1 \(CPU build\) cannot use gpu:0; install paddlepaddle-gpu"
    with pytest.raises(DeviceError, match=want):
        check_gpu_build(gpu, compiled_with_cuda=False, count=0, build="paddlepaddle 3.3.1 (CPU build)")
    with pytest.raises(DeviceError, match="sees no GPU"):
        check_gpu_build(gpu, compiled_with_cuda=True, count=0, build="paddlepaddle-gpu")
    with pytest.raises(DeviceError, match=r"cuda:2 does not exist: .* 2 GPU\(s\), cuda:0 to cuda:1"):
        check_gpu_build(parse_device("cuda:2", TORCH), compiled_with_cuda=True, count=2, build="torch")
    check_gpu_build(parse_device("cuda:1", TORCH), compiled_with_cuda=True, count=2, build="torch")
    check_gpu_build(parse_device("cpu", TORCH), compiled_with_cuda=False, count=0, build="torch")


def test_check_dtype():
    check_dtype(Device(TORCH, "cpu"), "bfloat16")
    check_dtype(Device(PADDLE, "gpu", 0), "float16")
    with pytest.raises(DeviceError, match="paddle cannot run float16 on the CPU"):
        check_dtype(Device(PADDLE, "cpu"), "float16")
    with pytest.raises(DeviceError, match="dtype must be one of"):
        check_dtype(Device(TORCH, "cpu"), "int8")


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_gpu_the_build_cannot_use_is_refused_before_any_build(framework, monkeypatch):
    if _gpu(framework):
        pytest.skip(f"{framework} has a usable GPU here; the refusal is for CPU builds")
    from porthub.runtime import model_class

    def no_build(*args, **kwargs):
        raise AssertionError("a model class was looked up before the device was checked")

    monkeypatch.setattr("porthub.runtime.model_class", no_build)
    with pytest.raises(DeviceError, match=r"\(CPU build\) cannot use (cuda|gpu):0; install"):
        porthub.create_model("shunted_t", framework=framework, device="cuda:0")
    with pytest.raises(DeviceError, match="cannot use"):
        porthub.create_model("shunted_t", framework=framework, device="gpu:0", pretrained=True)
    assert model_class is not None


def test_cli_refuses_a_bad_device_in_one_line(capsys):
    assert main(["verify", "shunted_t", "--device", "tpu:0", "--json"]) != 0
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 1
    assert "unknown device 'tpu:0'" in json.loads(out.out)["error"]
    assert main(["evaluate", "shunted_t", "--data", "nowhere", "--device", "cuda:x"]) != 0
    assert "unknown device 'cuda:x'" in capsys.readouterr().err


@pytest.mark.parametrize("spec, variant", SMALLEST)
def test_cpu_device_is_explicit_and_outputs_are_host_numpy(spec, variant):
    """device="cpu" builds on the CPU in both frameworks (a GPU build would default Paddle to gpu:0),
    and the on_device default gives the same model."""
    x = seeded_input(variant)
    state = seeded_state(spec, variant.model())
    outs = {}
    for framework in FRAMEWORKS:
        with on_device("cpu"):
            model = build_model(spec, variant.model(), framework, device=None)
        assert model_device(model, framework).name == "cpu"
        load_state(model, state, spec, framework, variant.name)
        out, _ = run_model(model, x, framework, device="cpu")
        outs[framework] = out
        assert all(isinstance(a, np.ndarray) for a in (out if isinstance(out, list) else [out]))
    assert all(r.ok for r in compare_outputs(outs[TORCH], outs[PADDLE], spec.tolerance(PADDLE).float32))


def test_run_model_refuses_another_device_than_the_models():
    if not _gpu(TORCH):
        spec, variant = next(iter(SMALLEST)).values
        model = porthub.create_model(variant.name, "torch", device="cpu")
        with pytest.raises(DeviceError, match="cannot use cuda:0"):
            run_model(model, seeded_input(variant), "torch", device="cuda:0")
        return
    spec, variant = next(iter(SMALLEST)).values
    model = porthub.create_model(variant.name, "torch", device="cpu")
    with pytest.raises(DeviceError, match="the model is on cpu, not on cuda:0"):
        run_model(model, seeded_input(variant), "torch", device="cuda:0")


def test_from_numpy_and_to_numpy_in_bfloat16():
    x = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
    t = from_numpy(x, TORCH, "bfloat16")
    assert str(t.dtype) == "torch.bfloat16"
    back = to_numpy(t)
    assert back.dtype == np.float32 and np.abs(back - x).max() <= 2 ** -8 * 2
    p = from_numpy(x, PADDLE, "bfloat16")
    assert str(p.dtype) == "paddle.bfloat16"
    back = to_numpy(p)
    assert back.dtype == np.float32 and np.abs(back - x).max() <= 2 ** -8 * 2


# --- on a GPU: these run only where the framework's CUDA build sees one, and then they assert -----------

needs_torch_gpu = pytest.mark.skipif(not _gpu(TORCH), reason="no CUDA build of torch with a GPU here")
needs_paddle_gpu = pytest.mark.skipif(not _gpu(PADDLE), reason="no paddlepaddle-gpu with a GPU here")


@pytest.mark.parametrize(
    "framework", [pytest.param(TORCH, marks=needs_torch_gpu), pytest.param(PADDLE, marks=needs_paddle_gpu)]
)
@pytest.mark.parametrize("spec, variant", SMALLEST)
def test_gpu_float32_matches_the_cpu(framework, spec, variant):
    """The same weights and input on cuda:0/gpu:0 and on the CPU, float32, within the family's float32 limit
    (TF32 off: see porthub.runtime); the outputs come back as host numpy."""
    x = seeded_input(variant, batch=2)
    state = seeded_state(spec, variant.model())
    outs = []
    for device in ("cpu", "gpu:0"):
        model = build_model(spec, variant.model(), framework, device=device)
        assert model_device(model, framework) == parse_device(device, framework)
        load_state(model, state, spec, framework, variant.name)
        outs.append(run_model(model, x, framework)[0])
        del model
    results = compare_outputs(outs[0], outs[1], spec.tolerance(framework).float32 * 5, framework)
    assert results and all(r.ok for r in results), [r.as_dict() for r in results if not r.ok]


@needs_paddle_gpu
@needs_torch_gpu
def test_cli_verify_on_the_gpu(capsys):
    assert main(["verify", "shunted_t", "--device", "cuda:0", "--no-features", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["device"] == "cuda:0"
