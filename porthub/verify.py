"""Numeric verification: porthub's models against the official reference cases, and the two
frameworks against each other."""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

from .compare import Comparison, compare_arrays, compare_outputs
from .engine import Manifest, detect_layout
from .errors import CheckpointFormatError, ReferenceCaseError
from .io import frameworks_of_file, load_checkpoint, read_json_object  # re-exported: they live in porthub.io
from .registry import get_spec
from .spec import FRAMEWORKS, FamilySpec, FeatureSet, ModelRef

__all__ = ["verify_reference", "frameworks_of_file", "load_case", "read_json_object"]


def load_case(path: str) -> tuple[dict[str, Any], str]:
    """The case JSON and the path prefix of its files (``<dir>/<case>``)."""
    case = read_json_object(path, "reference case")
    if "family" not in case:
        raise ReferenceCaseError(f"{path} is not a porthub reference case (no 'family' field)")
    return case, path[:-5] if path.endswith(".json") else path


def _read_canonical(
    path: str, spec: FamilySpec, manifest: Manifest, prefer: str | None = None, frameworks: Sequence[str] | None = None
):
    raw = load_checkpoint(path)
    fws = tuple(frameworks) if frameworks else frameworks_of_file(path)
    return detect_layout(raw, spec, manifest, fws, prefer=prefer)


def _outputs_wanted(names: Sequence[str], fs: FeatureSet) -> tuple[dict[str, tuple[str, int | None]], list[str]]:
    """For each feature name: (module path, list index or None); and the module paths to hook."""
    from .runtime import hook_name_pattern

    where: dict[str, tuple[str, int | None]] = {}
    for name in names:
        for template, module in fs.outputs.items():
            if template == name:
                where[name] = (module, None)
                break
            match = hook_name_pattern(template).match(name)
            if match:
                where[name] = (module, int(match.group(1)))
                break
        else:
            where[name] = (name, None)
    hooks = sorted({module for module, _ in where.values() if module})
    return where, hooks


def _pick(output: Any, captured: Mapping[str, Any], module: str, index: int | None) -> np.ndarray:
    value = output if module == "" else captured[module]
    if index is not None:
        value = value[index]
    return np.asarray(value)


def verify_reference(
    case_path: str,
    frameworks: Sequence[str] = FRAMEWORKS,
    dtype: str = "float32",
    checkpoint: str | None = None,
    features: bool = True,
) -> dict[str, Any]:
    """Build the case's model in each framework from the case's (or the given) checkpoint, run the
    case's input and compare with the official float64 output and features."""
    from .runtime import build_model, load_state, model_manifest, run_model

    case, stem = load_case(case_path)
    spec = get_spec(case["family"])
    ref = spec.case_model(case)
    ckpt = checkpoint or f"{stem}.pth"
    name = f"{spec.family} case {case.get('case', os.path.basename(stem))}"
    manifest = model_manifest(spec, ref, frameworks[0], name)
    prefer = spec.case_layout(case) if checkpoint is None else None
    layout, state = _read_canonical(ckpt, spec, manifest, prefer)
    x = np.load(f"{stem}.input.npy")
    out64 = np.load(f"{stem}.out64.npy")
    results: list[Comparison] = []
    for fw in frameworks:
        model = build_model(spec, ref, fw, dtype)
        load_state(model, state, spec, fw, name)
        out, _ = run_model(model, x, fw, dtype)
        # the official output is one array; a list output is compared item by item and fails as a mismatch
        results += compare_outputs(out64, out, spec.tolerance(fw).for_dtype(dtype), fw, dtype)
        del model
    if features and os.path.exists(f"{stem}.features.npz"):
        results += _verify_features(spec, case, stem, ref, state, frameworks, dtype, ckpt if checkpoint else None)
    return {
        "ok": all(r.ok for r in results),
        "case": case.get("case"),
        "family": spec.family,
        "layout": layout.name,
        "dtype": dtype,
        "results": [r.as_dict() for r in results],
    }


def _verify_features(
    spec: FamilySpec,
    case: Mapping[str, Any],
    stem: str,
    ref: ModelRef,
    state: Any,
    frameworks: Sequence[str],
    dtype: str,
    checkpoint: str | None,
) -> list[Comparison]:
    from .runtime import build_model, load_state, model_manifest, run_model

    feats = np.load(f"{stem}.features.npz")
    results: list[Comparison] = []
    for fs in spec.case_features(case):
        if dtype not in fs.dtypes:
            continue
        base = [k for k in feats.files if not k.endswith("_f64") and re.fullmatch(fs.pattern, k)]
        names = [k for k in base if dtype == "float32" or f"{k}_f64" in feats.files]
        if not names:
            continue
        fref = fs.model or ref
        fstate = state
        if fs.model is not None or fs.checkpoint_suffix:
            fmanifest = model_manifest(spec, fref, frameworks[0], f"{spec.family} features of {case.get('case')}")
            source = (
                f"{stem}{fs.checkpoint_suffix}"
                if fs.checkpoint_suffix and os.path.exists(f"{stem}{fs.checkpoint_suffix}")
                else (checkpoint or f"{stem}.pth")
            )
            _, fstate = _read_canonical(source, spec, fmanifest, fs.layout)
        x = np.load(f"{stem}.{'features_input' if fs.input == 'features_input' else 'input'}.npy")
        where, hooks = _outputs_wanted(names, fs)
        for fw in frameworks:
            model = build_model(spec, fref, fw, dtype)
            load_state(model, fstate, spec, fw, f"{spec.family} features")
            out, captured = run_model(model, x, fw, dtype, hooks)
            for name in names:
                want = feats[name if dtype == "float32" else f"{name}_f64"]
                module, index = where[name]
                try:
                    got = _pick(out, captured, module, index)
                except (KeyError, IndexError, TypeError) as exc:
                    raise CheckpointFormatError(f"feature {name}: the model gives no output for it ({exc})") from exc
                results.append(compare_arrays(name, want, got, spec.tolerance(fw).for_dtype(dtype), fw, dtype))
            del model
    return results
