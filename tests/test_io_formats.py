"""Files written by the frameworks themselves read back exactly, and large .pdparams arrays are views
of the mapped file rather than copies."""

from __future__ import annotations

import numpy as np
import pytest

from porthub.io import load_checkpoint, save_checkpoint


def _state(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "fc.weight": rng.standard_normal((300, 200)).astype(np.float32),
        "fc.bias": rng.standard_normal(300).astype(np.float32),
        "table": rng.standard_normal((49, 3)).astype(np.float64),
        "index": np.arange(49 * 49, dtype=np.int64).reshape(49, 49),
        "bn._mean": rng.standard_normal(8).astype(np.float32),
        "scalar": np.zeros((), np.int64),
    }


def _owned_by_mapping(arr):
    return not arr.flags.owndata


def test_paddle_saved_pdparams_reads_exactly_and_in_place(tmp_path):
    paddle = pytest.importorskip("paddle")
    state = _state()
    path = tmp_path / "m.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    back = load_checkpoint(str(path))
    assert [k for k in back if isinstance(back[k], np.ndarray)] == list(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape and np.array_equal(back[key], value)
    assert _owned_by_mapping(back["fc.weight"]) and _owned_by_mapping(back["index"])


def test_porthub_pdparams_loads_in_paddle_and_back(tmp_path):
    paddle = pytest.importorskip("paddle")
    state = _state(1)
    path = tmp_path / "m.pdparams"
    save_checkpoint(state, str(path), "pdparams")
    loaded = paddle.load(str(path))
    assert all(np.array_equal(loaded[k].numpy(), v) for k, v in state.items())
    back = load_checkpoint(str(path))
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in state.items())
    assert _owned_by_mapping(back["fc.weight"])


def test_pickled_numpy_protocols_read_the_same(tmp_path):
    import pickle

    state = _state(2)
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"p{protocol}.pdparams"
        path.write_bytes(pickle.dumps(state, protocol=protocol))
        back = load_checkpoint(str(path))
        assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in state.items()), protocol


def test_torch_saved_pth_reads_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    state = _state(3)
    path = tmp_path / "m.pth"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}}, path)
    back = load_checkpoint(str(path))["model"]
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in state.items())
    out = tmp_path / "w.pth"
    save_checkpoint({"model": back}, str(out), "pth")
    again = torch.load(out, weights_only=True)["model"]
    assert all(np.array_equal(again[k].numpy(), v) for k, v in state.items())
