"""CPU inference speed: porthub's PyTorch and Paddle models side by side (and the official PyTorch
code when given), with each model's Paddle/PyTorch ratio beside the ratio its mix of ops predicts.

    python benchmarks/infer.py [--family shunted ...] [--variant twins_pcpvt_small ...] [--batch 1 8]
                               [--repeat 5] [--official shunted=PATH/SSA.py ...] [--no-paddle]
                               [--json out.json]
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
import time
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from convert import load_average, machine  # noqa: E402
from ops import env_runs, frameworks, measure, threads_info  # noqa: E402

NOISE = 1.15
OFFICIAL_NOISE = 1.05
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


def bench_family(
    family: str,
    batches: list[int],
    repeat: int,
    official: str | None,
    ratios: dict[int, dict] | None,
    variant_name: str | None = None,
    with_paddle: bool | None = None,
) -> dict:
    """``ratios`` None: no op-mix prediction, and no Paddle model unless ``with_paddle``."""
    if with_paddle is None:
        with_paddle = ratios is not None
    from porthub.registry import get_spec
    from porthub.runtime import build_model, load_state, to_numpy

    torch, paddle = frameworks()
    spec = get_spec(family)
    variant = next(v for v in spec.variants if v.name == variant_name) if variant_name else smallest(spec)
    ref = variant.model()
    torch.manual_seed(0)
    pt = build_model(spec, ref, "torch")
    state = {k: v.detach().numpy() for k, v in pt.state_dict().items()}
    pd = None
    if with_paddle:
        pd = build_model(spec, ref, "paddle")
        load_state(pd, state, spec, "paddle", variant.name)
    off = None
    if official:
        off = load_official(official, variant.class_name, official_kwargs(variant.kwargs))
        off.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
        off.eval()
    h, w = variant.input_size
    result: dict[str, Any] = {"variant": variant.name, "size": [h, w], "batches": {}}
    for batch in batches:
        x = np.random.default_rng(batch).standard_normal((batch, 3, h, w)).astype(np.float32)
        xt, xp = torch.from_numpy(x), paddle.to_tensor(x)
        runs: dict[str, tuple[Any, Any]] = {"torch": (pt, xt)}
        if pd is not None:
            runs["paddle"] = (pd, xp)
        if off is not None:
            runs["official"] = (off, xt)
        outs = {}
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.no_grad(), paddle.no_grad():
            for name, (model, inp) in runs.items():
                outs[name] = to_numpy(first(model(inp)))  # warm-up, and the outputs to compare
            for i in range(repeat):
                # every other round in reverse, so that neither implementation always runs right after
                # the other's large frees (the 512x512 segmentation logits are 1.2 GB at batch 8)
                for name, (model, inp) in list(runs.items()) if i % 2 == 0 else list(runs.items())[::-1]:
                    t = time.perf_counter()
                    model(inp)
                    times[name].append(time.perf_counter() - t)
        diff = {name: float(np.abs(outs[name] - outs["torch"]).max()) for name in outs if name != "torch"}
        mix = op_mix(pt, xt)
        total = sum(mix.values())
        split = None
        if pd is not None:
            with torch.no_grad(), paddle.no_grad():
                split = {"torch": leaf_split(pt, xt, "torch"), "paddle": leaf_split(pd, xp, "paddle")}
        best = {name: min(v) for name, v in times.items()}
        predicted = None
        if ratios is not None:
            kernel = ratios[batch]
            predicted = sum(t * (kernel[k]["ratio"] if k in kernel else 1.0) for k, t in mix.items()) / total
        result["batches"][batch] = {
            "seconds": best,
            "max_abs_diff_vs_torch": diff,
            "op_mix_s": mix,
            "leaf_split": split,
            "paddle_over_torch": best["paddle"] / best["torch"] if "paddle" in best else None,
            "predicted": predicted,
            "torch_over_official": best["torch"] / best["official"] if "official" in best else None,
            "load": load_average(),
        }
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


def main() -> int:
    from porthub.registry import FAMILIES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", nargs="*", default=list(FAMILIES))
    ap.add_argument("--variant", nargs="*", default=[], help="these variants instead of each family's smallest")
    ap.add_argument(
        "--no-paddle", action="store_true", help="PyTorch and official only, no Paddle or op-mix prediction"
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
        f"inference, CPU, float32, eval; fastest of {args.repeat} alternating calls; {threads_info()}; "
        f"machine: {machine()}"
    )
    ratios: dict[int, dict] | None = None
    if not args.no_paddle:
        ratios = {}
        for batch in args.batch:
            # per-op calls are short and this machine noisy: at least 15 alternating samples each
            ratios[batch] = measure(batch, max(15, args.repeat))
            kinds = ", ".join(f"{k} {v['ratio']:.2f}" for k, v in ratios[batch].items())
            print(f"  kernel ratios Paddle/PyTorch at batch {batch} (ops.py shapes): {kinds}")
    ok = True
    results = {}
    for family, variant_name in runs:
        res = bench_family(family, args.batch, args.repeat, official.get(family), ratios, variant_name)
        results[res["variant"]] = res
        for batch, r in res["batches"].items():
            s = r["seconds"]
            line = (
                f"  {res['variant']:<22} {res['size'][0]}x{res['size'][1]} b{batch}: torch {s['torch'] * 1e3:7.1f} ms"
            )
            good = True
            if r["predicted"] is not None:
                good = r["paddle_over_torch"] <= r["predicted"] * NOISE
                line += (
                    f", paddle {s['paddle'] * 1e3:7.1f} ms; Paddle/PyTorch {r['paddle_over_torch']:.2f}x, "
                    f"predicted by op mix "
                    f"{r['predicted']:.2f}x (target <= {r['predicted'] * NOISE:.2f}x) {'ok' if good else 'MISSED'}"
                )
            if r["torch_over_official"] is not None:
                good_off = r["torch_over_official"] <= OFFICIAL_NOISE
                ok &= good_off
                line += (
                    f"; official {s['official'] * 1e3:.1f} ms, porthub/official {r['torch_over_official']:.2f}x "
                    f"(target <= {OFFICIAL_NOISE}) {'ok' if good_off else 'MISSED'}"
                )
            ok &= good
            mix = r["op_mix_s"]
            total = sum(mix.values())
            top = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1])[:5])
            print(line)
            diffs = ", ".join(f"max |{name} - torch| {d:.1e}" for name, d in r["max_abs_diff_vs_torch"].items())
            print(f"      op mix (torch profiler): {top}; {diffs}; {r['load']}")
            split = r["leaf_split"]
            if split is not None:
                ts, ps = split["torch"], split["paddle"]
                kinds = sorted(ps["layers"], key=lambda k: -ps["layers"][k])[:4]
                per = ", ".join(
                    f"{k} {ps['layers'][k] * 1e3:.0f}/{ts['layers'].get(k, 0.0) * 1e3:.0f} ms" for k in kinds
                )
                print(
                    f"      Paddle/PyTorch by part (hooked forward): leaf layers "
                    f"{sum(ps['layers'].values()) * 1e3:.0f}/"
                    f"{sum(ts['layers'].values()) * 1e3:.0f} ms ({per}); between layers "
                    f"{ps['between'] * 1e3:.0f}/{ts['between'] * 1e3:.0f} ms"
                )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"machine": machine(), "threads": threads_info(), "kernel_ratios": ratios, "results": results},
                fh,
                indent=1,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
