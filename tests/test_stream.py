"""The streaming array writer (porthub.io.stream): every path writes exactly numpy's C-order bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from porthub.io import load_checkpoint, save_checkpoint
from porthub.io.mapped import source_span
from porthub.io.stream import write_array


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        # 130 rows: two full 64-row strips and a remainder of 2
        "fc.weight": rng.standard_normal((130, 67)).astype(np.float32),
        "head.weight": rng.standard_normal((5, 300)).astype(np.float64),
        "half.weight": rng.standard_normal((70, 3)).astype(np.float16),
        "bias": rng.standard_normal(67).astype(np.float32),
        "index": np.arange(12, dtype=np.int64).reshape(3, 4),
        "scalar": np.array(2.5, dtype=np.float32),
    }


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_mapped_views_are_found(tmp_path, fmt: str) -> None:
    path = str(tmp_path / f"a.{fmt}")
    save_checkpoint(_state(), path, fmt)
    loaded = load_checkpoint(path)
    assert source_span(loaded["fc.weight"]) is not None
    assert source_span(loaded["fc.weight"].T) is None  # not C-contiguous: the writer transposes it
    assert source_span(np.ones(3)) is None


@pytest.mark.parametrize("src_fmt", ["pth", "safetensors", "pdparams"])
@pytest.mark.parametrize("out_fmt", ["pth", "safetensors", "pdparams"])
def test_transposed_and_plain_views_round_trip(tmp_path, src_fmt: str, out_fmt: str) -> None:
    state = _state()
    src = str(tmp_path / f"src.{src_fmt}")
    save_checkpoint(state, src, src_fmt)
    loaded = load_checkpoint(src)
    out_state = {k: (v.T if v.ndim == 2 else v) for k, v in loaded.items()}
    out = str(tmp_path / f"out.{out_fmt}")
    save_checkpoint(out_state, out, out_fmt)
    back = load_checkpoint(out)
    assert list(back) == list(state)
    for key, want in state.items():
        want = want.T if want.ndim == 2 else want
        assert back[key].dtype == want.dtype and back[key].shape == want.shape, key
        assert np.array_equal(back[key], want), key


def test_stream_without_file_descriptor_and_big_endian() -> None:
    buf = io.BytesIO()
    big = np.arange(6, dtype=">f4").reshape(2, 3)
    write_array(buf, big)
    write_array(buf, big.astype("<f4").T)
    write_array(buf, np.arange(8, dtype=np.int16)[::2])
    want = (np.arange(6, dtype="<f4").reshape(2, 3).tobytes() + np.arange(6, dtype="<f4").reshape(2, 3).T.tobytes()
            + np.arange(0, 8, 2, dtype="<i2").tobytes())
    assert buf.getvalue() == want
