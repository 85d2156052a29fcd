"""Predictions on images with any backend: the family's evaluation preprocessing (:mod:`porthub.preprocess`,
numpy and Pillow, the same array for every backend), then the model, then labels and scores
(classification) or a mask written as a palette PNG of the image's size (segmentation).

The model is a registered name, run by the dynamic model of ``backend`` "torch" or "paddle" (weights
from a file, the published ones, or seeded random ones, which are said to be random), or a folder
written by ``porthub export``, run by its own runtime (ONNX Runtime, Paddle Inference, ``torch.jit``)
through :func:`porthub.export.load_exported`. Every input is checked before any model is built.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InputError, MissingFileError, OutputExistsError, PreprocessError
from .spec import PADDLE, TORCH

__all__ = ["BACKENDS", "EXPORT_BACKENDS", "Prediction", "PredictResult", "predict", "palette", "mask_image"]

#: the backends of a dynamic model (a registered name)
DYNAMIC_BACKENDS = (TORCH, PADDLE)
#: the backend that runs each export format (``export.json``'s "format")
EXPORT_BACKENDS = {"onnx": "onnxruntime", "paddle-inference": "paddle-inference", "torchscript": "torchscript"}
BACKENDS = (*DYNAMIC_BACKENDS, "paddle-inference", "onnxruntime", "torchscript")
#: images per forward of a model that takes any batch size
_BATCH = 8


@dataclass
class Prediction:
    """One image's result: ``top`` (index, label, probability) best first, for a classifier; ``mask`` the
    PNG written for a segmentation model (its pixel values are the class indices)."""

    image: str
    size: tuple[int, int]  # (width, height) of the image as read
    top: list[tuple[int, str, float]] = field(default_factory=list)
    mask: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"image": self.image, "width": self.size[0], "height": self.size[1]}
        if self.mask is not None:
            out["mask"] = self.mask
        else:
            out["top"] = [{"index": i, "label": label, "prob": p} for i, label, p in self.top]
        return out


@dataclass
class PredictResult:
    model: str
    task: str
    backend: str
    weights: str
    device: str
    predictions: list[Prediction]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True, "model": self.model, "task": self.task, "backend": self.backend, "weights": self.weights,
                "device": self.device, "notes": list(self.notes),
                "predictions": [p.as_dict() for p in self.predictions]}


@dataclass
class _Source:
    """What to run: the variant, the input size, and how to get the runner (built only after every check)."""

    spec: Any
    variant: Any
    backend: str
    input_size: tuple[int, int]
    any_batch: bool
    weights: str
    make: Callable[[], Callable[[np.ndarray], Any]]
    notes: list[str]


def _read_export_json(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, "export.json")
    try:
        with open(path, encoding="utf-8") as fh:
            info = json.load(fh)
    except FileNotFoundError:
        raise MissingFileError(f"{folder} is a folder but not an export (no export.json); give a registered "
                               "model name or a folder written by porthub export") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc})") from None
    if (not isinstance(info, dict) or not isinstance(info.get("model"), str)
            or info.get("format") not in EXPORT_BACKENDS):
        raise InputError(f"{path} does not describe a porthub export (needs 'model' and a 'format' of "
                         f"{', '.join(EXPORT_BACKENDS)})")
    return info


def _exported_source(folder: str, backend: str | None, weights: str | None, pretrained: bool,
                     device: str) -> _Source:
    from .registry import resolve

    info = _read_export_json(folder)
    fmt = info["format"]
    wanted = EXPORT_BACKENDS[fmt]
    if backend is not None and backend != wanted:
        raise InputError(f"{folder} holds a {fmt} export, which runs with backend {wanted}, not {backend}")
    if weights or pretrained:
        raise InputError(f"{folder} is an export and carries its own weights; weights and pretrained go with a "
                         "registered model name")
    spec, variant = resolve(info["model"])
    size = info.get("input_size") or variant.input_size
    try:
        input_size = (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise InputError(f"{folder}/export.json: input_size must be [height, width], not {size!r}") from None

    def make() -> Callable[[np.ndarray], Any]:
        from .export import load_exported

        return load_exported(folder, device=device)

    return _Source(spec, variant, wanted, input_size, bool(info.get("dynamic_batch")),
                   str(info.get("weights") or f"exported in {folder}"), make, [])


def _dynamic_source(name: str, backend: str | None, weights: str | None, pretrained: bool, device: str) -> _Source:
    from .registry import resolve

    backend = backend or TORCH
    spec, variant = resolve(name)
    if backend not in DYNAMIC_BACKENDS:
        fmt = next(f for f, b in EXPORT_BACKENDS.items() if b == backend)
        raise InputError(f"backend {backend} runs an exported folder: run porthub export {variant.name} --format "
                         f"{fmt} first and give its folder instead of {name!r}")
    if weights and pretrained:
        raise InputError("give weights or pretrained, not both")
    if weights and not os.path.isfile(weights):
        raise MissingFileError(f"no such weights file: {weights}")
    from .runtime import resolve_device

    where = resolve_device(device, backend)  # a GPU this framework cannot use: refused before any work
    notes = []
    if not (weights or pretrained):
        notes.append(f"{variant.name}: seeded random weights (an untrained model: its labels mean nothing); "
                     "give weights or pretrained for real predictions")

    def make() -> Callable[[np.ndarray], Any]:
        from .pairs import pair_state
        from .runtime import build_model, load_state, run_model

        if pretrained:
            from .hub import pretrained_state

            state = pretrained_state(variant.name, backend)
        else:
            state = pair_state(variant.name, weights)
        model = build_model(spec, variant.model(), backend, name=variant.name, device=where)
        load_state(model, state, spec, backend, variant.name)
        del state
        return lambda x: run_model(model, x, backend)[0]

    label = weights or ("pretrained" if pretrained else "seeded")
    return _Source(spec, variant, backend, tuple(variant.input_size), True, label, make, notes)


def palette(num_classes: int = 256) -> list[int]:
    """A fixed colour per class (PASCAL VOC's bit-interleaved palette): a flat RGB list for Pillow's
    ``putpalette``; class 0 is black."""
    colours = []
    for index in range(256):
        r = g = b = 0
        code = index
        for shift in range(7, -1, -1):
            r |= ((code >> 0) & 1) << shift
            g |= ((code >> 1) & 1) << shift
            b |= ((code >> 2) & 1) << shift
            code >>= 3
        colours.extend((r, g, b))
    return colours[: 3 * max(1, min(num_classes, 256))] + [0] * (3 * (256 - max(1, min(num_classes, 256))))


def mask_image(logits: np.ndarray, width: int, height: int) -> np.ndarray:
    """The class of every pixel of a (width x height) image from one image's logits [C, h, w]: the logits
    resized bilinearly (half-pixel centres, as mmseg's evaluation) to the image size, then argmax; done a
    few classes at a time, so a large photo never holds all classes' full-size logits at once."""
    from .evaluate import bilinear_resize

    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 3:
        raise PreprocessError(f"a segmentation output must be [classes, h, w] per image, not {list(logits.shape)}")
    best = np.full((height, width), -np.inf, dtype=np.float32)
    label = np.zeros((height, width), dtype=np.int64)
    step = 16
    for start in range(0, logits.shape[0], step):
        part = bilinear_resize(logits[start:start + step], height, width)
        top = part.argmax(axis=0)
        value = np.take_along_axis(part, top[None], axis=0)[0]
        better = value > best  # strict: a tie keeps the lower class, as one argmax over all classes does
        best[better] = value[better]
        label[better] = top[better] + start
    return label


def _mask_path(out: str, image: str) -> str:
    return os.path.join(out, os.path.splitext(os.path.basename(image))[0] + "_mask.png")


def _write_mask(path: str, label: np.ndarray, num_classes: int, force: bool) -> None:
    from PIL import Image

    from .io.atomic import atomic_write

    if label.max(initial=0) > 255:
        raise PreprocessError(f"{num_classes} classes do not fit a palette PNG (at most 256)")
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette(palette(num_classes))
    with atomic_write(path, overwrite=force) as fh:
        img.save(fh, format="PNG")


def _readable(path: str) -> None:
    """Refuse a file Pillow cannot open, from its header alone (before any model is built)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            pass
    except (UnidentifiedImageError, OSError) as exc:
        raise PreprocessError(f"{path} is not an image Pillow can read ({exc})") from None


def _final(out: Any) -> np.ndarray:
    return np.asarray(out[-1] if isinstance(out, (list, tuple)) else out)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _labels(num: int) -> list[str]:
    from .report import imagenet_classes

    return imagenet_classes() if num == 1000 else [f"class {i}" for i in range(num)]


def predict(model: str, images: Sequence[str], *, backend: str | None = None, weights: str | None = None,
            pretrained: bool = False, topk: int = 5, device: str = "cpu", out: str | None = None,
            force: bool = False) -> PredictResult:
    """Predict every image in ``images`` with ``model`` (a registered name, or a folder written by
    ``porthub export``; its backend is then the export's). Classification: the ``topk`` classes with
    their softmax probabilities. Segmentation: ``OUT/<image name>_mask.png`` (``out`` default: the
    current folder), the class index of every pixel at the image's size; an existing file is kept
    (:class:`~porthub.errors.OutputExistsError`) unless ``force``."""
    from .preprocess import load_image, preprocess_image, recipe_for

    if backend is not None and backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if not images:
        raise InputError("give at least one image")
    if topk < 1:
        raise InputError(f"topk must be at least 1, not {topk}")
    for image in images:
        if not os.path.isfile(image):
            raise MissingFileError(f"no such image: {image}")
    if os.path.isdir(model):
        source = _exported_source(model, backend, weights, pretrained, device)
    else:
        source = _dynamic_source(model, backend, weights, pretrained, device)
    variant = source.variant
    segmentation = variant.task != "classification"
    targets: dict[str, str] = {}
    if segmentation:
        folder = out or os.curdir
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise InputError(f"the output folder {folder} is a file")
        for image in images:
            path = _mask_path(folder, image)
            if path in targets.values():
                raise InputError(f"two images would write {path}; give them different names")
            if os.path.exists(path) and not force:
                raise OutputExistsError(f"{path} exists; nothing was written: give another output folder, or force "
                                        "to overwrite it")
            targets[image] = path
    elif out is not None:
        raise InputError(f"{variant.name} is a classifier: an output folder is for segmentation masks")
    recipe = recipe_for(source.spec.preprocessing, variant.task, source.input_size)
    for image in images:
        _readable(image)
    run = source.make()
    batch = _BATCH if source.any_batch else 1
    predictions: list[Prediction] = []
    for start in range(0, len(images), batch):
        chunk = [load_image(image) for image in images[start:start + batch]]
        x = np.concatenate([preprocess_image(picture, recipe) for picture in chunk])
        logits = _final(run(x))
        for offset, picture in enumerate(chunk):
            image = images[start + offset]
            width, height = picture.size
            result = Prediction(image, (width, height))
            if segmentation:
                label = mask_image(logits[offset], width, height)
                _write_mask(targets[image], label, logits.shape[1], force)
                result.mask = targets[image]
            else:
                probs = _softmax(logits[offset:offset + 1])[0]
                names = _labels(probs.shape[0])
                order = np.argsort(-logits[offset], kind="stable")[: min(topk, probs.shape[0])]
                result.top = [(int(i), names[i], float(probs[i])) for i in order]
            predictions.append(result)
    return PredictResult(variant.name, variant.task, source.backend, source.weights, device, predictions,
                         source.notes)
