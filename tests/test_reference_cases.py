"""Every official reference case the repository carries, in both frameworks and both dtypes, and
the official -> Paddle -> official round trip through the converter (what acceptance runs)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import reference_cases

from porthub.convert import convert_file, resolve_target
from porthub.io import load_checkpoint
from porthub.verify import load_case, verify_reference

CASES = [
    pytest.param(p, id=f"{os.path.basename(os.path.dirname(p))}/{os.path.basename(p)[:-5]}") for p in reference_cases()
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES)
def test_both_frameworks_match_the_official_output(case, dtype):
    report = verify_reference(case, ("torch", "paddle"), dtype)
    outputs = [r for r in report["results"] if r["output"] == "output"]
    assert {r["framework"] for r in outputs} == {"torch", "paddle"}
    bad = [r for r in report["results"] if not r["ok"]]
    assert not bad, bad[:4]
    # the float64 path must really be float64: far inside the float32 error
    if dtype == "float64":
        assert max(r["max_abs_diff"] for r in outputs) < 1e-9


def _unwrapped(obj):
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and key in obj:
            return obj[key]
    return obj


@pytest.mark.parametrize("case", CASES)
def test_official_to_paddle_to_official_is_bit_identical(case, tmp_path):
    data, stem = load_case(case)
    target = resolve_target(data["family"], case)
    src = f"{stem}.pth"
    pd = convert_file(target, src, "paddle", str(tmp_path / "m.pdparams"))
    assert pd["to_layout"] == target.spec.default_layout("paddle").name
    back = convert_file(target, str(tmp_path / "m.pdparams"), "torch", str(tmp_path / "back.pth"))
    a, b = _unwrapped(load_checkpoint(src)), _unwrapped(load_checkpoint(back["out"]))

    def skip(k):
        return k.endswith("num_batches_tracked")

    assert [k for k in a if not skip(k)] == [k for k in b if not skip(k)]
    for key in a:
        if not skip(key):
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape and np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize("case", CASES)
def test_released_wrapping_is_written_back(case, tmp_path):
    """Converting back to PyTorch gives the container the release used ({"model": ...}, mmcv, bare)."""
    data, stem = load_case(case)
    target = resolve_target(data["family"], case)
    convert_file(target, f"{stem}.pth", "paddle", str(tmp_path / "m.pdparams"))
    convert_file(target, str(tmp_path / "m.pdparams"), "torch", str(tmp_path / "back.pth"))
    original, back = load_checkpoint(f"{stem}.pth"), load_checkpoint(str(tmp_path / "back.pth"))
    layout = target.torch_layout()
    if layout.wrap is None:
        assert all(isinstance(v, np.ndarray) for v in back.values())
    else:
        assert layout.wrap in back and layout.wrap in original
