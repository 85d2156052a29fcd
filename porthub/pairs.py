"""PyTorch against Paddle on one registered model at full size: the same weights carried through the
layer map, the same input, and the difference of the outputs."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from .engine import Manifest, detect_layout, from_canonical, to_canonical, unwrap
from .io import load_checkpoint
from .manifest import manifest_for
from .registry import resolve
from .spec import PADDLE, TORCH, FamilySpec, ModelRef, Variant
from .verify import Comparison, frameworks_of_file, max_abs_diff

__all__ = ["seeded_state", "seeded_input", "verify_pair", "roundtrip_identical"]


def seeded_state(spec: FamilySpec, ref: ModelRef, seed: int = 0) -> "OrderedDict[str, np.ndarray]":
    """The model's own buffers (index tables, constants) with every learned floating tensor and
    BatchNorm statistic replaced by seeded noise of a sensible scale, so every parameter matters."""
    from .frameworks import build_model, import_framework

    torch = import_framework(TORCH)
    torch.manual_seed(seed)
    model = build_model(spec, ref, TORCH)
    params = {name for name, _ in model.named_parameters()}
    rng = np.random.default_rng(seed)
    state: OrderedDict = OrderedDict()
    for key, tensor in model.state_dict().items():
        value = tensor.detach().cpu().numpy()
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


def roundtrip_identical(state: "OrderedDict[str, np.ndarray]", spec: FamilySpec, kwargs: Any, torch_layout: str) -> bool:
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
    return all(current[k].dtype == v.dtype and current[k].shape == v.shape and np.array_equal(current[k], v) for k, v in state.items())


def verify_pair(name: str, dtype: str = "float32", weights: str | None = None, batch: int = 1) -> dict[str, Any]:
    """Run both frameworks on one state (seeded, or read from ``weights``) and compare outputs."""
    from .frameworks import build_model, load_state, run_model

    spec, variant = resolve(name)
    ref = variant.model()
    if weights:
        manifest: Manifest = manifest_for(spec, ref, variant.name, variant)
        _, state = detect_layout(load_checkpoint(weights), spec, manifest, frameworks_of_file(weights))
    else:
        state = seeded_state(spec, ref)
    x = seeded_input(variant, batch)
    outputs = {}
    for fw in (TORCH, PADDLE):
        model = build_model(spec, ref, fw, dtype)
        load_state(model, state, spec, fw, variant.name)
        out, _ = run_model(model, x, fw, dtype)
        outputs[fw] = np.asarray(out[-1] if isinstance(out, list) else out)
        del model
    ref_out = outputs[TORCH]
    tol = spec.tolerance(PADDLE).for_dtype(dtype) * max(1.0, float(np.abs(ref_out).max()))
    diff = max_abs_diff(outputs[PADDLE], ref_out)
    same = roundtrip_identical(state, spec, ref.kwargs, variant.release_layout)
    result = Comparison(PADDLE, "output", diff, tol, diff <= tol, dtype)
    return {
        "ok": result.ok and same,
        "model": variant.name,
        "dtype": dtype,
        "weights": weights or "seeded",
        "roundtrip_identical": same,
        "results": [result.as_dict()],
        "notes": [f"official -> paddle -> official: {'identical' if same else 'NOT identical'} ({len(state)} tensors)",
                  "paddle compared with torch on the same weights and input"],
    }
