"""The conversion engine on small synthetic specs: transforms come from declared kinds, never ranks."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from porthub.engine import Manifest, check_state, detect_layout, from_canonical, to_canonical, unwrap
from porthub.errors import KeyMismatchError, LayoutError
from porthub.spec import FamilySpec, LayerKind, LayerRule, Layout, ModelRef, Rename, Variant


def _spec(**layout_kw) -> FamilySpec:
    return FamilySpec(
        family="toy",
        title="Toy",
        layers=(LayerRule(r"fc|head", LayerKind.LINEAR), LayerRule(r"bn", LayerKind.BATCHNORM)),
        layouts=(
            Layout("official", containers=("model",), wrap="model"),
            Layout("bare"),
            Layout("paddle", framework="paddle", default_format="pdparams"),
            Layout("renamed", framework="paddle", renames=(Rename("bn", "_batch_norm"),)),
        ),
        variants=(Variant("toy_a", "Toy", {}, release_layout="official"),),
        case_model=lambda case: ModelRef("Toy", {}),
    )


def _state() -> "OrderedDict[str, np.ndarray]":
    rng = np.random.default_rng(0)
    return OrderedDict(
        [
            ("fc.weight", rng.standard_normal((3, 4)).astype(np.float32)),
            ("fc.bias", rng.standard_normal(3).astype(np.float32)),
            ("table", rng.standard_normal((5, 2)).astype(np.float32)),  # 2-D but not a Linear
            ("index", np.arange(6, dtype=np.int64).reshape(2, 3)),
            ("bn.weight", np.ones(3, np.float32)),
            ("bn.bias", np.zeros(3, np.float32)),
            ("bn.running_mean", rng.standard_normal(3).astype(np.float32)),
            ("bn.running_var", rng.uniform(0.5, 1.5, 3).astype(np.float32)),
            ("bn.num_batches_tracked", np.zeros((), np.int64)),
            ("head.weight", rng.standard_normal((4, 4)).astype(np.float32)),  # square: rank and shape say nothing
        ]
    )


def _manifest(state) -> Manifest:
    return Manifest("toy_a", OrderedDict((k, (v.shape, str(v.dtype))) for k, v in state.items()))


def test_paddle_layout_transforms_by_declared_kind_only():
    spec, state = _spec(), _state()
    out = from_canonical(state, spec.layout("paddle"), spec)
    assert list(out) == [
        "fc.weight",
        "fc.bias",
        "table",
        "index",
        "bn.weight",
        "bn.bias",
        "bn._mean",
        "bn._variance",
        "head.weight",
    ]
    np.testing.assert_array_equal(out["fc.weight"], state["fc.weight"].T)
    np.testing.assert_array_equal(out["head.weight"], state["head.weight"].T)
    np.testing.assert_array_equal(out["table"], state["table"])
    np.testing.assert_array_equal(out["index"], state["index"])
    assert out["index"].dtype == np.int64


@pytest.mark.parametrize("layout", ["official", "bare", "paddle", "renamed"])
def test_every_layout_round_trips_bit_for_bit(layout):
    spec, state = _spec(), _state()
    lay = spec.layout(layout)
    file_obj = from_canonical(state, lay, spec)
    back, strays = to_canonical(unwrap(file_obj, lay), lay, spec)
    assert strays == []
    assert list(back) == list(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        np.testing.assert_array_equal(back[key], value)


def test_renames_are_whole_components():
    spec, state = _spec(), _state()
    out = from_canonical(state, spec.layout("renamed"), spec)
    assert "_batch_norm._mean" in out and "bn.weight" not in out and "fc.weight" in out


def test_detect_picks_the_layout_that_fits():
    spec, state = _spec(), _state()
    manifest = _manifest(state)
    wrapped = from_canonical(state, spec.layout("official"), spec)
    layout, back = detect_layout(wrapped, spec, manifest, ("torch",))
    assert layout.name == "official" and list(back) == list(state)
    layout, _ = detect_layout(dict(state), spec, manifest, ("torch",))
    assert layout.name == "bare"


def test_module_prefix_of_data_parallel_saves_is_stripped():
    spec, state = _spec(), _state()
    layout, back = detect_layout({f"module.{k}": v for k, v in state.items()}, spec, _manifest(state), ("torch",))
    assert list(back) == list(state)


def test_missing_unexpected_and_shape_mismatch_are_named():
    state = _state()
    manifest = _manifest(state)
    bad = OrderedDict(state)
    del bad["fc.bias"]
    bad["extra.weight"] = np.zeros(2, np.float32)
    bad["table"] = np.zeros((2, 5), np.float32)
    with pytest.raises(KeyMismatchError) as err:
        check_state(bad, manifest)
    msg = str(err.value)
    assert "fc.bias" in msg and "extra.weight" in msg and "table is [2, 5] in the file, [5, 2] in the model" in msg
    assert "toy_a" in msg
    check_state({k: v for k, v in state.items() if k != "fc.bias"}, manifest, allow_missing=[r"fc\.bias"])


def test_integer_buffer_dtype_is_checked():
    state = _state()
    bad = OrderedDict(state)
    bad["index"] = bad["index"].astype(np.int32)
    with pytest.raises(KeyMismatchError, match="index is int32"):
        check_state(bad, _manifest(state))


def test_no_layout_applies():
    spec, state = _spec(), _state()
    with pytest.raises(LayoutError, match="no toy layout applies"):
        detect_layout({"optimizer": {"lr": 1.0}}, spec, _manifest(state), ("torch",))


def test_declared_linear_with_wrong_rank_is_a_spec_error():
    spec = _spec()
    with pytest.raises(LayoutError, match="declared a Linear weight"):
        from_canonical({"fc.weight": np.zeros((2, 2, 2), np.float32)}, spec.layout("paddle"), spec)


def test_layout_must_read_what_it_writes():
    with pytest.raises(ValueError, match="does not read from it"):
        Layout("broken", containers=("state_dict",), wrap="model")


def test_non_finite_weights_are_refused_naming_the_key():
    from porthub.runtime import check_finite

    state = _state()
    state["fc.bias"] = state["fc.bias"].copy()
    state["fc.bias"][1] = np.nan
    with pytest.raises(ValueError, match=r"fc\.bias holds 1 non-finite"):
        check_finite(state, "toy_a")
    check_finite(_state(), "toy_a")
