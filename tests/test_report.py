"""Layer-by-layer equivalence reports: a planted error is named exactly, clean models are within
tolerance in float64, and the report files are written whole.

Registry-driven: every family gets the same tests on the model of its first reference case
(``spec.case_model``), so a family needs no code here."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
from conftest import DATA

from porthub.registry import FAMILIES, get_spec
from porthub.report import (
    ROOT,
    LayerComparison,
    ModelReport,
    compare_layers,
    imagenet_classes,
    layer_tolerance,
    summary_figures,
    topk_lines,
    write_report,
)
from porthub.spec import LayerTolerance, Tolerance

pytest.importorskip("torch")
pytest.importorskip("paddle")


def _first_case(family: str) -> str | None:
    cases = sorted(p for p in glob.glob(os.path.join(DATA, family, "*.json")) if os.path.exists(p[:-5] + ".input.npy"))
    return cases[0] if cases else None


def _setup(family: str):
    from porthub.pairs import seeded_state

    path = _first_case(family)
    if path is None:
        pytest.skip(f"{family}: no reference case in tests/data/official/{family} yet")
    spec = get_spec(family)
    with open(path, encoding="utf-8") as fh:
        case = json.load(fh)
    ref = spec.case_model(case)
    state = seeded_state(spec, ref)
    x = np.load(path[:-5] + ".input.npy")[:1]
    return spec, ref, state, x


@pytest.fixture(scope="module", params=FAMILIES)
def family_case(request):
    """One clean float64 comparison per family, shared by the tests below."""
    spec, ref, state, x = _setup(request.param)
    clean = compare_layers(spec, ref, state, x, "float64", f"{spec.family} case")
    return spec, ref, state, x, clean


def test_clean_model_is_within_tolerance_in_float64(family_case):
    spec, _, _, _, clean = family_case
    assert clean.first_divergence is None, [(r.key, r.max_abs, r.limit, r.note) for r in clean.layers if not r.ok][:5]
    compared = [r for r in clean.layers if r.max_abs is not None]
    # every module PyTorch called was called, with the same inputs, in Paddle
    assert len(compared) == len(clean.layers) > 10
    assert clean.layers[0].name == ROOT and clean.only_torch == [] and clean.only_paddle == []
    assert clean.output_max_abs <= clean.output_limit
    # float64 really is float64 end to end (float32 rounding alone is ~1e-7)
    assert (
        np.asarray(clean.paddle_output if not isinstance(clean.paddle_output, list) else clean.paddle_output[-1]).dtype
        == np.float64
    )
    assert max(r.max_abs / r.scale for r in compared) < 1e-8
    assert max(r.flow_max_abs / r.scale for r in compared) < 1e-8


def _candidates(model, clean: LayerComparison, swap: bool) -> list[tuple[str, tuple[int, int] | None]]:
    """Parameters of layers PyTorch called once, with the two axes to swap (equal lengths, values
    that change when swapped), or None to add noise."""
    calls: dict[str, int] = {}
    for row in clean.layers:
        calls[row.name] = calls.get(row.name, 0) + 1
    out = []
    for name, param in model.named_parameters():
        owner = name.rpartition(".")[0]
        value = param.numpy()
        if calls.get(owner) != 1 or value.ndim < 2 or value.size < 4:
            continue
        if not swap:
            out.append((name, None))
            continue
        for a in range(value.ndim):
            for b in range(a + 1, value.ndim):
                if value.shape[a] == value.shape[b] > 1 and not np.array_equal(value, np.swapaxes(value, a, b)):
                    out.append((name, (a, b)))
                    break
            else:
                continue
            break
    return out


@pytest.mark.parametrize("how", ["noise", "swap_axes"])
def test_a_planted_error_is_named_exactly(family_case, how):
    spec, ref, state, x, clean = family_case
    chosen: dict[str, object] = {}

    def plant(model) -> None:
        found = _candidates(model, clean, how == "swap_axes")
        if not found:
            pytest.skip(f"{spec.family}: no parameter with two equal axes whose swap changes it")
        name, axes = found[len(found) // 2]
        param = dict(model.named_parameters())[name]
        value = param.numpy()
        if axes is None:
            rng = np.random.default_rng(0)
            value = value + 0.5 * (float(value.std()) or 1.0) * rng.standard_normal(value.shape).astype(value.dtype)
        else:
            value = np.ascontiguousarray(np.swapaxes(value, *axes))
        param.set_value(value)
        chosen["owner"] = name.rpartition(".")[0]

    bad = compare_layers(spec, ref, state, x, "float32", f"{spec.family} case", paddle_edit=plant)
    owner = chosen["owner"]
    first = bad.first_divergence
    assert first is not None and first.name == owner, (owner, None if first is None else first.key)
    # local comparison pins it: no other layer is out of tolerance, though the error flows on
    assert [r.name for r in bad.layers if not r.ok] == [owner]
    downstream = [
        r for r in bad.layers if r.index > first.index and r.flow_max_abs is not None and r.flow_max_abs > r.limit
    ]
    assert downstream, "the planted error should be visible end to end too"


def test_reports_are_written_and_summarised(family_case, tmp_path):
    spec, _, _, _, clean = family_case
    report = ModelReport(f"{spec.family}_case", spec.family, "seeded", "case input", {"float64": clean})
    paths = write_report(report, str(tmp_path / "rep"))
    assert sorted(os.listdir(tmp_path / "rep")) == sorted(os.path.basename(p) for p in paths.values())
    with open(paths["png"], "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(paths["json"], encoding="utf-8") as fh:
        data = json.load(fh)
    assert data["ok"] is True and len(data["comparisons"]["float64"]["layers"]) == len(clean.layers)
    table = open(paths["markdown"], encoding="utf-8").read()
    assert table.count("\n| ") >= len(clean.layers) + 2
    figures = summary_figures(report)
    assert figures["float64"]["first_divergence"] is None
    assert figures["float64"]["layers_within_tolerance"] == len(clean.layers)
    assert figures["float64"]["worst_local_scaled"] < 1e-8


def test_report_directory_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    report = ModelReport("m", "f", "seeded", "x", {})
    with pytest.raises(ValueError, match="is a file"):
        write_report(report, str(target))


def test_layer_tolerances_come_from_the_spec():
    import dataclasses

    spec = get_spec("shunted")
    loose = Tolerance(1e-3, 1e-6, "planted for the test")
    patched = dataclasses.replace(spec, layer_tolerances=(LayerTolerance("paddle", r"block\d+\.0\.attn", loose),))
    assert layer_tolerance(patched, "block1.0.attn") is loose
    assert layer_tolerance(patched, "block1.0.attn.q") == patched.tolerance("paddle")
    assert patched.layer_tolerance("torch", "block1.0.attn") == patched.tolerance("torch")
    # the old string keys ("paddle@<regex>") are refused, so no exception is silently ignored
    with pytest.raises(ValueError, match="LayerTolerance"):
        dataclasses.replace(spec, tolerances={**spec.tolerances, r"paddle@block\d+": loose})


def test_class_names_and_topk():
    names = imagenet_classes()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    logits = np.zeros((1, 1000), dtype=np.float32)
    logits[0, [1, 7, 3]] = [5.0, 4.0, 3.0]
    lines = topk_lines(logits, logits + 1e-7, 3)
    assert (
        "goldfish (1)" in lines[1]
        and "cock (7)" in lines[2]
        and lines[-1].startswith("same top-3 order in both frameworks: yes")
    )
    with pytest.raises(ValueError, match="logits"):
        topk_lines(logits, logits[:, :10], 3)


def test_verify_cli_with_input_topk_and_report(tmp_path, capsys):
    """The whole command on a registered full-size model, at a small input size to stay quick."""
    from porthub.cli import main

    x = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc = main(
        [
            "verify",
            "shunted_t",
            "--input",
            str(tmp_path / "x.npy"),
            "--topk",
            "3",
            "--report",
            str(tmp_path / "rep"),
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["ok"] is True
    # verify_pair's fields stay, with the per-layer data beside them
    assert {"ok", "model", "dtype", "weights", "roundtrip_identical", "results", "notes"} <= set(data)
    assert data["model"] == "shunted_t" and data["input"] == "x.npy [1, 3, 64, 64]" and data["first_divergence"] is None
    assert data["layers"]["layers_compared"] == len(data["layers"]["layers"]) > 200
    assert len(data["topk"]) == 5 and data["topk"][-1].startswith("same top-3 order in both frameworks: yes")
    assert sorted(os.listdir(tmp_path / "rep")) == [
        "shunted_t_report.json",
        "shunted_t_report.md",
        "shunted_t_report.png",
    ]
    from porthub.report import load_report

    saved = load_report(data["report_files"]["json"])
    assert set(saved.comparisons) == {"float32", "float64"} and saved.ok
