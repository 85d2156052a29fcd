"""Deployment models in hub repositories (issue 17): ``porthub push --with-inference paddle-inference,onnx``.

For the registry's smallest variant (every family's smallest classifier and ``seaformer_seg_tiny`` under
``slow``), a seeded official-layout checkpoint is pushed to the local hub and to ``tests/hubserver.py`` (the
Hub double, through huggingface_hub); then:

* the repository holds ``inference/paddle/`` (``inference.json``, ``inference.pdiparams``, ``inference.yml``,
  ``export.json``) and ``inference/onnx/`` (``model.onnx``, ``export.json``), each file's sha256 in
  ``config.json``;
* the model card's own code blocks (Paddle Inference ``Config``/``create_predictor``, ONNX Runtime
  ``InferenceSession``), run as they are in a fresh process without porthub, in a copy of the repository
  (the local hub) or in the folder downloaded from the Hub double by huggingface_hub, give the source
  checkpoint's PyTorch output (computed with torch's own ``load_state_dict``) within 1e-4 relative
  (``porthub.compare.limit``);
* an unknown format is refused in one line before any conversion.

Everything stays on 127.0.0.1; huggingface_hub runs in subprocesses with its settings in the environment.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from registry_cases import smallest
from test_hub import TOKEN, _env, _porthub, _python, hub_double

from porthub.compare import limit, max_abs_diff
from porthub.hub.card import deployment_section
from porthub.hub.publish import INFERENCE_DIRS, check_inference
from porthub.registry import resolve

#: issue 17: artefacts run standalone match the PyTorch model within this, relative to max(1, max|ref|)
STANDALONE_TOL = 1e-4
PADDLE_FILES = {"inference.json", "inference.pdiparams", "inference.yml", "export.json"}
ONNX_FILES = {"model.onnx", "export.json"}

# Runs the card's code blocks (argv[2:]: files holding them) in the repository folder argv[1], without porthub
# on the path; saves each block's `out` to out.<i>.npy there.
CARD_RUNNER = """
import os, sys
import numpy as np
sys.path = [p for p in sys.path if p not in ("", os.getcwd())]
os.chdir(sys.argv[1])
for i, path in enumerate(sys.argv[2:]):
    scope = {}
    exec(compile(open(path).read(), path, "exec"), scope)
    assert "porthub" not in sys.modules, "the card's code must run without porthub"
    np.save(f"out.{i}.npy", np.asarray(scope["out"]))
"""


def _smallest_per_family() -> list[str]:
    """Each family's smallest classifier, and seaformer_seg_tiny (the segmentation model of the targets)."""
    pairs = smallest(key=lambda spec, variant: spec.family,
                     where=lambda spec, variant: variant.task == "classification")
    return [variant.name for _, variant in pairs] + ["seaformer_seg_tiny"]


def _smallest_overall() -> str:
    """The fewest learned values among classifiers: the fast tests' model (seaformer_tiny at 224 runs in a
    tenth of the time of the segmenter at 512, which has fewer parameters)."""
    return smallest(key=lambda spec, variant: "all", where=lambda spec, variant: variant.task == "classification")[0][
        1
    ].name


SMALLEST = _smallest_overall()
# every push with inference models is slow (30 s or more each on two cores); the default run pushes SMALLEST once,
# through the Hub double (test_hub_double_round_trip_runs_standalone), which runs the same card code
MODELS = [
    pytest.param(name, id=name, marks=pytest.mark.slow) for name in dict.fromkeys([SMALLEST, *_smallest_per_family()])
]


def _source(name: str, folder: Path) -> SimpleNamespace:
    """A seeded checkpoint of ``name`` in the official layout and its PyTorch output on the repository's
    reference input (``test/input.npy`` is porthub.pairs.seeded_input), by torch's own load_state_dict."""
    import torch

    from porthub.io import save_checkpoint
    from porthub.pairs import seeded_input, seeded_state
    from porthub.runtime import build_model

    spec, variant = resolve(name)
    state = seeded_state(spec, variant.model(), seed=5)
    ckpt = folder / f"{name}.pth"
    save_checkpoint(state, str(ckpt), "pth")
    x = seeded_input(variant)
    model = build_model(spec, variant.model(), "torch")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    ref = (out[-1] if isinstance(out, (list, tuple)) else out).numpy()
    return SimpleNamespace(name=name, ckpt=ckpt, x=x, ref=ref)


def _card_blocks(card: str) -> dict[str, str]:
    """The Deployment section's python blocks by runtime: "paddle-inference", "paddlex", "onnx"."""
    section = card.split("## Deployment", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    named = {}
    for code in blocks:
        key = "paddlex" if "paddlex" in code else "onnx" if "onnxruntime" in code else "paddle-inference"
        named[key] = code
    return named


def _check_repo_files(repo: Path, config: dict, formats: tuple[str, ...]) -> None:
    want = {"paddle-inference": PADDLE_FILES, "onnx": ONNX_FILES}
    for fmt in formats:
        folder = repo / INFERENCE_DIRS[fmt]
        assert {p.name for p in folder.iterdir()} == want[fmt], fmt
        export = json.loads((folder / "export.json").read_text())
        assert export["format"] == fmt and export["model"] == config["variant"] and export["dynamic_batch"] is True
        assert config["inference"][fmt]["dir"] == INFERENCE_DIRS[fmt]
        for name in want[fmt]:
            rel = f"{INFERENCE_DIRS[fmt]}/{name}"
            assert rel in config["inference"][fmt]["files"]
            assert config["files"][rel]["sha256"] == hashlib.sha256((repo / rel).read_bytes()).hexdigest(), rel


def _run_card(repo: Path, card: str, work: Path, formats: tuple[str, ...], ref: np.ndarray, env: dict) -> None:
    """The card's code for each format, run standalone in ``repo``: its output against the PyTorch reference."""
    blocks = _card_blocks(card)
    keys = list(formats)
    assert set(keys) <= set(blocks), sorted(blocks)
    paths = []
    for i, key in enumerate(keys):
        path = work / f"block{i}.py"
        path.write_text(blocks[key])
        paths.append(str(path))
    _python(CARD_RUNNER, [str(repo), *paths], env)
    bound = limit(STANDALONE_TOL, ref)
    for i, key in enumerate(keys):
        got = np.load(repo / f"out.{i}.npy")
        diff = max_abs_diff(got, ref)
        assert diff <= bound, f"{key}: max|diff| {diff:.3e} > {bound:.3e}"


# ------------------------------------------------------------------------------------------ fast
def test_unknown_format_is_one_line_before_any_conversion(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.pth"
    ckpt.write_bytes(b"not read: the format is checked first")
    home = tmp_path / "home"
    done = _porthub(
        ["push", SMALLEST, "--weights", str(ckpt), "--with-inference", "paddle-inference,tensorrt"],
        _env(PORTHUB_HOME=home),
        timeout=120,
    )
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("porthub: error:") and "tensorrt" in lines[0] and "paddle-inference" in lines[0]
    assert not (home / "models").exists()
    assert check_inference("onnx, paddle-inference,onnx") == ("onnx", "paddle-inference")
    assert check_inference(None) == ()


def test_card_has_no_deployment_section_without_inference_models() -> None:
    assert deployment_section({}) == ""
    text = deployment_section(
        {
            "inference": {
                "onnx": {
                    "dir": "inference/onnx",
                    "files": ["inference/onnx/export.json", "inference/onnx/model.onnx"],
                    "dynamic_batch": True,
                    "verification": {"max_abs_diff": 1.5e-6},
                }
            }
        }
    )
    assert text.startswith("## Deployment") and "InferenceSession" in text and "max_abs_diff 1.500e-06" in text
    assert "create_predictor" not in text


# ------------------------------------------------------------------------------------------ pushes
@pytest.mark.parametrize("name", MODELS)
def test_local_hub_repository_runs_standalone(name: str, tmp_path: Path) -> None:
    """`porthub push --with-inference paddle-inference,onnx` into the local hub; the card's code, run without
    porthub in a copy of the repository, reproduces the source checkpoint's PyTorch output."""
    formats = ("paddle-inference", "onnx")
    src = _source(name, tmp_path)
    home = tmp_path / "home"
    env = _env(PORTHUB_HOME=home)
    done = _porthub(["push", name, "--weights", str(src.ckpt), "--with-inference", ",".join(formats), "--json"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert set(result["inference"]) == set(formats)
    repo = home / "models" / "porthub" / name
    config = json.loads((repo / "config.json").read_text())
    _check_repo_files(repo, config, formats)
    np.testing.assert_array_equal(np.load(repo / "test" / "input.npy"), src.x)
    card = (repo / "README.md").read_text()
    assert "## Deployment" in card and "`inference/paddle/inference.json`" in card
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy)
    _run_card(copy, card, tmp_path, formats, src.ref, env)


def test_hub_double_round_trip_runs_standalone(tmp_path: Path) -> None:
    """The same push through huggingface_hub to the Hub double; snapshot_download fetches the repository
    and the card's code runs there."""
    formats = ("paddle-inference", "onnx")
    src = _source(SMALLEST, tmp_path)
    cache = tmp_path / "hf_cache"
    with hub_double(tmp_path / "srv") as (endpoint, _log):
        env = _env(PORTHUB_HOME=tmp_path / "empty", HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN, HF_HUB_CACHE=cache)
        done = _porthub(
            ["push", SMALLEST, "--weights", str(src.ckpt), "--hub", "hf", "--with-inference", ",".join(formats),
             "--json"],
            env,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        code = (
            "import sys\nfrom huggingface_hub import snapshot_download\n"
            "print(snapshot_download(sys.argv[1], local_dir=sys.argv[2]))"
        )
        local = tmp_path / "downloaded"
        _python(code, [f"porthub/{SMALLEST}", str(local)], env)
    config = json.loads((local / "config.json").read_text())
    _check_repo_files(local, config, formats)
    _run_card(local, (local / "README.md").read_text(), tmp_path, formats, src.ref, env)
