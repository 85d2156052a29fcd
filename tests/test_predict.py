"""``porthub predict`` (issue 17), registry-driven: the smallest classifier and the smallest segmentation model.

* torch and paddle on the same weights (an official-layout file) give the same top-k classes on a generated
  image, their probabilities within 1e-4; an ONNX export of the same file, run by ONNX Runtime, the same;
* segmentation writes a palette PNG of the image's size whose pixels are class indices; an existing mask is
  kept unless forced;
* seeded weights are said to be random; bad input is one line (JSON with --json) and a non-zero exit, before
  any model is built.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict

import numpy as np
import pytest
from registry_cases import smallest

from porthub.cli import main
from porthub.engine import from_canonical
from porthub.errors import OutputExistsError
from porthub.io import save_checkpoint
from porthub.pairs import seeded_state
from porthub.predict import predict
from porthub.registry import resolve

pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

TOPK = 5


def _smallest(task: str) -> str:
    return smallest(key=lambda spec, variant: task, where=lambda spec, variant: variant.task == task)[0][1].name


CLASSIFIER = _smallest("classification")
SEGMENTER = _smallest("segmentation")


def _image(path: str, width: int, height: int) -> str:
    """A smooth colour picture with some texture (not plain noise), as a PNG."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rgb = np.stack([128 + 100 * np.sin(x / 17.0), 128 + 100 * np.cos(y / 23.0), 128 + 90 * np.sin((x + y) / 31.0)],
                   axis=-1)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB").save(path)
    return path


def _official_file(name: str, path: str) -> str:
    """Seeded weights written in the variant's release layout (as the official code's state_dict holds them)."""
    spec, variant = resolve(name)
    state = seeded_state(spec, variant.model())
    layout = spec.layout(variant.release_layout)
    released = from_canonical(state, layout, spec, variant.kwargs)
    if layout.wrap is not None:
        released = released[layout.wrap]
    save_checkpoint(OrderedDict(released), path, "pth")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("predict")
    return {"image": _image(str(base / "scene.png"), 320, 240),
            "weights": _official_file(CLASSIFIER, str(base / f"{CLASSIFIER}.pth")), "base": base}


@pytest.fixture(scope="module")
def torch_result(files):
    return predict(CLASSIFIER, [files["image"]], backend="torch", weights=files["weights"], topk=TOPK)


def _top(result):
    return [[i for i, _, _ in p.top] for p in result.predictions]


def _probs(result):
    return np.array([[p for _, _, p in pred.top] for pred in result.predictions])


def test_torch_prediction_has_labels_and_probabilities(torch_result):
    (pred,) = torch_result.predictions
    assert len(pred.top) == TOPK and pred.size == (320, 240)
    probs = [p for _, _, p in pred.top]
    assert probs == sorted(probs, reverse=True) and 0 < probs[-1] and sum(probs) <= 1.0 + 1e-9
    assert all(isinstance(label, str) and label for _, label, _ in pred.top)
    assert torch_result.notes == []  # weights given: nothing to say about them


def test_paddle_gives_the_same_top_k(files, torch_result):
    pytest.importorskip("paddle")
    got = predict(CLASSIFIER, [files["image"]], backend="paddle", weights=files["weights"], topk=TOPK)
    assert _top(got) == _top(torch_result)
    assert np.abs(_probs(got) - _probs(torch_result)).max() <= 1e-4


def test_onnxruntime_on_an_exported_folder(files, torch_result):
    pytest.importorskip("onnxruntime")
    from porthub.export import export_model

    out = str(files["base"] / "onnx_export")
    export_model(CLASSIFIER, "onnx", weights=files["weights"], out=out)
    got = predict(out, [files["image"]], topk=TOPK)
    assert got.backend == "onnxruntime" and got.model == CLASSIFIER
    assert _top(got) == _top(torch_result)
    assert np.abs(_probs(got) - _probs(torch_result)).max() <= 1e-4


def test_cli_text_and_json(files, capsys):
    assert main(["predict", CLASSIFIER, files["image"], "--topk", "3"]) == 0
    text = capsys.readouterr().out
    assert "seeded random weights" in text and text.count("\n") >= 5
    assert main(["predict", CLASSIFIER, files["image"], "--topk", "2", "--json", "--weights", files["weights"]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["model"] == CLASSIFIER and out["backend"] == "torch"
    (pred,) = out["predictions"]
    assert len(pred["top"]) == 2 and {"index", "label", "prob"} <= set(pred["top"][0])


def test_segmentation_writes_a_mask_of_the_image_size(tmp_path, capsys):
    image = _image(str(tmp_path / "street.png"), 300, 200)
    out = tmp_path / "masks"
    assert main(["predict", SEGMENTER, image, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seeded random weights" in printed
    mask_path = out / "street_mask.png"
    with Image.open(mask_path) as mask:
        assert mask.size == (300, 200) and mask.mode == "P"
        values = np.asarray(mask)
    assert values.max() < resolve(SEGMENTER)[1].num_classes
    before = mask_path.read_bytes()
    # an existing mask is kept: one line, non-zero exit
    assert main(["predict", SEGMENTER, image, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and "force" in err
    assert mask_path.read_bytes() == before
    assert main(["predict", SEGMENTER, image, "--out", str(out), "--force"]) == 0
    assert os.listdir(out) == ["street_mask.png"]  # no temporary left beside it


def test_segmentation_refuses_before_building(tmp_path):
    image = _image(str(tmp_path / "a.png"), 64, 48)
    (tmp_path / "a_mask.png").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        predict(SEGMENTER, [image], out=str(tmp_path))
    assert (tmp_path / "a_mask.png").read_bytes() == b"keep me"


def _fake_export(folder, fmt="onnx"):
    os.makedirs(folder)
    with open(os.path.join(folder, "export.json"), "w", encoding="utf-8") as fh:
        json.dump({"model": CLASSIFIER, "format": fmt, "input_size": [224, 224]}, fh)
    return str(folder)


def _bad_cases(files, tmp_path):
    folder = _fake_export(tmp_path / "exported")
    not_image = tmp_path / "notes.png"
    not_image.write_text("not a picture")
    return [
        ([CLASSIFIER, str(tmp_path / "missing.png")], "no such image"),
        ([CLASSIFIER, files["image"], "--backend", "tensorflow"], "unknown backend"),
        ([folder, files["image"], "--backend", "paddle"], "runs with backend onnxruntime"),
        ([folder, files["image"], "--weights", files["weights"]], "carries its own weights"),
        ([CLASSIFIER, files["image"], "--backend", "onnxruntime"], "porthub export"),
        ([CLASSIFIER, files["image"], "--topk", "0"], "topk"),
        ([CLASSIFIER, files["image"], "--out", str(tmp_path)], "classifier"),
        ([CLASSIFIER, str(not_image)], "not an image"),
        (["no_such_model", files["image"]], "unknown model"),
        ([str(tmp_path), files["image"]], "not an export"),
    ]


def test_bad_input_is_one_line_and_json(files, tmp_path, capsys, monkeypatch):
    import porthub.runtime as runtime

    def no_build(*_args, **_kwargs):
        raise AssertionError("a model was built for bad input")

    monkeypatch.setattr(runtime, "build_model", no_build)
    for argv, words in _bad_cases(files, tmp_path):
        assert main(["predict", *argv]) == 1, argv
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and words in captured.err, (argv, captured.err)
        assert main(["predict", *argv, "--json"]) == 1, argv
        out = json.loads(capsys.readouterr().out)
        assert out["ok"] is False and words in out["error"], (argv, out)
