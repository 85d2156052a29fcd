"""The hub end to end, with real parts only and nothing outside 127.0.0.1.

* The local hub: ``porthub push`` of a full-size seeded shunted_t checkpoint in the official layout into
  an empty PORTHUB_HOME, then pretrained loading in both frameworks (create_model, torch.hub,
  paddle.hub, config.json alone with the frameworks' own loaders).
* Uploads: the same push through huggingface_hub to ``tests/hubserver.py`` (a Hub-protocol double:
  LFS uploads, YAML validation), pretrained loading from it, then from huggingface_hub's cache with
  HF_HUB_OFFLINE=1 and the server stopped.
* Downloads from olah, a real Hub mirror server, serving the pushed repository as a git repository.

huggingface_hub reads its settings once, at import, so everything that uses it runs in a subprocess
with the environment set first. Servers are started here and stopped by their PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from porthub.errors import HubError

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "hubserver.py"
TOKEN = "hf_porthub_test_token"
REPO = "porthub/shunted_t"
EXPECTED_FILES = {
    "config.json",
    "README.md",
    "model.safetensors",
    "model.paddle.safetensors",
    "model.pdparams",
    "test/input.npy",
    "test/output.float32.npy",
    "test/output.float64.npy",
}

# Runs the pretrained model in each framework named in argv[2] on argv[1]; saves the outputs to argv[3].
LOADER = """
import sys, numpy as np, porthub
from porthub.runtime import run_model
x = np.load(sys.argv[1])
out = {}
for fw in sys.argv[2].split(","):
    model = porthub.create_model("shunted_t", framework=fw, pretrained=True)
    out[fw] = np.asarray(run_model(model, x, fw)[0])
    del model
np.savez(sys.argv[3], **out)
"""


def _env(**extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PORTHUB_", "HUGGINGFACE_"))}
    env.update(
        {
            "OMP_NUM_THREADS": "2",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1",
            "HF_HUB_DISABLE_XET": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _porthub(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "porthub.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _python(code: str, args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("porthub: error:")]


def _load_outputs(x_path: Path, frameworks: str, out: Path, env: dict[str, str]) -> dict[str, np.ndarray]:
    _python(LOADER, [str(x_path), frameworks, str(out)], env)
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def hub_double(root: Path, *extra: str):
    """tests/hubserver.py on a free port; yields (endpoint, log path); stopped by its PID."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "server.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--root", str(root / "data"), "--token", TOKEN, *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"hub double did not start: {line!r} {log.read_text()}"
        yield f"http://127.0.0.1:{int(line.split()[1])}", log
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A full-size seeded shunted_t checkpoint in the official layout (a bare state dict in a .pth), and
    its output computed with torch's own load_state_dict, independently of porthub's loading code."""
    import torch

    from porthub.io import save_checkpoint
    from porthub.pairs import seeded_input, seeded_state
    from porthub.registry import resolve
    from porthub.runtime import build_model

    folder = tmp_path_factory.mktemp("source")
    spec, variant = resolve("shunted_t")
    state = seeded_state(spec, variant.model(), seed=7)
    ckpt = folder / "ckpt_T.pth"
    save_checkpoint(state, str(ckpt), "pth")
    x = seeded_input(variant, seed=11)
    model = build_model(spec, variant.model(), "torch")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    del model
    np.save(folder / "x.npy", x)
    return SimpleNamespace(
        ckpt=ckpt, x=x, x_path=folder / "x.npy", ref=ref, sha=hashlib.sha256(ckpt.read_bytes()).hexdigest()
    )


@pytest.fixture(scope="session")
def local_hub(source: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """`porthub push shunted_t --weights <official checkpoint>` into an empty PORTHUB_HOME."""
    home = tmp_path_factory.mktemp("porthub_home")
    assert not any(home.iterdir())
    done = _porthub(["push", "shunted_t", "--weights", str(source.ckpt), "--json"], _env(PORTHUB_HOME=home))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    repo = home / "models" / "porthub" / "shunted_t"
    return SimpleNamespace(home=home, repo=repo, result=result, config=json.loads((repo / "config.json").read_text()))


def _copy_repo(local_hub: SimpleNamespace, home: Path) -> Path:
    target = home / "models" / "porthub" / "shunted_t"
    shutil.copytree(local_hub.repo, target)
    return target


# ------------------------------------------------------------------------------- fast, no model built
def test_list_stays_fast_and_imports_no_hub_client() -> None:
    code = (
        "import sys, time, io, contextlib\nt = time.perf_counter()\nimport porthub.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n    rc = porthub.cli.main(['list'])\n"
        "took = time.perf_counter() - t\n"
        "heavy = [m for m in ('huggingface_hub', 'tqdm', 'torch', 'paddle') if m in sys.modules]\n"
        "print(rc, took, ','.join(heavy), len(out.getvalue().splitlines()))"
    )
    rc, took, heavy, lines = _python(code, [], _env()).stdout.split(" ")
    assert rc == "0" and int(lines) >= 3
    assert heavy == ""
    assert float(took) < 0.5


def test_repository_ids_and_file_names_cannot_escape(tmp_path: Path) -> None:
    from porthub.hub import check_relpath, check_revision, local_repo_dir, read_config, safe_join

    for bad in ("../etc", "porthub/../../x", "/abs/x", "porthub/shunted_t/extra", "a/..", "porthub\\x", ""):
        with pytest.raises(HubError):
            local_repo_dir(bad, root=str(tmp_path))
    with pytest.raises(HubError):
        check_revision("../../main")
    assert local_repo_dir(REPO, "v1", str(tmp_path)) == str(tmp_path / "models" / "porthub" / "shunted_t@v1")
    for bad in ("../x", "a/../../x", "/etc/passwd", "a\\..\\x", "a//b", "./x", ""):
        with pytest.raises(HubError):
            check_relpath(bad)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_text(
        json.dumps({"format_version": 1, "family": "shunted", "files": {"../../outside": {"sha256": "0"}}})
    )
    with pytest.raises(HubError, match="not a plain relative path"):
        read_config(str(repo / "config.json"))
    (repo / "link").symlink_to("/etc")
    with pytest.raises(HubError, match="outside"):
        safe_join(str(repo), "link/hostname")


def test_every_registered_variant_has_card_metadata_the_hub_accepts() -> None:
    """The YAML porthub writes by hand parses back to the same data and passes the double's copy of
    the Hub's checks, for every variant of every family (no model is built)."""
    import importlib.util

    import yaml

    from porthub.hub.card import card_metadata, render_yaml
    from porthub.registry import all_specs

    loader = importlib.util.spec_from_file_location("hubserver", SERVER)
    hubserver = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(hubserver)
    checked = 0
    for spec in all_specs():
        for variant in spec.variants:
            meta = card_metadata(spec, variant)
            text = "\n".join(render_yaml(meta))
            assert yaml.safe_load(text) == meta, variant.name
            assert hubserver.validate_card_yaml(f"---\n{text}\n---\nbody\n") == [], variant.name
            assert {"pytorch", "paddlepaddle"} <= set(meta["tags"]) and meta["license"]
            checked += 1
    assert checked >= 3
    assert hubserver.validate_card_yaml('---\nlicense: "nope"\ntags: "x"\n---\n') != []


def test_newer_config_format_is_refused(tmp_path: Path) -> None:
    from porthub.hub import read_config

    (tmp_path / "config.json").write_text(json.dumps({"format_version": 99, "family": "shunted", "files": {}}))
    with pytest.raises(HubError, match="pip install -U porthub"):
        read_config(str(tmp_path / "config.json"))


def test_nothing_published_and_no_network_is_one_clear_line(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    env = _env(PORTHUB_HOME=tmp_path / "home", HF_ENDPOINT=dead, HF_HUB_CACHE=tmp_path / "cache")
    started = time.monotonic()
    done = _porthub(["download", "shunted_t", "--framework", "torch"], env, timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 1
    errors = _error_lines(done)
    assert len(errors) == 1 and done.stderr.strip() == errors[0], done.stderr
    for needed in (
        "porthub/shunted_t",
        "--weights",
        "PORTHUB_HOME",
        "HF_ENDPOINT",
        "could not be reached",
        str(tmp_path / "home"),
    ):
        assert needed in errors[0]
    assert took < 30, f"a dead endpoint took {took:.1f} s to report"
    done = _porthub(
        ["download", "shunted_t"],
        _env(PORTHUB_HOME=tmp_path / "home", HF_HUB_OFFLINE=1, HF_HUB_CACHE=tmp_path / "cache"),
        timeout=120,
    )
    assert done.returncode == 1 and "HF_HUB_OFFLINE is set" in _error_lines(done)[0]
    done = _porthub(["push", "shunted_t", "--weights", str(tmp_path / "missing.pth")], env)
    assert done.returncode == 1 and "no such checkpoint" in _error_lines(done)[0]


# ------------------------------------------------------------------------------------- the local hub
@pytest.mark.slow
def test_push_writes_a_complete_repository(local_hub: SimpleNamespace, source: SimpleNamespace) -> None:
    from porthub.io import read_safetensors_metadata

    repo, config = local_hub.repo, local_hub.config
    on_disk = {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()}
    assert on_disk == EXPECTED_FILES
    assert set(config["files"]) == EXPECTED_FILES - {"config.json"}
    for name, info in config["files"].items():
        data = (repo / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["size"], name
    assert config["source_checkpoint"] == {
        "name": "ckpt_T.pth",
        "sha256": source.sha,
        "layout": "official",
        "framework": "torch",
        "official_file": config["source_checkpoint"]["official_file"],
    }
    assert config["architecture"] == "ShuntedTransformer" and config["num_classes"] == 1000
    pre = config["preprocessing"]
    assert pre["input_size"] == [224, 224] and pre["interpolation"] == "bicubic" and pre["crop_fraction"] == 0.875
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert config["porthub_version"] and config["licence"].startswith("not stated")
    assert read_safetensors_metadata(str(repo / "model.safetensors"))["porthub.framework"] == "torch"
    assert read_safetensors_metadata(str(repo / "model.paddle.safetensors"))["porthub.framework"] == "paddle"
    eq = config["equivalence"]
    assert eq["ok"] and eq["pdparams_identical_to_paddle_safetensors"]
    figures = {(r["framework"], r["dtype"]): r["max_abs_diff"] for r in eq["results"]}
    assert set(figures) == {("torch", "float32"), ("paddle", "float32"), ("torch", "float64"), ("paddle", "float64")}
    assert figures[("torch", "float32")] == 0.0 and figures[("paddle", "float32")] <= 2e-5
    assert figures[("paddle", "float64")] <= 1e-8
    card = (repo / "README.md").read_text()
    assert f"{figures[('paddle', 'float32')]:.3e}" in card and source.sha in card
    assert local_hub.result["files"]["model.safetensors"] == config["files"]["model.safetensors"]["sha256"]


@pytest.mark.slow
def test_pretrained_from_the_local_hub_gives_the_source_outputs(
    local_hub: SimpleNamespace, source: SimpleNamespace, tmp_path: Path
) -> None:
    outs = _load_outputs(source.x_path, "torch,paddle", tmp_path / "out.npz", _env(PORTHUB_HOME=local_hub.home))
    for fw in ("torch", "paddle"):
        assert outs[fw].shape == source.ref.shape
        assert float(np.abs(outs[fw] - source.ref).max()) <= 2e-5, fw


@pytest.mark.slow
def test_config_json_alone_rebuilds_the_model_for_the_frameworks_own_loaders(
    local_hub: SimpleNamespace, source: SimpleNamespace
) -> None:
    """config.json builds the model; model.safetensors goes in with the safetensors package and torch's
    strict load_state_dict, model.pdparams with paddle.load and set_state_dict (what PaddleClas does)."""
    import paddle
    import torch
    from safetensors.torch import load_file

    from porthub.hub import model_from_config

    config = json.loads((local_hub.repo / "config.json").read_text())
    model = model_from_config(config, "torch")
    model.load_state_dict(load_file(str(local_hub.repo / "model.safetensors")), strict=True)
    with torch.no_grad():
        out_torch = model(torch.from_numpy(source.x)).numpy()
    del model
    model = model_from_config(config, "paddle")
    missing, unexpected = model.set_state_dict(paddle.load(str(local_hub.repo / "model.pdparams")))
    assert not missing and not unexpected
    with paddle.no_grad():
        out_paddle = model(paddle.to_tensor(source.x)).numpy()
    del model
    assert float(np.abs(out_torch - source.ref).max()) <= 2e-5
    assert float(np.abs(out_paddle - source.ref).max()) <= 2e-5


@pytest.mark.slow
def test_hubconf_for_torch_hub_and_paddle_hub(
    local_hub: SimpleNamespace, source: SimpleNamespace, tmp_path: Path
) -> None:
    code = """
import sys, numpy as np, torch, paddle
x = np.load(sys.argv[1])
m = torch.hub.load(sys.argv[2], "shunted_t", source="local", pretrained=True)
assert isinstance(m, torch.nn.Module) and not m.training
with torch.no_grad():
    t = m(torch.from_numpy(x)).numpy()
del m
m = paddle.hub.load(sys.argv[2], "shunted_t", source="local", pretrained=True)
assert isinstance(m, paddle.nn.Layer) and not m.training
p = m(paddle.to_tensor(x)).numpy()
names = paddle.hub.list(sys.argv[2], source="local")
assert "shunted_b" in names and all(not n[0].isupper() for n in names), names
np.savez(sys.argv[3], torch=t, paddle=p)
"""
    _python(code, [str(source.x_path), str(ROOT), str(tmp_path / "hub.npz")], _env(PORTHUB_HOME=local_hub.home))
    with np.load(tmp_path / "hub.npz") as outs:
        for fw in ("torch", "paddle"):
            assert float(np.abs(outs[fw] - source.ref).max()) <= 2e-5, fw


@pytest.mark.slow
def test_from_pretrained_by_folder_and_by_id_at_a_revision(
    local_hub: SimpleNamespace, source: SimpleNamespace, tmp_path: Path
) -> None:
    from porthub.hub.publish import publish_local

    home = tmp_path / "home"
    staged = tmp_path / "staged"
    shutil.copytree(local_hub.repo, staged)
    assert publish_local(str(staged), REPO, "v2", str(home)) == str(home / "models" / "porthub" / "shunted_t@v2")
    assert not staged.exists()
    code = """
import sys, numpy as np, porthub
from porthub.runtime import run_model
x = np.load(sys.argv[1])
t = porthub.from_pretrained(sys.argv[2], framework="torch")
out_t = run_model(t, x, "torch")[0]
del t
p = porthub.from_pretrained("porthub/shunted_t", framework="paddle", revision="v2")
np.savez(sys.argv[3], torch=out_t, paddle=run_model(p, x, "paddle")[0])
"""
    _python(code, [str(source.x_path), str(local_hub.repo), str(tmp_path / "o.npz")], _env(PORTHUB_HOME=home))
    with np.load(tmp_path / "o.npz") as outs:
        for fw in ("torch", "paddle"):
            assert float(np.abs(outs[fw] - source.ref).max()) <= 2e-5, fw
    # only v2 was published in this hub; main is neither here nor reachable
    done = _porthub(["download", "shunted_t"], _env(PORTHUB_HOME=home, HF_HUB_OFFLINE=1, HF_HUB_CACHE=tmp_path / "c"))
    assert done.returncode == 1 and len(_error_lines(done)) == 1


@pytest.mark.slow
def test_local_hub_file_failing_its_sha256_is_refused(local_hub: SimpleNamespace, tmp_path: Path) -> None:
    repo = _copy_repo(local_hub, tmp_path / "home")
    weights = repo / "model.paddle.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    done = _porthub(["download", "shunted_t", "--framework", "paddle"], _env(PORTHUB_HOME=tmp_path / "home"))
    assert done.returncode == 1
    assert (
        len(_error_lines(done)) == 1
        and "sha256" in _error_lines(done)[0]
        and "publish it again" in _error_lines(done)[0]
    )
    done = _porthub(["download", "shunted_t", "--framework", "torch"], _env(PORTHUB_HOME=tmp_path / "home"))
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_model_card_passes_the_hubs_metadata_validation(local_hub: SimpleNamespace, tmp_path: Path) -> None:
    code = """
import inspect, json, re, sys
from huggingface_hub import ModelCard, ModelCardData, metadata_load
card = ModelCard.load(sys.argv[1])
card.validate()
meta = metadata_load(sys.argv[1])
known = (
    set(inspect.signature(ModelCardData.__init__).parameters) - {"self", "kwargs", "ignore_metadata_errors"}
) | {"model-index"}
results = [
    [r.task_type, r.dataset_type, r.dataset_name, r.metric_type, r.metric_value, r.source_url]
    for r in card.data.eval_results or []
]
bad = ModelCard(re.sub(r"^license: .*$", "license: no-such-licence", str(card), count=1, flags=re.M))
assert bad.data.license == "no-such-licence"
try:
    bad.validate()
    refused = ""
except ValueError as exc:
    refused = str(exc)
print(json.dumps({"meta": meta, "unknown": sorted(set(meta) - known), "results": results,
                  "model_name": card.data.model_name, "refused": refused}))
"""
    with hub_double(tmp_path / "srv") as (endpoint, log):
        done = _python(
            code, [str(local_hub.repo / "README.md")], _env(HF_ENDPOINT=endpoint, HF_HUB_CACHE=tmp_path / "c")
        )
        assert "POST /api/validate-yaml" in log.read_text()
    got = json.loads(done.stdout)
    meta = got["meta"]
    assert got["unknown"] == []
    assert (
        meta["license"] == "other"
        and meta["license_name"] == "unstated"
        and meta["license_link"].startswith("https://github.com/")
    )
    assert {"pytorch", "paddlepaddle", "image-classification", "arxiv:2111.15193"} <= set(meta["tags"])
    assert meta["datasets"] == ["imagenet-1k"] and meta["library_name"] == "porthub"
    assert got["model_name"] is None  # named by model-index, which only official weights carry
    # a seeded file is the user's own checkpoint, not the official release: the card does not index the
    # authors' 79.8 as its result (tests/test_sources.py checks the model-index of official weights)
    assert got["results"] == []
    assert "license" in got["refused"]


# ------------------------------------------------------------------- huggingface_hub against the double
@pytest.mark.slow
def test_round_trip_through_huggingface_hub_then_offline(
    local_hub: SimpleNamespace, source: SimpleNamespace, tmp_path: Path
) -> None:
    """Push the Paddle file of the local repository (either framework's checkpoint is a valid source)
    through huggingface_hub, load it pretrained in both frameworks from the Hub, refuse a corrupted
    cache file, then load again from the cache with the server gone and HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hf_cache"
    pdparams = tmp_path / "ckpt_T_paddle.pdparams"
    shutil.copyfile(local_hub.repo / "model.pdparams", pdparams)
    with hub_double(tmp_path / "srv") as (endpoint, log):
        env = _env(PORTHUB_HOME=tmp_path / "empty_home", HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN, HF_HUB_CACHE=cache)
        done = _porthub(["push", "shunted_t", "--weights", str(pdparams), "--hub", "hf", "--json"], env)
        assert done.returncode == 0, done.stderr[-3000:]
        pushed = json.loads(done.stdout)
        assert len(pushed["commit"]) == 40 and pushed["endpoint"] == endpoint
        text = log.read_text()
        assert "POST /porthub/shunted_t.git/info/lfs/objects/batch" in text and "PUT /lfs-upload/" in text
        listing = _python(
            "from huggingface_hub import HfApi; print('\\n'.join(HfApi().list_repo_files('porthub/shunted_t')))",
            [],
            env,
        ).stdout.split()
        assert set(listing) == EXPECTED_FILES
        # only the files torch needs
        done = _porthub(["download", "shunted_t", "--framework", "torch", "--json"], env)
        assert done.returncode == 0, done.stderr
        assert set(json.loads(done.stdout)["paths"]) == {"config.json", "model.safetensors"}
        snapshot = next((cache / "models--porthub--shunted_t" / "snapshots").iterdir())
        assert {p.name for p in snapshot.iterdir()} == {"config.json", "model.safetensors"}
        config = json.loads((snapshot / "config.json").read_text())
        assert (
            config["source_checkpoint"]["layout"] == "paddle" and config["source_checkpoint"]["framework"] == "paddle"
        )
        # the weights are the local push's weights, bit for bit
        assert (
            config["files"]["model.safetensors"]["sha256"] == local_hub.config["files"]["model.safetensors"]["sha256"]
        )
        outs = _load_outputs(source.x_path, "torch,paddle", tmp_path / "online.npz", env)
        for fw in ("torch", "paddle"):
            assert float(np.abs(outs[fw] - source.ref).max()) <= 2e-5, fw
        # a cached file that fails its sha256 is refused and removed, and the next download fetches it again
        blob = (snapshot / "model.safetensors").resolve()
        data = bytearray(blob.read_bytes())
        data[100] ^= 0xFF
        blob.write_bytes(bytes(data))
        done = _porthub(["download", "shunted_t", "--framework", "torch"], env)
        assert (
            done.returncode == 1
            and "sha256" in _error_lines(done)[0]
            and "removed from the cache" in _error_lines(done)[0]
        )
        assert not blob.exists() and not (snapshot / "model.safetensors").exists()
        assert _porthub(["download", "shunted_t", "--framework", "torch"], env).returncode == 0
        assert (
            hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
            == config["files"]["model.safetensors"]["sha256"]
        )
        # a wrong token is refused by the server, with what to do next
        code = (
            "import sys\nfrom porthub.hub.remote import remote_publish\nfrom porthub.errors import HubError\n"
            "try:\n    remote_publish(sys.argv[1], 'porthub/other', None)\nexcept HubError as exc:\n    print(exc)\n"
        )
        said = _python(code, [str(local_hub.repo)], {**env, "HF_TOKEN": "wrong"}).stdout
        assert "HTTP 401" in said and "HF_TOKEN" in said
    offline = _env(PORTHUB_HOME=tmp_path / "empty_home", HF_ENDPOINT=endpoint, HF_HUB_CACHE=cache, HF_HUB_OFFLINE=1)
    outs = _load_outputs(source.x_path, "torch,paddle", tmp_path / "offline.npz", offline)
    for fw in ("torch", "paddle"):
        assert float(np.abs(outs[fw] - source.ref).max()) <= 2e-5, fw


@pytest.mark.slow
def test_interrupted_download_resumes(local_hub: SimpleNamespace, tmp_path: Path) -> None:
    """The double drops the connection halfway through the first download of each weight file;
    huggingface_hub resumes with a Range request and porthub's sha256 check passes."""
    with hub_double(tmp_path / "srv", "--cut-once", ".safetensors") as (endpoint, log):
        env = _env(
            PORTHUB_HOME=tmp_path / "home", HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN, HF_HUB_CACHE=tmp_path / "cache"
        )
        code = (
            "import sys\nfrom porthub.hub.remote import remote_publish\n"
            "print(remote_publish(sys.argv[1], 'porthub/shunted_t', None)['commit'])"
        )
        _python(code, [str(local_hub.repo)], env)
        done = _porthub(["download", "shunted_t", "--framework", "paddle", "--json"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        text = log.read_text()
    assert '"GET /porthub/shunted_t/resolve/' in text and '" 206 ' in text
    path = json.loads(done.stdout)["paths"]["model.paddle.safetensors"]
    assert (
        hashlib.sha256(Path(path).read_bytes()).hexdigest()
        == local_hub.config["files"]["model.paddle.safetensors"]["sha256"]
    )
    assert not list((tmp_path / "cache").rglob("*.incomplete"))


@pytest.mark.slow
def test_publish_to_a_branch_and_pin_downloads_to_it(local_hub: SimpleNamespace, tmp_path: Path) -> None:
    with hub_double(tmp_path / "srv") as (endpoint, log):
        env = _env(
            PORTHUB_HOME=tmp_path / "home", HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN, HF_HUB_CACHE=tmp_path / "cache"
        )
        code = (
            "import sys, json\nfrom porthub.hub.remote import remote_publish\n"
            "print(json.dumps(remote_publish(sys.argv[1], 'porthub/shunted_t', None, revision='dev')))"
        )
        published = json.loads(_python(code, [str(local_hub.repo)], env).stdout)
        assert published["revision"] == "dev" and "POST /api/models/porthub/shunted_t/branch/dev" in log.read_text()
        done = _porthub(["download", "shunted_t", "--framework", "torch", "--revision", "dev", "--json"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["commit"] == published["commit"]
        # main was created empty and never got the files
        done = _porthub(["download", "shunted_t", "--framework", "torch"], env)
        assert done.returncode == 1 and "has no file config.json" in _error_lines(done)[0]


# --------------------------------------------------------------------------- downloads against olah
def _git_repo_with_lfs(src: Path, repo: Path) -> None:
    """The repository as olah serves it offline: a git repository, large files as LFS pointers with
    their objects under .git/lfs/objects (written by hand; git-lfs is not needed)."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "porthub",
        "GIT_AUTHOR_EMAIL": "t@localhost",
        "GIT_COMMITTER_NAME": "porthub",
        "GIT_COMMITTER_EMAIL": "t@localhost",
    }
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    for path in src.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(src)
        dst = repo / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        if path.suffix in (".safetensors", ".pdparams", ".npy"):
            oid = hashlib.sha256(data).hexdigest()
            obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
            obj.parent.mkdir(parents=True, exist_ok=True)
            obj.write_bytes(data)
            dst.write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n")
        else:
            dst.write_bytes(data)
    (repo / ".gitattributes").write_text(
        "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in (".safetensors", ".pdparams", ".npy"))
    )
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "porthub push"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "tag", "v1"], check=True, env=env)


@contextlib.contextmanager
def olah_server(mirrors: Path, work: Path):
    port = _free_port()
    cfg = work / "olah.toml"
    cfg.write_text(f"""[basic]
host = "127.0.0.1"
port = {port}
repos-path = "{work / "repos"}"
mirror-scheme = "http"
mirror-netloc = "127.0.0.1:{port}"
mirror-lfs-netloc = "127.0.0.1:{port}"
mirrors-path = ["{mirrors}"]

[accessibility]
offline = true
""")
    log = open(work / "olah.log", "w")
    proc = subprocess.Popen([shutil.which("olah-cli"), "-c", str(cfg)], cwd=work, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/api/models/{REPO}/revision/main", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"olah did not start: {(work / 'olah.log').read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield endpoint
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_downloads_from_olah_a_real_hub_mirror(local_hub: SimpleNamespace, tmp_path: Path) -> None:
    if shutil.which("olah-cli") is None or shutil.which("git") is None:
        pytest.skip("needs olah (pip install 'porthub[test]') and git")
    mirrors = tmp_path / "mirrors"
    _git_repo_with_lfs(local_hub.repo, mirrors / "models" / "porthub" / "shunted_t")
    cache = tmp_path / "cache"
    with olah_server(mirrors, tmp_path) as endpoint:
        env = _env(PORTHUB_HOME=tmp_path / "home", HF_ENDPOINT=endpoint, HF_HUB_CACHE=cache)
        done = _porthub(["download", "shunted_t", "--framework", "paddle", "--json"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        got = json.loads(done.stdout)
        assert set(got["paths"]) == {"config.json", "model.paddle.safetensors"} and len(got["commit"]) == 40
        snapshots = cache / "models--porthub--shunted_t" / "snapshots"
        assert {p.name for p in next(snapshots.iterdir()).iterdir()} == {"config.json", "model.paddle.safetensors"}
        done = _porthub(["download", "shunted_t", "--framework", "torch", "--revision", "v1", "--json"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["commit"] == got["commit"]
        done = _porthub(["download", "shunted_t", "--revision", "no-such-tag"], env)
        assert done.returncode == 1 and len(_error_lines(done)) == 1
    for name in ("model.safetensors", "model.paddle.safetensors"):
        path = next(snapshots.iterdir()) / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == local_hub.config["files"][name]["sha256"]
    # the server is gone: the cache serves, with and without HF_HUB_OFFLINE
    for offline in ("1", "0"):
        env = _env(PORTHUB_HOME=tmp_path / "home", HF_ENDPOINT=endpoint, HF_HUB_CACHE=cache, HF_HUB_OFFLINE=offline)
        done = _porthub(["download", "shunted_t", "--json"], env)
        assert done.returncode == 0, done.stderr[-2000:]
        assert set(json.loads(done.stdout)["paths"]) == {"config.json", "model.safetensors", "model.paddle.safetensors"}
