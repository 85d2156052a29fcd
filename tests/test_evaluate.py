"""``porthub evaluate``: top-1/top-5 on generated image folders whose answer is computed by hand, the
same in both frameworks; mIoU on a generated ADE20K-style set against an independent numpy mIoU; bad
input refused in one line before any model is built.

The classifier is the smallest registered one (seaformer_tiny) with seeded weights. Its labels come
from one PyTorch run of the model on the preprocessed images, outside porthub.evaluate; then some
labels are moved to the 2nd-ranked class (a top-5 hit, a top-1 miss) and some to the 100th (a miss),
so top-1 and top-5 are known fractions.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from porthub import evaluate as ev
from porthub.cli import main
from porthub.errors import PorthubError
from porthub.registry import resolve

CLS = "seaformer_tiny"
SEG = "seaformer_seg_tiny"
N_IMAGES = 12


def _wnids() -> list[str]:
    return ev._imagenet_wnids()


def _weights(name: str, path: Path, seed: int = 3) -> dict:
    from porthub.io import save_checkpoint
    from porthub.pairs import seeded_state

    spec, variant = resolve(name)
    state = seeded_state(spec, variant.model(), seed=seed)
    save_checkpoint(dict(state), str(path), "pth")
    return state


def _torch_logits(name: str, state: dict, images: list[Path]) -> np.ndarray:
    """The model run once in PyTorch on each image (torch's own load_state_dict, one image at a time)."""
    import torch

    from porthub.preprocess import load_image, preprocess_image, recipe_for
    from porthub.runtime import build_model

    spec, variant = resolve(name)
    net = build_model(spec, variant.model(), "torch")
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    recipe = recipe_for(spec.preprocessing, variant.task, variant.input_size)
    with torch.no_grad():
        return np.concatenate([net(torch.from_numpy(preprocess_image(load_image(str(p)), recipe))).numpy()
                               for p in images])


@pytest.fixture(scope="module")
def cls_set(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from PIL import Image

    root = tmp_path_factory.mktemp("cls")
    rng = np.random.default_rng(7)
    raw = root / "raw"
    raw.mkdir()
    images = []
    for i in range(N_IMAGES):
        h, w = int(rng.integers(180, 320)), int(rng.integers(180, 320))
        # smooth noise: a real-looking spread of colours, not a flat image
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
        path = raw / f"img{i:02d}.{'png' if i % 3 == 0 else 'jpg'}"
        img.save(path)
        images.append(path)
    state = _weights(CLS, root / "w.pth")
    logits = _torch_logits(CLS, state, images)
    order = np.argsort(-logits, axis=1, kind="stable")
    # the ranks used below are clear of ties, so float32 differences between frameworks cannot move them
    gaps = np.sort(logits, axis=1)[:, ::-1]
    assert (gaps[:, 0] - gaps[:, 1]).min() > 1e-4 and (gaps[:, 4] - gaps[:, 5]).min() > 1e-4
    labels = []
    for i in range(N_IMAGES):
        rank = 0 if i < 6 else (1 if i < 9 else 99)   # 6 right, 3 in the top 5 only, 3 wrong
        labels.append(int(order[i, rank]))
    wnids = _wnids()
    folders = root / "folders"
    for path, label in zip(images, labels):
        (folders / wnids[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folders / wnids[label] / path.name)
    flat = root / "flat"
    flat.mkdir()
    lines = []
    for i, (path, label) in enumerate(zip(images, labels)):
        shutil.copy(path, flat / path.name)
        lines.append(f"{path.name} {label if i % 2 else wnids[label]}")   # indices and synset ids both read
    (flat / "val.txt").write_text("\n".join(lines) + "\n")
    return SimpleNamespace(root=root, folders=folders, flat=flat, weights=root / "w.pth", labels=labels,
                           logits=logits, order=order)


def test_synset_folders_give_the_hand_computed_top1_and_top5_in_both_frameworks(cls_set: SimpleNamespace) -> None:
    r = ev.evaluate(CLS, str(cls_set.folders), "both", str(cls_set.weights), batch_size=5, workers=3,
                    keep_predictions=True)
    assert r["samples"] == N_IMAGES and "synset folders" in r["layout"]
    for fw in ("torch", "paddle"):
        assert r["frameworks"][fw]["top1"] == 6 / 12, fw
        assert r["frameworks"][fw]["top5"] == 9 / 12, fw
    assert r["agreement_top1"] == 1.0
    # the folder order is not the image order; the logits of one image match the single-image torch run
    wnids = _wnids()
    order = sorted(range(N_IMAGES), key=lambda i: (wnids[cls_set.labels[i]], f"img{i:02d}"))
    want = cls_set.logits[order]
    for fw in ("torch", "paddle"):
        assert np.abs(r["predictions"][fw] - want).max() <= 2e-5 * max(1.0, float(np.abs(want).max())), fw


def test_flat_label_file_and_limit(cls_set: SimpleNamespace) -> None:
    r = ev.evaluate(CLS, str(cls_set.flat), "torch", str(cls_set.weights), batch_size=4, workers=2)
    assert r["layout"] == "flat folder with label file val.txt"
    assert r["frameworks"]["torch"]["top1"] == 6 / 12 and r["frameworks"]["torch"]["top5"] == 9 / 12
    assert r["agreement_top1"] is None and set(r["frameworks"]) == {"torch"}
    # the first 8 lines: images 0-5 right, 6-7 in the top 5
    r = ev.evaluate(CLS, str(cls_set.flat), "paddle", str(cls_set.weights), limit=8, batch_size=3)
    assert r["samples"] == 8 and r["frameworks"]["paddle"]["top1"] == 6 / 8 and r["frameworks"]["paddle"]["top5"] == 1.0


def test_cli_json_has_the_issue_fields(cls_set: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", CLS, "--data", str(cls_set.flat), "--weights", str(cls_set.weights), "--json",
                 "--batch-size", "6", "--workers", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == CLS and out["samples"] == N_IMAGES and out["agreement_top1"] == 1.0
    assert {fw: (v["top1"], v["top5"]) for fw, v in out["frameworks"].items()} == {"torch": (0.5, 0.75),
                                                                                    "paddle": (0.5, 0.75)}
    assert main(["evaluate", CLS, "--data", str(cls_set.folders), "--weights", str(cls_set.weights),
                 "--limit", "4"]) == 0
    text = capsys.readouterr().out
    assert "torch   top-1" in text and "paddle  top-1" in text and "agree on the top-1 class of 100.00%" in text


def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("a model was built or weights read before the input was checked")

    monkeypatch.setattr(ev, "_state", refuse)
    monkeypatch.setattr(ev, "_runtime", refuse)


def test_bad_input_is_one_line_before_any_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _no_model(monkeypatch)
    empty = tmp_path / "empty"
    (empty / "n01440764").mkdir(parents=True)
    bad_label = tmp_path / "badlabel"
    bad_label.mkdir()
    (bad_label / "a.jpg").write_bytes(b"x")
    (bad_label / "labels.txt").write_text("a.jpg 1000\n")
    cases = [(tmp_path / "missing", "no such data folder"), (empty, "no images found"),
             (bad_label, "outside the model's 1000 classes"), (tmp_path / "empty" / "n01440764", "neither class")]
    for folder, words in cases:
        assert main(["evaluate", CLS, "--data", str(folder)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (folder, err)
        assert main(["evaluate", CLS, "--data", str(folder), "--json"]) == 1
        payload = json.loads(capsys.readouterr().out)
        assert payload["ok"] is False and words in payload["error"]
    with pytest.raises(ValueError, match="torch, paddle or both"):
        ev.evaluate(CLS, str(empty), "tensorflow")
    with pytest.raises(PorthubError, match="images/ and annotations/"):
        ev.evaluate(SEG, str(empty))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        ev.evaluate(CLS, str(tmp_path), weights=str(tmp_path / "nope.pth"))


# ------------------------------------------------------------------------------------------- segmentation
def test_mean_iou_by_hand() -> None:
    pred = np.array([[0, 0, 1], [1, 2, 2]])
    label = np.array([[0, 1, 1], [1, 2, ev.IGNORE_INDEX]])
    inter, union, area = ev._areas(pred.ravel(), label.ravel(), 4)
    # class 0: pred {0,1} label {0} -> 1/2; class 1: pred {2,3} label {1,2,3} -> 2/3; class 2: pred {4} label {4} -> 1
    assert inter.tolist() == [1, 2, 1, 0] and union.tolist() == [2, 3, 1, 0] and area.tolist() == [1, 3, 1, 0]
    miou, aacc, iou = ev.mean_iou(inter.astype(float), union.astype(float), area.astype(float))
    assert miou == pytest.approx((1 / 2 + 2 / 3 + 1) / 3, abs=1e-15) and aacc == pytest.approx(4 / 5)
    assert np.isnan(iou[3])


def test_official_resize_rule_and_bilinear_match_torch() -> None:
    import torch

    rule = ev.seg_resize_rule("ADE20K")
    assert ev.rescale_size(80, 60, rule.scale) == (683, 512)      # short side to 512
    assert ev.rescale_size(3000, 600, rule.scale) == (2048, 410)  # long side capped at 2048
    assert ev.seg_resize_rule("Cityscapes").divisor is None
    x = np.random.default_rng(0).standard_normal((3, 17, 23)).astype(np.float32)
    for h, w in ((40, 31), (9, 12), (17, 23)):
        want = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=(h, w), mode="bilinear",
                                               align_corners=False)[0].numpy()
        assert np.abs(ev.bilinear_resize(x, h, w) - want).max() < 1e-5


def _independent_miou(preds: list[np.ndarray], labels: list[np.ndarray], classes: int) -> float:
    """mIoU from a confusion matrix over every valid pixel (not porthub's code path)."""
    conf = np.zeros((classes, classes), np.int64)
    for p, g in zip(preds, labels):
        keep = g != 255
        conf += np.bincount(g[keep] * classes + p[keep], minlength=classes * classes).reshape(classes, classes)
    inter = np.diag(conf).astype(float)
    union = conf.sum(0) + conf.sum(1) - np.diag(conf)
    present = union > 0
    return float((inter[present] / union[present]).mean())


def test_segmentation_miou_against_an_independent_numpy_miou(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(11)
    root = tmp_path / "ade"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    sizes = [(60, 80), (96, 72), (64, 64)]
    for i, (h, w) in enumerate(sizes):
        small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR).save(root / "images" / f"im{i}.jpg")
        Image.fromarray(np.zeros((h, w), np.uint8)).save(root / "annotations" / f"im{i}.png")
    weights = tmp_path / "seg.pth"
    _weights(SEG, weights, seed=5)
    # pass 1: all labels 0 (= ignored under reduce_zero_label): the model's own predictions
    first = ev.evaluate(SEG, str(root), "torch", str(weights), keep_predictions=True)
    preds = first["predictions"]["torch"]
    assert [p.shape for p in preds] == sizes
    # annotations from the predictions (+1: reduce_zero_label), then damage: a block of another class, some 0s
    truth = []
    for i, p in enumerate(preds):
        ann = (p + 1).astype(np.uint8)
        if i > 0:
            ann[: p.shape[0] // 2, : p.shape[1] // 3] = 7 * i
            ann[-5:, :] = 0
        Image.fromarray(ann).save(root / "annotations" / f"im{i}.png")
        truth.append(np.where(ann == 0, 255, ann.astype(np.int64) - 1))
    r = ev.evaluate(SEG, str(root), "both", str(weights), keep_predictions=True, workers=2)
    want = _independent_miou(preds, truth, 150)
    assert 0.0 < want < 1.0
    assert r["frameworks"]["torch"]["miou"] == pytest.approx(want, abs=1e-12)
    got_paddle = _independent_miou(r["predictions"]["paddle"], truth, 150)
    assert r["frameworks"]["paddle"]["miou"] == pytest.approx(got_paddle, abs=1e-12)
    assert r["agreement_pixels"] >= 0.999 and abs(got_paddle - want) < 1e-2
    assert "reduce_zero_label" in r["protocol"] and "multiple of 32" in r["protocol"]
    # labels equal to the predictions: every present class exact
    Image.fromarray((preds[0] + 1).astype(np.uint8)).save(root / "annotations" / "im0.png")
    only = ev.evaluate(SEG, str(root), "torch", str(weights), limit=1)
    assert only["samples"] == 1 and only["frameworks"]["torch"]["miou"] == 1.0
    assert os.path.isdir(root)


# ---------------------------------------------------------------------------------- figures into the card
def _section(card: str) -> str:
    start = card.index("## Measured by porthub")
    return card[start:card.index("\n## ", start + 1)]


def test_write_card_records_the_measured_figures_next_to_the_authors_only_for_official_weights(
        cls_set: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses
    import datetime
    import hashlib

    from porthub.hub import publish

    monkeypatch.setenv("PORTHUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PORTHUB_OFFLINE", "1")
    repo = tmp_path / "home" / "models" / "porthub" / CLS
    spec, variant = resolve(CLS)
    authors = float(variant.meta["top1"])
    # nothing to write into yet: one line, no model built
    assert main(["evaluate", CLS, "--data", str(cls_set.flat), "--write-card"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no local hub repository porthub/seaformer_tiny" in err[0]

    # the user's own checkpoint: measured figures, never the authors' as its own
    publish.push(CLS, str(cls_set.weights), dtypes=("float32",))
    assert json.loads((repo / "config.json").read_text())["provenance"]["kind"] == "user"
    weights_inode = (repo / "model.safetensors").stat().st_ino
    assert main(["evaluate", CLS, "--data", str(cls_set.flat), "--write-card", "--json", "--workers", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["card"] == str(repo / "README.md") and out["frameworks"]["paddle"]["top1"] == 0.5
    config = json.loads((repo / "config.json").read_text())
    [m] = config["measured"]
    assert m["frameworks"] == {"torch": {"top1": 0.5, "top5": 0.75}, "paddle": {"top1": 0.5, "top5": 0.75}}
    assert m["samples"] == N_IMAGES and m["agreement_top1"] == 1.0 and m["data"] == "flat"
    assert m["date"] == datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert "centre crop 224x224" in m["preprocessing"] and m["by"] == "porthub evaluate"
    assert m["source_sha256"] == hashlib.sha256(cls_set.weights.read_bytes()).hexdigest()
    card = (repo / "README.md").read_text()
    section = _section(card)
    assert "| torch | 50.00 | 75.00 |" in section and "| paddle | 50.00 | 75.00 |" in section
    assert f"{N_IMAGES} images of `flat`" in section and m["date"] in section and "bicubic" in section
    assert "authors (reported)" not in section and "not this checkpoint's" in section
    assert "model-index" not in card
    # the card's own sha256 in config.json follows it; the weights were linked, not rewritten
    assert config["files"]["README.md"]["sha256"] == hashlib.sha256(card.encode()).hexdigest()
    assert (repo / "model.safetensors").stat().st_ino == weights_inode
    from porthub.hub.local import fetch_folder

    fetch_folder(str(repo), ("torch", "paddle"), "test")  # every file still matches config.json
    assert [p.name for p in (tmp_path / "home" / ".staging").iterdir()] == []

    # another file's figures are refused before any image is read; the card is unchanged
    other = tmp_path / "other.pth"
    _weights(CLS, other, seed=4)
    assert main(["evaluate", CLS, "--data", str(cls_set.flat), "--weights", str(other), "--write-card"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the checkpoint porthub/seaformer_tiny was built from" in err[0]
    assert (repo / "README.md").read_text() == card

    # the official weights (their sha256 is the catalogue's): the authors' figure stands beside porthub's
    release = spec.sources[variant.name]
    monkeypatch.setitem(spec.sources, variant.name, dataclasses.replace(release, sha256=m["source_sha256"]))
    publish.push(CLS, str(cls_set.weights), dtypes=("float32",))
    assert json.loads((repo / "config.json").read_text())["provenance"]["kind"] == "official"
    assert main(["evaluate", CLS, "--data", str(cls_set.folders), "--weights", str(cls_set.weights), "--write-card",
                 "--limit", "6", "--framework", "torch"]) == 0
    assert "labelled as measured by porthub" in capsys.readouterr().out
    card = (repo / "README.md").read_text()
    section = _section(card)
    assert f"| authors (reported) | {authors} | - |" in section and "| torch | " in section
    assert "porthub's own measurement is below" in card and "model-index" in card
    [m] = json.loads((repo / "config.json").read_text())["measured"]
    assert m["samples"] == 6 and set(m["frameworks"]) == {"torch"} and m["data"] == "folders"
