"""CPU inference speed: porthub's PyTorch and Paddle models side by side (and the official PyTorch
code when given), with each model's Paddle/PyTorch ratio beside the ratio its mix of ops predicts.

    python benchmarks/infer.py [--family shunted ...] [--variant twins_pcpvt_small ...] [--batch 1 8]
                               [--repeat 5] [--official shunted=PATH/SSA.py ...] [--no-paddle]
                               [--backend torch paddle paddle-inference paddle2onnx onnxruntime]
                               [--device cpu|cuda:N|gpu:N] [--dtype float32 float16] [--json out.json]
    python benchmarks/infer.py --env [--variant shunted_t focal_tiny] [--batch 8]

For the smallest variant of each family at its evaluation size (224x224; 512x512 for segmentation),
in eval mode with the same weights (random, seeded) in every implementation, calls alternate between
the implementations ``--repeat`` times (every other round in reverse order); each figure is the fastest call
(on a shared machine the fastest is the least disturbed).

Prediction: one PyTorch forward runs under the torch profiler; each op's self time goes to a kind
(Linear, batched matmul or fused attention, softmax, GELU, LayerNorm, BatchNorm, depthwise / dense convolution,
elementwise, other), and ``ops.py`` measures, in the same run, Paddle/PyTorch for each kind. The
predicted ratio is sum(time_kind x ratio_kind) / sum(time_kind), "other" counted at 1. Target:
measured ratio <= predicted x 1.15 (the slack is the run-to-run noise of this machine; the gap
beyond it would be porthub's copies, casts or Python overhead, not the kernels). Where the
prediction misses, the per-part line says which: each leaf layer (one kernel, timed at the model's
own shapes through hooks) against the time between the layers (porthub's own code).

``--official FAMILY=FILE``: a module of the official repository (e.g. Shunted's ``SSA.py``); its
class of the variant's name is built with the variant's keyword arguments and loaded with the same
state dict (``strict=True``); a ``norm_layer`` written as text (``functools.partial(torch.nn.LayerNorm,
eps=1e-6)``) is passed to it as that callable. Nothing of the official code is shipped with porthub.
Target: porthub's PyTorch model no slower than the official one (ratio <= 1.05, the noise).

``--backend``: the implementations measured beside PyTorch eager (always measured: the reference):
``paddle`` (porthub's Paddle model, dynamic graph; default with ``torch``), ``paddle-inference`` (the
model exported by ``porthub.export.export_model`` to a temporary folder and run by a Paddle Inference
predictor, as two columns: oneDNN on and oneDNN off), ``paddle2onnx`` (the Paddle model saved as an inference
program and converted by paddle2onnx, run by ONNX Runtime: how PaddleX's high-performance inference deploys a
Paddle model on ONNX Runtime) and ``onnxruntime`` (the PyTorch model exported to ONNX, run by an ONNX Runtime
session). Exports have a dynamic batch axis, so one artefact serves every
batch; each is verified by ``export_model`` before it is timed. Every backend gets the same weights and
the same input; its output is compared with PyTorch's (max |difference| relative to max(1, max|torch|),
``porthub.compare``), and its time is given as a ratio to PyTorch eager. Target (issue 17): the fastest
Paddle path <= 1.2x PyTorch eager; the table gives it with paddle2onnx and, beside it, the fastest path
that runs Paddle's own kernels (dynamic graph or Paddle Inference). Eager models are timed on framework
tensors made beforehand; exported runners from numpy to numpy (their copies in and out included, as a
deployment calls them). ``--device cuda:0`` (or ``gpu:0``) runs every backend on that GPU (the
timer waits for the device); ``--dtype float16`` builds the eager models and the exports in half
precision (the op-mix prediction is CPU float32 only). A backend that fails to export or run is
reported in its column and the others go on.

``--variant NAME``: measure these variants instead of each family's smallest (a family is then the
variant's own). ``--no-paddle``: PyTorch (and official) only, without the Paddle model and the op-mix
prediction, for the official comparison on a busy machine. ``--env``: each model's PyTorch and Paddle
times in child processes under the settings of ``ops.py --env`` (threads, math library, allocators).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from convert import load_average, machine  # noqa: E402
from ops import env_runs, frameworks, measure, threads_info  # noqa: E402

from porthub.compare import limit, max_abs_diff  # noqa: E402

NOISE = 1.15
OFFICIAL_NOISE = 1.05
#: issue 17: the fastest Paddle path within this factor of PyTorch eager
PADDLE_TARGET = 1.2
BACKENDS = ("torch", "paddle", "paddle-inference", "paddle2onnx", "onnxruntime")
#: exported backend -> (export format, [(column, runner options)])
EXPORTED = {
    "paddle-inference": (
        "paddle-inference",
        [("paddle-inference+onednn", {"onednn": "auto"}), ("paddle-inference", {"onednn": False})],
    ),
    "onnxruntime": ("onnx", [("onnxruntime", {})]),
    # the Paddle model as PaddleX's high-performance inference deploys it on ONNX Runtime
    "paddle2onnx": ("onnx", [("paddle2onnx", {})]),
}
#: the export options of a backend (beside export_model's common ones)
EXPORT_OPTIONS = {"paddle2onnx": {"via": "paddle2onnx"}}
#: the Paddle paths that run Paddle's own kernels (dynamic graph, Paddle Inference)
NATIVE_PADDLE = ("paddle", "paddle-inference+onednn", "paddle-inference")
#: the display name of each column
LABELS = {
    "torch": "torch",
    "paddle": "paddle",
    "paddle-inference+onednn": "paddle-inference oneDNN",
    "paddle-inference": "paddle-inference no-oneDNN",
    "onnxruntime": "onnxruntime",
    "paddle2onnx": "paddle2onnx + onnxruntime",
    "official": "official",
}
#: exported artefacts against PyTorch (issue 17: standalone within 1e-4 relative); eager Paddle keeps
#: its family tolerance; half precision its own
EXPORT_TOL = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
HALF_TOL = {"float16": 1e-2, "bfloat16": 5e-2}
_ELEMENTWISE = (
    "add",
    "mul",
    "div",
    "sub",
    "copy_",
    "clone",
    "cat",
    "pad",
    "constant_pad_nd",
    "roll",
    "where",
    "fill_",
    "zero_",
    "sigmoid",
    "relu",
    "hardtanh",
    "hardswish",
    "mean",
    "sum",
    "masked_fill",
    "index",
)


def op_kind(name: str, shapes: list) -> str:
    base = name.split("::")[-1]
    if base in ("addmm", "linear", "mm"):
        return "linear"
    if base in ("bmm", "baddbmm") or base.startswith("_scaled_dot_product"):
        # fused attention: Paddle runs it as two batched matmuls and a softmax
        return "matmul"
    if "softmax" in base:
        return "softmax"
    if "gelu" in base:
        return "gelu"
    if "layer_norm" in base:
        return "layernorm"
    if "batch_norm" in base:
        return "batchnorm"
    if "conv" in base:
        weight = shapes[1] if len(shapes) > 1 else []
        return "dwconv" if len(weight) == 4 and weight[1] == 1 else "conv"
    if base.rstrip("_") in _ELEMENTWISE or base in _ELEMENTWISE or "upsample" in base or "interpolate" in base:
        return "add"
    return "other"


def op_mix(model: Any, x: Any) -> dict[str, float]:
    """Self CPU seconds per op kind in one PyTorch forward."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        model(x)
    mix: dict[str, float] = {}
    for ev in prof.key_averages(group_by_input_shape=True):
        kind = op_kind(ev.key, list(ev.input_shapes or []))
        mix[kind] = mix.get(kind, 0.0) + ev.self_cpu_time_total / 1e6
    return mix


def leaf_split(model: Any, x: Any, framework: str, repeat: int = 3) -> dict[str, Any]:
    """Where one forward's time goes: each leaf layer (a Linear, a convolution, a norm, an activation:
    one framework kernel, give or take its bias add) timed at its own inputs through forward hooks,
    grouped by class, and the rest ("between"): porthub's reshapes, transposes, attention
    arithmetic and Python. The fastest of ``repeat`` forwards."""
    from porthub.runtime import add_output_hook, named_modules

    leaves = [m for m in named_modules(model, framework).values() if not list(m.children())]
    best: dict[str, Any] | None = None
    for _ in range(repeat):
        per: dict[str, float] = {}
        started: dict[int, float] = {}
        hooks = []
        for m in leaves:
            kind = type(m).__name__.replace("Conv2D", "Conv2d").replace("BatchNorm2D", "BatchNorm2d")

            def pre(mod: Any, inp: Any, key: int = id(m), started: dict = started) -> None:
                started[key] = time.perf_counter()

            def post(
                mod: Any, inp: Any, out: Any, key: int = id(m), kind: str = kind,
                per: dict = per, started: dict = started,
            ) -> None:
                per[kind] = per.get(kind, 0.0) + time.perf_counter() - started[key]

            hooks.append(m.register_forward_pre_hook(pre))
            hooks.append(add_output_hook(m, framework, post))
        try:
            t = time.perf_counter()
            model(x)
            total = time.perf_counter() - t
        finally:
            for h in hooks:
                h.remove()
        if best is None or total < best["total"]:
            best = {"total": total, "layers": per, "between": total - sum(per.values())}
    assert best is not None
    return best


def smallest(spec: Any) -> Any:
    from porthub.manifest import load_manifest

    def size(variant: Any) -> int:
        return sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in load_manifest(spec, variant).entries.values())

    return min(spec.variants, key=size)


def official_kwargs(kwargs: dict) -> dict:
    """The variant's kwargs with a text ``norm_layer`` turned into the callable the official code expects."""
    import functools

    import torch

    from porthub.normspec import parse_norm_layer

    out = dict(kwargs)
    if isinstance(out.get("norm_layer"), str):
        norm = parse_norm_layer(out["norm_layer"])
        out["norm_layer"] = functools.partial(getattr(torch.nn, norm.name), eps=norm.eps)
    return out


def load_official(path: str, class_name: str, kwargs: dict) -> Any:
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    module_spec = importlib.util.spec_from_file_location(
        f"official_{os.path.splitext(os.path.basename(path))[0]}", path
    )
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"--official: cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise SystemExit(f"--official: {path} has no {class_name}")
    return cls(**kwargs)


def first(out: Any) -> Any:
    while isinstance(out, (list, tuple)):
        out = out[-1]
    if isinstance(out, dict):
        out = list(out.values())[-1]
    return out


def parse_device(device: str) -> tuple[str, str]:
    """(torch device, paddle place) of ``cpu``, ``cuda[:N]`` or ``gpu[:N]`` (either spelling)."""
    try:
        from porthub.devices import parse_device as porthub_parse
    except ImportError:  # porthub without its device parser: the same rule, here
        porthub_parse = None
    if porthub_parse is not None:
        return porthub_parse(device, "torch").name, porthub_parse(device, "paddle").name
    kind, _, index = device.strip().lower().partition(":")
    if kind == "cpu" and not index:
        return "cpu", "cpu"
    if kind in ("cuda", "gpu") and (index or "0").isdigit():
        return f"cuda:{int(index or 0)}", f"gpu:{int(index or 0)}"
    raise ValueError(f"--device must be cpu, cuda[:N] or gpu[:N], not {device!r}")


def columns(backends: list[str], device: str) -> list[str]:
    """The columns measured for ``backends``: torch first; paddle-inference twice on CPU (oneDNN on, off)."""
    cols = ["torch"]
    for b in backends:
        if b in ("torch",) or b in cols:
            continue
        if b in EXPORTED:
            named = EXPORTED[b][1]
            cols += [name for name, _ in (named if device == "cpu" else named[-1:])]
        else:
            cols.append(b)
    return cols


def _tolerance(spec: Any, dtype: str, column: str) -> float:
    if column in ("paddle", "official") and dtype not in HALF_TOL:
        tol = spec.tolerance("paddle")
        return float(getattr(tol, dtype, tol.float32))
    return EXPORT_TOL.get(dtype, HALF_TOL.get(dtype, 1e-2))


def _export(
    name: str, backend: str, ckpt: str, workdir: str, device: str, dtype: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The backend's artefact (through porthub.export.export_model, verified there) and its runners:
    (column -> runner, report with the export's time and verification)."""
    from porthub.export import export_model, load_exported

    fmt, named = EXPORTED[backend]
    t = time.perf_counter()
    res = export_model(
        name, fmt, weights=ckpt, out=os.path.join(workdir, f"{name}-{backend}"), dynamic_batch=True, dtype=dtype,
        device=device, options=EXPORT_OPTIONS.get(backend),
    )
    seconds = time.perf_counter() - t
    runners = {}
    info = {}
    for column, options in named if device == "cpu" else named[-1:]:
        # oneDNN "auto": on, unless a child process finds this Paddle's oneDNN failing on the program
        # (Paddle 3.3.0/3.3.1); then off, which the column's info says
        runners[column] = load_exported(res.out_dir, device=device, **(options if device == "cpu" else {}))
        info[column] = dict(getattr(runners[column], "info", {}) or {})
    report = {"export_s": seconds, "verification": dict(res.report).get("verification"), "runners": info}
    return runners, report


def _sync(device: str) -> None:
    if device != "cpu":
        torch, paddle = frameworks()
        torch.cuda.synchronize()
        paddle.device.synchronize()


def bench_family(
    family: str,
    batches: list[int],
    repeat: int,
    official: str | None,
    ratios: dict[int, dict] | None,
    variant_name: str | None = None,
    with_paddle: bool | None = None,
    backends: list[str] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    workdir: str | None = None,
) -> dict:
    """``ratios`` None: no op-mix prediction, and no Paddle model unless ``with_paddle`` (or ``backends``
    names it). ``backends``: the columns beside torch (see :func:`columns`); exports go to ``workdir``."""
    if backends is None:
        backends = ["torch", "paddle"] if (with_paddle or (with_paddle is None and ratios is not None)) else ["torch"]
    from porthub.io import save_checkpoint
    from porthub.registry import get_spec
    from porthub.runtime import build_model, load_state, to_numpy

    torch, paddle = frameworks()
    torch_dev, paddle_place = parse_device(device)
    spec = get_spec(family)
    variant = next(v for v in spec.variants if v.name == variant_name) if variant_name else smallest(spec)
    ref = variant.model()
    torch.manual_seed(0)
    pt = build_model(spec, ref, "torch")
    state = {k: v.detach().numpy() for k, v in pt.state_dict().items()}
    pt = pt.to(device=torch_dev, dtype=getattr(torch, dtype))
    pd = None
    if "paddle" in backends:
        paddle.set_device(paddle_place)
        pd = build_model(spec, ref, "paddle", dtype)
        load_state(pd, state, spec, "paddle", variant.name)
    off = None
    if official:
        off = load_official(official, variant.class_name, official_kwargs(variant.kwargs))
        off.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
        off = off.eval().to(device=torch_dev, dtype=getattr(torch, dtype))
    h, w = variant.input_size
    result: dict[str, Any] = {"variant": variant.name, "size": [h, w], "device": device, "dtype": dtype,
                              "batches": {}, "exports": {}, "errors": {}}
    runners: dict[str, Any] = {}
    exported = [b for b in backends if b in EXPORTED]
    if exported:
        if workdir is None:
            raise ValueError("exported backends need a workdir")
        # the same weights as the eager models, as an official-layout file (what `porthub export` reads)
        ckpt = os.path.join(workdir, f"{variant.name}.pth")
        save_checkpoint(state, ckpt, "pth")
        for backend in exported:
            try:
                got, report = _export(variant.name, backend, ckpt, workdir, device, dtype)
            except Exception as exc:  # noqa: BLE001 - a benchmark reports a failed backend and measures the rest
                result["errors"][backend] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                continue
            runners.update(got)
            result["exports"][backend] = report
    cols = [c for c in columns(backends, device) if c == "torch" or c == "paddle" or c in runners]
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, 3, h, w)).astype(dtype)
        xt = torch.from_numpy(x).to(torch_dev)
        xp = paddle.to_tensor(x, place=paddle_place) if pd is not None else None
        calls: dict[str, Any] = {"torch": lambda xt=xt: pt(xt)}
        if pd is not None:
            calls["paddle"] = lambda xp=xp: pd(xp)
        for column in cols:
            if column in runners:
                calls[column] = lambda r=runners[column], x=x: r(x)
        if off is not None:
            calls["official"] = lambda xt=xt: off(xt)
        diff: dict[str, float] = {}
        tolerance: dict[str, float] = {}
        times: dict[str, list[float]] = {k: [] for k in calls}
        with torch.no_grad(), paddle.no_grad():
            reference = np.asarray(to_numpy(first(calls["torch"]())), dtype=np.float64)
            bound = limit(1.0, reference)
            for name, fn in calls.items():
                if name == "torch":
                    continue
                out = fn()  # warm-up, and the output to compare (one at a time: 512x512 logits are large)
                got = out[-1] if name in runners else to_numpy(first(out))
                diff[name] = max_abs_diff(got, reference) / bound
                tolerance[name] = _tolerance(spec, dtype, name)
                del out, got
            del reference
            for i in range(repeat):
                # every other round in reverse, so that neither implementation always runs right after
                # the other's large frees (the 512x512 segmentation logits are 1.2 GB at batch 8)
                for name, fn in list(calls.items()) if i % 2 == 0 else list(calls.items())[::-1]:
                    _sync(device)
                    t = time.perf_counter()
                    fn()
                    _sync(device)
                    times[name].append(time.perf_counter() - t)
        best = {name: min(v) for name, v in times.items()}
        mix, split, predicted = None, None, None
        if device == "cpu" and dtype == "float32":
            mix = op_mix(pt, xt)
            if pd is not None:
                with torch.no_grad(), paddle.no_grad():
                    split = {"torch": leaf_split(pt, xt, "torch"), "paddle": leaf_split(pd, xp, "paddle")}
            if ratios is not None and pd is not None:
                kernel = ratios[batch]
                total = sum(mix.values())
                predicted = sum(t * (kernel[k]["ratio"] if k in kernel else 1.0) for k, t in mix.items()) / total
        paddle_paths = [c for c in best if c.startswith("paddle")]
        fastest = min(paddle_paths, key=lambda c: best[c]) if paddle_paths else None
        native = [c for c in paddle_paths if c in NATIVE_PADDLE]
        fastest_native = min(native, key=lambda c: best[c]) if native else None
        result["batches"][batch] = {
            "seconds": best,
            "over_torch": {name: best[name] / best["torch"] for name in best},
            "max_rel_diff_vs_torch": diff,
            "tolerance": tolerance,
            "fastest_paddle": fastest,
            "fastest_paddle_over_torch": best[fastest] / best["torch"] if fastest else None,
            "fastest_native_paddle": fastest_native,
            "fastest_native_paddle_over_torch": best[fastest_native] / best["torch"] if fastest_native else None,
            "op_mix_s": mix,
            "leaf_split": split,
            "paddle_over_torch": best["paddle"] / best["torch"] if "paddle" in best else None,
            "predicted": predicted,
            "torch_over_official": best["torch"] / best["official"] if "official" in best else None,
            "load": load_average(),
        }
        del calls, xt, xp
    return result


def run_env(runs: list[tuple[str, str | None]], batches: list[int], repeat: int) -> int:
    """Each model in a child process under each setting of ``ops.env_variants``; times against the default's."""
    print(f"whole-model inference under each setting, fastest of {repeat} alternating calls; machine: {machine()}")
    variants = [name for _family, name in runs if name]
    cmd = [sys.executable, os.path.abspath(__file__), "--raw", "--repeat", str(repeat), "--batch", *map(str, batches)]
    cmd += ["--variant", *variants] if variants else ["--family", *[family for family, _ in runs]]
    base: dict[str, Any] | None = None
    for got in env_runs(cmd):
        base = base or got
        for variant, per_batch in got["results"].items():
            for batch, sec in per_batch.items():
                ref = base["results"][variant][batch]
                print(
                    f"    {variant:<22} b{batch}: torch {sec['torch'] * 1e3:8.1f} ms "
                    f"({sec['torch'] / ref['torch']:4.2f}x default)"
                    f"  paddle {sec['paddle'] * 1e3:8.1f} ms ({sec['paddle'] / ref['paddle']:4.2f}x default)"
                    f"  Paddle/PyTorch {sec['paddle'] / sec['torch']:4.2f}x"
                )
    return 0


def peak_rss() -> int:
    """This process's high-water resident memory in bytes (VmHWM; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next((int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:7.1f} ms"


def print_result(res: dict, batch: int, r: dict) -> tuple[bool, bool]:
    """The lines of one variant at one batch; returns (targets met, outputs within tolerance)."""
    s = r["seconds"]
    line = f"  {res['variant']:<22} {res['size'][0]}x{res['size'][1]} b{batch}: torch {_ms(s['torch'])}"
    good = True
    for name in s:
        if name in ("torch", "official"):
            continue
        line += f", {LABELS.get(name, name)} {_ms(s[name])} ({r['over_torch'][name]:.2f}x)"
    if r["predicted"] is not None:
        good = r["paddle_over_torch"] <= r["predicted"] * NOISE
        line += (
            f"; paddle predicted by op mix {r['predicted']:.2f}x (target <= {r['predicted'] * NOISE:.2f}x) "
            f"{'ok' if good else 'MISSED'}"
        )
    if r["fastest_paddle"] is not None:
        hit = r["fastest_paddle_over_torch"] <= PADDLE_TARGET
        good &= hit
        line += (
            f"; fastest Paddle path {LABELS.get(r['fastest_paddle'])} {r['fastest_paddle_over_torch']:.2f}x "
            f"(target <= {PADDLE_TARGET}) {'ok' if hit else 'MISSED'}"
        )
    if r["torch_over_official"] is not None:
        good_off = r["torch_over_official"] <= OFFICIAL_NOISE
        good &= good_off
        line += (
            f"; official {s['official'] * 1e3:.1f} ms, porthub/official {r['torch_over_official']:.2f}x "
            f"(target <= {OFFICIAL_NOISE}) {'ok' if good_off else 'MISSED'}"
        )
    print(line)
    same = all(r["max_rel_diff_vs_torch"][n] <= r["tolerance"][n] for n in r["max_rel_diff_vs_torch"])
    diffs = ", ".join(
        f"{LABELS.get(n, n)} {d:.1e}{'' if d <= r['tolerance'][n] else ' OVER ' + format(r['tolerance'][n], '.0e')}"
        for n, d in r["max_rel_diff_vs_torch"].items()
    )
    mix = r["op_mix_s"]
    top = ""
    if mix:
        total = sum(mix.values())
        top = "op mix (torch profiler): " + ", ".join(
            f"{k} {v / total:.0%}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1])[:5]
        ) + "; "
    print(f"      {top}max |x - torch| / max(1, max|torch|): {diffs}; {r['load']}")
    split = r["leaf_split"]
    if split is not None:
        ts, ps = split["torch"], split["paddle"]
        kinds = sorted(ps["layers"], key=lambda k: -ps["layers"][k])[:4]
        per = ", ".join(f"{k} {ps['layers'][k] * 1e3:.0f}/{ts['layers'].get(k, 0.0) * 1e3:.0f} ms" for k in kinds)
        print(
            f"      Paddle/PyTorch by part (hooked forward): leaf layers "
            f"{sum(ps['layers'].values()) * 1e3:.0f}/"
            f"{sum(ts['layers'].values()) * 1e3:.0f} ms ({per}); between layers "
            f"{ps['between'] * 1e3:.0f}/{ts['between'] * 1e3:.0f} ms"
        )
    return good, same


def print_table(results: dict, cols: list[str]) -> None:
    """The summary as a Markdown table: each column's time and its ratio to PyTorch eager."""
    head = ["model", "batch", *[LABELS.get(c, c) for c in cols], "fastest Paddle / torch",
            "fastest Paddle kernels (dynamic, Paddle Inference) / torch", "max rel diff vs torch"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for res in results.values():
        for batch, r in res["batches"].items():
            cells = [res["variant"], str(batch)]
            for c in cols:
                if c not in r["seconds"]:
                    cells.append("failed" if c in res["errors"] or c.startswith(tuple(res["errors"])) else "-")
                elif c == "torch":
                    cells.append(f"{r['seconds'][c] * 1e3:.1f} ms")
                else:
                    cells.append(f"{r['seconds'][c] * 1e3:.1f} ms ({r['over_torch'][c]:.2f}x)")
            fast = r["fastest_paddle_over_torch"]
            cells.append(
                "-" if fast is None else f"{fast:.2f}x {LABELS.get(r['fastest_paddle'])} "
                f"({'ok' if fast <= PADDLE_TARGET else 'MISSED'})"
            )
            native = r.get("fastest_native_paddle_over_torch")
            cells.append("-" if native is None else f"{native:.2f}x {LABELS.get(r['fastest_native_paddle'])}")
            worst = max(r["max_rel_diff_vs_torch"].values(), default=0.0)
            cells.append(f"{worst:.1e}")
            print("| " + " | ".join(cells) + " |")


def main() -> int:
    from porthub.registry import FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", nargs="*", default=list(FAMILIES))
    ap.add_argument("--variant", nargs="*", default=[], help="these variants instead of each family's smallest")
    ap.add_argument(
        "--no-paddle", action="store_true", help="PyTorch and official only, no Paddle or op-mix prediction"
    )
    ap.add_argument(
        "--backend",
        nargs="+",
        choices=BACKENDS,
        default=["torch", "paddle"],
        help="what to measure beside PyTorch eager (always measured); paddle-inference gives two columns on "
        "CPU: oneDNN on and off",
    )
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda:N or gpu:N")
    ap.add_argument(
        "--dtype", nargs="+", choices=("float32", "float16", "bfloat16"), default=["float32"],
        help="precision of the models and exports (float16: a GPU)",
    )
    ap.add_argument("--batch", nargs="*", type=int, default=[1, 8])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--official", action="append", default=[], metavar="FAMILY=FILE")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument(
        "--env", action="store_true", help="whole-model times under each thread, math-library and allocator setting"
    )
    ap.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if any("=" not in item for item in args.official):
        ap.error("--official takes FAMILY=FILE")
    try:
        parse_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    if any(b < 1 for b in args.batch) or args.repeat < 1:
        ap.error("--batch and --repeat take positive numbers")
    backends = [b for b in args.backend if not (args.no_paddle and b == "paddle")]
    official = dict(item.split("=", 1) for item in args.official)
    runs: list[tuple[str, str | None]] = [(family, None) for family in args.family]
    if args.variant:
        from porthub.errors import PorthubError
        from porthub.registry import resolve

        try:
            runs = [(spec.family, variant.name) for spec, variant in map(resolve, args.variant)]
        except PorthubError as exc:
            ap.error(str(exc))
    if args.env:
        return run_env(runs, args.batch, args.repeat)
    if args.raw:
        frameworks()
        raw = {
            res["variant"]: {str(b): r["seconds"] for b, r in res["batches"].items()}
            for res in (bench_family(f, args.batch, args.repeat, None, None, v, with_paddle=True) for f, v in runs)
        }
        print(json.dumps({"threads": threads_info(), "results": raw}))
        return 0
    frameworks()
    print(
        f"inference, {args.device}, {'/'.join(args.dtype)}, eval; fastest of {args.repeat} alternating calls; "
        f"backends {', '.join(columns(backends, args.device))}; {threads_info()}; machine: {machine()}; "
        f"{load_average()} at the start"
    )
    ratios: dict[int, dict] | None = None
    if "paddle" in backends and args.device == "cpu" and "float32" in args.dtype:
        ratios = {}
        for batch in args.batch:
            # per-op calls are short and this machine noisy: at least 15 alternating samples each
            ratios[batch] = measure(batch, max(15, args.repeat))
            kinds = ", ".join(f"{k} {v['ratio']:.2f}" for k, v in ratios[batch].items())
            print(f"  kernel ratios Paddle/PyTorch at batch {batch} (ops.py shapes): {kinds}")
    ok, same = True, True
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="porthub-infer-") as workdir:
        for dtype in args.dtype:
            for family, variant_name in runs:
                res = bench_family(
                    family, args.batch, args.repeat, official.get(family), ratios if dtype == "float32" else None,
                    variant_name, backends=backends, device=args.device, dtype=dtype, workdir=workdir,
                )
                results[f"{res['variant']}/{dtype}" if len(args.dtype) > 1 else res["variant"]] = res
                for backend, err in res["errors"].items():
                    same = False
                    print(f"  {res['variant']} {dtype}: {backend} failed: {err}")
                for backend, rep in res["exports"].items():
                    print(f"  {res['variant']} {dtype}: exported for {backend} in {rep['export_s']:.1f} s (verified)")
                    for column, info in rep["runners"].items():
                        if column.endswith("+onednn") and info.get("onednn") is False:
                            why = info.get("onednn_probe_cause") or "probe failed"
                            print(f"      {LABELS[column]}: oneDNN off ({why}): the column is oneDNN off")
                for batch, r in res["batches"].items():
                    good, close = print_result(res, batch, r)
                    ok &= good
                    same &= close
    print_table(results, columns(backends, args.device))
    print(f"\n{load_average()} at the end; peak memory {peak_rss() / 2**30:.1f} GiB; machine: {machine()}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "machine": machine(),
                    "threads": threads_info(),
                    "device": args.device,
                    "dtypes": args.dtype,
                    "backends": columns(backends, args.device),
                    "kernel_ratios": ratios,
                    "peak_rss": peak_rss(),
                    "results": results,
                },
                fh,
                indent=1,
            )
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
