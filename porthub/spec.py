"""The declarative layer map of a model family.

A family's spec (``converters/<family>.py``) is data: the variants with the official constructor
keyword arguments, the layouts in which checkpoints are released, and the kind of every layer.
The conversion engine (:mod:`porthub.engine`) derives every tensor transform from these
declarations, in both directions, so no family needs code of its own to convert.

Canonical form: the official PyTorch ``state_dict`` (official keys, PyTorch shapes). Every layout
is a reversible map between a file's contents and the canonical form. The only PyTorch<->Paddle
differences are the declared layer kinds (:class:`LayerKind`).

Nothing here imports torch or paddle.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from .errors import SpecError, UnknownLayoutError

if TYPE_CHECKING:  # numpy costs ~0.3 s to import; `porthub list` must not pay for it
    import numpy as np

__all__ = [
    "LayerKind",
    "LayerRule",
    "Rename",
    "Layout",
    "Variant",
    "FeatureSet",
    "ModelRef",
    "Tolerance",
    "HalfTolerance",
    "LayerTolerance",
    "InputRule",
    "FamilySpec",
    "IMAGENET_EVAL_224",
    "TORCH",
    "PADDLE",
]

#: the ImageNet evaluation every family's official code uses (DeiT/timm style): resize the short side
#: to 256 with bicubic interpolation, centre-crop 224, ImageNet mean/std
IMAGENET_EVAL_224: "Mapping[str, Any]" = {
    "input_size": (224, 224),
    "resize": 256,
    "crop_fraction": 224 / 256,
    "interpolation": "bicubic",
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
}

TORCH = "torch"
PADDLE = "paddle"
FRAMEWORKS = (TORCH, PADDLE)


class LayerKind(str, enum.Enum):
    """What a layer is, which decides how its tensors differ between the frameworks."""

    #: ``nn.Linear``: ``weight`` is ``[out, in]`` in PyTorch and ``[in, out]`` in Paddle.
    LINEAR = "linear"
    #: ``nn.BatchNorm*``: ``running_mean``/``running_var`` are ``_mean``/``_variance`` in Paddle,
    #: and ``num_batches_tracked`` exists only in PyTorch (dropped, restored as 0).
    BATCHNORM = "batchnorm"
    #: Everything else (convolutions, LayerNorm, position-bias tables, index buffers): unchanged.
    PLAIN = "plain"


@dataclass(frozen=True)
class LayerRule:
    """Layers whose module path (the key without its last component) fully matches ``pattern``
    are of ``kind``. The first matching rule of a spec wins; unmatched layers are PLAIN.

    ``every=(period, offset)`` declares a repeating block inside a Sequential: ``pattern``'s last
    group captures the list index, and only indices with ``index % period == offset`` match (the
    BatchNorm of repeated (conv, BatchNorm, ReLU) triples is ``every=(3, 1)``)."""

    pattern: str
    kind: LayerKind
    every: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.every is not None:
            period, offset = self.every
            if re.compile(self.pattern).groups < 1 or period < 1 or not 0 <= offset < period:
                raise SpecError(f"layer rule {self.pattern!r}: every=(period, offset) needs a group capturing the "
                                "index and 0 <= offset < period")

    def matches(self, module_path: str) -> bool:
        match = re.fullmatch(self.pattern, module_path)
        if match is None or self.every is None:
            return match is not None
        index = match.group(match.re.groups)
        return index is not None and index.isdigit() and int(index) % self.every[0] == self.every[1]


@dataclass(frozen=True)
class Rename:
    """A reversible rename of one dot-separated key component (for example PaddleSeg's ``_conv``
    for the official ``c``). ``canonical`` and ``file`` are whole components, never substrings,
    so the inverse is exact as long as ``file`` is not itself a canonical component (a test checks
    this against every variant's manifest)."""

    canonical: str
    file: str


ConstantFn = Callable[[Mapping[str, Any], Sequence[str]], "dict[str, np.ndarray]"]
#: (file key -> canonical key, canonical key -> file key), for naming schemes that are not a
#: per-component rename (PaddleSeg moves a head to the top level and renames it by position)
KeyMap = tuple[Callable[[str], str], Callable[[str], str]]


@dataclass(frozen=True)
class Layout:
    """One way a checkpoint file holds a model's weights.

    Reading a file: pick the first of ``containers`` present in the top-level dict (``()`` means the
    file is the state dict itself), keep the keys that start with ``prefix`` and strip it, drop keys
    fully matching ``constants`` patterns (they are regenerated on writing) and keys fully matching
    ``ignore`` (parts of the file no porthub model has, such as a detector's head), undo the
    ``renames``, and, for Paddle layouts, undo the layer-kind transforms.

    Writing a file is the exact inverse: kind transforms, renames, ``constant_fn`` buffers, prefix,
    and the container ``wrap`` (``None`` writes a bare state dict).
    """

    name: str
    framework: str = TORCH
    description: str = ""
    containers: tuple[str, ...] = ()
    wrap: str | None = None
    prefix: str = ""
    renames: tuple[Rename, ...] = ()
    constants: tuple[str, ...] = ()
    constant_fn: ConstantFn | None = None
    ignore: tuple[str, ...] = ()
    #: a reversible key function pair applied after the prefix (tests check it is a bijection)
    key_map: KeyMap | None = None
    #: the tasks whose models this layout holds (empty: every task of the family)
    tasks: tuple[str, ...] = ()
    #: extra entries put beside the state dict when writing (for example mmcv's ``meta``)
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: formats this layout is written in by default
    default_format: str = "pth"

    def applies_to(self, task: str | None) -> bool:
        return task is None or not self.tasks or task in self.tasks

    def __post_init__(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise SpecError(f"layout {self.name!r}: framework must be one of {FRAMEWORKS}, not {self.framework!r}")
        if self.wrap is not None and self.wrap not in self.containers:
            raise SpecError(f"layout {self.name!r} writes into {self.wrap!r} but does not read from it "
                            "(add it to containers)")
        if self.constants and self.constant_fn is None:
            raise SpecError(f"layout {self.name!r} drops constants {self.constants} but has no constant_fn "
                            "to rebuild them")


@dataclass(frozen=True)
class ModelRef:
    """How to build a model: the class name in ``torch_models/<family>.py`` and
    ``paddle_models/<family>.py`` (the twin files) and its keyword arguments."""

    class_name: str
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class Variant:
    """A registered model: the official constructor and its exact keyword arguments."""

    name: str
    class_name: str
    kwargs: Mapping[str, Any]
    aliases: tuple[str, ...] = ()
    #: the layout the authors released this variant's checkpoint in (used when writing PyTorch files)
    release_layout: str = "official"
    #: input resolution (H, W) used for evaluation and for seeded checks
    input_size: tuple[int, int] = (224, 224)
    num_classes: int = 1000
    task: str = "classification"
    #: free-form facts for docs and model cards: README accuracy with its source, released file
    #: name, dataset, paper, licence
    meta: Mapping[str, Any] = field(default_factory=dict)

    def model(self, **overrides: Any) -> ModelRef:
        return ModelRef(self.class_name, {**self.kwargs, **overrides})


@dataclass(frozen=True)
class FeatureSet:
    """Intermediate outputs a reference case can be checked on.

    ``pattern`` selects entries of ``<case>.features.npz``. Each selected name is produced by the
    model built from ``model`` (default: the case's own model) run on ``input`` (``"input"`` for
    ``<case>.input.npy``, ``"features_input"`` for ``<case>.features_input.npy``):

    * a name listed in ``outputs`` (``{"stage{i}": ""}``: the model's own output, a list, item i;
      ``{"backbone_out{i}": "backbone"}``: item i of module ``backbone``'s output;
      ``{"decode_head_out": "decode_head"}``: that module's output) comes from that module,
    * any other name is a module path whose forward output is taken with a hook.

    ``checkpoint_suffix`` names a case file with the weights for this model instead of the case's
    checkpoint (e.g. ``".backbone.pth"``); ``layout`` forces the layout used to read them;
    ``dtypes`` lists the dtypes the official code produced (``_f64``-suffixed entries are float64).
    """

    pattern: str
    input: str = "input"
    model: ModelRef | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)
    checkpoint_suffix: str | None = None
    layout: str | None = None
    dtypes: tuple[str, ...] = ("float32", "float64")


@dataclass(frozen=True)
class Tolerance:
    """A comparison threshold (absolute, times max(1, max|reference|)) with the reason for it."""

    float32: float = 2e-5
    float64: float = 1e-8
    reason: str = "float arithmetic: the official code itself agrees with its float64 run to ~1e-6"

    def for_dtype(self, dtype: str) -> float:
        return {"float32": self.float32, "float64": self.float64}[dtype]


@dataclass(frozen=True)
class HalfTolerance:
    """How far a model run in float16 / bfloat16 may be from the same model in float32 on the same weights
    and input: ``max|half - ref| <= limit * max(1, max|ref|)``, ``ref`` the float32 output (the rule of
    :mod:`porthub.compare`). ``measured`` holds the figures the limits were set from (``"bfloat16"``,
    ``"float16"``: the worst relative difference seen), ``reason`` says where and how they were measured."""

    float16: float
    bfloat16: float
    reason: str
    measured: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for dtype in ("float16", "bfloat16"):
            if not 0 < getattr(self, dtype) < 1:
                raise SpecError(f"half tolerance for {dtype} must be in (0, 1), not {getattr(self, dtype)!r}")
            seen = self.measured.get(dtype)
            if seen is not None and seen > getattr(self, dtype):
                raise SpecError(f"half tolerance for {dtype} ({getattr(self, dtype)}) is below its own measured "
                                f"figure ({seen})")

    def for_dtype(self, dtype: str) -> float:
        if dtype not in ("float16", "bfloat16"):
            raise SpecError(f"a half-precision tolerance is for float16 or bfloat16, not {dtype!r}")
        return float(getattr(self, dtype))


@dataclass(frozen=True)
class LayerTolerance:
    """A looser tolerance for the modules whose path fully matches ``modules`` (a regex), in one
    framework's comparison with PyTorch: a kernel that cannot match the family's tolerance there says
    so, with the measured reason, instead of loosening the whole model."""

    framework: str
    modules: str
    tolerance: Tolerance

    def __post_init__(self) -> None:
        if self.framework not in FRAMEWORKS:
            raise SpecError(f"layer tolerance {self.modules!r}: framework must be one of {FRAMEWORKS}")
        re.compile(self.modules)

    def matches(self, framework: str, module_path: str) -> bool:
        return framework == self.framework and re.fullmatch(self.modules, module_path) is not None


@dataclass(frozen=True)
class InputRule:
    """What input a model accepts, so a wrong one fails with the constraint named instead of a
    reshape error deep inside. ``multiple_of`` and ``fixed_size`` are (H, W); ``why`` says where
    the constraint comes from."""

    channels: int = 3
    min_size: tuple[int, int] = (1, 1)
    multiple_of: tuple[int, int] = (1, 1)
    fixed_size: tuple[int, int] | None = None
    why: str = ""


@dataclass(frozen=True)
class FamilySpec:
    """Everything porthub knows about one family, as data.

    ``case_model`` and ``case_features`` read the family's reference-case JSON (the format the
    official fixtures use) into a :class:`ModelRef` and :class:`FeatureSet` list; they are pure
    functions of the JSON so that held-back cases of the same format work unchanged.
    """

    family: str
    title: str
    layers: tuple[LayerRule, ...]
    layouts: tuple[Layout, ...]
    variants: tuple[Variant, ...]
    case_model: Callable[[Mapping[str, Any]], ModelRef]
    case_features: Callable[[Mapping[str, Any]], Sequence[FeatureSet]] = lambda case: ()
    #: the torch layout of a reference case's checkpoint, when it is not the first layout
    case_layout: Callable[[Mapping[str, Any]], str | None] = lambda case: None
    #: per-framework tolerances of whole-model outputs, keyed "torch" / "paddle"
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    #: per-layer exceptions (Paddle kernels that cannot reach the family's tolerance there say so here)
    layer_tolerances: Sequence[LayerTolerance] = ()
    #: float16 / bfloat16 against float32 on the same weights and input (measured; None: not declared)
    half_tolerance: HalfTolerance | None = None
    paper: str = ""
    official_repo: str = ""
    licence: str = ""
    #: evaluation preprocessing (input size, crop fraction, interpolation, mean/std)
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    #: the input a model built from these constructor arguments accepts
    input_rule: Callable[[ModelRef], InputRule] = lambda ref: InputRule()
    #: the sources catalogue: variant name -> its official release (porthub.catalogue.Release)
    sources: Mapping[str, Any] = field(default_factory=dict)
    #: module path of the classification layer in the family's classifiers: ``num_classes`` sizes it, and
    #: pretrained weights whose classifier does not fit leave it freshly initialised (porthub.create_model)
    classifier: str = "head"

    def __post_init__(self) -> None:
        odd = sorted(set(self.tolerances) - set(FRAMEWORKS))
        if odd:
            raise SpecError(f"family {self.family!r}: tolerances are keyed by framework, not {odd}; a layer's own "
                            "tolerance is a LayerTolerance in layer_tolerances")
        names = [layout.name for layout in self.layouts]
        if len(set(names)) != len(names):
            raise SpecError(f"family {self.family!r}: duplicate layout names {names}")
        if not any(layout.framework == TORCH for layout in self.layouts):
            raise SpecError(f"family {self.family!r}: no PyTorch layout")
        for variant in self.variants:
            if variant.release_layout not in names:
                raise SpecError(
                    f"variant {variant.name!r}: release_layout {variant.release_layout!r} is not one of {names}"
                )

    @property
    def module(self) -> str:
        """The family's module name in converters/, torch_models/ and paddle_models/: its name."""
        return self.family

    def kind_of(self, module_path: str) -> LayerKind:
        for rule in self.layers:
            if rule.matches(module_path):
                return rule.kind
        return LayerKind.PLAIN

    def layout(self, name: str) -> Layout:
        for layout in self.layouts:
            if layout.name == name:
                return layout
        known = ", ".join(layout.name for layout in self.layouts)
        raise UnknownLayoutError(f"family {self.family!r} has no layout {name!r} (known: {known})")

    def layouts_for(self, framework: str) -> tuple[Layout, ...]:
        return tuple(layout for layout in self.layouts if layout.framework == framework)

    def default_layout(self, framework: str) -> Layout:
        return self.layouts_for(framework)[0]

    def tolerance(self, framework: str) -> Tolerance:
        return self.tolerances.get(framework, Tolerance())

    def layer_tolerance(self, framework: str, module_path: str) -> Tolerance:
        """The tolerance of one module (path) in ``framework``: the first :class:`LayerTolerance` that
        matches it, else the family's tolerance for that framework."""
        for rule in self.layer_tolerances:
            if rule.matches(framework, module_path):
                return rule.tolerance
        return self.tolerance(framework)
