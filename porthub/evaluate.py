"""Measured accuracy of a registered model on a validation set, in PyTorch, Paddle or both.

Classification: ImageNet-style folders, either one sub-folder per class (WordNet synset ids give the
ImageNet-1k index of ``porthub/data/imagenet_classes.txt``; other names are sorted, as torchvision's
``ImageFolder`` does) or a flat folder with a label file (``val.txt`` or ``labels.txt``: lines
``FILENAME LABEL``, the label an index or a synset id). Every image goes through the family's
evaluation preprocessing (:mod:`porthub.preprocess`, numpy and Pillow), so both frameworks get the
same array; the result is top-1/top-5 per framework and the share of images on which the frameworks'
top-1 classes agree.

Segmentation (the SeaFormer segmentation variants): an ADE20K-style folder ``images/`` and
``annotations/`` (``images/validation`` and ``annotations/validation`` when present), annotations as
PNG label maps matched by file stem. The official mmseg 0.x single-scale protocol of the SeaFormer
configs, as implemented here:

* ADE20K: ``Resize(img_scale=(2048, 512), keep_ratio=True)`` (scale = min(2048/long, 512/short), sizes
  ``int(side * scale + 0.5)``), then ``ResizeToMultiple(32)`` (each side rounded up to a multiple of
  32), both bilinear; labels with ``reduce_zero_label`` (0 -> ignored, k -> k-1);
* Cityscapes: ``Resize(img_scale=(1024, 512), keep_ratio=True)``, labels used as they are (train ids);
* normalisation with mean/std on the 0-255 scale (RGB), ``test_cfg mode='whole'`` (one forward of the
  whole image, batch 1: images differ in size), logits resized bilinearly (align_corners=False) back to
  the original image size, argmax;
* mIoU as mmseg computes it: intersections and unions summed over the whole set per class (ignore
  index 255), IoU per class, mean over the classes that occur (union > 0); also aAcc.

mmcv resizes with OpenCV (``cv2.INTER_LINEAR``, fixed-point arithmetic on uint8). porthub does not
depend on OpenCV: the same half-pixel bilinear sampling is computed in floating point and rounded to
uint8, which can differ from OpenCV by one grey level on some pixels.

Decoding and preprocessing run in a thread pool (Pillow and numpy release the GIL); the models run
batch by batch in the calling thread. The progress bar (tqdm) goes to stderr and only on a terminal.

The figures can be written into a local hub repository (:func:`card_target`, then :func:`write_card`):
``config.json`` keeps them under ``measured`` and the card shows them, labelled as measured by porthub
with the date, the images and the preprocessing, next to the authors' figure only when the repository
holds the official weights. Only the repository's own weights (or the file it was built from) are
measured into it, and the repository is replaced in one rename, never left half-written.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .errors import InputError, PorthubError

__all__ = ["DatasetError", "Sample", "find_classification_data", "find_segmentation_data", "evaluate",
           "check_frameworks", "seg_resize_rule", "rescale_size", "bilinear_resize", "mean_iou", "IGNORE_INDEX",
           "IMAGE_SUFFIXES", "CardTarget", "card_target", "measurement", "write_card"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff", ".jpe")
LABEL_FILES = ("val.txt", "labels.txt")
IGNORE_INDEX = 255
_WNID = re.compile(r"n\d{8}\Z")
_FRAMEWORKS = ("torch", "paddle")


class DatasetError(PorthubError, ValueError):
    """A validation folder that cannot be evaluated (no images, a malformed label file, labels out of range)."""


@dataclass(frozen=True)
class Sample:
    """One validation item: an image and its class index (classification) or label-map path (segmentation)."""

    image: str
    label: int = -1
    annotation: str | None = None


def check_frameworks(framework: str) -> tuple[str, ...]:
    if framework == "both":
        return _FRAMEWORKS
    if framework not in _FRAMEWORKS:
        raise InputError(f"framework must be torch, paddle or both, not {framework!r}")
    return (framework,)


# ----------------------------------------------------------------------------------------------- data sets
def _imagenet_wnids() -> list[str]:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "imagenet_classes.txt")
    with open(path, encoding="utf-8") as fh:
        return [line.split("\t", 1)[0] for line in fh if line.strip() and not line.startswith("#")]


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _check_root(root: str) -> None:
    if not os.path.exists(root):
        raise FileNotFoundError(f"no such data folder: {root}")
    if not os.path.isdir(root):
        raise DatasetError(f"{root} is not a folder; give a validation folder (one sub-folder per class, "
                           "or images with a val.txt/labels.txt label file)")


def _label_of(text: str, where: str, wnids: Mapping[str, int], num_classes: int) -> int:
    if text.lstrip("-").isdigit():
        label = int(text)
    elif text in wnids:
        label = wnids[text]
    else:
        raise DatasetError(f"{where}: label {text!r} is neither a class index nor an ImageNet synset id")
    if not 0 <= label < num_classes:
        raise DatasetError(f"{where}: label {label} is outside the model's {num_classes} classes")
    return label


def _from_label_file(root: str, path: str, num_classes: int) -> list[Sample]:
    wnids = {w: i for i, w in enumerate(_imagenet_wnids())} if num_classes == 1000 else {}
    samples = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            where = f"{os.path.basename(path)} line {number}"
            if len(parts) != 2:
                raise DatasetError(f"{where}: expected 'FILENAME LABEL', got {line.strip()!r}")
            image = os.path.join(root, parts[0])
            if not os.path.isfile(image):
                raise DatasetError(f"{where}: no image {parts[0]} in {root}")
            samples.append(Sample(image, _label_of(parts[1], where, wnids, num_classes)))
    return samples


def find_classification_data(root: str, num_classes: int = 1000, limit: int | None = None) -> tuple[list[Sample], str]:
    """The samples of a classification validation folder (sorted, at most ``limit``) and a description
    of the layout found."""
    _check_root(root)
    for name in LABEL_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            samples = _from_label_file(root, path, num_classes)
            layout = f"flat folder with label file {name}"
            break
    else:
        classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
        if not classes:
            raise DatasetError(f"{root} has neither class sub-folders nor a label file ({' or '.join(LABEL_FILES)})")
        if num_classes == 1000 and all(_WNID.match(c) for c in classes):
            order = {w: i for i, w in enumerate(_imagenet_wnids())}
            unknown = [c for c in classes if c not in order]
            if unknown:
                raise DatasetError(f"{root}: {unknown[0]} is not one of ImageNet-1k's synsets")
            index = {c: order[c] for c in classes}
            layout = f"{len(classes)} synset folders (ImageNet-1k class indices)"
        else:
            if len(classes) > num_classes:
                raise DatasetError(f"{root} has {len(classes)} class folders but the model has {num_classes} classes")
            index = {c: i for i, c in enumerate(classes)}
            layout = f"{len(classes)} class folders (sorted names -> indices 0..{len(classes) - 1})"
        samples = []
        for c in classes:
            folder = os.path.join(root, c)
            samples += [Sample(os.path.join(folder, f), index[c]) for f in sorted(os.listdir(folder)) if _is_image(f)]
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise DatasetError(f"no images found in {root} ({layout}); image files end in "
                           f"{', '.join(IMAGE_SUFFIXES[:4])}, ...")
    return samples, layout


def find_segmentation_data(root: str, limit: int | None = None) -> tuple[list[Sample], str]:
    """The image/annotation pairs of an ADE20K-style folder (``images/`` + ``annotations/``, or their
    ``validation`` sub-folders), matched by file stem."""
    _check_root(root)
    images, annotations = os.path.join(root, "images"), os.path.join(root, "annotations")
    if not (os.path.isdir(images) and os.path.isdir(annotations)):
        raise DatasetError(f"{root} needs images/ and annotations/ folders (ADE20K layout) to evaluate a "
                           "segmentation model")
    if os.path.isdir(os.path.join(images, "validation")) and os.path.isdir(os.path.join(annotations, "validation")):
        images, annotations = os.path.join(images, "validation"), os.path.join(annotations, "validation")
    labels = {os.path.splitext(f)[0]: f for f in os.listdir(annotations) if f.lower().endswith(".png")}
    samples = []
    for name in sorted(f for f in os.listdir(images) if _is_image(f)):
        stem = os.path.splitext(name)[0]
        if stem not in labels:
            raise DatasetError(f"{name} in {images} has no annotation {stem}.png in {annotations}")
        samples.append(Sample(os.path.join(images, name), annotation=os.path.join(annotations, labels[stem])))
    if limit is not None:
        samples = samples[:limit]
    if not samples:
        raise DatasetError(f"no images found in {images}")
    return samples, f"ADE20K-style images/ + annotations/ ({images})"


# ------------------------------------------------------------------------------- segmentation preprocessing
@dataclass(frozen=True)
class SegRule:
    """mmseg's test-time resize of one dataset: keep-ratio rescale into ``scale`` (long, short), then
    optionally each side up to a multiple of ``divisor``; ``reduce_zero_label`` for the labels."""

    dataset: str
    scale: tuple[int, int]
    divisor: int | None
    reduce_zero_label: bool


def seg_resize_rule(dataset: str) -> SegRule:
    """The SeaFormer configs' test pipeline for a variant's dataset (local_configs/_base_/datasets/ade20k.py,
    seaformer_*_1024x512_160k_1x8city.py)."""
    key = dataset.lower().replace("-", "").replace("_", "")
    if key.startswith("ade"):
        return SegRule("ADE20K", (2048, 512), 32, True)
    if key.startswith("cityscapes"):
        return SegRule("Cityscapes", (1024, 512), None, False)
    raise DatasetError(f"no official segmentation protocol known for dataset {dataset!r}")


def rescale_size(width: int, height: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale_size``: the largest keep-ratio size with long side <= scale[0] and short <= scale[1]."""
    factor = min(max(scale) / max(width, height), min(scale) / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # half-pixel centres, clamped at the borders: OpenCV INTER_LINEAR and torch align_corners=False
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, src - lo


def bilinear_resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (no antialiasing) of the last two axes of a float array, or of an HxWxC array when
    it is uint8 (rounded back to uint8)."""
    image = arr.dtype == np.uint8
    data = np.moveaxis(arr.astype(np.float64 if image else arr.dtype), -1, 0) if image else arr
    h_in, w_in = data.shape[-2:]
    if (h_in, w_in) != (height, width):
        lo, hi, t = _axis_weights(h_in, height)
        t = t.astype(data.dtype)[:, None]
        data = data[..., lo, :] * (1 - t) + data[..., hi, :] * t
        lo, hi, t = _axis_weights(w_in, width)
        t = t.astype(data.dtype)
        data = data[..., lo] * (1 - t) + data[..., hi] * t
    if image:
        return np.clip(np.rint(np.moveaxis(data, 0, -1)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(data)


def _seg_input(path: str, rule: SegRule, mean: Sequence[float],
               std: Sequence[float]) -> tuple[np.ndarray, tuple[int, int]]:
    from .preprocess import load_image

    image = load_image(path)
    width, height = image.size
    rgb = np.asarray(image, dtype=np.uint8)
    w, h = rescale_size(width, height, rule.scale)
    rgb = bilinear_resize(rgb, h, w)
    if rule.divisor:
        d = rule.divisor
        rgb = bilinear_resize(rgb, int(math.ceil(h / d)) * d, int(math.ceil(w / d)) * d)
    x = (rgb.astype(np.float32) - np.asarray(mean, np.float32) * 255.0) / (np.asarray(std, np.float32) * 255.0)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), (height, width)


def _seg_label(path: str, rule: SegRule, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        label = np.asarray(img)
    if label.ndim != 2:
        raise DatasetError(f"{path} is not a single-channel label map (shape {label.shape})")
    if label.shape != size:
        raise DatasetError(f"{path} is {label.shape[1]}x{label.shape[0]}, its image {size[1]}x{size[0]}")
    label = label.astype(np.int64)
    if rule.reduce_zero_label:
        # mmseg: 0 (other) -> ignored, class k -> k - 1
        label = np.where(label == 0, IGNORE_INDEX, label - 1)
        label[label == IGNORE_INDEX - 1] = IGNORE_INDEX
    return label


def mean_iou(intersect: np.ndarray, union: np.ndarray, label_area: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(mIoU, aAcc, per-class IoU) from per-class totals, as mmseg: classes with no union are NaN and
    left out of the mean."""
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersect / union
    miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
    aacc = float(intersect.sum() / label_area.sum()) if label_area.sum() else float("nan")
    return miou, aacc, iou


def _areas(pred: np.ndarray, label: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = label != IGNORE_INDEX
    pred, label = pred[keep], label[keep]
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise DatasetError(f"label value {int(label.max())} is outside the model's {num_classes} classes "
                           f"(and is not the ignore index {IGNORE_INDEX})")
    inter = np.bincount(pred[pred == label], minlength=num_classes)[:num_classes]
    area_pred = np.bincount(pred, minlength=num_classes)[:num_classes]
    area_label = np.bincount(label, minlength=num_classes)[:num_classes]
    return inter, area_pred + area_label - inter, area_label


# ---------------------------------------------------------------------------------------------- the models
def _runtime() -> Any:
    from . import runtime

    return runtime


def _state(name: str, weights: str | None) -> Any:
    """The canonical state: read from ``weights`` (any layout porthub reads), else the published weights."""
    if weights:
        from .pairs import pair_state

        return pair_state(name, weights)
    from .hub.resolve import pretrained_state

    return pretrained_state(name, "torch")


def _progress(total: int, desc: str, show: bool | None) -> Any:
    show = sys.stderr.isatty() if show is None else show
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, disable=not show, leave=False)


def _prefetched(pool: ThreadPoolExecutor, jobs: Sequence[Any], load: Callable[[Any], Any], batch: int,
                ahead: int = 2) -> Iterator[list[Any]]:
    """Batches of ``load(job)`` in order, decoded by the pool up to ``ahead`` batches before they are used."""
    pending: deque[list[Future]] = deque()
    starts = iter(range(0, len(jobs), batch))
    for start in starts:
        pending.append([pool.submit(load, j) for j in jobs[start:start + batch]])
        if len(pending) > ahead:
            break
    while pending:
        yield [f.result() for f in pending.popleft()]
        nxt = next(starts, None)
        if nxt is not None:
            pending.append([pool.submit(load, j) for j in jobs[nxt:nxt + batch]])


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds


def _logits(out: Any) -> np.ndarray:
    return np.asarray(out[-1] if isinstance(out, (list, tuple)) else out)


def evaluate(name: str, data: str, framework: str = "both", weights: str | None = None, limit: int | None = None,
             batch_size: int = 32, workers: int | None = None, progress: bool | None = None,
             keep_predictions: bool = False) -> dict[str, Any]:
    """Evaluate a registered model on ``data`` in ``framework`` (torch, paddle or both).

    Classification returns ``{"model", "task", "samples", "layout", "frameworks": {fw: {"top1", "top5",
    "images_per_s"}}, "agreement_top1", "weights", "preprocessing"}`` (fractions in 0..1; agreement None
    with one framework). Segmentation returns ``frameworks: {fw: {"miou", "aacc", ...}}`` and
    ``agreement_pixels``. ``keep_predictions`` adds ``predictions`` (logits per framework for
    classification, label maps for segmentation). The data folder and framework are checked before any
    model is built."""
    from .registry import resolve

    frameworks = check_frameworks(framework)
    if limit is not None and limit < 1:
        raise InputError("limit must be a positive number of images")
    if batch_size < 1:
        raise InputError("batch size must be at least 1")
    workers = workers or min(8, os.cpu_count() or 1)
    if workers < 1:
        raise InputError("workers must be at least 1")
    spec, variant = resolve(name)
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"no such checkpoint: {weights}")
    if variant.task == "segmentation":
        samples, layout = find_segmentation_data(data, limit)
        rule = seg_resize_rule(str(variant.meta.get("dataset", "ADE20K")))
    else:
        samples, layout = find_classification_data(data, variant.num_classes, limit)
        rule = None
    runtime = _runtime()
    state = _state(variant.name, weights)
    models = {}
    for fw in frameworks:
        model = runtime.build_model(spec, variant.model(), fw, "float32", name=variant.name)
        runtime.load_state(model, state, spec, fw, variant.name)
        models[fw] = model
    del state
    common = {"model": variant.name, "task": variant.task, "samples": len(samples), "layout": layout,
              "weights": weights or "published (hub)"}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if rule is None:
            result = _classify(spec, variant, samples, models, pool, batch_size, progress, keep_predictions)
        else:
            result = _segment(spec, variant, samples, models, pool, rule, progress, keep_predictions)
    return {**common, **result}


def _classify(spec: Any, variant: Any, samples: Sequence[Sample], models: Mapping[str, Any], pool: ThreadPoolExecutor,
              batch: int, progress: bool | None, keep: bool) -> dict[str, Any]:
    from .preprocess import load_image, preprocess_image, recipe_for

    runtime = _runtime()
    recipe = recipe_for(spec.preprocessing, variant.task, variant.input_size)
    k = min(5, variant.num_classes)
    top1 = {fw: np.zeros(len(samples), dtype=np.int64) for fw in models}
    hits1 = dict.fromkeys(models, 0)
    hits5 = dict.fromkeys(models, 0)
    logits: dict[str, list[np.ndarray]] = {fw: [] for fw in models}
    timer = _Timer()
    bar = _progress(len(samples), f"evaluate {variant.name}", progress)
    done = 0
    started = time.perf_counter()

    def load(sample: Sample) -> np.ndarray:
        return preprocess_image(load_image(sample.image), recipe)[0]

    waited = time.perf_counter()
    for arrays in _prefetched(pool, samples, load, batch):
        timer.add("decode_wait", time.perf_counter() - waited)
        x = np.stack(arrays)
        labels = np.asarray([s.label for s in samples[done:done + len(arrays)]])
        for fw, model in models.items():
            t0 = time.perf_counter()
            out = _logits(runtime.run_model(model, x, fw, "float32")[0])
            timer.add(fw, time.perf_counter() - t0)
            # stable sort: equal logits rank by class index in both frameworks
            order = np.argsort(-out, axis=1, kind="stable")[:, :k]
            top1[fw][done:done + len(arrays)] = order[:, 0]
            hits1[fw] += int((order[:, 0] == labels).sum())
            hits5[fw] += int((order == labels[:, None]).any(axis=1).sum())
            if keep:
                logits[fw].append(out)
        done += len(arrays)
        if bar is not None:
            bar.update(len(arrays))
        waited = time.perf_counter()
    if bar is not None:
        bar.close()
    n = len(samples)
    per_fw = {fw: {"top1": hits1[fw] / n, "top5": hits5[fw] / n,
                   "images_per_s": n / timer.seconds[fw] if timer.seconds.get(fw) else None} for fw in models}
    agreement = float((top1["torch"] == top1["paddle"]).mean()) if len(models) == 2 else None
    result: dict[str, Any] = {
        "frameworks": per_fw, "agreement_top1": agreement, "top_k": k,
        "preprocessing": {"input_size": list(recipe.input_size), "resize": recipe.resize,
                          "interpolation": recipe.interpolation, "mean": list(recipe.mean), "std": list(recipe.std)},
        "seconds": {"total": time.perf_counter() - started, "waiting_for_decode": timer.seconds.get("decode_wait", 0.0),
                    **{fw: timer.seconds.get(fw, 0.0) for fw in models}},
    }
    if keep:
        result["predictions"] = {fw: np.concatenate(v) for fw, v in logits.items()}
    return result


def _segment(spec: Any, variant: Any, samples: Sequence[Sample], models: Mapping[str, Any], pool: ThreadPoolExecutor,
             rule: SegRule, progress: bool | None, keep: bool) -> dict[str, Any]:
    runtime = _runtime()
    recipe = dict(spec.preprocessing.get("segmentation", spec.preprocessing))
    mean = [m / 255.0 if max(recipe.get("mean", (1,))) > 1 else m for m in recipe.get("mean", (0.485, 0.456, 0.406))]
    std = [s / 255.0 if max(recipe.get("std", (1,))) > 1 else s for s in recipe.get("std", (0.229, 0.224, 0.225))]
    c = variant.num_classes
    totals = {fw: [np.zeros(c, np.int64) for _ in range(3)] for fw in models}
    agree = [0, 0]
    preds: dict[str, list[np.ndarray]] = {fw: [] for fw in models}
    timer = _Timer()
    bar = _progress(len(samples), f"evaluate {variant.name}", progress)
    started = time.perf_counter()

    def load(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        x, size = _seg_input(sample.image, rule, mean, std)
        return x, _seg_label(str(sample.annotation), rule, size)

    for (pair,) in _prefetched(pool, samples, load, 1, ahead=4):
        x, label = pair
        got = {}
        for fw, model in models.items():
            t0 = time.perf_counter()
            out = _logits(runtime.run_model(model, x, fw, "float32")[0])[0]
            timer.add(fw, time.perf_counter() - t0)
            # mmseg: logits resized (bilinear, align_corners=False) to the original image, then argmax
            pred = bilinear_resize(out, *label.shape).argmax(axis=0)
            got[fw] = pred
            for total, part in zip(totals[fw], _areas(pred, label, c)):
                total += part
            if keep:
                preds[fw].append(pred)
        if len(got) == 2:
            agree[0] += int((got["torch"] == got["paddle"]).sum())
            agree[1] += got["torch"].size
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    n = len(samples)
    per_fw = {}
    for fw in models:
        inter, union, area = totals[fw]
        miou, aacc, iou = mean_iou(inter.astype(np.float64), union.astype(np.float64), area.astype(np.float64))
        per_fw[fw] = {"miou": miou, "aacc": aacc, "classes_present": int(np.isfinite(iou).sum()),
                      "images_per_s": n / timer.seconds[fw] if timer.seconds.get(fw) else None}
    result: dict[str, Any] = {
        "frameworks": per_fw, "agreement_pixels": agree[0] / agree[1] if agree[1] else None,
        "protocol": (f"{rule.dataset} single scale, whole image: keep-ratio resize into {rule.scale}"
                     + (f", sides up to a multiple of {rule.divisor}" if rule.divisor else "")
                     + (", reduce_zero_label" if rule.reduce_zero_label else "") + f", ignore index {IGNORE_INDEX}"),
        "seconds": {"total": time.perf_counter() - started, **{fw: timer.seconds.get(fw, 0.0) for fw in models}},
    }
    if keep:
        result["predictions"] = preds
    return result



# ------------------------------------------------------------------------------ figures into a hub card
@dataclass(frozen=True)
class CardTarget:
    """The local hub repository measured figures go into, and the weights file that is evaluated."""

    repo_id: str
    folder: str
    weights: str
    weights_sha256: str
    source_sha256: str
    config_sha256: str


def card_target(name: str, weights: str | None = None, repo_id: str | None = None) -> CardTarget:
    """Where ``porthub evaluate --write-card`` writes: the local hub repository ``repo_id`` (default
    ``porthub/<variant>``) of ``name``. Without ``weights`` its own PyTorch file is evaluated (checked
    against config.json); a given file must be the checkpoint the repository was built from, so the
    figures written are the repository's own. Checked before any model is built."""
    from .hub import CONFIG_NAME, default_repo_id, local_repo_dir, read_config
    from .hub.repo import check_sha, sha256_file
    from .registry import resolve

    variant = resolve(name)[1]
    repo_id = repo_id or default_repo_id(variant.name)
    folder = local_repo_dir(repo_id)
    config_path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"no local hub repository {repo_id} ({folder}) to write the figures into; install "
                                "the official weights or publish the checkpoint there first")
    config = read_config(config_path)
    if config.get("variant") != variant.name:
        raise InputError(f"{repo_id} holds {config.get('variant')!r}, not {variant.name}: its card cannot take "
                         f"figures measured on {variant.name}")
    source_sha = str(config.get("source_checkpoint", {}).get("sha256", ""))
    if weights is None:
        name_in_repo = str(config["frameworks"]["torch"]["file"])
        weights = os.path.join(folder, name_in_repo)
        check_sha(weights, name_in_repo, config, f"local hub repository {repo_id}")
        sha = str(config["files"][name_in_repo]["sha256"])
    else:
        sha = sha256_file(weights)
        own = {source_sha, *(str(v.get("sha256", "")) for k, v in config.get("files", {}).items()
                             if k in ("model.safetensors", "model.paddle.safetensors", "model.pdparams"))}
        if sha not in own:
            raise InputError(f"{weights} (sha256 {sha[:16]}...) is not the checkpoint {repo_id} was built from "
                             f"({source_sha[:16]}...) nor one of its weight files: its figures would not be the "
                             "repository's; measure the repository's own weights, or publish this file first")
    return CardTarget(repo_id, folder, weights, sha, source_sha, sha256_file(config_path))


def _preprocessing_text(result: Mapping[str, Any]) -> str:
    if result.get("protocol"):
        return str(result["protocol"])
    pre = result.get("preprocessing") or {}
    h, w = pre.get("input_size", ("?", "?"))
    how = (f"resize the short side to {pre['resize']}, centre crop {h}x{w}" if pre.get("resize")
           else f"resize the whole image to {h}x{w}")
    mean = [round(float(m), 4) for m in pre.get("mean", ())]
    std = [round(float(x), 4) for x in pre.get("std", ())]
    return f"{how}, {pre.get('interpolation', '?')} interpolation, mean {mean}, std {std} (on the 0..1 scale)"


def measurement(result: Mapping[str, Any], data: str, weights_sha256: str, source_sha256: str = "") -> dict[str, Any]:
    """The record of one evaluation as config.json's ``measured`` keeps it (fractions in 0..1)."""
    import datetime

    from .version import __version__

    keep = ("top1", "top5", "miou", "aacc")
    return {
        "by": "porthub evaluate",
        "porthub_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        "data": os.path.basename(os.path.normpath(os.path.abspath(data))),
        "layout": result.get("layout"),
        "samples": result.get("samples"),
        "preprocessing": _preprocessing_text(result),
        "frameworks": {fw: {k: r[k] for k in keep if k in r} for fw, r in result.get("frameworks", {}).items()},
        **{k: result[k] for k in ("agreement_top1", "agreement_pixels") if result.get(k) is not None},
        "weights_sha256": weights_sha256,
        "source_sha256": source_sha256,
    }


def write_card(target: CardTarget, result: Mapping[str, Any], data: str) -> str:
    """Record ``result`` (from :func:`evaluate` on ``target.weights``) in the repository's config.json and
    card, replacing an earlier measurement on the same data folder; returns the card's path.

    The new repository is built beside the old one (weights hard-linked, not copied), then renamed over
    it in one step, so a reader or a kill sees the old repository or the new one. A repository changed
    since :func:`card_target` read it is left alone."""
    import json
    import shutil
    import tempfile

    from .hub import CONFIG_NAME, read_config
    from .hub.card import render_card
    from .hub.local import hub_home
    from .hub.publish import publish_local
    from .hub.repo import sha256_file
    from .io import atomic_write
    from .io.atomic import stale_temporaries, temporary_prefix
    from .registry import resolve

    config_path = os.path.join(target.folder, CONFIG_NAME)
    config = dict(read_config(config_path))
    spec, variant = resolve(str(config["variant"]))
    record = measurement(result, data, target.weights_sha256, target.source_sha256)
    earlier = [m for m in config.get("measured") or [] if m.get("data") != record["data"]]
    config["measured"] = [*earlier, record]
    staging = os.path.join(hub_home(), ".staging")
    os.makedirs(staging, exist_ok=True)
    slug = os.path.join(staging, target.repo_id.replace("/", "--"))
    for old in stale_temporaries(slug):
        shutil.rmtree(old, ignore_errors=True)
    folder = tempfile.mkdtemp(prefix=temporary_prefix(slug), suffix=".partial", dir=staging)
    try:
        for base, _dirs, names in os.walk(target.folder):
            rel = os.path.relpath(base, target.folder)
            os.makedirs(os.path.join(folder, rel), exist_ok=True)
            for n in names:
                if rel == "." and n in ("README.md", CONFIG_NAME):
                    continue
                src, dst = os.path.join(base, n), os.path.join(folder, rel, n)
                try:
                    os.link(src, dst)
                except OSError:  # a file system without hard links: copy
                    shutil.copy2(src, dst)
        with atomic_write(os.path.join(folder, "README.md")) as fh:
            fh.write(render_card(spec, variant, config, target.repo_id).encode("utf-8"))
        if "README.md" in config.get("files", {}):
            readme = os.path.join(folder, "README.md")
            config["files"]["README.md"] = {**config["files"]["README.md"], "sha256": sha256_file(readme),
                                            "size": os.path.getsize(readme)}
        with atomic_write(os.path.join(folder, CONFIG_NAME)) as fh:
            fh.write((json.dumps(config, indent=1) + "\n").encode("utf-8"))
        if sha256_file(config_path) != target.config_sha256:
            raise InputError(f"{target.repo_id} changed while it was evaluated; its card was left as it is: "
                             "evaluate it again")
        publish_local(folder, target.repo_id, None, hub_home())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return os.path.join(target.folder, "README.md")
