"""Layer-by-layer equivalence of the PyTorch and Paddle twins, and the reports that show it.

How a divergence is pinned to the layer that makes it:

1. PyTorch runs once with a forward pre-hook and hook on every module; each call's positional and
   keyword arguments and its output are kept as numpy arrays (in call order; a module called twice
   has calls 0 and 1).
2. Paddle runs with a pre-hook on every layer that replaces the call's arguments by PyTorch's for the
   same call of the same module path, and a post-hook that records the difference of Paddle's output
   from PyTorch's and then hands PyTorch's output on. Every layer therefore starts from exactly
   PyTorch's values and its children return exactly PyTorch's values, so a layer's *local* difference
   is the error of its own computation only; a wrong weight or a swapped axis shows in the layer that
   owns it and nowhere else.
3. Paddle runs again untouched; the *propagated* difference of each layer is what reaches it end to
   end (how an error grows through the network).

The first layer, in PyTorch's call order, whose local difference exceeds its tolerance is the first
divergence. Tolerances come from the family spec: ``FamilySpec.tolerances["paddle"]`` for the whole
model and, for a layer whose Paddle kernel cannot match to that level, a ``LayerTolerance`` in
``FamilySpec.layer_tolerances``
(the regex fully matches the module path) whose :class:`~porthub.spec.Tolerance` says why.
A layer's limit is ``tolerance * max(1, max|PyTorch output|)``, as for whole-model outputs.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .compare import limit, max_abs_diff
from .errors import InputError, MissingFileError, ReportError
from .io import atomic_write
from .spec import PADDLE, TORCH, FamilySpec, Tolerance

__all__ = [
    "LayerDiff",
    "TorchTrace",
    "LayerComparison",
    "ModelReport",
    "ReportError",
    "layer_tolerance",
    "capture_torch",
    "compare_paddle",
    "compare_layers",
    "summary_figures",
    "write_report",
    "load_report",
    "render_markdown",
    "plot_report",
    "imagenet_classes",
    "topk_lines",
]

ROOT = "(model)"
DTYPES = ("float32", "float64")
#: where exact zeros are drawn on the log-scale plot
PLOT_FLOOR = 1e-18


# ------------------------------------------------------------------------------------------ data
@dataclass
class LayerDiff:
    """One call of one module. ``max_abs``/``max_rel``: the local difference (Paddle run on PyTorch's
    inputs); ``flow_*``: the propagated difference (Paddle run end to end). ``max_rel`` is
    ``max_abs / max|PyTorch output|``."""

    index: int
    name: str
    call: int
    type: str
    depth: int
    shape: list[int]
    ref_max: float
    limit: float
    max_abs: float | None = None
    max_rel: float | None = None
    flow_max_abs: float | None = None
    flow_max_rel: float | None = None
    ok: bool = True
    note: str = ""

    @property
    def key(self) -> str:
        return self.name if self.call == 0 else f"{self.name}#{self.call}"

    @property
    def scale(self) -> float:
        return max(1.0, self.ref_max)


@dataclass
class TorchTrace:
    """PyTorch's calls in order: (path, call index, class name, depth, args, kwargs, output)."""

    calls: list["_Call"]
    output: Any
    seconds: float

    def by_key(self) -> dict[tuple[str, int], "_Call"]:
        return {(c.path, c.index): c for c in self.calls}


@dataclass
class _Call:
    path: str
    index: int
    type: str
    depth: int
    args: Any = None
    kwargs: Any = None
    output: Any = None


@dataclass
class LayerComparison:
    """Every module of one model compared in one dtype."""

    dtype: str
    layers: list[LayerDiff]
    output_max_abs: float
    output_limit: float
    tolerance_reason: str
    torch_output: Any = field(default=None, repr=False)
    paddle_output: Any = field(default=None, repr=False)
    only_torch: list[str] = field(default_factory=list)
    only_paddle: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def first_divergence(self) -> LayerDiff | None:
        return next((layer for layer in self.layers if not layer.ok), None)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None and self.output_max_abs <= self.output_limit

    def worst(self, flow: bool = False) -> LayerDiff | None:
        """The layer with the largest difference relative to its scale."""
        attr = "flow_max_abs" if flow else "max_abs"
        rows = [layer for layer in self.layers if getattr(layer, attr) is not None]
        return max(rows, key=lambda r: getattr(r, attr) / r.scale, default=None)

    def as_dict(self) -> dict[str, Any]:
        first = self.first_divergence
        worst = self.worst()
        return {
            "dtype": self.dtype,
            "ok": self.ok,
            "layers_compared": len(self.layers),
            "first_divergence": None if first is None else first.key,
            "first_divergence_detail": None if first is None else asdict(first),
            "worst_local": None
            if worst is None
            else {"layer": worst.key, "max_abs": worst.max_abs, "limit": worst.limit},
            "output_max_abs": self.output_max_abs,
            "output_limit": self.output_limit,
            "tolerance_reason": self.tolerance_reason,
            "only_torch": self.only_torch,
            "only_paddle": self.only_paddle,
            "seconds": self.seconds,
            "layers": [asdict(layer) for layer in self.layers],
        }


@dataclass
class ModelReport:
    """The layer comparisons of one model (one per dtype) with what was compared."""

    model: str
    family: str
    weights: str
    input: str
    comparisons: dict[str, LayerComparison]
    num_classes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "family": self.family,
            "weights": self.weights,
            "input": self.input,
            "ok": self.ok,
            "summary": summary_figures(self),
            "notes": list(self.notes),
            "comparisons": {dtype: c.as_dict() for dtype, c in self.comparisons.items()},
        }


def load_report(path: str) -> ModelReport:
    """A report written by :func:`write_report`, read back (the model card and re-plots use it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        comparisons = {
            dtype: LayerComparison(
                dtype=dtype,
                layers=[LayerDiff(**row) for row in c["layers"]],
                output_max_abs=c["output_max_abs"],
                output_limit=c["output_limit"],
                tolerance_reason=c["tolerance_reason"],
                only_torch=c["only_torch"],
                only_paddle=c["only_paddle"],
                seconds=c["seconds"],
            )
            for dtype, c in data["comparisons"].items()
        }
        return ModelReport(
            data["model"], data["family"], data["weights"], data["input"], comparisons, notes=data.get("notes", [])
        )
    except FileNotFoundError:
        raise MissingFileError(f"no such report: {path}") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ReportError(
            f"{path} is not a porthub layer report ({exc}); write one with porthub.report.write_report "
            "(the verify command's report)"
        ) from None


# ------------------------------------------------------------------------------------ tolerances
def layer_tolerance(spec: FamilySpec, path: str) -> Tolerance:
    """The tolerance of one module path in Paddle's comparison with PyTorch: the spec's
    :class:`~porthub.spec.LayerTolerance` for it, else the family's Paddle tolerance."""
    return spec.layer_tolerance(PADDLE, path)


# --------------------------------------------------------------------------------- tree helpers
def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from _leaves(value[key])
    else:
        yield value


def _first_shape(value: Any) -> list[int]:
    for leaf in _leaves(value):
        if isinstance(leaf, np.ndarray):
            return list(leaf.shape)
    return []


def _ref_max(value: Any) -> float:
    best = 0.0
    for leaf in _leaves(value):
        if isinstance(leaf, np.ndarray) and leaf.dtype.kind == "f" and leaf.size:
            best = max(best, float(np.max(np.abs(leaf))))
    return best


def _difference(got: Any, want: Any) -> tuple[float, str]:
    """Max absolute difference over all array leaves; inf (with the reason) when the structure,
    a shape, an integer array or a plain value differs."""
    got_leaves, want_leaves = list(_leaves(got)), list(_leaves(want))
    if len(got_leaves) != len(want_leaves):
        return math.inf, f"{len(got_leaves)} outputs in Paddle, {len(want_leaves)} in PyTorch"
    worst = 0.0
    for g, w in zip(got_leaves, want_leaves):
        if isinstance(w, np.ndarray) or isinstance(g, np.ndarray):
            g_arr, w_arr = np.asarray(g), np.asarray(w)
            if g_arr.shape != w_arr.shape:
                return math.inf, f"shape {list(g_arr.shape)} in Paddle, {list(w_arr.shape)} in PyTorch"
            if w_arr.size == 0:
                continue
            if w_arr.dtype.kind != "f" or g_arr.dtype.kind != "f":
                if not np.array_equal(g_arr, w_arr):
                    return math.inf, "integer/boolean output differs"
                continue
            diff = max_abs_diff(g_arr, w_arr)
            if not math.isfinite(diff):
                return math.inf, "non-finite values"
            worst = max(worst, diff)
        elif g != w:
            return math.inf, f"value {g!r} in Paddle, {w!r} in PyTorch"
    return worst, ""


# ------------------------------------------------------------------------------------- PyTorch
def capture_torch(model: Any, x: np.ndarray, dtype: str = "float32") -> TorchTrace:
    """Run a PyTorch model on ``x`` keeping every module call's arguments and output."""
    from .runtime import run_hooked

    calls: list[_Call] = []
    counts: dict[str, int] = {}
    stack: list[_Call] = []

    def pre(path: str, type_name: str, inputs: Callable[[], tuple[Any, Any]]) -> None:
        index = counts.get(path, 0)
        counts[path] = index + 1
        args, kwargs = inputs()
        call = _Call(path, index, type_name, len(stack), args, kwargs)
        calls.append(call)
        stack.append(call)

    def post(path: str, output: Any) -> None:
        stack.pop().output = output

    out, seconds = run_hooked(model, x, TORCH, dtype, pre, post)
    return TorchTrace(calls, out, seconds)


def compare_paddle(
    model: Any, trace: TorchTrace, x: np.ndarray, dtype: str, tolerance: Callable[[str], Tolerance], reason: str = ""
) -> LayerComparison:
    """Compare a Paddle model with a PyTorch trace, layer by layer (local and propagated)."""
    from .runtime import named_modules, run_hooked

    by_key = trace.by_key()
    paddle_paths = set(named_modules(model, PADDLE))
    torch_paths = {c.path for c in trace.calls}
    rows: dict[tuple[str, int], LayerDiff] = {}
    for i, call in enumerate(trace.calls):
        ref_max = _ref_max(call.output)
        tol = tolerance(call.path).for_dtype(dtype)
        rows[(call.path, call.index)] = LayerDiff(
            index=i,
            name=call.path or ROOT,
            call=call.index,
            type=call.type,
            depth=call.depth,
            shape=_first_shape(call.output),
            ref_max=ref_max,
            limit=limit(tol, ref_max),
        )
    extra: set[str] = set()

    def local_pre(path: str, type_name: str, inputs: Callable[[], tuple[Any, Any]]) -> Any:
        index = counts.get(path, 0)
        counts[path] = index + 1
        call = by_key.get((path, index))
        stack.append(call)
        if call is None:
            extra.add(f"{path or ROOT}#{index}")
            return None
        # each layer gets PyTorch's inputs, so its difference is its own
        return call.args, call.kwargs

    def local_post(path: str, output: Any) -> Any:
        call = stack.pop()
        if call is None:
            return None
        row = rows[(call.path, call.index)]
        diff, why = _difference(output, call.output)
        row.max_abs, row.note = diff, why
        row.max_rel = diff / row.ref_max if row.ref_max else (0.0 if diff == 0 else math.inf)
        return call.output

    def flow_post(path: str, output: Any) -> None:
        index = counts.get(path, 0)
        counts[path] = index + 1
        call = by_key.get((path, index))
        if call is None:
            return None
        row = rows[(call.path, call.index)]
        diff, _ = _difference(output, call.output)
        row.flow_max_abs = diff
        row.flow_max_rel = diff / row.ref_max if row.ref_max else (0.0 if diff == 0 else math.inf)
        return None

    counts: dict[str, int] = {}
    stack: list[_Call | None] = []
    _, local_seconds = run_hooked(model, x, PADDLE, dtype, local_pre, local_post)
    counts = {}
    paddle_out, flow_seconds = run_hooked(model, x, PADDLE, dtype, None, flow_post)

    for (path, _), row in rows.items():
        if path not in paddle_paths:
            row.note = "no Paddle layer of this name"
            continue
        if row.max_abs is None:
            row.ok, row.note = False, "called by PyTorch, not by Paddle"
            continue
        row.ok = row.max_abs <= row.limit
    out_diff, _ = _difference(paddle_out, trace.output)
    out_tol = limit(tolerance("").for_dtype(dtype), _ref_max(trace.output))
    return LayerComparison(
        dtype=dtype,
        layers=list(rows.values()),
        output_max_abs=out_diff,
        output_limit=out_tol,
        tolerance_reason=reason,
        torch_output=trace.output,
        paddle_output=paddle_out,
        only_torch=sorted(p or ROOT for p in torch_paths - paddle_paths),
        only_paddle=sorted(extra),
        seconds={
            "torch": round(trace.seconds, 3),
            "paddle_local": round(local_seconds, 3),
            "paddle": round(flow_seconds, 3),
        },
    )


def compare_layers(
    spec: FamilySpec,
    ref: Any,
    state: Mapping[str, np.ndarray],
    x: np.ndarray,
    dtype: str = "float32",
    name: str = "model",
    paddle_edit: Callable[[Any], None] | None = None,
) -> LayerComparison:
    """Build the PyTorch model, trace it, free it, then build and compare the Paddle model (one model
    in memory at a time). ``paddle_edit`` may change the loaded Paddle model first (tests use it to
    plant an error)."""
    from .runtime import build_model, load_state

    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    model = build_model(spec, ref, TORCH, dtype)
    load_state(model, state, spec, TORCH, name)
    trace = capture_torch(model, x, dtype)
    del model
    model = build_model(spec, ref, PADDLE, dtype)
    load_state(model, state, spec, PADDLE, name)
    if paddle_edit is not None:
        paddle_edit(model)
    try:
        return compare_paddle(
            model, trace, x, dtype, lambda path: layer_tolerance(spec, path), spec.tolerance(PADDLE).reason
        )
    finally:
        del model, trace


# ------------------------------------------------------------------------------------ summaries
def summary_figures(report: ModelReport) -> dict[str, Any]:
    """The figures a model card quotes: per dtype, the output difference, the worst local and
    propagated layer differences (absolute, and relative to the layer's scale), the first divergence,
    and how many layers were compared."""
    out: dict[str, Any] = {"model": report.model, "weights": report.weights, "input": report.input, "ok": report.ok}
    for dtype, comp in report.comparisons.items():
        worst, worst_flow = comp.worst(), comp.worst(flow=True)
        first = comp.first_divergence
        out[dtype] = {
            "ok": comp.ok,
            "layers": len(comp.layers),
            "layers_within_tolerance": sum(1 for layer in comp.layers if layer.ok),
            "output_max_abs": comp.output_max_abs,
            "output_limit": comp.output_limit,
            "worst_local_layer": None if worst is None else worst.key,
            "worst_local_max_abs": None if worst is None else worst.max_abs,
            "worst_local_scaled": None if worst is None else worst.max_abs / worst.scale,
            "worst_propagated_layer": None if worst_flow is None else worst_flow.key,
            "worst_propagated_scaled": None if worst_flow is None else worst_flow.flow_max_abs / worst_flow.scale,
            "first_divergence": None if first is None else first.key,
            "tolerance": layer_tolerance_value(comp),
        }
    return out


def layer_tolerance_value(comp: LayerComparison) -> float:
    """The relative tolerance most layers of a comparison use (the limit over the scale)."""
    values = [round(layer.limit / layer.scale, 20) for layer in comp.layers]
    return max(set(values), key=values.count) if values else 0.0


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return "0" if value == 0 else f"{value:.2e}"


def render_markdown(report: ModelReport) -> str:
    """A Markdown page: the summary per dtype, then one row per module call."""
    lines = [
        f"# {report.model}: PyTorch vs Paddle, layer by layer",
        "",
        f"weights: {report.weights}; input: {report.input}",
        "",
        "| dtype | layers | within tolerance | first divergence | worst local (layer, max abs) "
        "| output max abs (limit) |",
        "|---|---|---|---|---|---|",
    ]
    for dtype, comp in report.comparisons.items():
        worst, first = comp.worst(), comp.first_divergence
        lines.append(
            f"| {dtype} | {len(comp.layers)} | {sum(1 for layer in comp.layers if layer.ok)} | "
            f"{'none' if first is None else '`' + first.key + '`'} | "
            f"{'-' if worst is None else '`' + worst.key + '` ' + _fmt(worst.max_abs)} | "
            f"{_fmt(comp.output_max_abs)} ({_fmt(comp.output_limit)}) |"
        )
    reasons = {c.tolerance_reason for c in report.comparisons.values() if c.tolerance_reason}
    lines += ["", *[f"Tolerance: {r}" for r in sorted(reasons)], ""]
    lines += [
        "Local: Paddle's layer run on PyTorch's inputs (the error this layer makes). "
        "Propagated: Paddle run end to end (the error that reaches this layer). Relative: over max|PyTorch output|.",
        "",
    ]
    dtypes = list(report.comparisons)
    header = (
        "| # | layer | type | output shape | "
        + " | ".join(f"local abs ({d}) | local rel ({d}) | propagated abs ({d}) | limit ({d})" for d in dtypes)
        + " | ok |"
    )
    lines += [header, "|" + "---|" * (5 + 4 * len(dtypes))]
    base = report.comparisons[dtypes[0]].layers if dtypes else []
    others = {d: {(r.name, r.call): r for r in report.comparisons[d].layers} for d in dtypes}
    for row in base:
        cells = [str(row.index), "`" + row.key + "`", row.type, "x".join(map(str, row.shape)) or "-"]
        ok = True
        for d in dtypes:
            r = others[d].get((row.name, row.call))
            if r is None:
                cells += ["-"] * 4
                continue
            cells += [_fmt(r.max_abs), _fmt(r.max_rel), _fmt(r.flow_max_abs), _fmt(r.limit)]
            ok = ok and r.ok
        cells.append("yes" if ok else "**NO**" + (f" ({row.note})" if row.note else ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_report(report: ModelReport, path: str) -> None:
    """PNG: each layer's difference over its scale against its position in the forward pass (log
    scale); local differences as markers, propagated as a faint line, each dtype's limit dashed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ReportError("the PNG plot needs matplotlib: pip install 'porthub[report]'") from exc
    colours = {"float32": "tab:blue", "float64": "tab:orange"}
    fig, ax = plt.subplots(figsize=(12, 5.2), dpi=110)
    base_layers: list[LayerDiff] = []
    for dtype, comp in report.comparisons.items():
        layers = comp.layers
        base_layers = base_layers or layers
        idx = np.array([r.index for r in layers])
        local = np.array([PLOT_FLOOR if not r.max_abs else r.max_abs / r.scale for r in layers], dtype=float)
        flow = np.array([PLOT_FLOOR if not r.flow_max_abs else r.flow_max_abs / r.scale for r in layers], dtype=float)
        local, flow = np.clip(local, PLOT_FLOOR, 1e3), np.clip(flow, PLOT_FLOOR, 1e3)
        colour = colours.get(dtype, "tab:green")
        ax.plot(idx, flow, color=colour, alpha=0.35, linewidth=1.0, label=f"{dtype} propagated (end to end)")
        ax.scatter(idx, local, s=9, color=colour, label=f"{dtype} local (own error)", zorder=3)
        ax.axhline(
            layer_tolerance_value(comp),
            color=colour,
            linestyle="--",
            linewidth=1.2,
            label=f"{dtype} tolerance {layer_tolerance_value(comp):.0e}",
        )
        first = comp.first_divergence
        if first is not None:
            ax.scatter(
                [first.index],
                [min(1e3, max(PLOT_FLOOR, (first.max_abs or 0) / first.scale))],
                s=90,
                facecolors="none",
                edgecolors="red",
                linewidths=2,
                zorder=4,
            )
            ax.annotate(
                f"first divergence ({dtype}): {first.key}",
                (first.index, min(1e3, (first.max_abs or 0) / first.scale) or 1.0),
                textcoords="offset points",
                xytext=(8, 8),
                color="red",
                fontsize=9,
            )
    ax.set_yscale("log")
    ax.set_ylim(PLOT_FLOOR / 2, 1e3)
    ticks, labels = _stage_ticks(base_layers)
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("module call, in PyTorch's forward order (labels: first call of each top-level module)")
    ax.set_ylabel("max |paddle - torch| / max(1, max|torch|)")
    verdict = "all layers within tolerance" if report.ok else "DIVERGES"
    ax.set_title(
        f"{report.model}: PyTorch vs Paddle per layer ({verdict}); weights: {report.weights}; input: {report.input}",
        fontsize=10,
    )
    ax.text(
        0.995,
        0.03,
        f"exact zeros drawn at {PLOT_FLOOR:.0e}",
        transform=ax.transAxes,
        fontsize=7,
        color="grey",
        ha="right",
    )
    ax.grid(True, which="major", axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def _stage_ticks(layers: Sequence[LayerDiff]) -> tuple[list[int], list[str]]:
    """A tick at the first call of each top-level module; small modules (stage norms, patch
    embeddings) between big ones give way so that the stage names stay readable."""
    groups: list[list[Any]] = []
    for row in layers:
        top = row.name.split(".")[0] if row.name != ROOT else ROOT
        if top == ROOT:
            continue
        if not groups or groups[-1][1] != top:
            groups.append([row.index, top, 0])
        groups[-1][2] += 1
    span = max(1, layers[-1].index - layers[0].index) if layers else 1
    ticks: list[int] = []
    labels: list[str] = []
    for index, top, size in groups:
        if top in labels or (size < 0.025 * span and ticks):
            continue
        if ticks and index - ticks[-1] < 0.025 * span:
            continue
        ticks.append(index)
        labels.append(top)
    return ticks, labels


def write_report(report: ModelReport, directory: str) -> dict[str, str]:
    """Write ``<model>_report.json``, ``<model>_report.md`` and ``<model>_report.png`` into
    ``directory`` (each atomically); return their paths."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ReportError(f"report directory {directory} is a file; give a directory to write the report into")
    os.makedirs(directory, exist_ok=True)
    stem = os.path.join(directory, f"{report.model}_report")
    paths = {"json": f"{stem}.json", "markdown": f"{stem}.md", "png": f"{stem}.png"}
    with atomic_write(paths["json"]) as fh:
        fh.write(json.dumps(report.as_dict(), indent=1, default=_json_default, allow_nan=True).encode("utf-8"))
    with atomic_write(paths["markdown"]) as fh:
        fh.write(render_markdown(report).encode("utf-8"))
    plot_report(report, paths["png"])
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---------------------------------------------------------------------------------------- top-k
_CLASSES_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "imagenet_classes.txt")


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet-1k class names in label order (first lemma of each WordNet synset)."""
    with open(_CLASSES_PATH, encoding="utf-8") as fh:
        rows = [line.rstrip("\n").split("\t", 1) for line in fh if line.strip() and not line.startswith("#")]
    return [row[1].split(",")[0].strip() for row in rows]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def topk_lines(
    torch_logits: np.ndarray, paddle_logits: np.ndarray, k: int, names: Sequence[str] | None = None
) -> list[str]:
    """The top-k classes of both frameworks side by side, for the first image of the batch."""
    t, p = np.asarray(torch_logits), np.asarray(paddle_logits)
    if t.ndim != 2 or t.shape != p.shape:
        raise ReportError(
            f"top-k needs class logits [N, classes] from both frameworks, not {list(t.shape)} and {list(p.shape)}"
        )
    if k < 1:
        raise ReportError(f"top-k needs k of at least 1, not {k}")
    k = min(k, t.shape[1])
    if names is None:
        names = imagenet_classes() if t.shape[1] == 1000 else [f"class {i}" for i in range(t.shape[1])]
    pt, pp = _softmax(t[:1])[0], _softmax(p[:1])[0]
    order_t, order_p = np.argsort(-t[0], kind="stable")[:k], np.argsort(-p[0], kind="stable")[:k]
    width = max(12, *(len(f"{names[i]} ({i})") for i in (*order_t, *order_p)))
    lines = [f"top-{k}   {'PyTorch':<{width}}  prob     {'Paddle':<{width}}  prob"]
    for rank, (i, j) in enumerate(zip(order_t, order_p), 1):
        left, right = f"{names[i]} ({i})", f"{names[j]} ({j})"
        lines.append(f"{rank:>5}   {left:<{width}}  {pt[i]:.4f}   {right:<{width}}  {pp[j]:.4f}")
    same = list(order_t) == list(order_p)
    lines.append(
        f"same top-{k} order in both frameworks: {'yes' if same else 'NO'}; "
        f"max |prob difference| {float(np.abs(pt - pp).max()):.2e}"
    )
    return lines
