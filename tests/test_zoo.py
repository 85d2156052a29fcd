"""``porthub publish-zoo`` over a sources folder of official-layout files (seeded values with the keys of
the shipped manifests, wrapped as the catalogue says, under the catalogued file names) into the local hub:
publishes what is there, a second run publishes nothing new, a damaged file fails in the table and the
exit code; every catalogued variant at full size (slow); a run killed after its first repository resumes
with nothing half-written left behind.

The generated files' sha256 are not the real releases' (none of the folder files is pinned in the
catalogue), so they are published as the user's own checkpoints (provenance ``user``), which is what a
folder file with no published sha256 is.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from porthub.catalogue import Wrapping
from porthub.cli import main
from porthub.registry import resolve
from porthub.sources import catalogue

SMALL = ("seaformer_tiny", "seaformer_seg_tiny")
ROOT = Path(__file__).resolve().parents[1]


def _official(name: str, folder: Path) -> Path:
    from porthub.io import save_checkpoint
    from porthub.manifest import load_manifest
    from porthub.pairs import seeded_state

    spec, variant = resolve(name)
    state = dict(seeded_state(spec, variant.model(), seed=1))
    assert list(state) == load_manifest(spec, variant).keys()
    wrapping = catalogue(name).wrapping
    obj = {Wrapping.MODEL: {"model": state}, Wrapping.TIMM_TRAIN: {"state_dict": state, "state_dict_ema": state},
           Wrapping.MMCV: {"meta": {"note": "test"}, "state_dict": state}}.get(wrapping, state)
    path = folder / catalogue(name).file_name
    save_checkpoint(obj, str(path), "pth")
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("PORTHUB_SOURCES", "PORTHUB_SOURCE_MIRROR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PORTHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTHUB_OFFLINE", "1")   # nothing leaves the machine


def test_publishes_what_is_there_then_nothing_new(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    shas = {name: _official(name, src) for name in SMALL}
    args = ["publish-zoo", "--hub", "local", "--sources", str(src), "--dtype", "float32", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    status = {e["variant"]: e["status"] for e in first["entries"]}
    assert {n for n, s in status.items() if s == "published"} == set(SMALL)
    assert first["failed"] == 0 and first["unavailable"] == len(status) - len(SMALL)
    for name in SMALL:
        config = json.loads((tmp_path / "home" / "models" / "porthub" / name / "config.json").read_text())
        import hashlib

        assert config["source_checkpoint"]["sha256"] == hashlib.sha256(shas[name].read_bytes()).hexdigest()
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["published"] == 0 and second["skipped"] == len(SMALL)
    # a damaged file: that variant fails, the exit code says so, the table lists it
    (src / catalogue("seaformer_tiny").file_name).write_bytes(b"not a checkpoint")
    assert main(args[:-1]) == 1
    table = capsys.readouterr().out
    line = next(ln for ln in table.splitlines() if ln.startswith("seaformer_tiny "))
    assert "failed" in line and "1 failed" in table
    assert os.path.isdir(tmp_path / "home" / "models" / "porthub" / "seaformer_tiny")


def test_missing_sources_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish-zoo", "--hub", "local", "--sources", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such sources folder" in err[0]


# ------------------------------------------------------------------------------- every catalogued variant
# Writes the official-layout file of every catalogued variant into argv[1], one at a time (a model and
# its state are freed before the next), and their sha256 as JSON into argv[2].
_GENERATE = """
import gc, hashlib, json, sys
sys.path.insert(0, sys.argv[3])
from test_zoo import _official
from porthub.zoo import zoo_variants
from pathlib import Path
shas = {}
for name in zoo_variants():
    path = _official(name, Path(sys.argv[1]))
    shas[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    gc.collect()
Path(sys.argv[2]).write_text(json.dumps(shas))
"""


def _env(**extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PORTHUB_", "HUGGINGFACE_"))}
    env.update({"OMP_NUM_THREADS": "2", "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT),
                "HF_HUB_OFFLINE": "1", "PORTHUB_OFFLINE": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _porthub(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "porthub.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _repos(home: Path) -> dict[str, Path]:
    root = home / "models" / "porthub"
    return {p.name: p for p in sorted(root.iterdir())} if root.is_dir() else {}


def _check_complete(repo: Path, sha: str) -> None:
    """A published repository: config.json records the source sha256, every file it lists is there with
    its sha256, verification passed."""
    config = json.loads((repo / "config.json").read_text())
    assert config["source_checkpoint"]["sha256"] == sha, repo.name
    assert config["equivalence"]["ok"] is True, repo.name
    for name, info in config["files"].items():
        assert hashlib.sha256((repo / name).read_bytes()).hexdigest() == info["sha256"], (repo.name, name)
    on_disk = {str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()}
    assert on_disk == set(config["files"]) | {"config.json"}, repo.name


def _leftovers(home: Path) -> list[str]:
    """Anything temporary in the hub: staging folders, hidden partial files, replaced repositories."""
    found = []
    for p in home.rglob("*"):
        if p.name.startswith(".") and p.name not in (".staging",) or p.name.endswith(".partial"):
            found.append(str(p.relative_to(home)))
    staging = home / ".staging"
    if staging.is_dir():
        found += [f".staging/{p.name}" for p in staging.iterdir()]
    return found


@pytest.mark.zoo
def test_every_catalogued_variant_is_published_then_a_second_run_publishes_nothing(tmp_path: Path) -> None:
    """Full size, all of the registry's catalogue: one command publishes every variant (verified in
    float32, both frameworks), a second publishes nothing new and rewrites nothing."""
    from porthub.zoo import zoo_variants

    names = zoo_variants()
    assert len(names) == sum(len(s.variants) for s in __import__("porthub.registry").registry.all_specs())
    files = [catalogue(n).file_name for n in names]
    assert len(set(files)) == len(files)  # one folder can hold them all
    src, home = tmp_path / "src", tmp_path / "home"
    src.mkdir()
    try:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", _GENERATE, str(src), str(tmp_path / "shas.json"),
                               str(ROOT / "tests")], env=_env(), cwd=ROOT, capture_output=True, text=True,
                              timeout=1800, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        generated = time.monotonic() - started
        shas = json.loads((tmp_path / "shas.json").read_text())
        args = ["publish-zoo", "--hub", "local", "--sources", str(src), "--dtype", "float32", "--json"]
        started = time.monotonic()
        first = _porthub(args, _env(PORTHUB_HOME=home), timeout=1800)
        published = time.monotonic() - started
        assert first.returncode == 0, first.stderr[-3000:]
        report = json.loads(first.stdout)
        assert {e["variant"]: e["status"] for e in report["entries"]} == dict.fromkeys(names, "published")
        assert report["failed"] == report["unavailable"] == report["skipped"] == 0
        repos = _repos(home)
        assert sorted(repos) == sorted(names)
        for name in names:
            _check_complete(repos[name], shas[name])
            config = json.loads((repos[name] / "config.json").read_text())
            assert config["provenance"]["kind"] == "user"  # a folder file with no published sha256
            assert all(r["max_abs_diff"] <= r["tolerance"] for r in config["equivalence"]["results"])
        stamps = {n: (r / "config.json").stat().st_mtime_ns for n, r in repos.items()}
        started = time.monotonic()
        second = _porthub(args, _env(PORTHUB_HOME=home), timeout=900)
        rerun = time.monotonic() - started
        assert second.returncode == 0, second.stderr[-3000:]
        again = json.loads(second.stdout)
        assert again["published"] == 0 and again["skipped"] == len(names) and again["failed"] == 0
        assert {n: (r / "config.json").stat().st_mtime_ns for n, r in _repos(home).items()} == stamps
        assert _leftovers(home) == []
        print(f"generated {len(names)} files in {generated:.0f} s, published in {published:.0f} s, "
              f"second run {rerun:.0f} s")
    finally:
        import shutil

        # tens of GB: not left for pytest's basetemp rotation
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------------------------ killed and resumed
KILLED = ("seaformer_tiny", "seaformer_small", "seaformer_seg_tiny")


def test_a_run_killed_after_its_first_repository_resumes_with_nothing_half_written(tmp_path: Path) -> None:
    """SIGKILL once the first repository is in place (the second is then being built), rerun: the first is
    skipped, the rest published, and no staging folder or partial file of the killed run is left."""
    src, home = tmp_path / "src", tmp_path / "home"
    src.mkdir()
    shas = {}
    for name in KILLED:
        shas[name] = hashlib.sha256(_official(name, src).read_bytes()).hexdigest()
    args = [sys.executable, "-m", "porthub.cli", "publish-zoo", "--hub", "local", "--sources", str(src),
            "--dtype", "float32", "--json", *[a for n in KILLED for a in ("--only", n)]]
    proc = subprocess.Popen(args, env=_env(PORTHUB_HOME=home), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not _repos(home) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "publish-zoo finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_with = _repos(home)
    assert list(killed_with) == [KILLED[0]]
    _check_complete(killed_with[KILLED[0]], shas[KILLED[0]])
    stamp = (killed_with[KILLED[0]] / "config.json").stat().st_mtime_ns
    rerun = _porthub(args[3:], _env(PORTHUB_HOME=home))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    status = {e["variant"]: e["status"] for e in json.loads(rerun.stdout)["entries"]}
    assert status == {KILLED[0]: "skipped", **dict.fromkeys(KILLED[1:], "published")}
    repos = _repos(home)
    assert sorted(repos) == sorted(KILLED)
    for name in KILLED:
        _check_complete(repos[name], shas[name])
    assert (repos[KILLED[0]] / "config.json").stat().st_mtime_ns == stamp
    assert _leftovers(home) == []


# ------------------------------------------------------------------------------------------- AI Studio
def test_publish_zoo_to_ai_studio_publishes_then_skips(tmp_path: Path) -> None:
    """``--hub aistudio`` against the loopback double of AI Studio (tests/aistudio_double.py), through
    the official client, under the guard that refuses any address but 127.0.0.1: one small variant is
    published, a rerun reads its config.json there and skips it, and a missing token is one line."""
    import aistudio_double as double_mod

    src = tmp_path / "src"
    src.mkdir()
    sha = hashlib.sha256(_official("seaformer_tiny", src).read_bytes()).hexdigest()
    log = tmp_path / "addresses.jsonl"
    args = ["publish-zoo", "--hub", "aistudio", "--sources", str(src), "--only", "seaformer_tiny", "--dtype",
            "float32", "--json"]
    token = "zoo-test-token"
    with double_mod.start(str(tmp_path / "double"), {token: "porthub"}) as studio:
        def run(with_token: str | None) -> subprocess.CompletedProcess:
            env = {k: v for k, v in _env(PORTHUB_HOME=tmp_path / "home").items()
                   if not k.startswith(("AISTUDIO_", "STUDIO_"))}
            env.update(double_mod.sdk_env(studio, with_token, str(tmp_path / "sdkhome")))
            env["PORTHUB_TEST_ADDRESS_LOG"] = str(log)
            env.pop("PORTHUB_OFFLINE")   # AI Studio is asked; the sources come from the folder
            env.pop("HF_HUB_OFFLINE")
            return subprocess.run([sys.executable, "-c", double_mod.GUARDED_CLI, *args], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=900, check=False)

        no_token = run(None)
        assert no_token.returncode == 1 and ("porthub", "seaformer_tiny") not in studio.repos
        err = no_token.stderr.strip().splitlines()
        assert len(err) == 1 and "token" in err[0].lower(), no_token.stderr
        first = run(token)
        assert first.returncode == 0, first.stderr[-3000:]
        report = json.loads(first.stdout)
        assert [(e["variant"], e["status"]) for e in report["entries"]] == [("seaformer_tiny", "published")]
        files = studio.files("porthub", "seaformer_tiny")
        assert json.loads(files["config.json"])["source_checkpoint"]["sha256"] == sha
        assert "model.pdparams" in files
        commits = studio.commit_count("porthub", "seaformer_tiny")
        second = run(token)
        assert second.returncode == 0, second.stderr[-3000:]
        again = json.loads(second.stdout)
        assert again["skipped"] == 1 and again["published"] == 0
        assert studio.commit_count("porthub", "seaformer_tiny") == commits
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert seen and all(loopback for _kind, _addr, loopback in seen)
