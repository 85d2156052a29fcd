"""Training parity: the same seeded loss back-propagated in PyTorch and Paddle on the same weights and
input, every parameter's gradient compared under the output rule, and optimizer steps matched.

* :func:`training_ref` sets every dropout and drop-path rate of a model's constructor arguments to 0,
  so a train-mode forward is deterministic (BatchNorm then normalises with the batch statistics, as
  in training); :func:`build_training_model` builds it in train mode and refuses a model that still
  has a random layer.
* :func:`seeded_objective` is the loss: cross-entropy against seeded labels when the model gives one
  ``[N, classes]`` tensor, otherwise (feature maps, segmentation logits, lists of outputs) a fixed
  seeded linear functional of every output, so every output reaches every gradient.
* :func:`compare_gradients` runs both frameworks and compares each parameter's gradient after
  mapping Paddle's names and layouts back to the canonical (official PyTorch) keys through the
  engine, per parameter, ``tol * max(1, max|torch grad|)``.
* :func:`make_optimizer` gives the same SGD-with-momentum and AdamW update in both frameworks;
  :func:`train_losses` runs a few steps of it and returns both frameworks' losses.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compare import limit, map_nested, max_abs_diff
from .engine import to_canonical
from .errors import PorthubError
from .runtime import (
    build_model,
    import_framework,
    load_state,
    model_class,
    named_modules,
)
from .spec import PADDLE, TORCH, FamilySpec, Layout, ModelRef

__all__ = [
    "RATE_ARGUMENTS",
    "GradientComparison",
    "GradientReport",
    "OptimizerConfig",
    "TrainingParityError",
    "build_training_model",
    "compare_gradients",
    "local_gradients",
    "loss_and_gradients",
    "make_optimizer",
    "optimizer_step",
    "random_layers",
    "seeded_objective",
    "train_losses",
    "training_ref",
    "verify_gradients",
]

#: constructor arguments that set a dropout or drop-path probability, at any depth of the arguments
#: (SeaFormer's segmentation model nests them in ``backbone`` and ``decode_head``)
RATE_ARGUMENTS = ("drop_rate", "attn_drop_rate", "drop_path_rate", "dropout_ratio", "proj_drop_rate")

_PADDLE_MODEL = Layout(name="paddle-model", framework=PADDLE)


class TrainingParityError(PorthubError, ValueError):
    """A training-parity check cannot run as asked (a random layer left on, frameworks that disagree
    on which parameters train)."""


# --------------------------------------------------------------------------------- the model
def _zero_rates(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (0.0 if k in RATE_ARGUMENTS and isinstance(v, (int, float)) else _zero_rates(v))
            for k, v in value.items()
        }
    return value


def training_ref(spec: FamilySpec, ref: ModelRef, **overrides: Any) -> ModelRef:
    """``ref`` with every dropout and drop-path rate set to 0: those already among its arguments (at
    any depth) and those the PyTorch constructor declares (their defaults need not be 0)."""
    kwargs = _zero_rates(dict(ref.kwargs))
    params = inspect.signature(model_class(spec, ref.class_name, TORCH).__init__).parameters
    for name in RATE_ARGUMENTS:
        if name in params and name not in kwargs:
            kwargs[name] = 0.0
    kwargs.update(overrides)
    return ModelRef(ref.class_name, kwargs)


def random_layers(model: Any, framework: str) -> list[str]:
    """Paths of the dropout and drop-path layers of ``model`` whose probability is not 0."""
    found = []
    for path, module in named_modules(model, framework).items():
        kind = type(module).__name__
        if "Dropout" in kind or "DropPath" in kind:
            rate = getattr(module, "p", getattr(module, "drop_prob", 0.0))
            if float(rate or 0.0) != 0.0:
                found.append(f"{path or '<model>'} ({kind} p={float(rate):g})")
    return found


def build_training_model(
    spec: FamilySpec, ref: ModelRef, state: Mapping[str, np.ndarray], framework: str, dtype: str, name: str
) -> Any:
    """The model of ``ref`` with ``state`` loaded, in train mode; refuses one with a random layer left."""
    model = build_model(spec, ref, framework, dtype, name=name)
    load_state(model, state, spec, framework, name)
    model.train()
    left = random_layers(model, framework)
    if left:
        raise TrainingParityError(
            f"{name}: {len(left)} dropout/drop-path layer(s) still random after setting every rate "
            f"argument to 0, e.g. {left[0]}; give the constructor a rate argument for them"
        )
    return model


# --------------------------------------------------------------------------------- the loss
def _leaves(out: Any, name: str = "out") -> OrderedDict[str, Any]:
    """Every tensor of a (nested) list/tuple/dict output, by a stable name."""
    found: OrderedDict = OrderedDict()
    if isinstance(out, (list, tuple)):
        for i, item in enumerate(out):
            found.update(_leaves(item, f"{name}[{i}]"))
    elif isinstance(out, Mapping):
        for key, item in out.items():
            found.update(_leaves(item, f"{name}[{key}]"))
    else:
        found[name] = out
    return found


@dataclass(frozen=True)
class Objective:
    """A seeded loss for outputs of given shapes: ``"cross_entropy"`` with ``labels``, or
    ``"linear"``: the sum over outputs of ``(output * weights[name]).sum()``."""

    kind: str
    labels: np.ndarray | None = None
    weights: Mapping[str, np.ndarray] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "cross_entropy":
            return f"cross-entropy against seeded labels {self.labels.tolist()}"
        return f"seeded linear functional of {len(self.weights)} output(s)"


def seeded_objective(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> Objective:
    """Cross-entropy for one ``[N, classes]`` output; a seeded linear functional otherwise (weights
    scaled by 1/sqrt(size), so the loss is of order 1 whatever the output sizes)."""
    rng = np.random.default_rng(seed)
    if len(shapes) == 1:
        (shape,) = shapes.values()
        if len(shape) == 2:
            return Objective("cross_entropy", labels=rng.integers(0, shape[1], size=shape[0]).astype(np.int64))
    weights = {
        name: rng.standard_normal(shape) / np.sqrt(max(1, int(np.prod(shape)))) for name, shape in shapes.items()
    }
    return Objective("linear", weights=weights)


def _loss(fw: Any, framework: str, out: Any, objective: Objective, dtype: str) -> Any:
    leaves = _leaves(out)
    if objective.kind == "cross_entropy":
        (logits,) = leaves.values()
        if framework == TORCH:
            return fw.nn.functional.cross_entropy(logits, fw.from_numpy(objective.labels))
        return fw.nn.functional.cross_entropy(logits, fw.to_tensor(objective.labels))
    total = None
    for name, value in leaves.items():
        arr = np.ascontiguousarray(objective.weights[name].astype(dtype))
        weight = fw.from_numpy(arr) if framework == TORCH else fw.to_tensor(arr)
        term = (value * weight).sum()
        total = term if total is None else total + term
    return total


def _shapes(out: Any) -> OrderedDict[str, tuple[int, ...]]:
    return OrderedDict((name, tuple(int(n) for n in value.shape)) for name, value in _leaves(out).items())


def _forward(model: Any, x: np.ndarray, framework: str, dtype: str) -> Any:
    fw = import_framework(framework)
    arr = np.ascontiguousarray(x.astype(dtype))
    return model(fw.from_numpy(arr) if framework == TORCH else fw.to_tensor(arr))


def _trainable(model: Any, framework: str) -> OrderedDict[str, Any]:
    if framework == TORCH:
        return OrderedDict((k, p) for k, p in model.named_parameters() if p.requires_grad)
    return OrderedDict((k, p) for k, p in model.named_parameters() if not p.stop_gradient)


def _grad_numpy(param: Any, framework: str) -> np.ndarray:
    if framework == TORCH:
        value = param.detach().cpu().numpy()
        grad = None if param.grad is None else param.grad.detach().cpu().numpy()
    else:
        value = param.numpy()
        grad = None if param.grad is None else param.grad.numpy()
    # a parameter the loss does not reach has no gradient tensor; its gradient is 0
    return np.zeros_like(value) if grad is None else grad


def loss_and_gradients(
    model: Any,
    x: np.ndarray,
    framework: str,
    dtype: str,
    spec: FamilySpec,
    objective: Objective | None = None,
    seed: int = 0,
) -> tuple[float, OrderedDict[str, np.ndarray], Objective]:
    """One forward and backward of the seeded loss; the loss, every trainable parameter's gradient
    under its canonical key (Paddle's mapped back through the engine), and the objective used."""
    fw = import_framework(framework)
    out = _forward(model, x, framework, dtype)
    if objective is None:
        objective = seeded_objective(_shapes(out), seed)
    loss = _loss(fw, framework, out, objective, dtype)
    params = _trainable(model, framework)
    if framework == TORCH:
        model.zero_grad(set_to_none=True)
    else:
        model.clear_gradients()
    loss.backward()
    grads = OrderedDict((key, _grad_numpy(param, framework)) for key, param in params.items())
    if framework == PADDLE:
        grads, strays = to_canonical(grads, _PADDLE_MODEL, spec)
        if strays:
            raise TrainingParityError(f"Paddle parameters with no canonical key: {strays[:4]}")
    return float(loss.detach().cpu().numpy() if framework == TORCH else loss.numpy()), grads, objective


# --------------------------------------------------------------------------------- comparison
@dataclass(frozen=True)
class GradientComparison:
    """Paddle's gradient against PyTorch's; with a float64 reference (float32 runs), how far each of
    them is from PyTorch's float64 gradient: float32's own rounding, to tell a porting error (Paddle
    far off, PyTorch close) from an ill-conditioned gradient (both as far off)."""

    key: str
    max_abs_diff: float
    limit: float
    torch_vs_float64: float | None = None
    paddle_vs_float64: float | None = None

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.limit

    @property
    def ratio(self) -> float:
        return self.max_abs_diff / self.limit

    def as_dict(self) -> dict[str, Any]:
        out = {
            "parameter": self.key,
            "layer": self.key.rpartition(".")[0] or "<model>",
            "max_abs_diff": self.max_abs_diff,
            "limit": self.limit,
            "ok": self.ok,
        }
        if self.torch_vs_float64 is not None:
            out["torch_vs_float64"] = self.torch_vs_float64
            out["paddle_vs_float64"] = self.paddle_vs_float64
        return out

    def floor_note(self) -> str:
        if self.torch_vs_float64 is None:
            return ""
        return f"; against PyTorch float64: torch {self.torch_vs_float64:.1e}, paddle {self.paddle_vs_float64:.1e}"


@dataclass
class GradientReport:
    model: str
    dtype: str
    objective: str
    losses: dict[str, float]
    loss_limit: float
    comparisons: list[GradientComparison]
    trainable: dict[str, int]
    only_torch: list[str] = field(default_factory=list)
    only_paddle: list[str] = field(default_factory=list)
    #: each parameter's gradient as Paddle computes it from PyTorch's values (:func:`local_gradients`)
    local: list[GradientComparison] | None = None

    @property
    def local_ok(self) -> bool | None:
        return None if self.local is None else bool(self.local) and all(c.ok for c in self.local)

    @property
    def loss_ok(self) -> bool:
        return abs(self.losses[TORCH] - self.losses[PADDLE]) <= self.loss_limit

    @property
    def ok(self) -> bool:
        return (
            self.loss_ok
            and not self.only_torch
            and not self.only_paddle
            and bool(self.comparisons)
            and all(c.ok for c in self.comparisons)
        )

    def worst(self, n: int = 1) -> list[GradientComparison]:
        return sorted(self.comparisons, key=lambda c: -c.ratio)[:n]

    def layers(self) -> OrderedDict[str, GradientComparison]:
        """Per layer (module path), its worst parameter, in model order."""
        out: OrderedDict = OrderedDict()
        for c in self.comparisons:
            layer = c.key.rpartition(".")[0] or "<model>"
            if layer not in out or c.ratio > out[layer].ratio:
                out[layer] = c
        return out

    def as_dict(self) -> dict[str, Any]:
        failing = [c for c in self.comparisons if not c.ok]
        worst = self.worst(1)
        return {
            "ok": self.ok,
            "compared": len(self.comparisons),
            "trainable": dict(self.trainable),
            "dtype": self.dtype,
            "loss": {"objective": self.objective, **self.losses, "limit": self.loss_limit, "ok": self.loss_ok},
            "worst": worst[0].as_dict() if worst else {},
            "worst_parameters": [c.as_dict() for c in self.worst(5)],
            "failing": [c.as_dict() for c in failing[:20]],
            "failing_count": len(failing),
            "layers_failing": sorted({c.key.rpartition(".")[0] or "<model>" for c in failing}),
            "only_torch": self.only_torch,
            "only_paddle": self.only_paddle,
            **({"local": self._local_dict()} if self.local is not None else {}),
        }

    def _local_dict(self) -> dict[str, Any]:
        local = self.local or []
        worst = sorted(local, key=lambda c: -c.ratio)[:1]
        failing = [c for c in local if not c.ok]
        return {
            "ok": self.local_ok,
            "compared": len(local),
            "worst": worst[0].as_dict() if worst else {},
            "failing": [c.as_dict() for c in failing[:20]],
            "failing_count": len(failing),
        }

    def lines(self) -> list[str]:
        """The report for a person: one summary line, then the worst parameters (all failing ones first)."""
        status = "ok  " if self.ok else "FAIL"
        worst = self.worst(1)
        text = [
            f"{status} gradients {len(self.comparisons)} parameters ({self.dtype}, {self.objective}): "
            + (
                f"worst {worst[0].key} max|diff| {worst[0].max_abs_diff:.3e} (limit {worst[0].limit:.1e})"
                if worst
                else "none"
            )
        ]
        text.append(
            f"     loss torch {self.losses[TORCH]:.10g} paddle {self.losses[PADDLE]:.10g} "
            f"(|diff| {abs(self.losses[TORCH] - self.losses[PADDLE]):.2e}, limit {self.loss_limit:.1e})"
        )
        failing = [c for c in self.comparisons if not c.ok]
        for c in failing[:10] if failing else self.worst(3):
            text.append(
                f"     {'FAIL' if not c.ok else 'worst'} {c.key}: max|diff| {c.max_abs_diff:.3e} (limit {c.limit:.1e})"
                + c.floor_note()
            )
        if len(failing) > 10:
            text.append(
                f"     ... {len(failing) - 10} more failing parameters in "
                f"{len({c.key.rpartition('.')[0] for c in failing})} layers"
            )
        if self.local is not None:
            text.extend(self._local_lines())
        for key in self.only_torch[:5]:
            text.append(f"     FAIL {key}: trains in PyTorch, not in Paddle")
        for key in self.only_paddle[:5]:
            text.append(f"     FAIL {key}: trains in Paddle, not in PyTorch")
        return text


    def _local_lines(self) -> list[str]:
        local = self.local or []
        worst = sorted(local, key=lambda c: -c.ratio)[:1]
        failing = [c for c in local if not c.ok]
        head = (
            f"     {'ok  ' if self.local_ok else 'FAIL'} local: {len(local)} parameters, each module run in Paddle "
            "on PyTorch's inputs and output gradient"
            + (f"; worst {worst[0].key} max|diff| {worst[0].max_abs_diff:.3e} (limit {worst[0].limit:.1e})"
               if worst else "")
        )
        text = [head]
        for c in failing[:5]:
            text.append(f"     FAIL local {c.key}: max|diff| {c.max_abs_diff:.3e} (limit {c.limit:.1e})")
        if self.local_ok and not all(c.ok for c in self.comparisons):
            text.append(
                "     every module's own gradient agrees: the end-to-end difference is carried by the values "
                "(an activation on the other side of a ReLU kink, or a batch statistic of a near-constant channel)"
            )
        return text


def compare_gradients(
    spec: FamilySpec,
    ref: ModelRef,
    state: Mapping[str, np.ndarray],
    x: np.ndarray,
    dtype: str = "float32",
    name: str = "model",
    seed: int = 0,
    float64_reference: bool = False,
) -> GradientReport:
    """Back-propagate the seeded loss in both frameworks (train mode, rates 0) on ``state`` and ``x``
    and compare every trainable parameter's gradient, per parameter, under the output rule.

    ``float64_reference`` (float32 runs): also run PyTorch in float64 and give each comparison both
    frameworks' distance from it (see :class:`GradientComparison`)."""
    ref = training_ref(spec, ref)
    tol = spec.tolerance(PADDLE).for_dtype(dtype)
    results: dict[str, tuple[float, OrderedDict]] = {}
    objective = None
    for framework in (TORCH, PADDLE):
        model = build_training_model(spec, ref, state, framework, dtype, name)
        loss, grads, objective = loss_and_gradients(model, x, framework, dtype, spec, objective, seed)
        results[framework] = (loss, grads)
        del model
    (t_loss, t_grads), (p_loss, p_grads) = results[TORCH], results[PADDLE]
    exact: Mapping[str, np.ndarray] = {}
    if float64_reference and dtype != "float64":
        model = build_training_model(spec, ref, state, TORCH, "float64", name)
        _, exact, _ = loss_and_gradients(model, x, TORCH, "float64", spec, objective, seed)
        del model
    comparisons = [
        GradientComparison(
            key,
            max_abs_diff(p_grads[key], grad),
            limit(tol, grad),
            *((max_abs_diff(grad, exact[key]), max_abs_diff(p_grads[key], exact[key])) if key in exact else ()),
        )
        for key, grad in t_grads.items()
        if key in p_grads
    ]
    return GradientReport(
        model=name,
        dtype=dtype,
        objective=objective.describe(),
        losses={TORCH: t_loss, PADDLE: p_loss},
        loss_limit=tol * max(1.0, abs(t_loss)),
        comparisons=comparisons,
        trainable={TORCH: len(t_grads), PADDLE: len(p_grads)},
        only_torch=[k for k in t_grads if k not in p_grads],
        only_paddle=[k for k in p_grads if k not in t_grads],
    )


# --------------------------------------------------------------------------------- optimizers
@dataclass(frozen=True)
class OptimizerConfig:
    """One optimizer's hyper-parameters, the same in both frameworks.

    The defaults are binary fractions: Paddle keeps the learning rate, momentum and L2 coefficient in
    float32 whatever the parameters' dtype (0.1 becomes 0.10000000149), so only values float32 holds
    exactly give float64 parity to the last bit (measured: lr 0.1 moves float64 weights ~1e-9 apart
    per step, lr 0.0625 not at all)."""

    kind: str = "sgd"  # "sgd" (with momentum) or "adamw"
    lr: float = 0.0625
    momentum: float = 0.875
    weight_decay: float = 0.0625
    betas: tuple[float, float] = (0.875, 0.9921875)
    eps: float = 2.0**-20


def make_optimizer(framework: str, params: Sequence[Any], config: OptimizerConfig) -> Any:
    """The same update in both frameworks.

    * ``sgd``: torch ``SGD(momentum, weight_decay)`` (no dampening, not Nesterov: the velocity is
      ``m * v + (g + wd * p)``, the step ``lr * v``) is Paddle's ``Momentum`` with ``weight_decay`` as
      an L2 coefficient added to the gradient, which it fuses into the same velocity update.
    * ``adamw``: both decay decoupled, ``p * (1 - lr * wd)``, on every parameter (Paddle's
      ``apply_decay_param_fun`` left unset), and divide by ``sqrt(v_hat) + eps``: Paddle's docstring
      writes ``lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)`` and ``sqrt(v) + eps``, but its kernel scales
      epsilon by ``sqrt(1 - b2^t)`` too, which is PyTorch's placement (checked: a float64 step with
      eps 2^-7 against gradients of 1e-3 agrees to the bit; the docstring's form would differ by 1e-3).
    """
    fw = import_framework(framework)
    if config.kind == "sgd":
        if framework == TORCH:
            return fw.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        return fw.optimizer.Momentum(
            learning_rate=config.lr, momentum=config.momentum, parameters=list(params), weight_decay=config.weight_decay
        )
    if config.kind == "adamw":
        if framework == TORCH:
            return fw.optim.AdamW(
                params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
            )
        return fw.optimizer.AdamW(
            learning_rate=config.lr,
            beta1=config.betas[0],
            beta2=config.betas[1],
            epsilon=config.eps,
            parameters=list(params),
            weight_decay=config.weight_decay,
        )
    raise ValueError(f"optimizer kind must be 'sgd' or 'adamw', not {config.kind!r}")


def _canonical_weights(model: Any, framework: str, spec: FamilySpec) -> OrderedDict[str, np.ndarray]:
    params = _trainable(model, framework)
    values = OrderedDict((k, p.detach().cpu().numpy() if framework == TORCH else p.numpy()) for k, p in params.items())
    if framework == PADDLE:
        values, _ = to_canonical(values, _PADDLE_MODEL, spec)
    return values


def optimizer_step(
    spec: FamilySpec,
    ref: ModelRef,
    state: Mapping[str, np.ndarray],
    x: np.ndarray,
    config: OptimizerConfig,
    dtype: str = "float32",
    name: str = "model",
    seed: int = 0,
) -> dict[str, OrderedDict[str, np.ndarray]]:
    """Each framework's trainable weights (canonical keys) after one step of ``config`` on the seeded loss."""
    ref = training_ref(spec, ref)
    out: dict[str, OrderedDict] = {}
    objective = None
    for framework in (TORCH, PADDLE):
        model = build_training_model(spec, ref, state, framework, dtype, name)
        optimizer = make_optimizer(framework, list(_trainable(model, framework).values()), config)
        _, _, objective = loss_and_gradients(model, x, framework, dtype, spec, objective, seed)
        optimizer.step()
        out[framework] = _canonical_weights(model, framework, spec)
    return out


def train_losses(
    spec: FamilySpec,
    ref: ModelRef,
    state: Mapping[str, np.ndarray],
    batches: Sequence[tuple[np.ndarray, np.ndarray]],
    config: OptimizerConfig,
    dtype: str = "float32",
    name: str = "model",
    frameworks: Sequence[str] = (TORCH, PADDLE),
) -> dict[str, list[float]]:
    """Each framework's loss at every step of training on ``batches`` ((images, labels) pairs, one
    step each) with cross-entropy, from ``state``."""
    ref = training_ref(spec, ref)
    out: dict[str, list[float]] = {}
    for framework in frameworks:
        model = build_training_model(spec, ref, state, framework, dtype, name)
        optimizer = make_optimizer(framework, list(_trainable(model, framework).values()), config)
        losses = []
        for images, labels in batches:
            loss, _, _ = loss_and_gradients(
                model, images, framework, dtype, spec, Objective("cross_entropy", labels=labels)
            )
            optimizer.step()
            losses.append(loss)
        out[framework] = losses
    return out


def verify_gradients(
    name: str,
    dtype: str = "float32",
    weights: str | None = None,
    image: str | None = None,
    batch: int = 2,
    input_size: tuple[int, int] | None = None,
    seed: int = 0,
) -> GradientReport:
    """:func:`compare_gradients` on a registered model: its seeded state (or ``weights``) and seeded
    noise of ``batch`` images at the variant's input size or ``input_size`` (or ``image``). Two images
    by default, so BatchNorm's batch statistics couple the samples as in training."""
    from .inputs import check_input
    from .pairs import pair_input, pair_state
    from .registry import resolve

    spec, variant = resolve(name)
    ref = variant.model()
    if image is not None:
        x, _ = pair_input(name, image, batch)
    else:
        h, w = input_size or variant.input_size
        check_input(spec.input_rule(ref), (batch, 3, h, w), variant.name)
        x = np.random.default_rng(seed + 1).standard_normal((batch, 3, h, w)).astype(np.float32)
    state = pair_state(name, weights)
    report = compare_gradients(spec, ref, state, x, dtype, variant.name, seed, float64_reference=dtype == "float32")
    report.local = local_gradients(spec, ref, state, x, dtype, variant.name, seed)
    return report


# --------------------------------------------------------------------------------- local gradients
@dataclass
class _Calls:
    """PyTorch's calls of one module that owns trainable parameters (``params``, full names): each call's
    inputs, and the gradient of the loss with respect to each tensor of its output (None where the loss
    does not depend on that tensor), as numpy."""

    params: list[str] = field(default_factory=list)
    inputs: list[tuple[Any, Any]] = field(default_factory=list)
    grads: list[list[np.ndarray | None]] = field(default_factory=list)


def _called(model: Any, x: np.ndarray, dtype: str) -> set[str]:
    """Paths of the PyTorch modules that run in a forward of ``model`` on ``x`` (containers such as a
    ParameterList hold parameters but are never called)."""
    torch = import_framework(TORCH)
    seen: set[str] = set()
    handles = [
        module.register_forward_pre_hook(lambda _m, _a, _p=path: seen.add(_p))
        for path, module in named_modules(model, TORCH).items()
    ]
    try:
        with torch.no_grad():
            _forward(model, x, TORCH, dtype)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _owners(model: Any, called: set[str]) -> OrderedDict[str, list[str]]:
    """Module path -> the full names of the trainable parameters whose gradients it is run for: each
    parameter goes to the deepest module on its path that runs (its own module, or the one above a
    container that is never called)."""
    found: OrderedDict = OrderedDict()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")[:-1]
        owner = next((".".join(parts[:i]) for i in range(len(parts), -1, -1) if ".".join(parts[:i]) in called), "")
        found.setdefault(owner, []).append(name)
    return found


def _tensor_leaves(value: Any, is_tensor: Any) -> list[Any]:
    return [v for v in _leaves(value).values() if is_tensor(v)]


def _torch_calls(
    model: Any, x: np.ndarray, dtype: str, spec: FamilySpec, objective: Objective | None, seed: int
) -> tuple[OrderedDict[str, _Calls], OrderedDict[str, np.ndarray], Objective]:
    """One seeded forward and backward in PyTorch recording, for every module that owns trainable
    parameters, each call's inputs and output gradients; also the end-to-end gradients."""
    torch = import_framework(TORCH)
    modules = named_modules(model, TORCH)
    owners = _owners(model, _called(model, x, dtype))
    calls: OrderedDict[str, _Calls] = OrderedDict((path, _Calls(params=names)) for path, names in owners.items())
    copy = lambda v: v.detach().cpu().numpy().copy() if isinstance(v, torch.Tensor) else v  # noqa: E731
    handles = []
    for path, record in calls.items():

        def pre(_m: Any, args: Any, kwargs: Any, _record: _Calls = record) -> None:
            _record.inputs.append((map_nested(args, copy), map_nested(kwargs, copy)))

        def post(_m: Any, _args: Any, _kwargs: Any, output: Any, _record: _Calls = record) -> None:
            slots: list[np.ndarray | None] = []
            _record.grads.append(slots)
            for i, tensor in enumerate(_tensor_leaves(output, lambda v: isinstance(v, torch.Tensor))):
                slots.append(None)
                if tensor.requires_grad:

                    def grab(grad: Any, _slots: list = slots, _i: int = i) -> None:
                        _slots[_i] = grad.detach().cpu().numpy().copy()

                    tensor.register_hook(grab)

        module = modules[path]
        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True))
    try:
        _, grads, objective = loss_and_gradients(model, x, TORCH, dtype, spec, objective, seed)
    finally:
        for handle in handles:
            handle.remove()
    return calls, grads, objective


def _paddle_local(model: Any, calls: Mapping[str, _Calls], spec: FamilySpec) -> OrderedDict[str, np.ndarray]:
    """Paddle's gradient of every trainable parameter, module by module: each PyTorch call of the module
    that owns it is run in Paddle on that call's inputs and back-propagated from PyTorch's output
    gradient, and the parameter's gradients are summed over the calls. Canonical keys."""
    paddle = import_framework(PADDLE)
    modules = named_modules(model, PADDLE)
    params = dict(_trainable(model, PADDLE))
    tensor = lambda v: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v  # noqa: E731
    found: OrderedDict = OrderedDict()
    for path, record in calls.items():
        names = [n for n in record.params if n in params]
        if path not in modules or not names:
            continue  # nothing there in Paddle: compare_gradients reports such parameters as only_torch
        layer = modules[path]
        for name in names:
            params[name].clear_gradient(set_to_zero=False)
        for (args, kwargs), grads in zip(record.inputs, record.grads):
            out = layer(*map_nested(args, tensor), **map_nested(kwargs, tensor))
            terms = [
                (t * paddle.to_tensor(g)).sum()
                for t, g in zip(_tensor_leaves(out, lambda v: isinstance(v, paddle.Tensor)), grads)
                if g is not None and not t.stop_gradient
            ]
            if terms:
                paddle.add_n(terms).backward()
        for name in names:
            found[name] = _grad_numpy(params[name], PADDLE)
    canonical, strays = to_canonical(found, _PADDLE_MODEL, spec)
    if strays:
        raise TrainingParityError(f"Paddle parameters with no canonical key: {strays[:4]}")
    return canonical


def local_gradients(
    spec: FamilySpec,
    ref: ModelRef,
    state: Mapping[str, np.ndarray],
    x: np.ndarray,
    dtype: str = "float32",
    name: str = "model",
    seed: int = 0,
) -> list[GradientComparison]:
    """Every parameter's gradient as Paddle computes it from PyTorch's values, against PyTorch's.

    Like the forward report's local differences: each module that holds trainable parameters is run in
    Paddle on PyTorch's inputs of each of its calls and back-propagated from PyTorch's gradient of that
    call's output, so a difference is the module's own computation (its forward and backward kernels)
    and nothing carried from elsewhere. A parameter out of tolerance end to end but within it here got
    its difference through the values: an activation on the other side of a ReLU's kink in the two
    frameworks, or a batch statistic of a near-constant channel that amplifies rounding."""
    ref = training_ref(spec, ref)
    tol = spec.tolerance(PADDLE).for_dtype(dtype)
    model = build_training_model(spec, ref, state, TORCH, dtype, name)
    calls, torch_grads, _ = _torch_calls(model, x, dtype, spec, None, seed)
    del model
    model = build_training_model(spec, ref, state, PADDLE, dtype, name)
    paddle_grads = _paddle_local(model, calls, spec)
    return [
        GradientComparison(key, max_abs_diff(paddle_grads[key], grad), limit(tol, grad))
        for key, grad in torch_grads.items()
        if key in paddle_grads
    ]
