"""AI Studio as a hub, end to end through the official client (aistudio-sdk 0.3) against
``tests/aistudio_double.py`` on 127.0.0.1, with nothing leaving the machine.

* ``porthub push shunted_t --weights <official-layout file> --hub aistudio``, then pretrained loading
  with ``PORTHUB_HUBS=aistudio`` (Paddle) and ``from_pretrained(..., hub="aistudio")`` (PyTorch), each
  compared with the source checkpoint run by torch's own ``load_state_dict``.
* A second push updates the repository; a README whose YAML AI Studio rejects fails the push; a
  missing token fails before any work; offline mode and a dead host use porthub's cache.
* Telemetry: the SDK's download statistic is not sent unless PORTHUB_AISTUDIO_STATS=1, and then
  never blocks.
* Every process of this file (this one and each command it starts) runs under a guard that records
  every name lookup and connect and refuses any that is not loopback; the last test reads the record.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import aistudio_double as double_mod
import numpy as np
import pytest

from porthub.errors import (
    AIStudioTokenError,
    HubError,
    HubUnreachableError,
    ReadmeRejectedError,
)

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "aistudio-porthub-test-token"
OWNER = "porthub"
REPO = f"{OWNER}/shunted_t"
AISTUDIO_FILES = {
    "README.md",
    "config.json",
    ".gitattributes",
    "model.pdparams",
    "test/input.npy",
    "test/output.float32.npy",
    "test/output.float64.npy",
}
# Runs Paddle's pretrained model (PORTHUB_HUBS decides where from) and PyTorch's from_pretrained with
# hub="aistudio" on argv[1]; saves both outputs to argv[2].
LOADER = """
import sys, numpy as np, paddle, torch, porthub
x = np.load(sys.argv[1])
m = porthub.create_model("shunted_t", framework="paddle", pretrained=True)
with paddle.no_grad():
    p = m(paddle.to_tensor(x)).numpy()
del m
t = porthub.from_pretrained("porthub/shunted_t", framework="torch", hub="aistudio")
with torch.no_grad():
    o = t(torch.from_numpy(x)).numpy()
np.savez(sys.argv[2], paddle=p, torch=o)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _official_checkpoint(path: Path, seed: int) -> dict[str, np.ndarray]:
    """A full-size shunted_t checkpoint in the official layout: the keys, shapes and dtypes of the shipped
    manifest (converters/manifests/shunted.json), seeded values of a sensible scale, saved as the
    official release is (torch.save of a bare state dict)."""
    import torch

    entries = json.loads((ROOT / "converters" / "manifests" / "shunted.json").read_text())["shunted_t"]
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape, dtype in entries:
        leaf = key.rpartition(".")[2]
        if dtype != "float32":
            value = np.zeros(shape, dtype)
        elif leaf == "running_var":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf == "running_mean":
            value = 0.1 * rng.standard_normal(shape)
        elif len(shape) >= 2:
            value = rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape[1:]))))
        elif leaf == "weight":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            value = 0.02 * rng.standard_normal(shape)
        state[key] = np.asarray(value, dtype)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, str(path))
    return state


def _torch_reference(state: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The checkpoint's output through torch's own strict load_state_dict (not porthub's loading code)."""
    import torch

    from porthub.registry import resolve
    from porthub.runtime import build_model

    spec, variant = resolve("shunted_t")
    model = build_model(spec, variant.model(), "torch")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module", autouse=True)
def guard(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Records every lookup and connect of this process and of every command the tests start."""
    log = tmp_path_factory.mktemp("guard") / "addresses.jsonl"
    log.touch()
    seen = double_mod.install_loopback_guard()
    yield SimpleNamespace(seen=seen, log=log)
    double_mod.remove_loopback_guard()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    with double_mod.start(str(tmp_path_factory.mktemp("aistudio_double")), {TOKEN: OWNER}) as double:
        yield double


def _env(
    studio: double_mod.Double, home: Path, guard: SimpleNamespace, token: str | None = TOKEN, **extra: object
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "PORTHUB_", "HUGGINGFACE_", "AISTUDIO_", "STUDIO_"))
    }
    env.update(double_mod.sdk_env(studio, token, str(home / "sdkhome")))
    env.update(
        {
            "OMP_NUM_THREADS": "2",
            "PYTHONPATH": str(ROOT),
            "PORTHUB_HOME": str(home / "porthub"),
            "PORTHUB_TEST_ADDRESS_LOG": str(guard.log),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
            "HF_HUB_CACHE": str(home / "hf"),
        }
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _porthub(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", double_mod.GUARDED_CLI, *args],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _python(code: str, args: list[str], env: dict[str, str], tmp: Path, timeout: float = 900) -> None:
    script = tmp / "script.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, "-c", double_mod.GUARDED_PY, str(script), *args],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("porthub: error:")]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from porthub.pairs import seeded_input
    from porthub.registry import resolve

    folder = tmp_path_factory.mktemp("aistudio_source")
    ckpt = folder / "ckpt_T.pth"
    state = _official_checkpoint(ckpt, seed=7)
    x = seeded_input(resolve("shunted_t")[1], seed=11)
    np.save(folder / "x.npy", x)
    return SimpleNamespace(
        ckpt=ckpt, x=x, x_path=folder / "x.npy", ref=_torch_reference(state, x), folder=folder, state=state
    )


@pytest.fixture(scope="module")
def pushed(
    studio: double_mod.Double, source: SimpleNamespace, guard: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory
) -> SimpleNamespace:
    """`porthub push shunted_t --weights <official file> --hub aistudio` into the empty double."""
    home = tmp_path_factory.mktemp("aistudio_push_home")
    assert (OWNER, "shunted_t") not in studio.repos
    done = _porthub(
        ["push", "shunted_t", "--weights", str(source.ckpt), "--hub", "aistudio", "--json"], _env(studio, home, guard)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return SimpleNamespace(result=json.loads(done.stdout), files=studio.files(OWNER, "shunted_t"), home=home)


# ------------------------------------------------------------------------------- fast, no model built
def test_aistudio_is_named_by_push_and_download_help() -> None:
    for command in ("push", "download"):
        done = subprocess.run(
            [sys.executable, "-m", "porthub.cli", command, "--help"],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0, done.stderr
        assert "aistudio" in done.stdout, (command, done.stdout)


def test_aistudio_card_passes_the_yaml_check_for_every_variant(tmp_path: Path) -> None:
    """The card porthub writes for AI Studio has front matter the double's copy of AI Studio's check
    accepts, as the SDK extracts it, for every registered variant; its body says how to load it."""
    from aistudio_sdk.utils.util import extract_yaml_block

    from porthub.hub.aistudio import aistudio_licence, render_card
    from porthub.registry import all_specs

    checked = 0
    for spec in all_specs():
        for variant in spec.variants:
            config = {
                "variant": variant.name,
                "architecture": variant.class_name,
                "family": spec.family,
                "porthub_version": "0",
                "licence": spec.licence,
                "paper": spec.paper,
                "official_repo": spec.official_repo,
                "meta": dict(variant.meta),
                "preprocessing": {"input_size": list(variant.input_size)},
                "source_checkpoint": {"name": "x.pth", "sha256": "0" * 64, "layout": "official"},
                "equivalence": {
                    "results": [
                        {
                            "framework": "paddle",
                            "file": "model.pdparams",
                            "dtype": "float32",
                            "max_abs_diff": 1e-6,
                            "tolerance": 2e-5,
                        }
                    ]
                },
                "frameworks": {"paddle": {"file": "model.pdparams"}},
                "files": {"model.pdparams": {"sha256": "1" * 64, "size": 3}},
            }
            card = tmp_path / "README.md"
            card.write_text(render_card(config, f"{OWNER}/{variant.name}"))
            front = extract_yaml_block(str(card))
            assert double_mod.validate_aistudio_yaml(front) is None, (variant.name, front)
            assert front == f"license: {aistudio_licence(spec.licence)}"
            text = card.read_text()
            assert "paddle.load" in text and "set_state_dict" in text and "1.000e-06" in text
            assert (spec.paper or "See the official repository.") in text
            checked += 1
    assert checked >= 10
    assert aistudio_licence("MIT (LICENSE of the official repository)") == "MIT License"
    assert aistudio_licence("Apache-2.0 (LICENSE)") == "Apache License 2.0"
    assert aistudio_licence("not stated: no LICENSE file") == "Other"
    assert double_mod.validate_aistudio_yaml("license: apache-2.0") is not None
    assert double_mod.validate_aistudio_yaml("license: [unclosed") is not None


def test_aistudio_push_without_token_or_network_fails_before_any_work(
    studio: double_mod.Double, source: SimpleNamespace, guard: SimpleNamespace, tmp_path: Path
) -> None:
    started = time.monotonic()
    done = _porthub(
        ["push", "shunted_t", "--weights", str(source.ckpt), "--hub", "aistudio"],
        _env(studio, tmp_path, guard, token=None),
        timeout=300,
    )
    took = time.monotonic() - started
    assert done.returncode == 1
    errors = _error_lines(done)
    assert len(errors) == 1, done.stderr[-2000:]
    assert "access token" in errors[0] and "AISTUDIO_ACCESS_TOKEN" in errors[0]
    assert took < 60, f"the missing token was reported after {took:.0f} s (after the conversion?)"
    assert studio.hits("POST", "/sdk/add") == 0
    # AI Studio unreachable: also said before the conversion
    started = time.monotonic()
    done = _porthub(
        ["push", "shunted_t", "--weights", str(source.ckpt), "--hub", "aistudio"],
        _env(studio, tmp_path, guard, STUDIO_GIT_HOST=f"http://127.0.0.1:{_free_port()}"),
        timeout=300,
    )
    assert done.returncode == 1 and len(_error_lines(done)) == 1, done.stderr[-2000:]
    assert "cannot reach AI Studio" in _error_lines(done)[0] and time.monotonic() - started < 60


def test_aistudio_token_comes_from_argument_environment_or_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from porthub.hub.aistudio import require_token, resolve_token

    monkeypatch.delenv("AISTUDIO_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("AISTUDIO_CACHE_HOME", str(tmp_path))
    with pytest.raises(AIStudioTokenError, match="AISTUDIO_ACCESS_TOKEN"):
        require_token(None)
    token_file = tmp_path / ".cache" / "aistudio" / ".auth" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("from-file\n")
    assert resolve_token(None) == "from-file"
    monkeypatch.setenv("AISTUDIO_ACCESS_TOKEN", "from-env")
    assert resolve_token(None) == "from-env" and resolve_token("given") == "given"
    assert "AISTUDIO_ACCESS_TOKEN" in os.environ and os.environ["AISTUDIO_ACCESS_TOKEN"] == "from-env"


def test_aistudio_sdk_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from porthub.hub import aistudio as hub_aistudio

    monkeypatch.setitem(sys.modules, "aistudio_sdk.hub", None)
    with pytest.raises(HubError, match=r"pip install 'porthub\[aistudio\]'"):
        hub_aistudio.sdk()


# --------------------------------------------------------------------------------- push and load
@pytest.mark.slow
def test_aistudio_push_writes_a_paddle_repository(
    pushed: SimpleNamespace, studio: double_mod.Double, source: SimpleNamespace
) -> None:
    files, result = pushed.files, pushed.result
    assert set(files) == AISTUDIO_FILES
    assert result["hub"] == "aistudio" and result["repo_id"] == REPO and result["revision"] == "master"
    assert result["created"] is True
    repo = studio.repos[(OWNER, "shunted_t")]
    head = repo.commits[repo.branches["master"]]
    assert head["model.pdparams"].lfs and not head["README.md"].lfs and not head["config.json"].lfs
    assert "*.pdparams filter=lfs diff=lfs merge=lfs -text" in files[".gitattributes"].decode()
    config = json.loads(files["config.json"])
    assert config["frameworks"] == {"paddle": {"file": "model.pdparams", "layout": "paddle-state-dict"}}
    for name, info in config["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == info["sha256"], name
    assert config["source_checkpoint"]["name"] == "ckpt_T.pth" and config["source_checkpoint"]["layout"] == "official"
    card = files["README.md"].decode()
    assert card.startswith("---\nlicense: Other\n---\n")
    paddle32 = next(
        r for r in config["equivalence"]["results"] if r["framework"] == "paddle" and r["dtype"] == "float32"
    )
    assert paddle32["max_abs_diff"] <= 2e-5 and f"{paddle32['max_abs_diff']:.3e}" in card
    assert config["source_checkpoint"]["sha256"] in card and "set_state_dict" in card
    assert [reason for _text, reason in studio.yaml_checks] == [None]
    assert studio.statistics == []


@pytest.mark.slow
def test_aistudio_pretrained_gives_the_source_outputs(
    pushed: SimpleNamespace, studio: double_mod.Double, source: SimpleNamespace, guard: SimpleNamespace, tmp_path: Path
) -> None:
    env = _env(studio, tmp_path, guard, PORTHUB_HUBS="aistudio")
    _python(LOADER, [str(source.x_path), str(tmp_path / "out.npz")], env, tmp_path)
    with np.load(tmp_path / "out.npz") as outs:
        for fw in ("paddle", "torch"):
            assert outs[fw].shape == source.ref.shape
            assert float(np.abs(outs[fw] - source.ref).max()) <= 2e-5 * max(1.0, float(np.abs(source.ref).max())), fw
    cached = tmp_path / "porthub" / "aistudio" / OWNER / "shunted_t@master"
    assert {p.name for p in cached.iterdir() if not p.name.startswith(".")} == {"config.json", "model.pdparams"}
    assert studio.statistics == []
    # the same from the cache: offline, and with AI Studio unreachable
    for extra in ({"PORTHUB_OFFLINE": "1"}, {"STUDIO_GIT_HOST": f"http://127.0.0.1:{_free_port()}"}):
        done = _porthub(["download", "shunted_t", "--hub", "aistudio", "--json"], {**env, **extra}, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        got = json.loads(done.stdout)
        assert got["where"].startswith("AI Studio cache") and set(got["paths"]) == {"config.json", "model.pdparams"}
    # nothing cached and nothing reachable: one line saying so
    dead = _env(studio, tmp_path / "empty", guard, STUDIO_GIT_HOST=f"http://127.0.0.1:{_free_port()}")
    done = _porthub(["download", "shunted_t", "--hub", "aistudio"], dead, timeout=300)
    assert done.returncode == 1 and len(_error_lines(done)) == 1, done.stderr[-2000:]
    assert "could not be reached" in _error_lines(done)[0]


@pytest.mark.slow
def test_aistudio_in_the_hub_order(
    pushed: SimpleNamespace, source: SimpleNamespace, sdk_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PORTHUB_HUBS orders the hubs asked for pretrained weights (default local,hf,aistudio): a hub that
    lacks the repository passes on to the next; AI Studio's Paddle file gives the official checkpoint's
    tensors exactly, whichever framework asks; a name that is not a hub is refused."""
    from porthub.hub import hub_order, pretrained_state

    monkeypatch.delenv("PORTHUB_HUBS", raising=False)
    assert hub_order() == ["local", "hf", "aistudio"]
    monkeypatch.setenv("PORTHUB_HUBS", "local,aistudio")
    for framework in ("torch", "paddle"):
        state = pretrained_state("shunted_t", framework)
        assert set(state) == set(source.state)
        for key, value in source.state.items():
            assert np.asarray(state[key]).shape == value.shape and np.array_equal(np.asarray(state[key]), value), key
    monkeypatch.setenv("PORTHUB_HUBS", "local,modelscope")
    with pytest.raises(HubError, match="PORTHUB_HUBS"):
        pretrained_state("shunted_t", "paddle")


@pytest.mark.slow
def test_aistudio_second_push_updates_the_repository(
    pushed: SimpleNamespace, studio: double_mod.Double, source: SimpleNamespace, guard: SimpleNamespace, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt_T.pth"
    _official_checkpoint(ckpt, seed=8)
    env = _env(studio, pushed.home, guard)
    done = _porthub(["download", "shunted_t", "--hub", "aistudio", "--json"], env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first = Path(json.loads(done.stdout)["paths"]["model.pdparams"])
    assert first.read_bytes() == pushed.files["model.pdparams"]
    commits = studio.commit_count(OWNER, "shunted_t")
    done = _porthub(
        ["push", "shunted_t", "--weights", str(ckpt), "--hub", "aistudio", "--json"], _env(studio, tmp_path, guard)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["created"] is False
    assert studio.commit_count(OWNER, "shunted_t") == commits + 1
    files = studio.files(OWNER, "shunted_t")
    assert set(files) == AISTUDIO_FILES
    assert files["model.pdparams"] != pushed.files["model.pdparams"] and files["README.md"] != pushed.files["README.md"]
    config = json.loads(files["config.json"])
    assert config["source_checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    # a download now brings the new weights, not the cached first ones
    done = _porthub(["download", "shunted_t", "--hub", "aistudio", "--json"], env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    path = Path(json.loads(done.stdout)["paths"]["model.pdparams"])
    assert path == first and path.read_bytes() == files["model.pdparams"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == config["files"]["model.pdparams"]["sha256"]


# ------------------------------------------------------------------------- library-level checks
@pytest.fixture()
def sdk_env(studio: double_mod.Double, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process pointed at the double (the SDK reads its host variables at every call)."""
    for key in list(os.environ):
        if key.startswith(("PORTHUB_", "AISTUDIO_", "STUDIO_")):
            monkeypatch.delenv(key)
    for key, value in double_mod.sdk_env(studio, TOKEN, str(tmp_path / "sdkhome")).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PORTHUB_HOME", str(tmp_path / "porthub"))
    return tmp_path


def _staged(pushed: SimpleNamespace, tmp_path: Path) -> Path:
    folder = tmp_path / "staged"
    for name, data in pushed.files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.slow
def test_aistudio_rejected_readme_fails_the_push(
    pushed: SimpleNamespace, studio: double_mod.Double, sdk_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from porthub.hub import aistudio as hub_aistudio

    folder = _staged(pushed, sdk_env)
    hub_aistudio.publish(str(folder), f"{OWNER}/card_check")
    good = studio.files(OWNER, "card_check")["README.md"]
    # the Hugging Face spelling of a licence is not AI Studio's: its check refuses the card, the SDK skips
    # it with a printed line, and porthub reads back what landed
    monkeypatch.setattr(hub_aistudio, "aistudio_licence", lambda _text: "apache-2.0")
    for repo in ("card_check", "card_new"):
        with pytest.raises(ReadmeRejectedError) as info:
            hub_aistudio.publish(str(folder), f"{OWNER}/{repo}")
        message = str(info.value)
        assert "README.md" in message and f"{OWNER}/{repo}" in message
        assert "license 'apache-2.0' is not an AI Studio licence" in message and "front matter" in message
    assert studio.files(OWNER, "card_check")["README.md"] == good
    assert "README.md" not in studio.files(OWNER, "card_new")


@pytest.mark.slow
def test_aistudio_push_command_fails_when_the_readme_is_rejected(
    pushed: SimpleNamespace, studio: double_mod.Double, source: SimpleNamespace, guard: SimpleNamespace, tmp_path: Path
) -> None:
    """`porthub push --hub aistudio` against a server whose YAML check refuses the card: one error line,
    non-zero status, although the SDK itself reports nothing."""
    studio.reject_all_yaml = True
    try:
        done = _porthub(
            ["push", "shunted_t", "--weights", str(source.ckpt), "--hub", "aistudio", "--repo-id", f"{OWNER}/card_cli"],
            _env(studio, tmp_path, guard),
        )
    finally:
        studio.reject_all_yaml = False
    assert done.returncode == 1, done.stdout[-2000:]
    errors = _error_lines(done)
    assert len(errors) == 1 and "README.md" in errors[0] and "rejected by the test" in errors[0], done.stderr[-2000:]
    assert "front matter" in errors[0] and done.stdout == ""
    assert "README.md" not in studio.files(OWNER, "card_cli") and "model.pdparams" in studio.files(OWNER, "card_cli")


@pytest.mark.slow
def test_aistudio_repository_carries_the_paddle_inference_model(
    pushed: SimpleNamespace, studio: double_mod.Double, sdk_env: Path
) -> None:
    """Files a built repository has besides the weights (the export issue's Paddle inference model) go
    to AI Studio too, LFS where they are weights, listed in config.json and on the card; PyTorch's do not."""
    from porthub.hub import aistudio as hub_aistudio

    folder = _staged(pushed, sdk_env)
    config = json.loads((folder / "config.json").read_text())
    (folder / "inference").mkdir()
    extra = {
        "inference/inference.json": b'{"program": "stand-in"}',
        "inference/inference.pdiparams": b"\x01" * 4096,
        "inference/inference.yml": b"Global:\n  model_name: shunted_t\n",
        "model.pt": b"torch only",
    }
    for name, data in extra.items():
        (folder / name).write_bytes(data)
        config["files"][name] = {
            "framework": "torch" if name.endswith(".pt") else "paddle",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
    (folder / "config.json").write_text(json.dumps(config))
    hub_aistudio.publish(str(folder), f"{OWNER}/with_inference")
    files = studio.files(OWNER, "with_inference")
    assert set(files) == AISTUDIO_FILES | set(extra) - {"model.pt"}
    repo = studio.repos[(OWNER, "with_inference")]
    head = repo.commits[repo.branches["master"]]
    assert head["inference/inference.pdiparams"].lfs and not head["inference/inference.yml"].lfs
    assert "`inference/inference.json`" in files["README.md"].decode()
    published = json.loads(files["config.json"])
    assert "model.pt" not in published["files"] and all(files[n] == d for n, d in extra.items() if n in files)


@pytest.mark.slow
def test_aistudio_owner_part_is_the_token_owners_namespace(
    pushed: SimpleNamespace, studio: double_mod.Double, sdk_env: Path
) -> None:
    from porthub.hub import aistudio as hub_aistudio

    folder = _staged(pushed, sdk_env)
    with pytest.raises(HubError, match="namespace of the token's owner") as info:
        hub_aistudio.publish(str(folder), "someone_else/owner_check")
    assert "someone_else/owner_check" in str(info.value)
    # AI Studio created the repository where the token belongs, not where the id said
    assert (OWNER, "owner_check") in studio.repos and ("someone_else", "owner_check") not in studio.repos
    with pytest.raises(AIStudioTokenError, match="refused the access token"):
        hub_aistudio.publish(str(folder), f"{OWNER}/owner_check", token="not-a-token")
    with pytest.raises(HubError, match="master"):
        hub_aistudio.publish(str(folder), f"{OWNER}/owner_check", revision="dev")


@pytest.mark.slow
def test_aistudio_statistics_are_off_unless_opted_in_and_never_block(
    pushed: SimpleNamespace,
    studio: double_mod.Double,
    sdk_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    import aistudio_sdk.dot

    from porthub.hub import aistudio as hub_aistudio

    production = aistudio_sdk.dot.STUDIO_MODEL_API_URL_PREFIX_DEFAULT
    assert production == "https://aistudio.baidu.com"
    fetched = hub_aistudio.fetch(REPO)
    assert set(fetched.paths) == {"config.json", "model.pdparams"} and studio.statistics == []
    # opted in: the SDK's statistic goes out from a daemon thread; a statistics host that hangs for a
    # minute does not hold the download (porthub waits at most STATS_WAIT_S); the SDK's hard-coded
    # production host is redirected to a second double so that the request stays on 127.0.0.1
    with double_mod.start(str(tmp_path_factory.mktemp("stats")), {}, stats_delay=60) as stats:
        monkeypatch.setattr(aistudio_sdk.dot, "STUDIO_MODEL_API_URL_PREFIX_DEFAULT", stats.url)
        monkeypatch.setenv("PORTHUB_AISTUDIO_STATS", "1")
        started = time.monotonic()
        hub_aistudio.fetch(REPO)
        took = time.monotonic() - started
        assert took < hub_aistudio.STATS_WAIT_S + 10, took
        deadline = time.monotonic() + 10
        while len(stats.statistics) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        sent = [s["body"] for s in stats.statistics]
        assert len(sent) >= 2 and all(s["repo_id"] == REPO and s["ac_type"] == "download" for s in sent)
        assert {json.loads(s["action"]).get("path") for s in sent} == {"config.json", "model.pdparams"}
    assert studio.statistics == []
    # outside porthub's calls the SDK is as shipped
    import aistudio_sdk.file_download

    assert aistudio_sdk.file_download.post_repo_statistic_async is aistudio_sdk.dot.post_repo_statistic_async


@pytest.mark.slow
def test_aistudio_published_source_sha256_for_publish_zoo(
    pushed: SimpleNamespace, studio: double_mod.Double, sdk_env: Path
) -> None:
    from porthub.hub import aistudio as hub_aistudio

    config = json.loads(studio.files(OWNER, "shunted_t")["config.json"])
    assert hub_aistudio.published_source_sha256(REPO) == config["source_checkpoint"]["sha256"]
    assert hub_aistudio.published_source_sha256(f"{OWNER}/never_published") is None


def test_aistudio_unreachable_host_is_typed(sdk_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from porthub.hub import aistudio as hub_aistudio

    monkeypatch.setenv("STUDIO_GIT_HOST", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(HubUnreachableError, match="could not be reached"):
        hub_aistudio.fetch(REPO)
    monkeypatch.setenv("PORTHUB_OFFLINE", "1")
    with pytest.raises(HubError, match="offline mode is on"):
        hub_aistudio.fetch(REPO)


@pytest.mark.slow
def test_aistudio_hostile_config_cannot_name_the_sdks_index_files(
    pushed: SimpleNamespace, studio: double_mod.Double, sdk_env: Path
) -> None:
    """A config.json that names the SDK's pickled cache index as its weights is refused before the SDK
    downloads anything over it (the SDK unpickles ``.msc`` from the download folder on its next call)."""
    from porthub.hub import aistudio as hub_aistudio

    good = studio.repos[(OWNER, "shunted_t")]
    head = dict(good.commits[good.branches["master"]])
    config = json.loads(studio.read(head["config.json"]))
    config["frameworks"] = {"paddle": {"file": ".msc", "layout": "paddle-state-dict"}}
    config["files"][".msc"] = {"sha256": "0" * 64}
    blob = json.dumps(config).encode()
    head["config.json"] = double_mod.Entry(hashlib.sha256(blob).hexdigest(), len(blob), blob, False)
    hostile = double_mod.Repo(OWNER, "hostile", False, "hostile", "Other", {"c" * 40: head}, {"master": "c" * 40})
    studio.repos[(OWNER, "hostile")] = hostile
    with pytest.raises(HubError, match="plain \\*.pdparams"):
        hub_aistudio.fetch(f"{OWNER}/hostile")
    assert not studio.hits("GET", "/hostile/media/.msc") and not studio.hits("GET", "/hostile/contents/.msc")


# ------------------------------------------------------------------------------- keep this one last
def test_aistudio_no_connection_left_loopback(guard: SimpleNamespace) -> None:
    """Every name lookup and connect of this process and of every command the AI Studio tests ran went
    to 127.0.0.1 (the guard refuses others before a packet leaves; here we prove none was even tried)."""
    in_process = [(kind, repr(addr)) for kind, addr in guard.seen]
    commands = [tuple(json.loads(line)) for line in guard.log.read_text().splitlines() if line.strip()]
    # at least this process's own calls to the double were recorded (with the slow tests, every command's too)
    assert any(kind == "connect" for kind, _ in in_process), in_process
    strays = [
        entry
        for entry in guard.seen
        if not double_mod._is_loopback(entry[1][0] if isinstance(entry[1], tuple) else entry[1])
    ]
    strays += [entry for entry in commands if not entry[2]]
    assert strays == []
