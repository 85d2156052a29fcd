"""Writes are atomic: a conversion killed at any moment leaves the old file or the new one, two
writers of one file never mix, and killed writers' temporaries do not pile up."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from porthub.convert import convert_file, resolve_target
from porthub.io import atomic_write, load_checkpoint, save_checkpoint
from porthub.io.atomic import stale_temporaries

HERE = os.path.dirname(os.path.abspath(__file__))
CASE = os.path.join(HERE, "data", "official", "shunted", "mini_a.json")
SRC = os.path.join(HERE, "data", "official", "shunted", "mini_a.pth")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill tests fork; POSIX only")


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except FileNotFoundError:
        return None


def _partials(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(".partial"))


def _fork(loop) -> int:
    """Run ``loop()`` in a child process that never returns into pytest."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            loop()
        except BaseException:  # noqa: BLE001 - the child must leave through os._exit whatever happens
            code = 1
        os._exit(code)
    return pid


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    """The shunted reference checkpoint and a copy with other weights, with the exact bytes their
    Paddle conversions have."""
    folder = tmp_path_factory.mktemp("sources")
    state = load_checkpoint(SRC)
    other = {k: (v * 2 if v.dtype.kind == "f" else v) for k, v in state.items()}
    src_b = str(folder / "mini_b.pth")
    save_checkpoint(other, src_b, "pth")
    target = resolve_target("shunted", CASE)
    expected = {}
    for src in (SRC, src_b):
        out = str(folder / f"expected_{os.path.basename(src)}.pdparams")
        convert_file(target, src, "paddle", out=out, force=True)
        expected[src] = _digest(out)
    assert len(set(expected.values())) == 2
    return target, [SRC, src_b], expected


def test_sigkill_during_conversion_leaves_old_or_new_file(two_sources, tmp_path):
    target, sources, expected = two_sources
    out = str(tmp_path / "converted.pdparams")
    convert_file(target, sources[0], "paddle", out=out, force=True)

    # How long one conversion takes here, so the kill delays span whole conversions.
    start = time.perf_counter()
    convert_file(target, sources[1], "paddle", out=out, force=True)
    one = time.perf_counter() - start

    def loop() -> None:
        i = 0
        while True:
            convert_file(target, sources[i % 2], "paddle", out=out, force=True)
            i += 1

    rng = random.Random(10)
    kills = mid_write = 0
    deadline = time.monotonic() + 60
    # Keep killing until enough kills landed inside a write (a temporary was left behind).
    while (mid_write < 8 or kills < 40) and kills < 400 and time.monotonic() < deadline:
        pid = _fork(loop)
        time.sleep(rng.uniform(0, 3 * one))
        _kill(pid)
        kills += 1
        left = _partials(str(tmp_path))
        mid_write += bool(left)
        # never a truncated or mixed destination: exactly one of the two complete conversions
        assert _digest(out) in expected.values(), f"kill {kills}: destination is neither old nor new"
        # a killed writer leaves at most its own temporary; the next write removes it
        assert len(left) <= 1, left
    assert kills >= 40 and mid_write >= 8, (kills, mid_write)

    state = load_checkpoint(out)
    assert len(state) > 100
    convert_file(target, sources[0], "paddle", out=out, force=True)
    assert _partials(str(tmp_path)) == []
    assert _digest(out) == expected[sources[0]]


def test_sigkill_during_large_writes(tmp_path):
    """Writes that take most of the time, so almost every kill lands inside one."""
    out = str(tmp_path / "big.safetensors")
    # 32 MB each: without fsync a write is fast, and it must still outlast a fork for kills to land inside it
    payloads = [{"w": np.full((8192, 1024), float(i), np.float32), "b": np.arange(1000.0) + i} for i in range(2)]
    for obj in payloads:
        save_checkpoint(obj, out, "safetensors")
    expected = set()
    for i, obj in enumerate(payloads):
        save_checkpoint(obj, str(tmp_path / f"ref{i}.safetensors"), "safetensors")
        expected.add(_digest(str(tmp_path / f"ref{i}.safetensors")))

    def loop() -> None:
        i = 0
        while True:
            save_checkpoint(payloads[i % 2], out, "safetensors")
            i += 1

    start = time.perf_counter()
    save_checkpoint(payloads[0], out, "safetensors")
    one = time.perf_counter() - start
    rng = random.Random(11)
    mid_write = 0
    for kill in range(30):
        pid = _fork(loop)
        time.sleep(rng.uniform(0, 4 * one))
        _kill(pid)
        left = [n for n in _partials(str(tmp_path)) if n.startswith(".big.")]
        mid_write += bool(left)
        assert len(left) <= 1
        assert _digest(out) in expected, f"kill {kill}"
    assert mid_write >= 5
    save_checkpoint(payloads[1], out, "safetensors")
    assert [n for n in _partials(str(tmp_path)) if n.startswith(".big.")] == []
    assert np.array_equal(load_checkpoint(out)["w"], payloads[1]["w"])


def test_concurrent_writers_never_mix(tmp_path):
    out = str(tmp_path / "shared.pth")
    objs = [{"w": np.full((512, 1024), float(i + 1), np.float32)} for i in range(2)]
    expected = set()
    for i, obj in enumerate(objs):
        ref = str(tmp_path / f"ref{i}.pth")
        save_checkpoint(obj, ref, "pth")
        expected.add(_digest(ref))
    save_checkpoint(objs[0], out, "pth")

    def writer(obj):
        def loop() -> None:
            for _ in range(15):
                save_checkpoint(obj, out, "pth")
        return loop

    running = {_fork(writer(obj)) for obj in objs}
    codes = []
    reads = 0
    while running:
        digest = _digest(out)
        assert digest in expected, "a reader saw a mix of two writers or a partial file"
        reads += 1
        for pid in list(running):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                running.discard(pid)
                codes.append(os.waitstatus_to_exitcode(status))
    assert codes == [0, 0]  # both writers ran all their writes without error
    assert reads > 0
    assert _digest(out) in expected
    assert _partials(str(tmp_path)) == []
    value = load_checkpoint(out)["w"]
    assert float(value[0, 0]) in (1.0, 2.0) and np.all(value == value[0, 0])


def test_failed_write_keeps_old_file_and_leaves_nothing(tmp_path):
    out = str(tmp_path / "keep.pdparams")
    save_checkpoint({"w": np.ones(3)}, out, "pdparams")
    before = _digest(out)
    with pytest.raises(TypeError):
        save_checkpoint({"w": np.ones(3), "bad": np.array(["text"])}, out, "pdparams")
    assert _digest(out) == before
    assert _partials(str(tmp_path)) == []


def test_only_temporaries_of_dead_local_writers_are_removed(tmp_path):
    out = str(tmp_path / "model.pth")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = stale_temporaries.__globals__["_host_tag"]()
    names = {
        "dead": f".model.pth.{host}-{dead.pid}-abc_123.partial",
        "alive": f".model.pth.{host}-{os.getpid()}-abc_124.partial",
        "other_host": f".model.pth.ffffffff-{dead.pid}-abc_125.partial",
        "other_file": f".other.pth.{host}-{dead.pid}-abc_126.partial",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    assert stale_temporaries(out) == [str(tmp_path / names["dead"])]
    with atomic_write(out) as fh:
        fh.write(b"new")
    left = set(_partials(str(tmp_path)))
    assert left == {names["alive"], names["other_host"], names["other_file"]}


def test_permissions_follow_umask_or_existing_file(tmp_path):
    out = str(tmp_path / "perm.safetensors")
    save_checkpoint({"w": np.ones(2, np.float32)}, out, "safetensors")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~mask
    os.chmod(out, 0o640)
    save_checkpoint({"w": np.zeros(2, np.float32)}, out, "safetensors")
    assert os.stat(out).st_mode & 0o777 == 0o640


def test_fsync_only_when_asked(tmp_path, monkeypatch):
    import porthub.io.atomic as atomic

    calls = []
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: calls.append(fd))
    with atomic.atomic_write(str(tmp_path / "a.bin")) as fh:
        fh.write(b"x")
    assert calls == [] and (tmp_path / "a.bin").read_bytes() == b"x"
    monkeypatch.setenv("PORTHUB_FSYNC", "1")
    with atomic.atomic_write(str(tmp_path / "a.bin")) as fh:
        fh.write(b"y")
    assert len(calls) == 2 and (tmp_path / "a.bin").read_bytes() == b"y"
