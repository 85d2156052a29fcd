"""``porthub publish-zoo`` over a sources folder of official-layout files (seeded values with the keys of
the shipped manifests, wrapped as the catalogue says) into the local hub: publishes what is there, a
second run publishes nothing new, a damaged file fails in the table and the exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from porthub.catalogue import Wrapping
from porthub.cli import main
from porthub.registry import resolve
from porthub.sources import catalogue

SMALL = ("seaformer_tiny", "seaformer_seg_tiny")


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
