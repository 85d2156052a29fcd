"""Evaluation preprocessing of a real image, written once with numpy and Pillow.

Both frameworks are fed the array this module returns, so a check on a user's photo compares the
models and nothing else. The steps follow the torchvision-on-PIL evaluation transform that the
official repositories use (timm's ``create_transform(is_training=False)``):

* ``Resize(resize)``: the shorter side to ``resize`` pixels (``floor(input / crop_fraction)`` when only
  the crop fraction is given), the longer side ``int(resize * long / short)``, with Pillow's filter,
* ``CenterCrop(input_size)`` with torchvision's rounding of the offsets,
* ``ToTensor`` (divide by 255 in float32) and ``Normalize(mean, std)``.

A family describes its recipe in ``FamilySpec.preprocessing``; a family with several tasks may give
one recipe per task (``{"classification": {...}, "segmentation": {...}}``). For tasks other than
classification, a recipe with neither ``resize`` nor ``crop_fraction`` resizes the whole image to
``input_size`` (segmentation's whole-image test mode). Mean and std above 1 are in pixel units
(mmseg's convention) and are scaled by 1/255.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import MissingFileError, PreprocessError

__all__ = [
    "Preprocessing", "PreprocessError", "recipe_for", "load_image", "preprocess_image", "load_input", "to_framework",
    "data_config", "create_transform", "Transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_FRACTION = 0.875
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class Preprocessing:
    """One evaluation recipe. ``resize`` None: resize the whole image to ``input_size`` (no crop)."""

    input_size: tuple[int, int] = (224, 224)
    resize: int | None = 256
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise PreprocessError(
                f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, not {self.interpolation!r}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise PreprocessError(f"mean and std need three values each and std > 0 (got {self.mean}, {self.std})")
        if self.resize is not None and self.resize < min(self.input_size):
            raise PreprocessError(
                f"resize {self.resize} is smaller than the crop {self.input_size}; fix the family's preprocessing"
            )

    @classmethod
    def from_mapping(cls, recipe: Mapping[str, Any], input_size: Sequence[int] | None = None,
                     whole_image: bool = False) -> "Preprocessing":
        """``whole_image``: with neither ``resize`` nor ``crop_fraction``, resize the whole image to
        ``input_size`` instead of the ImageNet crop (dense tasks evaluate the whole image)."""
        size = tuple(int(v) for v in (input_size or recipe.get("input_size") or (224, 224)))
        if len(size) != 2:
            raise PreprocessError(f"input_size must be (height, width), not {size}")
        if "resize" in recipe:
            resize: int | None = int(recipe["resize"])
        elif "crop_fraction" in recipe:
            # timm: scale_size = floor(img_size / crop_pct)
            resize = int(math.floor(max(size) / float(recipe["crop_fraction"])))
        elif whole_image:
            resize = None
        else:
            resize = int(math.floor(max(size) / DEFAULT_CROP_FRACTION))
        mean = tuple(float(v) for v in recipe.get("mean", IMAGENET_MEAN))
        std = tuple(float(v) for v in recipe.get("std", IMAGENET_STD))
        if max(mean) > 1.0:
            # pixel-unit statistics (mmseg) describe the same normalisation of the 0..255 image
            mean, std = tuple(m / 255.0 for m in mean), tuple(s / 255.0 for s in std)
        return cls(
            input_size=(size[0], size[1]),
            resize=resize,
            interpolation=str(recipe.get("interpolation", "bicubic")),
            mean=mean,  # type: ignore[arg-type]
            std=std,  # type: ignore[arg-type]
        )


def recipe_for(preprocessing: Mapping[str, Any], task: str = "classification",
               input_size: Sequence[int] | None = None) -> Preprocessing:
    """The recipe of a family's ``preprocessing`` for ``task``; the ImageNet default (224, crop 0.875,
    bicubic, ImageNet mean/std) for whatever it leaves out. Tasks other than classification without a
    resize rule resize the whole image to ``input_size``."""
    chosen: Mapping[str, Any] = preprocessing
    nested = {k: v for k, v in preprocessing.items() if isinstance(v, Mapping)}
    if nested:
        chosen = nested.get(task) or nested.get("classification") or next(iter(nested.values()))
    return Preprocessing.from_mapping(chosen, input_size, whole_image=task != "classification")


def load_image(path: str) -> Any:
    """The image as an RGB Pillow image (palette, grey and alpha images converted the way torchvision's
    ``ImageFolder`` loader does)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise PreprocessError("reading images needs Pillow: pip install 'porthub[report]'") from exc
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise MissingFileError(f"no such image: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise PreprocessError(
            f"{path} is not an image Pillow can read ({exc}); give a .jpg/.png or a .npy array"
        ) from None


def preprocess_image(image: Any, recipe: Preprocessing) -> np.ndarray:
    """A Pillow RGB image (or an HxWx3 uint8 array) -> float32 array [1, 3, H, W]."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PreprocessError(f"an image array must be HxWx3 uint8, not {image.shape} {image.dtype}")
        image = Image.fromarray(image, "RGB")
    resample = getattr(Image.Resampling, recipe.interpolation.upper())
    h, w = recipe.input_size
    if recipe.resize is None:
        image = image.resize((w, h), resample)
    else:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = recipe.resize, int(recipe.resize * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        if size != image.size:
            image = image.resize(size, resample)
        width, height = image.size
        # torchvision CenterCrop: offsets rounded half to even, like Python's round
        top, left = int(round((height - h) / 2.0)), int(round((width - w) / 2.0))
        image = image.crop((left, top, left + w, top + h))
    arr = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
    mean = np.asarray(recipe.mean, dtype=np.float32)
    std = np.asarray(recipe.std, dtype=np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None], dtype=np.float32)


def load_input(path: str, recipe: Preprocessing) -> np.ndarray:
    """A model input from a file: a ``.npy`` array ([3, H, W] or [N, 3, H, W], used as it is) or an
    image (preprocessed with ``recipe``)."""
    if not os.path.exists(path):
        raise MissingFileError(f"no such input file: {path}")
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise PreprocessError(f"{path} is not a plain .npy array ({exc})") from None
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1] != 3 or arr.dtype.kind != "f":
            raise PreprocessError(
                f"{path}: a .npy input must be a float array [3, H, W] or [N, 3, H, W], not {arr.shape} {arr.dtype}"
            )
        return np.ascontiguousarray(arr)
    return preprocess_image(load_image(path), recipe)


def to_framework(x: np.ndarray, framework: str, dtype: str = "float32") -> Any:
    """The one conversion of a preprocessed array into a framework tensor (what both runs use)."""
    from .runtime import from_numpy

    return from_numpy(x, framework, dtype)


def _variant_of(model_or_name: Any) -> tuple[Any, Any]:
    """(spec, variant) of a registered name, or of a model built by porthub: ``create_model`` marks the
    model with its variant; a model class built directly counts as its family's first variant of that class."""
    from .registry import all_specs, resolve

    if isinstance(model_or_name, str):
        return resolve(model_or_name)
    name = getattr(model_or_name, "porthub_variant", None)
    if isinstance(name, str):
        return resolve(name)
    module = type(model_or_name).__module__.rpartition(".")[2]
    cls = type(model_or_name).__name__
    for spec in all_specs():
        if spec.module == module:
            for variant in spec.variants:
                if variant.class_name == cls:
                    return spec, variant
    raise PreprocessError(f"{cls} is not a porthub model; give a registered model name or a model from "
                          "porthub.create_model")


def data_config(model_or_name: Any) -> dict[str, Any]:
    """The evaluation data configuration of a registered model (name) or of a porthub model object, in timm's
    terms: ``input_size`` (C, H, W), ``interpolation``, ``mean``, ``std`` (0..1 scale), ``crop_pct`` (crop
    side / resized short side) and ``crop_mode`` ("center": resize the short side then centre-crop;
    "squash": resize the whole image to the input size, as segmentation's whole-image test does)."""
    spec, variant = _variant_of(model_or_name)
    recipe = recipe_for(spec.preprocessing, variant.task, variant.input_size)
    h, w = recipe.input_size
    return {
        "input_size": (3, h, w),
        "interpolation": recipe.interpolation,
        "mean": tuple(recipe.mean),
        "std": tuple(recipe.std),
        "crop_pct": 1.0 if recipe.resize is None else max(h, w) / recipe.resize,
        "crop_mode": "squash" if recipe.resize is None else "center",
    }


def _recipe_from_config(config: Mapping[str, Any]) -> Preprocessing:
    try:
        size = tuple(int(v) for v in config["input_size"])
        crop_pct = float(config.get("crop_pct", DEFAULT_CROP_FRACTION))
        interpolation = str(config.get("interpolation", "bicubic"))
        mean = tuple(float(v) for v in config.get("mean", IMAGENET_MEAN))
        std = tuple(float(v) for v in config.get("std", IMAGENET_STD))
    except (KeyError, TypeError, ValueError) as exc:
        raise PreprocessError(f"not a data configuration ({exc}); build one with porthub.data_config(model)") from None
    if len(size) == 3:
        if size[0] != 3:
            raise PreprocessError(f"input_size {size}: the models take 3 channels (RGB)")
        size = size[1:]
    if len(size) != 2 or min(size) < 1 or not 0.0 < crop_pct <= 1.0:
        raise PreprocessError(f"input_size must be (3, H, W) or (H, W) and crop_pct in (0, 1], not {size}, {crop_pct}")
    mode = config.get("crop_mode", "center")
    if mode not in ("center", "squash"):
        raise PreprocessError(f"crop_mode must be 'center' or 'squash', not {mode!r}")
    resize = None
    if mode == "center":
        # timm: scale_size = floor(img_size / crop_pct); rounding error of a ratio such as 224/256 is not a pixel
        scaled = max(size) / crop_pct
        resize = round(scaled) if abs(scaled - round(scaled)) < 1e-6 else int(math.floor(scaled))
    return Preprocessing(input_size=(size[0], size[1]), resize=resize, interpolation=interpolation,
                         mean=mean, std=std)  # type: ignore[arg-type]


class Transform:
    """The evaluation preprocessing of a data configuration: ``transform(image)`` takes a Pillow image, an
    HxWx3 uint8 array or an image path and returns the normalised [3, H, W] float32 array (numpy), or the
    framework's tensor when built with ``framework``. Both frameworks get the same array (numpy and Pillow
    do the work)."""

    def __init__(self, recipe: Preprocessing, framework: str | None = None, dtype: str = "float32") -> None:
        if framework not in (None, "torch", "paddle"):
            raise PreprocessError(f"framework must be None (numpy), 'torch' or 'paddle', not {framework!r}")
        self.recipe = recipe
        self.framework = framework
        self.dtype = dtype

    def __call__(self, image: Any) -> Any:
        if isinstance(image, (str, os.PathLike)):
            image = load_image(os.fspath(image))
        arr = preprocess_image(image, self.recipe)[0]
        if self.framework is None:
            return arr.astype(self.dtype, copy=False)
        return to_framework(arr, self.framework, self.dtype)

    def __repr__(self) -> str:
        return f"Transform({self.recipe}, framework={self.framework!r})"


def create_transform(config: Mapping[str, Any], framework: str | None = None,
                     dtype: str = "float32") -> Callable[[Any], Any]:
    """The evaluation transform of ``config`` (a :func:`data_config` dict); see :class:`Transform`."""
    return Transform(_recipe_from_config(config), framework, dtype)
