"""Hostile checkpoints: pickles that would run code, modify the allow-list, or exhaust memory, time
or the C stack are refused without running anything, as a bare pickle, inside a .pth zip, as a
.pdparams file, and through the CLI. The catalogue lives in tools/fuzz_readers.py, which also runs
it in the long fuzzing run."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import pytest

from porthub.errors import CheckpointFormatError, PorthubError, UnsafeCheckpointError
from porthub.io import load_checkpoint, save_checkpoint
from porthub.io.pdparams import PDPARAMS_GLOBALS
from porthub.io.pickle_safe import Allowed, Marker, scan_pickle
from porthub.io.pth import _STORAGE_TYPES, TORCH_DTYPES

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
_spec = importlib.util.spec_from_file_location("fuzz_readers", os.path.join(REPO, "tools", "fuzz_readers.py"))
fr = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("fuzz_readers", fr)
_spec.loader.exec_module(fr)

# Any of these audit events while a hostile file loads means something of it ran.
_EXECUTION_EVENTS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "subprocess.Popen",
    "exec",
    "compile",
    "ctypes.dlopen",
    "os.remove",
    "os.rmdir",
    "shutil.rmtree",
    "webbrowser.open",
)
_AUDIT = {"on": False, "events": []}


def _audit(event: str, args: tuple) -> None:
    if _AUDIT["on"] and event.startswith(_EXECUTION_EVENTS):
        _AUDIT["events"].append(event)


sys.addaudithook(_audit)
# zipfile decodes entry names with cp437 and imports that codec on first use, an "exec" event of
# the standard library's own; importing it now keeps it out of the window the hook watches.
importlib.import_module("encodings.cp437")

# Each payload would create this file; a folder of this process's own, so parallel runs cannot mix.
_MARKER_DIR = tempfile.mkdtemp(prefix="porthub-hostile-")
CATALOGUE = fr.hostile_catalogue(os.path.join(_MARKER_DIR, "PWNED"))


@pytest.fixture(scope="module", autouse=True)
def _remove_marker_dir():
    yield
    shutil.rmtree(_MARKER_DIR, ignore_errors=True)


@pytest.fixture
def marker_dir():
    marker = os.path.join(_MARKER_DIR, "PWNED")
    if os.path.exists(marker):
        os.unlink(marker)
    yield _MARKER_DIR
    assert not os.path.exists(marker), "a hostile payload ran"


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_catalogue_is_refused_without_running_anything(case, marker_dir, tmp_path):
    for carrier in fr.CARRIERS:
        _AUDIT["events"].clear()
        _AUDIT["on"] = True
        try:
            with pytest.raises(PorthubError) as info:
                fr.load_carrier(str(tmp_path), case, carrier)
        finally:
            _AUDIT["on"] = False
        assert _AUDIT["events"] == [], f"{carrier}: {_AUDIT['events']}"
        assert not os.path.exists(os.path.join(marker_dir, "PWNED")), carrier
        if case.expect == "unsafe" and carrier == "pickle":
            assert isinstance(info.value, UnsafeCheckpointError), str(info.value)
        # one line that says what was wrong (the CLI prints it as is)
        assert "\n" not in str(info.value).strip()


def test_catalogue_covers_the_issue(marker_dir):
    names = " ".join(c.name for c in CATALOGUE)
    for needle in (
        "os.system",
        "builtins.eval",
        "builtins.exec",
        "subprocess",
        "importlib",
        "pickle.loads",
        "torch.load",
        "numpy.load",
        "INST",
        "OBJ",
        "EXT1",
        "EXT2",
        "EXT4",
        "NEWOBJ",
        "BUILD on",
        "OrderedDict with",
        "memo index",
        "nested 200 000 deep",
        "contains itself",
        "doubling",
    ):
        assert needle in names, needle
    assert len(CATALOGUE) >= 100


def test_allow_list_is_unchanged_by_build_attacks(marker_dir, tmp_path):
    build_cases = [c for c in CATALOGUE if c.name.startswith("BUILD on")]
    assert len(build_cases) >= 5
    for case in build_cases:
        for carrier in fr.CARRIERS:
            with pytest.raises(PorthubError):
                fr.load_carrier(str(tmp_path), case, carrier)
    for name, dtype in TORCH_DTYPES.items():
        marker = _STORAGE_TYPES[("torch", name)]
        assert isinstance(marker, Marker) and marker.name == name and marker.dtype == dtype
    assert all(isinstance(v, (Allowed, Marker, type)) for v in PDPARAMS_GLOBALS.values())
    with pytest.raises(UnsafeCheckpointError):
        PDPARAMS_GLOBALS[("numpy", "dtype")].fn = print
    # an honest file still loads with the right values afterwards
    path = str(tmp_path / "after.pth")
    save_checkpoint({"w": np.arange(6, dtype=np.float32)}, path, "pth")
    assert np.array_equal(load_checkpoint(path)["w"], np.arange(6, dtype=np.float32))


@pytest.mark.parametrize("name,data", fr.torch_tensor_catalogue(), ids=[n for n, _ in fr.torch_tensor_catalogue()])
def test_tensor_misuse_in_pth_is_refused_within_memory(name, data, tmp_path):
    path = str(tmp_path / "evil.pth")
    with open(path, "wb") as fh:
        fh.write(data)
    result = fr.classify(path)
    assert result.kind.startswith("refused"), (result.kind, result.detail)
    assert result.peak < 3 * len(data) + 64 * 2**20


@pytest.mark.parametrize("name,data,check", fr.torch_tensor_loads(), ids=[n for n, _, _ in fr.torch_tensor_loads()])
def test_unusual_but_honest_pth_files_load(name, data, check, tmp_path):
    path = str(tmp_path / "ok.pth")
    with open(path, "wb") as fh:
        fh.write(data)
    state = load_checkpoint(path)
    assert check(state)
    for value in state.values():
        assert type(value) is np.ndarray and value.dtype.isnative


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickles_of_every_protocol_load(protocol, tmp_path):
    arrays = {
        "be": np.arange(6, dtype=">f4").reshape(2, 3),
        "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "i": np.arange(4, dtype=np.int64),
        "s": np.float32(2.5),
        "b": np.array([True, False]),
        "h": np.ones(3, np.float16),
        "c": np.array([1 + 2j], np.complex64),
        "z": np.zeros((0, 2)),
    }
    path = str(tmp_path / "np.pdparams")
    with open(path, "wb") as fh:
        pickle.dump(arrays, fh, protocol=protocol)
    loaded = load_checkpoint(path)
    for key, value in arrays.items():
        assert np.array_equal(loaded[key], value), key
        assert np.dtype(loaded[key].dtype).isnative
    assert loaded["be"].dtype == np.float32


def test_memo_bomb_is_refused_fast_and_small():
    # 11 bytes that make CPython's unpickler fill a 32 GB memo table
    bomb = b"\x80\x02Nr\xff\xff\xff\x7f."
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(CheckpointFormatError, match="memo|index"):
        scan_pickle(bomb, "bomb")
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 0.1 and peak < 1 << 20


def test_scan_accepts_real_pickles_and_costs_little():
    seeds = fr.seed_corpus()
    for name, data in seeds["pdparams"]:
        assert scan_pickle(data, name) == len(data), name
    big = max((d for _, d in seeds["pdparams"]), key=len)
    start = time.perf_counter()
    scan_pickle(big, "big")
    assert time.perf_counter() - start < 0.5


def _cli(*args: str, cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2")
    env.pop("PORTHUB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "porthub.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_refuses_hostile_files_with_one_line(marker_dir, tmp_path):
    by_name = {c.name: c for c in CATALOGUE}
    files = {
        "evil.pth": fr.torch_zip(by_name["os.system"].payload),
        "evil.pdparams": by_name["builtins.eval"].payload,
        "bomb.pth": fr.torch_zip(by_name["memo index 2**31 (LONG_BINPUT): a 32 GB memo table"].payload),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        target = "torch" if name.endswith(".pdparams") else "paddle"
        proc = _cli("convert", "shunted_t", "--to", target, "--src", name, cwd=str(tmp_path))
        assert proc.returncode != 0, name
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("porthub: error:"), proc.stderr
        assert proc.stdout == ""
        assert not os.path.exists(os.path.join(marker_dir, "PWNED"))
        outputs = sorted(os.listdir(tmp_path))
        assert outputs == sorted(files)[: len(outputs)] or set(outputs) <= set(files), outputs
    assert sorted(os.listdir(tmp_path)) == sorted(files)  # no output file, no temporary


def test_bfloat16_storage_of_the_wrong_size_is_refused(tmp_path):
    # bfloat16 is read (as its raw words, tests/test_checkpoints.py); a storage whose bytes do not match
    # its element count is still refused, naming the storage type
    data = dict(fr.torch_tensor_catalogue())["bfloat16 storage"]
    path = tmp_path / "bf16.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointFormatError, match="BFloat16Storage"):
        load_checkpoint(str(path))


def test_safe_unpickler_refuses_before_any_import():
    before = set(sys.modules)
    payload = fr._p(fr._call(fr._G("this_module_does_not_exist_xyz", "run"), fr._S("x")))
    with pytest.raises(UnsafeCheckpointError, match="this_module_does_not_exist_xyz"):
        scan_pickle(payload, "p")
        fr.load_carrier("/nonexistent", fr.Hostile("x", payload, "unsafe"), "pickle")
    assert "this_module_does_not_exist_xyz" not in sys.modules and set(sys.modules) - before == set()
    # a payload naming a real but not yet imported module does not import it either
    payload = fr._p(fr._call(fr._G("antigravity", "fly"), fr._S("x")))
    with pytest.raises(UnsafeCheckpointError):
        fr.load_carrier("/nonexistent", fr.Hostile("x", payload, "unsafe"), "pickle")
    assert "antigravity" not in sys.modules
    with pytest.raises(UnsafeCheckpointError):
        fr.load_carrier("/nonexistent", fr.Hostile("x", fr._p(fr._G("os", "system")), "unsafe"), "pickle")
    assert io  # the module is used by the catalogue's carriers


def test_pipes_devices_and_folders_are_refused_without_blocking(tmp_path):
    fifo = str(tmp_path / "ckpt.pth")
    os.mkfifo(fifo)  # opening it for reading would block until a writer appears
    for path in (fifo, "/dev/zero", str(tmp_path)):
        with pytest.raises(CheckpointFormatError):
            load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "missing.pth"))
