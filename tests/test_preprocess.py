"""Evaluation preprocessing: one numpy/Pillow implementation whose array both frameworks receive
unchanged, with torchvision's resize/crop geometry and the family's mean/std."""

from __future__ import annotations

import numpy as np
import pytest

from porthub.preprocess import PreprocessError, Preprocessing, load_input, preprocess_image, recipe_for, to_framework
from porthub.registry import get_spec

Image = pytest.importorskip("PIL.Image")

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _photo(width: int = 300, height: int = 200, seed: int = 0) -> "Image.Image":
    rng = np.random.default_rng(seed)
    # smooth gradients plus noise: a resize filter changes it, so geometry mistakes show
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8), "RGB")


def test_both_frameworks_receive_the_identical_array(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("paddle")
    path = tmp_path / "photo.png"
    _photo().save(path)
    recipe = recipe_for(get_spec("shunted").preprocessing)
    x = load_input(str(path), recipe)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    for dtype in ("float32", "float64"):
        via_torch = to_framework(x, "torch", dtype).numpy()
        via_paddle = to_framework(x, "paddle", dtype).numpy()
        assert via_torch.dtype == via_paddle.dtype == np.dtype(dtype)
        assert np.array_equal(via_torch, via_paddle) and np.array_equal(via_torch, x.astype(dtype))
    # a second read of the same file is bit-identical (nothing depends on state or threads)
    assert np.array_equal(load_input(str(path), recipe), x)


def test_torchvision_geometry_shorter_side_then_centre_crop():
    image = _photo(300, 200)
    recipe = Preprocessing(input_size=(224, 224), resize=256, interpolation="bicubic")
    got = preprocess_image(image, recipe)
    # Resize(256): 300x200 -> 384x256 (long side int(256 * 300 / 200)); CenterCrop(224): left 80, top 16
    expected = (
        np.asarray(image.resize((384, 256), Image.Resampling.BICUBIC).crop((80, 16, 304, 240)), dtype=np.float32)
        / 255.0
    )
    expected = ((expected - MEAN) / STD).transpose(2, 0, 1)[None]
    assert np.array_equal(got, expected)
    # portrait images crop the long side the same way
    tall = preprocess_image(_photo(200, 300), recipe)
    assert tall.shape == (1, 3, 224, 224)


def test_a_flat_colour_normalises_to_the_exact_constant():
    image = Image.new("RGB", (250, 260), (200, 100, 50))
    got = preprocess_image(image, Preprocessing())
    want = (np.array([200, 100, 50], dtype=np.float32) / np.float32(255.0) - MEAN) / STD
    for c in range(3):
        assert np.all(got[0, c] == want[c])


def test_grey_and_alpha_images_become_rgb(tmp_path):
    grey, rgba = tmp_path / "g.png", tmp_path / "a.png"
    Image.new("L", (224, 224), 128).save(grey)
    Image.new("RGBA", (224, 224), (128, 128, 128, 10)).save(rgba)
    recipe = Preprocessing(resize=224)
    a, b = load_input(str(grey), recipe), load_input(str(rgba), recipe)
    assert a.shape == b.shape == (1, 3, 224, 224) and np.array_equal(a, b)


def test_recipes_from_the_specs():
    shunted = recipe_for(get_spec("shunted").preprocessing)
    assert (shunted.input_size, shunted.resize, shunted.interpolation) == ((224, 224), 256, "bicubic")
    # crop fraction alone: timm's floor(224 / 0.875)
    assert recipe_for({"crop_fraction": 0.9}).resize == 248
    assert recipe_for({}) == Preprocessing()
    # a family with one recipe per task, mean/std in pixel units (mmseg) scaled to 0..1
    nested = {
        "classification": {"resize": 256},
        "segmentation": {
            "interpolation": "bilinear",
            "mean": (123.675, 116.28, 103.53),
            "std": (58.395, 57.12, 57.375),
        },
    }
    seg = recipe_for(nested, "segmentation", (512, 512))
    assert seg.resize is None and seg.input_size == (512, 512) and seg.interpolation == "bilinear"
    assert np.allclose(seg.mean, MEAN, atol=1e-6) and np.allclose(seg.std, STD, atol=1e-3)
    assert recipe_for(nested, "classification").resize == 256


def test_whole_image_resize_without_crop():
    got = preprocess_image(
        _photo(640, 480), Preprocessing(input_size=(512, 512), resize=None, interpolation="bilinear")
    )
    assert got.shape == (1, 3, 512, 512)


def test_npy_inputs_and_bad_inputs(tmp_path):
    recipe = Preprocessing()
    arr = np.random.default_rng(0).standard_normal((3, 64, 48)).astype(np.float32)
    np.save(tmp_path / "x.npy", arr)
    got = load_input(str(tmp_path / "x.npy"), recipe)
    assert got.shape == (1, 3, 64, 48) and np.array_equal(got[0], arr)
    np.save(tmp_path / "bad.npy", np.zeros((4, 5)))
    with pytest.raises(PreprocessError, match=r"\[3, H, W\]"):
        load_input(str(tmp_path / "bad.npy"), recipe)
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(PreprocessError, match="not an image"):
        load_input(str(tmp_path / "notes.jpg"), recipe)
    with pytest.raises(FileNotFoundError, match="no such input"):
        load_input(str(tmp_path / "missing.jpg"), recipe)
    with pytest.raises(PreprocessError, match="interpolation"):
        Preprocessing(interpolation="cubic-ish")


def test_cli_bad_input_is_one_line_and_non_zero(tmp_path, capsys):
    from porthub.cli import main

    (tmp_path / "notes.jpg").write_text("not an image")
    assert main(["verify", "shunted_t", "--input", str(tmp_path / "notes.jpg")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("porthub: error:") and "not an image" in err[0]
    assert main(["verify", "--reference", "x.json", "--input", "y.jpg"]) == 1
    assert "go with MODEL" in capsys.readouterr().err
