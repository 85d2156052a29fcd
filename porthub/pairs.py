"""PyTorch against Paddle on one registered model at full size: the same weights carried through the
layer map, the same input (seeded, or a user's image), and the difference of the outputs and of every
module's output (:mod:`porthub.report`)."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from .compare import compare_outputs
from .engine import Manifest, detect_layout, from_canonical, to_canonical, unwrap
from .inputs import check_input
from .io import load_checkpoint
from .manifest import manifest_for
from .registry import resolve
from .spec import PADDLE, TORCH, FamilySpec, ModelRef, Variant
from .verify import frameworks_of_file

if TYPE_CHECKING:
    from .report import LayerComparison, ModelReport

__all__ = ["seeded_state", "seeded_input", "pair_input", "pair_state", "layer_report", "verify_pair",
           "verify_half", "roundtrip_identical"]


def seeded_state(spec: FamilySpec, ref: ModelRef, seed: int = 0, model: Any = None) -> "OrderedDict[str, np.ndarray]":
    """The model's own buffers (index tables, constants) with every learned floating tensor and
    BatchNorm statistic replaced by seeded noise of a sensible scale, so every parameter matters.
    ``model``: an already built PyTorch model of ``ref`` to read the buffers from."""
    from .runtime import build_model, parameter_names, seed_framework, state_arrays

    seed_framework(TORCH, seed)
    if model is None:
        model = build_model(spec, ref, TORCH)
    params = parameter_names(model, TORCH)
    rng = np.random.default_rng(seed)
    state: OrderedDict = OrderedDict()
    for key, value in state_arrays(model, TORCH).items():
        leaf = key.rpartition(".")[2]
        if value.dtype.kind != "f" or (key not in params and leaf not in ("running_mean", "running_var")):
            state[key] = value
            continue
        if leaf == "running_var":
            noise = rng.uniform(0.5, 1.5, value.shape)
        elif leaf == "running_mean":
            noise = 0.1 * rng.standard_normal(value.shape)
        elif value.ndim >= 2:
            fan_in = int(np.prod(value.shape[1:])) or 1
            noise = rng.standard_normal(value.shape) / np.sqrt(fan_in)
        elif leaf == "weight":
            noise = 1.0 + 0.1 * rng.standard_normal(value.shape)
        else:
            noise = 0.02 * rng.standard_normal(value.shape)
        state[key] = noise.astype(value.dtype)
    return state


def seeded_input(variant: Variant, batch: int = 1, seed: int = 1) -> np.ndarray:
    h, w = variant.input_size
    return np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32)


def roundtrip_identical(state: "OrderedDict[str, np.ndarray]", spec: FamilySpec, kwargs: Any,
                        torch_layout: str) -> bool:
    """canonical -> Paddle layout -> canonical -> release layout -> canonical gives the same tensors bit for bit."""
    current = state
    for layout in (spec.default_layout(PADDLE), spec.layout(torch_layout)):
        file_state = unwrap(from_canonical(current, layout, spec, kwargs), layout)
        if file_state is None:
            return False
        current, strays = to_canonical(file_state, layout, spec)
        if strays:
            return False
    if list(current) != list(state):
        return False
    return all(current[k].dtype == v.dtype and current[k].shape == v.shape and np.array_equal(current[k], v)
               for k, v in state.items())


def pair_input(name: str, image: str | None = None, batch: int = 1) -> tuple[np.ndarray, str]:
    """The input of a pair check: ``image`` (a photo, preprocessed with the family's evaluation
    recipe, or a ``.npy`` array) or seeded noise at the variant's input size; and its description."""
    spec, variant = resolve(name)
    if image is None:
        return seeded_input(variant, batch), f"seeded noise {[batch, 3, *variant.input_size]}"
    from .preprocess import load_input, recipe_for

    recipe = recipe_for(spec.preprocessing, variant.task, variant.input_size)
    x = load_input(image, recipe)
    # the models check it too, but only after the seeded weights and both models are built
    check_input(spec.input_rule(variant.model()), x.shape, variant.name, x.dtype)
    return x, f"{os.path.basename(image)} {list(x.shape)}"


def pair_state(name: str, weights: str | None = None) -> "OrderedDict[str, np.ndarray]":
    """The canonical state of a pair check: read from ``weights`` (any layout of the family) or seeded."""
    spec, variant = resolve(name)
    ref = variant.model()
    if weights:
        manifest: Manifest = manifest_for(spec, ref, variant.name, variant)
        _, state = detect_layout(load_checkpoint(weights), spec, manifest, frameworks_of_file(weights))
        return state
    return seeded_state(spec, ref)


def _final(out: Any) -> np.ndarray:
    return np.asarray(out[-1] if isinstance(out, list) else out)


def layer_report(name: str, weights: str | None = None, image: str | None = None,
                 dtypes: Sequence[str] = ("float32", "float64"), batch: int = 1,
                 done: Mapping[str, "LayerComparison"] | None = None) -> "ModelReport":
    """Both frameworks compared layer by layer in each of ``dtypes`` (reusing comparisons in ``done``)."""
    from .report import ModelReport, compare_layers

    spec, variant = resolve(name)
    x, described = pair_input(name, image, batch)
    state = pair_state(name, weights)
    comparisons = {}
    for dtype in dtypes:
        found = (done or {}).get(dtype)
        comparisons[dtype] = (found if found is not None
                              else compare_layers(spec, variant.model(), state, x, dtype, variant.name))
    return ModelReport(variant.name, spec.family, weights or "seeded", described, comparisons, variant.num_classes)


def _outputs_only(spec: FamilySpec, ref: ModelRef, state: Mapping[str, np.ndarray], x: np.ndarray, dtype: str,
                  name: str) -> tuple[Any, Any]:
    """Both frameworks' final outputs, without per-layer hooks (one model in memory at a time)."""
    from .runtime import build_model, load_state, run_model

    outputs = []
    for framework in (TORCH, PADDLE):
        model = build_model(spec, ref, framework, dtype)
        load_state(model, state, spec, framework, name)
        outputs.append(run_model(model, x, framework, dtype)[0])
        del model
    return outputs[0], outputs[1]


def verify_pair(name: str, dtype: str = "float32", weights: str | None = None, batch: int = 1,
                image: str | None = None, report_dir: str | None = None, topk: int = 0,
                features: bool = True, device: str | None = None) -> dict[str, Any]:
    """Run both frameworks on one state (seeded, or read from ``weights``) and one input (seeded, or
    ``image``), compare the outputs and every module's output (see :mod:`porthub.report`).

    ``report_dir``: also run the other dtype and write the JSON, Markdown and PNG report there.
    ``topk``: add both frameworks' top classes side by side to the notes.
    ``features=False``: compare the final output only (no per-layer hooks, no report).
    ``device``: where both models run ("cpu", "cuda:N" or "gpu:N"; checked for both frameworks first).
    float16/bfloat16: see :func:`verify_half`.
    """
    from .runtime import on_device, resolve_device

    if dtype in ("float16", "bfloat16"):
        return verify_half(name, dtype, weights, batch, image, device)
    for framework in (TORCH, PADDLE):
        resolve_device(device, framework)
    with on_device(device):
        out = _verify_pair(name, dtype, weights, batch, image, report_dir, topk, features)
    out["device"] = device or "cpu"
    return out


def verify_half(name: str, dtype: str, weights: str | None = None, batch: int = 1, image: str | None = None,
                device: str | None = None, frameworks: Sequence[str] = (TORCH, PADDLE)) -> dict[str, Any]:
    """Each framework's model run in ``dtype`` (float16 or bfloat16) against the same framework's model in
    float32, on the same weights (seeded or ``weights``) and input, on ``device``, judged by the family's
    declared :class:`~porthub.spec.HalfTolerance` with the rule of :mod:`porthub.compare`. The device and
    dtype are checked for every framework before any model is built (Paddle has no half-precision CPU
    kernels: on the CPU ask for ``frameworks=("torch",)``)."""
    from .devices import HALF_DTYPES, check_dtype
    from .errors import InputError
    from .runtime import build_model, cast_model, load_state, resolve_device, run_model

    if dtype not in HALF_DTYPES:
        raise InputError(f"half precision is float16 or bfloat16, not {dtype!r}")
    spec, variant = resolve(name)
    if spec.half_tolerance is None:
        raise InputError(f"family {spec.family!r} declares no half-precision tolerance")
    tol = spec.half_tolerance.for_dtype(dtype)
    where = {framework: resolve_device(device, framework) for framework in frameworks}
    for framework in frameworks:
        check_dtype(where[framework], dtype)
    x, described = pair_input(name, image, batch)
    state = pair_state(name, weights)
    results = []
    for framework in frameworks:
        model = build_model(spec, variant.model(), framework, "float32", variant.name, device=where[framework])
        load_state(model, state, spec, framework, variant.name)
        ref = run_model(model, x, framework, "float32")[0]
        got = run_model(cast_model(model, framework, dtype), x, framework, dtype)[0]
        del model
        for r in compare_outputs(ref, got, tol, framework, dtype):
            row = r.as_dict()
            # the figure the declared limit is set from: max|diff| / max(1, max|ref|)
            row["relative"] = r.max_abs_diff * tol / r.tolerance
            results.append(row)
    notes = [f"{dtype} against float32 in the same framework on the same weights and input, on "
             f"{', '.join(str(d) for d in where.values())}: limit {tol:.1e} x max(1, max|ref|) "
             f"({spec.half_tolerance.reason})"]
    return {"ok": all(r["ok"] for r in results), "model": variant.name, "dtype": dtype, "reference": "float32",
            "device": device or "cpu", "frameworks": list(frameworks), "weights": weights or "seeded",
            "input": described, "results": results, "notes": notes}


def _verify_pair(name: str, dtype: str, weights: str | None, batch: int, image: str | None,
                 report_dir: str | None, topk: int, features: bool) -> dict[str, Any]:
    from .report import compare_layers, topk_lines, write_report

    spec, variant = resolve(name)
    ref = variant.model()
    # the input first: a bad image path fails before any model is built
    x, described = pair_input(name, image, batch)
    state = pair_state(name, weights)
    layers = compare_layers(spec, ref, state, x, dtype, variant.name) if features else None
    if layers is not None:
        torch_out, paddle_out = layers.torch_output, layers.paddle_output
    else:
        torch_out, paddle_out = _outputs_only(spec, ref, state, x, dtype, variant.name)
    # every item of a list output (each map of a feature pyramid), by name
    results = compare_outputs(torch_out, paddle_out, spec.tolerance(PADDLE).for_dtype(dtype), PADDLE, dtype)
    same = roundtrip_identical(state, spec, ref.kwargs, variant.release_layout)
    first = layers.first_divergence if layers else None
    worst = layers.worst() if layers else None
    notes = [f"official -> paddle -> official: {'identical' if same else 'NOT identical'} ({len(state)} tensors)",
             "paddle compared with torch on the same weights and input"
             + ("" if weights else " (seeded random weights: an untrained model's outputs)")]
    if layers is None:
        notes.append("per layer: not compared (final output only)")
    elif first is None:
        notes.append(f"per layer: all {len(layers.layers)} module calls within tolerance"
                     + ("" if worst is None
                        else f" (worst local: {worst.key} {worst.max_abs:.2e}, limit {worst.limit:.1e})"))
    else:
        notes.append(f"per layer: FIRST DIVERGENCE at {first.key} ({first.type}): local max|diff| {first.max_abs:.3e} "
                     f"> limit {first.limit:.1e}" + (f"; {first.note}" if first.note else ""))
    out: dict[str, Any] = {
        "ok": all(r.ok for r in results) and same and first is None,
        "model": variant.name,
        "dtype": dtype,
        "weights": weights or "seeded",
        "input": described,
        "roundtrip_identical": same,
        "results": [r.as_dict() for r in results],
        "first_divergence": None if first is None else first.key,
        "layers": layers.as_dict() if layers else None,
        "notes": notes,
    }
    if topk:
        lines = topk_lines(_final(torch_out), _final(paddle_out), topk)
        out["topk"] = lines
        notes.extend(lines)
    if report_dir and layers is not None:
        report = layer_report(name, weights, image, ("float32", "float64"), batch, done={dtype: layers})
        paths = write_report(report, report_dir)
        out["report_files"] = paths
        out["ok"] = out["ok"] and report.ok
        notes.append(f"report: {paths['json']}, {paths['markdown']}, {paths['png']}")
        for other, comp in report.comparisons.items():
            if other != dtype:
                first_other = comp.first_divergence
                notes.append(f"per layer ({other}): " + ("all within tolerance" if first_other is None
                             else f"FIRST DIVERGENCE at {first_other.key}"))
    return out
