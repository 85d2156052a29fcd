"""porthub's own zip writer for ``.pth`` files: CRCs computed beside the copies, data aligned for
``torch.load(mmap=True)``, zip64 records where sizes, offsets or the entry count need them (forced
here with small limits, since a 4 GB test file is out of reach)."""

from __future__ import annotations

import io
import struct
import threading
import zipfile

import numpy as np
import pytest
import torch

import porthub.io.zipstore as zipstore
from porthub.io import load_checkpoint, save_checkpoint


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((96, 40)).astype(np.float32)
    return {
        "linear.weight": w,
        "linear.weight_t": w.T,  # written through the strip transpose
        "index": np.arange(49, dtype=np.int64).reshape(7, 7),
        "half": rng.standard_normal(5).astype(np.float16),
        "flag": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
        "big_endian": np.arange(6, dtype=">f4"),
    }


def _check(path, state) -> None:
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None  # every CRC matches its entry
        for info in zf.infolist():
            if "/data/" in info.filename:
                name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
                assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename
    for mmap in (False, True):
        loaded = torch.load(path, weights_only=True, mmap=mmap)
        assert list(loaded) == list(state)
        for key, value in state.items():
            np.testing.assert_array_equal(loaded[key].numpy(), value, err_msg=key)
    ours = load_checkpoint(str(path))
    for key, value in state.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


def test_written_file_has_valid_crcs_aligned_data_and_loads_in_torch(tmp_path):
    state = _state()
    save_checkpoint(state, str(tmp_path / "w.pth"), "pth")
    _check(tmp_path / "w.pth", state)


@pytest.mark.parametrize("limit, count", [(100, zipstore.ZIP64_COUNT), (zipstore.ZIP64_LIMIT, 3), (100, 3)])
def test_zip64_records_are_read_by_zipfile_and_torch(tmp_path, monkeypatch, limit, count):
    monkeypatch.setattr(zipstore, "ZIP64_LIMIT", limit)
    monkeypatch.setattr(zipstore, "ZIP64_COUNT", count)
    state = _state()
    save_checkpoint(state, str(tmp_path / "w64.pth"), "pth")
    raw = (tmp_path / "w64.pth").read_bytes()
    assert (b"PK\x06\x06" in raw) == (count == 3 or limit == 100)
    _check(tmp_path / "w64.pth", state)


def test_a_round_trip_through_the_writer_is_byte_identical(tmp_path):
    state = _state()
    save_checkpoint(state, str(tmp_path / "a.pth"), "pth")
    save_checkpoint(load_checkpoint(str(tmp_path / "a.pth")), str(tmp_path / "b.pth"), "pth")
    assert (tmp_path / "a.pth").read_bytes() == (tmp_path / "b.pth").read_bytes()


def _alternating(n: int) -> list[tuple[str, np.ndarray]]:
    """Weights (transposed on the way out) each followed by a small bias, as in every family."""
    rng = np.random.default_rng(1)
    items = []
    for i in range(n):
        items.append((f"w{i}", rng.standard_normal((64, 24)).astype(np.float32).T))
        items.append((f"b{i}", rng.standard_normal(3).astype(np.float32)))
    return items


def _in_thread(fn, seconds: float = 60.0):
    """Run ``fn`` and fail (instead of hanging the suite) if it does not finish in time."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test thread, which re-raises it
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the writer hung"
    if "error" in box:
        raise box["error"]
    return box.get("value")


@pytest.mark.parametrize("helpers", [1, 2, 3])
def test_staging_ahead_keeps_order_and_never_deadlocks(monkeypatch, helpers):
    monkeypatch.setattr(zipstore, "_HELPERS", helpers)
    monkeypatch.setattr(zipstore, "_BUFFERS", helpers + 1)
    items = _alternating(150)

    def write_all():
        for _ in range(20):
            buf = io.BytesIO()
            with zipstore.StoredZipWriter(buf) as zf:
                zf.add_arrays(items)
        return buf

    buf = _in_thread(write_all)
    with zipfile.ZipFile(buf) as zf:
        assert zf.testzip() is None
        for name, arr in items:
            np.testing.assert_array_equal(np.frombuffer(zf.read(name), arr.dtype).reshape(arr.shape), arr, err_msg=name)


class _FailingFile(io.BytesIO):
    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self.left = fail_after

    def write(self, data) -> int:
        self.left -= 1
        if self.left < 0:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_a_failed_write_stops_the_helpers_and_raises(monkeypatch):
    monkeypatch.setattr(zipstore, "_HELPERS", 2)
    monkeypatch.setattr(zipstore, "_BUFFERS", 3)

    def write():
        with zipstore.StoredZipWriter(_FailingFile(40)) as zf:
            zf.add_arrays(_alternating(100))

    with pytest.raises(OSError, match="No space left"):
        _in_thread(write)


@pytest.mark.parametrize("seed", range(5))
def test_gates_bound_the_lookahead_in_bytes_and_buffers(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in rng.integers(1, 20 << 20, 200)]
    turns = sorted(int(n) for n in rng.choice(200, 80, replace=False))
    gates = zipstore._gates(sizes, turns)
    budget = min(zipstore._AHEAD_MAX, max(zipstore._AHEAD_MIN, sum(sizes) // 16))
    for n, gate in enumerate(gates):
        assert -1 <= gate < n  # only ever waits on an earlier entry: the writer reaches it first
        in_flight = sizes[gate + 1:n + 1]
        assert len(in_flight) == 1 or sum(in_flight) <= budget
    for nth, n in enumerate(turns[zipstore._BUFFERS:], start=zipstore._BUFFERS):
        assert gates[n] >= turns[nth - zipstore._BUFFERS]  # the buffer's previous transpose is out
