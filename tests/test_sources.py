"""The official sources: the catalogue as data, downloads (resume, sha256, mirror, manual, offline), and
``pretrained=True`` falling back to the official file, with nothing leaving 127.0.0.1.

Official-layout files are generated: the keys, shapes and dtypes of the shipped manifests
(``converters/manifests/*.json``) with seeded values, wrapped as the catalogue says the authors wrap
them, and served by ``tests/sourceserver.py`` at their official URL paths through
``PORTHUB_SOURCE_MIRROR``. Their sha256 are not the real files' (unknown for most), so a test that needs
a pinned file puts the generated file's sha256 into the catalogue with monkeypatch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest

from porthub import sources
from porthub.catalogue import OFFICIAL, OFFICIAL_SOURCE, USER, Location, SourceKind, Wrapping, shared_locations
from porthub.errors import IntegrityError, SourceUnavailableError
from porthub.registry import all_specs, get_spec, resolve

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "sourceserver.py"
_HEX = set("0123456789abcdef")


def _env(**extra: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "PORTHUB_", "HUGGINGFACE_", "STUDIO_"))}
    env.update({"OMP_NUM_THREADS": "2", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1",
                "PYTHONPATH": str(ROOT), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
                # the default hub order never reaches AI Studio: its hosts are a dead loopback port
                "STUDIO_GIT_HOST": "http://127.0.0.1:9", "STUDIO_MODEL_API_URL_PREFIX": "http://127.0.0.1:9"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


@contextlib.contextmanager
def source_server(root: Path, log: Path, *extra: str) -> Iterator[str]:
    """tests/sourceserver.py serving ``root``; yields its base URL; stopped by its PID."""
    proc = subprocess.Popen([sys.executable, str(SERVER), "--root", str(root), "--log", str(log), *extra],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"source server did not start: {line!r}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()


def _requests(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _official_file(model: str, path: Path, seed: int) -> SimpleNamespace:
    """A full-size official-layout checkpoint of ``model`` (wrapped as the catalogue says), and its output
    on a seeded input computed with torch's own strict load_state_dict, independently of porthub's loading."""
    import torch

    from porthub.io import save_checkpoint
    from porthub.manifest import load_manifest
    from porthub.pairs import seeded_input, seeded_state
    from porthub.runtime import build_model

    spec, variant = resolve(model)
    state = seeded_state(spec, variant.model(), seed=seed)
    manifest = load_manifest(spec, variant)
    assert manifest is not None and list(state) == manifest.keys()
    assert all((tuple(v.shape), str(v.dtype)) == manifest.entries[k] for k, v in state.items())
    wrapping = sources.catalogue(model).wrapping
    obj = {"model": state} if wrapping is Wrapping.MODEL else state
    save_checkpoint(obj, str(path), "pth")
    x = seeded_input(variant, seed=seed + 1)
    net = build_model(spec, variant.model(), "torch")
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    del net
    return SimpleNamespace(path=path, x=x, ref=ref, sha=hashlib.sha256(path.read_bytes()).hexdigest())


def _pin(monkeypatch: pytest.MonkeyPatch, model: str, sha: str) -> None:
    """Put ``sha`` into the catalogue entry of ``model`` (the real file's sha256 is not published)."""
    spec, variant = resolve(model)
    monkeypatch.setitem(spec.sources, variant.name, dataclasses.replace(spec.sources[variant.name], sha256=sha))


def _within_float32(got: np.ndarray, ref: np.ndarray) -> float:
    from porthub.spec import Tolerance

    diff = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
    assert got.shape == ref.shape
    assert diff <= Tolerance().float32 * max(1.0, float(np.abs(ref).max())), diff
    return diff


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own empty hub and no inherited source settings; the Hub step is left out of
    the in-process lookups (huggingface_hub reads HF_HUB_OFFLINE at import, so offline runs go to a subprocess)."""
    for key in ("PORTHUB_SOURCES", "PORTHUB_SOURCE_MIRROR", "PORTHUB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PORTHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTHUB_HUBS", "local")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


# ------------------------------------------------------------------------------- the catalogue as data
def test_every_registered_variant_has_a_catalogue_entry_that_agrees_with_its_spec() -> None:
    for spec in all_specs():
        assert set(spec.sources) == {v.name for v in spec.variants}, spec.family
        for variant in spec.variants:
            release = sources.catalogue(variant.name)
            assert release is spec.sources[variant.name]
            assert release.locations and release.licence and release.verified
            assert release.file_name and "/" not in release.file_name
            metric = "miou" if variant.task == "segmentation" else "top1"
            meta = variant.meta
            reported = meta.get("miou_ss", meta.get("miou")) if metric == "miou" else meta["top1"]
            assert release.accuracy is not None and release.accuracy.metric == metric
            assert release.accuracy.value == pytest.approx(float(reported)) and release.accuracy.source
            for sha in release.known_sha256():
                assert len(sha) == 64 and set(sha) <= _HEX
            for loc in release.locations:
                if loc.kind is SourceKind.URL:
                    assert loc.where.startswith("https://")
                if loc.kind is SourceKind.HF:
                    assert loc.filename and not loc.copy_of_original
            for step in release.manual_steps():
                assert release.file_name in step


def test_facts_from_the_issue_are_in_the_catalogue() -> None:
    focal = sources.catalogue("focal_tiny")
    assert focal.locations[0].where == ("https://projects4jw.blob.core.windows.net/model/focal-transformer/imagenet1k/"
                                        "focal-tiny-is224-ws7.pth")
    assert focal.wrapping is Wrapping.BARE
    shunted = sources.catalogue("shunted_t")
    assert shunted.file_name == "ckpt_T.pth" and shunted.sha256 == ""  # no published sha256: never invented
    assert any(loc.kind is SourceKind.BAIDU and loc.code == "hazr" for loc in shunted.locations)
    svt = sources.catalogue("twins_svt_small")
    hub = [loc for loc in svt.locations if loc.kind is SourceKind.HF][0]
    assert (hub.where, hub.filename) == ("timm/twins_svt_small.in1k", "model.safetensors")
    assert hub.sha256 == "46e4bd7b30ae9ae3f2e9ec4fb669439c5f9676c6bc787687923424d704a06c1a"
    assert sources.catalogue("crossformer_small").wrapping is Wrapping.MODEL
    assert sources.catalogue("seaformer_tiny").wrapping is Wrapping.TIMM_TRAIN
    assert sources.catalogue("seaformer_seg_tiny").wrapping is Wrapping.MMCV


def test_crossformer_pp_large_and_huge_link_one_file_and_the_catalogue_says_so() -> None:
    shared = shared_locations(get_spec("crossformer").sources)
    assert list(shared.values()) == [["crossformer_pp_large", "crossformer_pp_huge"]]
    pair = ("crossformer_pp_large", "crossformer_pp_huge")
    for name, other in (pair, pair[::-1]):
        assert any(other in note for note in sources.catalogue(name).notes)
    for spec in all_specs():
        if spec.family != "crossformer":
            assert shared_locations(spec.sources) == {} or spec.family == "shunted"  # shunted: one folder for all


def test_cache_is_keyed_by_location_never_by_file_name_alone() -> None:
    # Twins' segmentation table reuses the classification file names for other Drive files
    cls = Location(SourceKind.GDRIVE, "1TWIx_8M-4y6UOKtbCgm1v-UVQ-_lYe6X", filename="pcpvt_small.pth")
    seg = Location(SourceKind.GDRIVE, "1PkkBULZZUhIkFKq_D9db1DXUIHwIPlvp", filename="pcpvt_small.pth")
    assert cls.key != seg.key
    keys = {}
    for spec in all_specs():
        for release in spec.sources.values():
            for loc in release.locations:
                keys.setdefault(loc.key, set()).add(loc.describe())
    assert all(len(v) == 1 for v in keys.values())


def test_mirror_replaces_https_only() -> None:
    assert sources.mirror_url("https://a.example/x/y.pth", "http://127.0.0.1:9/") == "http://127.0.0.1:9/a.example/x/y.pth"
    assert sources.mirror_url("http://a.example/y.pth", "http://127.0.0.1:9") == "http://a.example/y.pth"
    assert sources.mirror_url("https://a.example/y.pth", "") == "https://a.example/y.pth"


# ------------------------------------------------------------------------------------------ downloads
def _serve_file(root: Path, url: str, data: bytes) -> Path:
    path = root / url[len("https://"):]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_interrupted_download_keeps_the_part_and_resumes_with_a_range_request(tmp_path: Path) -> None:
    from porthub.sources.http import download

    data = np.random.default_rng(0).bytes(3_000_000)
    _serve_file(tmp_path / "srv", "https://files.example/a/big.pth", data)
    log = tmp_path / "log"
    dest = tmp_path / "out" / "big.pth"
    dest.parent.mkdir()
    with source_server(tmp_path / "srv", log, "--cut-after", "1000000", "--cuts", "1") as base:
        url = sources.mirror_url("https://files.example/a/big.pth", base)
        with pytest.raises(SourceUnavailableError, match="resumes"):
            download(url, str(dest), progress=False, retries=0)
        part = Path(str(dest) + ".part")
        assert not dest.exists() and part.stat().st_size == 1_000_000
        download(url, str(dest), progress=False, retries=0)
    assert dest.read_bytes() == data and not part.exists()
    reqs = _requests(log)
    assert [r["range"] for r in reqs] == [None, "bytes=1000000-"] and reqs[1]["status"] == 206
    assert reqs[1]["sent"] == 2_000_000  # only the rest travelled again


def test_a_fetch_killed_mid_download_is_resumed_by_the_next_fetch(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``fetch_official`` in a process killed (SIGKILL) while the transfer hangs: the bytes it wrote stay in
    the cache's ``.part``, its lock dies with it, and the next fetch asks only for the rest (Range)."""
    data = np.random.default_rng(2).bytes(3_500_000)
    loc = sources.catalogue("focal_tiny").locations[0]
    _serve_file(tmp_path / "srv", loc.where, data)
    log = tmp_path / "log"
    part = tmp_path / "home" / "sources" / "focal_tiny" / loc.key / (Path(loc.where).name + ".part")
    with source_server(tmp_path / "srv", log, "--cut-after", "2500000", "--cuts", "1", "--stall") as base:
        code = "from porthub import sources; sources.fetch_official('focal_tiny', progress=False)"
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                env=_env(PORTHUB_HOME=tmp_path / "home", PORTHUB_SOURCE_MIRROR=base))
        try:
            deadline = time.monotonic() + 120
            # 1 MiB blocks: two are on disk, the third waits for bytes that never come
            while not (part.exists() and part.stat().st_size == 2 << 20) and time.monotonic() < deadline:
                assert proc.poll() is None, "the fetch ended before it could be killed"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        kept = part.stat().st_size
        assert kept == 2 << 20 and [r.get("stalled") for r in _requests(log)] == [True]
        monkeypatch.setenv("PORTHUB_SOURCE_MIRROR", base)
        got = sources.fetch_official("focal_tiny", progress=False)
    assert Path(got.path).read_bytes() == data and not part.exists()
    assert got.sha256 == hashlib.sha256(data).hexdigest()
    reqs = _requests(log)
    assert [r["range"] for r in reqs] == [None, f"bytes={kept}-"]
    assert reqs[1]["status"] == 206 and reqs[1]["sent"] == len(data) - kept


def test_one_call_retries_and_resumes_and_a_server_ignoring_range_restarts(tmp_path: Path) -> None:
    from porthub.sources.http import download

    data = np.random.default_rng(1).bytes(2_500_000)
    _serve_file(tmp_path / "srv", "https://files.example/b.pth", data)
    log = tmp_path / "log"
    with source_server(tmp_path / "srv", log, "--cut-after", "700000", "--cuts", "2") as base:
        download(sources.mirror_url("https://files.example/b.pth", base), str(tmp_path / "b.pth"), progress=False)
    assert (tmp_path / "b.pth").read_bytes() == data
    assert [r["range"] for r in _requests(log)] == [None, "bytes=700000-", "bytes=1400000-"]
    log2 = tmp_path / "log2"
    with source_server(tmp_path / "srv", log2, "--cut-after", "700000", "--cuts", "1", "--ignore-range") as base:
        download(sources.mirror_url("https://files.example/b.pth", base), str(tmp_path / "c.pth"), progress=False)
    assert (tmp_path / "c.pth").read_bytes() == data
    assert [r["status"] for r in _requests(log2)] == [200, 200]


def test_progress_bar_stays_quiet_when_output_is_not_a_terminal(tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]) -> None:
    from porthub.sources.http import download

    _serve_file(tmp_path / "srv", "https://files.example/q.pth", b"q" * 300_000)
    with source_server(tmp_path / "srv", tmp_path / "log") as base:
        download(sources.mirror_url("https://files.example/q.pth", base), str(tmp_path / "q.pth"), progress=True)
    assert (tmp_path / "q.pth").stat().st_size == 300_000
    assert capfd.readouterr().err == ""


def test_missing_file_on_the_server_is_one_clear_error(tmp_path: Path) -> None:
    from porthub.sources.http import download

    (tmp_path / "srv").mkdir()
    with source_server(tmp_path / "srv", tmp_path / "log") as base:
        with pytest.raises(SourceUnavailableError, match="HTTP 404"):
            download(f"{base}/nothing/here.pth", str(tmp_path / "x.pth"), progress=False)
    assert not (tmp_path / "x.pth").exists()


@pytest.fixture(scope="module")
def small_focal_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A file served at the Focal-T URL for the sha256 tests (its content does not matter: it is refused
    or only fetched, never converted)."""
    return np.random.default_rng(5).bytes(400_000)


def test_wrong_sha256_is_refused_and_the_download_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         small_focal_bytes: bytes) -> None:
    url = sources.catalogue("focal_tiny").locations[0].where
    _serve_file(tmp_path / "srv", url, small_focal_bytes)
    _pin(monkeypatch, "focal_tiny", "0" * 64)
    with source_server(tmp_path / "srv", tmp_path / "log") as base:
        monkeypatch.setenv("PORTHUB_SOURCE_MIRROR", base)
        with pytest.raises(IntegrityError, match="refused and removed"):
            sources.fetch_official("focal_tiny", progress=False)
    cache = tmp_path / "home" / "sources" / "focal_tiny"
    assert [p for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock"] == []  # (an empty lock file stays)


def test_unpinned_download_records_its_sha256_and_is_reused_from_the_cache(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           small_focal_bytes: bytes) -> None:
    url = sources.catalogue("focal_tiny").locations[0].where
    _serve_file(tmp_path / "srv", url, small_focal_bytes)
    log = tmp_path / "log"
    want = hashlib.sha256(small_focal_bytes).hexdigest()
    with source_server(tmp_path / "srv", log) as base:
        monkeypatch.setenv("PORTHUB_SOURCE_MIRROR", base)
        got = sources.fetch_official("focal_tiny", progress=False)
        assert (got.sha256, got.pinned, got.provenance["kind"]) == (want, False, OFFICIAL_SOURCE)
        assert Path(got.path).read_bytes() == small_focal_bytes and "focal-tiny-is224-ws7.pth" == Path(got.path).name
        record = json.loads(Path(got.path + ".porthub.json").read_text())
        assert record["sha256"] == want and record["pinned"] is False
        again = sources.fetch_official("focal_tiny", progress=False)
        assert again.path == got.path and "cache" in again.source
        assert len(_requests(log)) == 1
        _pin(monkeypatch, "focal_tiny", want)
        pinned = sources.fetch_official("focal_tiny", progress=False, force=True)
        assert pinned.pinned and pinned.provenance["kind"] == OFFICIAL and len(_requests(log)) == 2


def test_two_concurrent_fetches_of_one_file_download_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             small_focal_bytes: bytes) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = sources.catalogue("focal_tiny").locations[0].where
    _serve_file(tmp_path / "srv", url, small_focal_bytes)
    log = tmp_path / "log"
    with source_server(tmp_path / "srv", log) as base:
        monkeypatch.setenv("PORTHUB_SOURCE_MIRROR", base)
        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(lambda _i: sources.fetch_official("focal_tiny", progress=False), range(2)))
    assert got[0].path == got[1].path and Path(got[0].path).read_bytes() == small_focal_bytes
    assert len(_requests(log)) == 1


def test_sources_folder_file_unpinned_pinned_and_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    folder_a.mkdir()
    folder_b.mkdir()
    (folder_b / "ckpt_T.pth").write_bytes(b"not really a checkpoint")
    monkeypatch.setenv("PORTHUB_SOURCES", os.pathsep.join([str(folder_a), str(folder_b)]))
    got = sources.fetch_official("shunted_t", progress=False)
    assert got.path == str(folder_b / "ckpt_T.pth") and not got.pinned and got.provenance["kind"] == USER
    _pin(monkeypatch, "shunted_t", got.sha256)
    assert sources.fetch_official("shunted_t").provenance["kind"] == OFFICIAL
    _pin(monkeypatch, "shunted_t", "f" * 64)
    with pytest.raises(IntegrityError, match="left where it is"):
        sources.fetch_official("shunted_t")
    assert (folder_b / "ckpt_T.pth").exists()  # the user's file is never removed


def test_manual_sources_print_the_exact_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceUnavailableError) as info:
        sources.fetch_official("crossformer_pp_huge", source=("local", "baidu"))
    msg = str(info.value)
    for needed in ("https://pan.baidu.com/s/1xtPh-ndcOxRM7fPYYxIIRg", "extraction code crsf", "crossformer_pp_huge.pth",
                   "PORTHUB_SOURCES", "crossformer_pp_large"):
        assert needed in msg
    with pytest.raises(SourceUnavailableError) as info:
        sources.fetch_official("shunted_t", source="baidu")
    assert "https://pan.baidu.com/s/1a9nVWpw2SzP0csCBCF8DNw" in str(info.value) and "hazr" in str(info.value)
    assert "https://drive.google.com/drive/folders/15iZKXFT7apjUSoN2WUMAbb0tvJgyh3YP" in str(info.value)
    with pytest.raises(ValueError, match="not one of"):
        sources.fetch_official("shunted_t", source="ftp")


def test_google_drive_goes_through_gdown_and_its_absence_or_failure_is_said(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """gdown is replaced by a double (Drive cannot be reached from here): the call porthub makes, the
    cached record, the missing extra and a refused download."""
    import types

    calls = []

    def fake_download(id: str, output: str, quiet: bool, resume: bool) -> str:  # noqa: A002 (gdown's name)
        calls.append((id, os.path.basename(output), quiet, resume))
        Path(output).write_bytes(b"drive bytes")
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=fake_download))
    got = sources.fetch_official("twins_pcpvt_small", source="gdrive", progress=False)
    assert calls == [("1TWIx_8M-4y6UOKtbCgm1v-UVQ-_lYe6X", "pcpvt_small.pth", True, True)]
    assert Path(got.path).read_bytes() == b"drive bytes" and not got.pinned
    assert got.provenance["kind"] == OFFICIAL_SOURCE

    def refusing(**_kw: object) -> None:
        raise OSError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=refusing))
    with pytest.raises(SourceUnavailableError, match="Too many users"):
        sources.fetch_official("crossformer_tiny", source="gdrive", progress=False)
    monkeypatch.setitem(sys.modules, "gdown", None)  # not installed
    with pytest.raises(SourceUnavailableError, match=r"pip install 'porthub\[gdrive\]'") as info:
        sources.fetch_official("crossformer_base", source=("gdrive", "baidu"), progress=False)
    assert "extraction code 7md9" in str(info.value)


def test_offline_takes_no_network_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       small_focal_bytes: bytes) -> None:
    url = sources.catalogue("focal_tiny").locations[0].where
    _serve_file(tmp_path / "srv", url, small_focal_bytes)
    log = tmp_path / "log"
    with source_server(tmp_path / "srv", log) as base:
        monkeypatch.setenv("PORTHUB_SOURCE_MIRROR", base)
        for key in ("PORTHUB_OFFLINE", "HF_HUB_OFFLINE"):
            monkeypatch.setenv(key, "1")
            with pytest.raises(SourceUnavailableError, match="skipped"):
                sources.fetch_official("focal_tiny", progress=False)
            monkeypatch.delenv(key)
    assert _requests(log) == []


# ------------------------------------------------------------------------------------ pretrained=True
@pytest.mark.slow
def test_pretrained_shunted_t_from_a_sources_folder_in_paddle_gives_the_files_torch_outputs(tmp_path: Path) -> None:
    """With an empty PORTHUB_HOME and the default hub order, offline: ckpt_T.pth in a PORTHUB_SOURCES folder."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    official = _official_file("shunted_t", folder / "ckpt_T.pth", seed=3)
    np.save(tmp_path / "x.npy", official.x)
    home = tmp_path / "fresh_home"
    code = """
import sys, numpy as np, porthub
from porthub.runtime import run_model
model = porthub.create_model("shunted_t", framework="paddle", pretrained=True)
np.save(sys.argv[2], np.asarray(run_model(model, np.load(sys.argv[1]), "paddle")[0]))
"""
    env = _env(PORTHUB_HOME=home, PORTHUB_SOURCES=folder, HF_HUB_OFFLINE=1, HF_HUB_CACHE=tmp_path / "hf")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    _within_float32(np.load(tmp_path / "y.npy"), official.ref)
    config = json.loads((home / "models" / "porthub" / "shunted_t" / "config.json").read_text())
    assert config["source_checkpoint"]["sha256"] == official.sha
    # a folder file with no published sha256 cannot be told from the user's own: the card does not claim it
    assert config["provenance"]["kind"] == USER and config["provenance"]["pinned"] is False
    card = (home / "models" / "porthub" / "shunted_t" / "README.md").read_text()
    assert "model-index" not in card and "Not the official weights" in card


@pytest.mark.slow
def test_from_pretrained_of_an_unpublished_porthub_repository_installs_the_official_file(tmp_path: Path) -> None:
    """PORTHUB_OFFLINE alone (huggingface_hub not told), the default hub order, a dead Hub endpoint on loopback."""
    import socket

    folder = tmp_path / "downloads"
    folder.mkdir()
    official = _official_file("shunted_t", folder / "ckpt_T.pth", seed=9)
    np.save(tmp_path / "x.npy", official.x)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    code = """
import sys, numpy as np, porthub
from porthub.runtime import run_model
model = porthub.from_pretrained("porthub/shunted_t", framework="torch")
np.save(sys.argv[2], np.asarray(run_model(model, np.load(sys.argv[1]), "torch")[0]))
"""
    env = _env(PORTHUB_HOME=tmp_path / "home2", PORTHUB_SOURCES=folder, PORTHUB_OFFLINE=1, HF_ENDPOINT=dead,
               HF_HUB_CACHE=tmp_path / "hf")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    _within_float32(np.load(tmp_path / "y.npy"), official.ref)
    assert (tmp_path / "home2" / "models" / "porthub" / "shunted_t" / "config.json").is_file()


@pytest.mark.slow
def test_pretrained_focal_tiny_from_its_official_url_through_the_mirror_in_torch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import porthub
    from porthub.runtime import run_model

    url = sources.catalogue("focal_tiny").locations[0].where
    served = tmp_path / "srv" / url[len("https://"):]
    served.parent.mkdir(parents=True)
    official = _official_file("focal_tiny", served, seed=4)
    log = tmp_path / "log"
    with source_server(tmp_path / "srv", log, "--cut-after", "20000000", "--cuts", "1") as base:
        monkeypatch.setenv("PORTHUB_SOURCE_MIRROR", base)
        model = porthub.create_model("focal_tiny", framework="torch", pretrained=True)
    _within_float32(np.asarray(run_model(model, official.x, "torch")[0]), official.ref)
    assert [r["range"] for r in _requests(log)] == [None, "bytes=20000000-"]  # cut short once, resumed
    repo = tmp_path / "home" / "models" / "porthub" / "focal_tiny"
    config = json.loads((repo / "config.json").read_text())
    assert config["provenance"]["kind"] == OFFICIAL_SOURCE and config["provenance"]["location"] == url
    assert config["source_checkpoint"]["sha256"] == official.sha
    card = (repo / "README.md").read_text()
    assert "model-index" in card and "official weights from the catalogued source, unpinned" in card
    # a second lookup is the local hub's: nothing is downloaded again
    porthub.create_model("focal_tiny", framework="torch", pretrained=True)
    assert len(_requests(log)) == 2


@pytest.mark.slow
def test_fetch_command_installs_pinned_official_weights_and_is_idempotent(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from porthub.cli import main

    folder = tmp_path / "downloads"
    folder.mkdir()
    official = _official_file("shunted_t", folder / "ckpt_T.pth", seed=8)
    monkeypatch.setenv("PORTHUB_SOURCES", str(folder))
    _pin(monkeypatch, "shunted_t", official.sha)
    assert main(["fetch", "shunted_t", "--dtype", "float32", "--json"]) == 0
    repo = tmp_path / "home" / "models" / "porthub" / "shunted_t"
    config = json.loads((repo / "config.json").read_text())
    assert config["provenance"]["kind"] == OFFICIAL and config["provenance"]["pinned"] is True
    card = (repo / "README.md").read_text()
    assert "model-index" in card and "79.8" in card and "official weights: the source file's sha256" in card
    _official_card_passes_the_hubs_validation(repo / "README.md", tmp_path / "hubsrv")
    stamp = (repo / "config.json").stat().st_mtime_ns
    assert sources.install("shunted_t", dtypes=("float32",)) == str(repo)
    result = sources.install_details("shunted_t", dtypes=("float32",))
    assert result["skipped"] is True and (repo / "config.json").stat().st_mtime_ns == stamp


_VALIDATE = """
import json, sys
from huggingface_hub import ModelCard
card = ModelCard.load(sys.argv[1])
card.validate()
print(json.dumps([[r.dataset_type, r.metric_type, r.metric_value, r.source_url] for r in card.data.eval_results or []]
                 + [card.data.model_name]))
"""


def _official_card_passes_the_hubs_validation(readme: Path, root: Path) -> None:
    """The card of official weights indexes the authors' result, and the Hub's YAML check (tests/hubserver.py,
    the Hub-protocol double) accepts it."""
    root.mkdir()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hubserver.py"), "--root", str(root / "data"),
                             "--token", "hf_test"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        env = _env(HF_ENDPOINT=f"http://127.0.0.1:{int(line.split()[1])}", HF_HUB_CACHE=root / "cache")
        done = subprocess.run([sys.executable, "-c", _VALIDATE, str(readme)], env=env, capture_output=True, text=True,
                              timeout=120)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [["imagenet-1k", "accuracy", 79.8, "https://github.com/OliverRensu/Shunted-Transformer"],
                                       "shunted_t"]


_HUB_COPY = """
import dataclasses, json, os, sys
import numpy as np, torch
from huggingface_hub import HfApi
from porthub import sources
from porthub.errors import IntegrityError
from porthub.runtime import build_model, run_model
from porthub.io import save_checkpoint
from porthub.pairs import seeded_input, seeded_state
from porthub.registry import resolve
import porthub

spec, variant = resolve("twins_pcpvt_small")
loc = [l for l in spec.sources[variant.name].locations if l.kind.value == "hf"][0]
state = seeded_state(spec, variant.model(), seed=12)
path = os.path.join(sys.argv[1], "model.safetensors")
save_checkpoint(state, path, "safetensors", {"format": "pt"})   # timm's re-save: official keys, no porthub metadata
api = HfApi()
api.create_repo(loc.where, exist_ok=True)
api.upload_file(path_or_fileobj=path, path_in_repo=loc.filename, repo_id=loc.where)
release = spec.sources[variant.name]
# a wrong published sha256 for the Hub copy: refused, and evicted from huggingface_hub's cache
bad = dataclasses.replace(loc, sha256="0" * 64)
spec.sources[variant.name] = dataclasses.replace(release, locations=(release.locations[0], release.locations[1], bad))
try:
    sources.fetch_official("twins_pcpvt_small", source="hf", progress=False)
    refused = ""
except IntegrityError as exc:
    refused = str(exc)
spec.sources[variant.name] = release
result = sources.install_details("twins_pcpvt_small", source="hf", dtypes=("float32",), progress=False)
x = seeded_input(variant, seed=13)
net = build_model(spec, variant.model(), "torch")
net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
with torch.no_grad():
    ref = net(torch.from_numpy(x)).numpy()
model = porthub.create_model("twins_pcpvt_small", framework="paddle", pretrained=True)
got = np.asarray(run_model(model, x, "paddle")[0])
print(json.dumps({"refused": refused, "provenance": result["source"].provenance, "path": result["path"],
                  "diff": float(np.abs(got.astype(np.float64) - ref).max()), "scale": float(np.abs(ref).max())}))
"""


@pytest.mark.slow
def test_a_hub_hosted_copy_comes_through_huggingface_hub_and_a_wrong_sha256_is_evicted(tmp_path: Path) -> None:
    """timm's Hub copy of Twins (model.safetensors, official keys) on the Hub-protocol double (tests/hubserver.py)."""
    root = tmp_path / "hub"
    root.mkdir()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "hubserver.py"), "--root", str(root / "data"),
                             "--token", "hf_test"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        env = _env(HF_ENDPOINT=f"http://127.0.0.1:{int(line.split()[1])}", HF_TOKEN="hf_test", HF_HUB_DISABLE_XET=1,
                   HF_HUB_CACHE=tmp_path / "hf", PORTHUB_HOME=tmp_path / "home", PORTHUB_HUBS="local")
        done = subprocess.run([sys.executable, "-c", _HUB_COPY, str(tmp_path)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=900)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert "refused and removed" in got["refused"]
    assert got["provenance"]["kind"] == OFFICIAL_SOURCE and got["provenance"]["copy_of_original"] is False
    assert got["provenance"]["location"] == "Hugging Face Hub timm/twins_pcpvt_small.in1k/model.safetensors"
    assert got["diff"] <= 2e-5 * max(1.0, got["scale"])
    blobs = [p for p in (tmp_path / "hf").rglob("*") if p.is_file() and "blobs" in p.parts]
    assert len(blobs) == 1  # the refused copy was evicted; only the accepted download is cached


def test_fetch_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from porthub.cli import main

    assert main(["fetch", "crossformer_pp_large", "--source", "baidu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("porthub: error:") and "extraction code crsf" in err[0]
    assert "porthub fetch crossformer_pp_large" in err[0]
    assert main(["fetch", "no_such_model"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_pretrained_with_nothing_anywhere_is_one_error_listing_what_was_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    import porthub

    monkeypatch.setenv("PORTHUB_OFFLINE", "1")
    with pytest.raises(SourceUnavailableError) as info:
        porthub.create_model("shunted_t", framework="torch", pretrained=True)
    msg = str(info.value)
    for needed in ("local hub", "PORTHUB_SOURCES", "skipped", "hazr", "ckpt_T.pth"):
        assert needed in msg
