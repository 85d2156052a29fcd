"""Per-op CPU speed of Paddle against PyTorch, measured side by side in one process.

    python benchmarks/ops.py [--repeat 15] [--batch 8] [--json out.json]
    python benchmarks/ops.py --env          # the same in child processes under each setting below

For each op the vision transformers here spend their time in (Linear, batched matmul, softmax, GELU,
LayerNorm, BatchNorm, depthwise and dense convolution), at shapes taken from their first stages,
the two frameworks' calls alternate ``--repeat`` times and the fastest calls are compared (on a
shared machine the fastest call is the one least disturbed by other work). The ratio
Paddle/PyTorch is the kernels' own: ``infer.py`` predicts each model's ratio from these and its mix
of ops. Both frameworks are imported through ``porthub.runtime.import_framework``, which gives
Paddle the machine's cores when OMP_NUM_THREADS is unset (``import paddle`` alone pins one thread).

``--env`` reruns the measurement under: porthub's default, OMP_NUM_THREADS=1 (Paddle's own default),
MKL_DEBUG_CPU_TYPE set empty (MKL's own code path: porthub's default on AMD processors with AVX2 is
5, MKL's AVX2 path, which Paddle's bundled MKL honours and MKL >= 2020.1 ignores), glibc's
malloc told to keep freed memory (``GLIBC_TUNABLES``, see ``GLIBC_KEEP``), and the jemalloc /
tcmalloc allocators through LD_PRELOAD when their Debian packages are installed (libjemalloc2,
libtcmalloc-minimal4). ``infer.py --env`` does the same for whole models.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from convert import load_average, machine  # noqa: E402

#: op -> (input shapes, description); shapes are those of the first stage of a 224x224 model
SHAPES: dict[str, str] = {
    "linear": "x [B, 3136, 64] @ W [64, 256] + b",
    "matmul": "q [B*2, 3136, 32] @ k^T [B*2, 32, 49]",
    "softmax": "[B*2, 3136, 49], last axis",
    "gelu": "[B, 3136, 256] (erf)",
    "layernorm": "[B, 3136, 64]",
    "batchnorm": "[B, 64, 56, 56] eval",
    "dwconv": "depthwise 3x3 [B, 256, 56, 56]",
    "conv": "dense 7x7 stride 4 [B, 3, 224, 224] -> 64",
    "add": "[B, 3136, 64] + [B, 3136, 64]",
}


def _make(fw: str, batch: int) -> dict[str, Callable[[], Any]]:
    import numpy as np

    rng = np.random.default_rng(0)

    def arr(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    x = arr(batch, 3136, 64)
    w, b = arr(256, 64), arr(256)
    q, k = arr(batch * 2, 3136, 32), arr(batch * 2, 49, 32)
    s = arr(batch * 2, 3136, 49)
    h = arr(batch, 3136, 256)
    img = arr(batch, 64, 56, 56)
    dw_in, dw_w = arr(batch, 256, 56, 56), arr(256, 1, 3, 3)
    px, pw = arr(batch, 3, 224, 224), arr(64, 3, 7, 7)
    g, beta, mean, var = arr(64), arr(64), arr(64), np.abs(arr(64)) + 1
    if fw == "torch":
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy
        x_, w_, b_, q_, k_, s_, h_ = t(x), t(w), t(b), t(q), t(k), t(s), t(h)
        img_, dwi, dww, px_, pw_ = t(img), t(dw_in), t(dw_w), t(px), t(pw)
        g_, be_, m_, v_ = t(g), t(beta), t(mean), t(var)
        return {
            "linear": lambda: F.linear(x_, w_, b_),
            "matmul": lambda: q_ @ k_.transpose(-2, -1),
            "softmax": lambda: s_.softmax(-1),
            "gelu": lambda: F.gelu(h_),
            "layernorm": lambda: F.layer_norm(x_, (64,), g_, be_, 1e-6),
            "batchnorm": lambda: F.batch_norm(img_, m_, v_, g_, be_, False, 0.1, 1e-5),
            "dwconv": lambda: F.conv2d(dwi, dww, None, 1, 1, 1, 256),
            "conv": lambda: F.conv2d(px_, pw_, None, 4, 3),
            "add": lambda: x_ + x_,
        }
    import paddle
    import paddle.nn.functional as F

    t = paddle.to_tensor
    x_, wt_, b_, q_, k_, s_, h_ = t(x), t(np.ascontiguousarray(w.T)), t(b), t(q), t(k), t(s), t(h)
    img_, dwi, dww, px_, pw_ = t(img), t(dw_in), t(dw_w), t(px), t(pw)
    g_, be_, m_, v_ = t(g), t(beta), t(mean), t(var)
    return {
        "linear": lambda: F.linear(x_, wt_, b_),
        "matmul": lambda: paddle.matmul(q_, k_, transpose_y=True),
        "softmax": lambda: F.softmax(s_, -1),
        "gelu": lambda: F.gelu(h_),
        "layernorm": lambda: F.layer_norm(x_, [64], g_, be_, 1e-6),
        "batchnorm": lambda: F.batch_norm(img_, m_, v_, g_, be_, training=False, epsilon=1e-5),
        "dwconv": lambda: F.conv2d(dwi, dww, None, 1, 1, 1, 256),
        "conv": lambda: F.conv2d(px_, pw_, None, 4, 3),
        "add": lambda: x_ + x_,
    }


def frameworks() -> tuple[Any, Any]:
    from porthub.runtime import import_framework

    torch = import_framework("torch")
    paddle = import_framework("paddle")
    return torch, paddle


def measure(batch: int, repeat: int) -> dict[str, dict[str, float]]:
    """Fastest seconds per call of each op in each framework, calls alternating."""
    torch, paddle = frameworks()
    with torch.no_grad():
        pt, pd = _make("torch", batch), _make("paddle", batch)
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad(), paddle.no_grad():
        for name in SHAPES:
            times: dict[str, list[float]] = {"torch": [], "paddle": []}
            for fn in (pt[name], pd[name]):
                fn()  # warm-up: first calls pick kernels and allocate
            t = time.perf_counter()
            pt[name]()
            # each sample loops long enough (~20 ms) that the timer and one preemption do not dominate it
            calls = max(1, int(0.02 / max(time.perf_counter() - t, 1e-6)))
            for _ in range(repeat):
                for fw, fn in (("torch", pt[name]), ("paddle", pd[name])):
                    t = time.perf_counter()
                    for _ in range(calls):
                        fn()
                    times[fw].append((time.perf_counter() - t) / calls)
            out[name] = {fw: min(v) for fw, v in times.items()}
            out[name]["ratio"] = out[name]["paddle"] / out[name]["torch"]
    return out


def threads_info() -> str:
    torch, paddle = frameworks()
    return f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads {torch.get_num_threads()}"


#: glibc's malloc without mmap for large blocks and without returning freed memory to the system: a
#: tensor freed by one op is reused by the next instead of being unmapped and faulted in afresh
GLIBC_KEEP = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295"


def _preloads() -> dict[str, str]:
    found = {}
    for label, pattern in (
        ("jemalloc", "/usr/lib/*/libjemalloc.so.2"),
        ("tcmalloc", "/usr/lib/*/libtcmalloc_minimal.so.4"),
    ):
        hits = glob.glob(pattern)
        if hits:
            found[label] = hits[0]
    return found


def env_variants() -> list[tuple[str, dict[str, str]]]:
    variants = [
        ("porthub default (OMP_NUM_THREADS unset)", {}),
        ("OMP_NUM_THREADS=1 (paddle's default)", {"OMP_NUM_THREADS": "1"}),
        ("MKL_DEBUG_CPU_TYPE empty (MKL's own path; porthub sets 5 on AMD with AVX2)", {"MKL_DEBUG_CPU_TYPE": ""}),
        ("glibc malloc keeping freed memory", {"GLIBC_TUNABLES": GLIBC_KEEP}),
    ]
    for label, path in _preloads().items():
        variants.append((f"LD_PRELOAD={label}", {"LD_PRELOAD": path}))
    return variants


def env_runs(cmd: list[str]) -> Iterator[dict[str, Any]]:
    """Run ``cmd`` (which prints a JSON object with "threads" as its last line) once under each of
    :func:`env_variants`, printing the setting; yield each run's JSON."""
    missing = {"jemalloc", "tcmalloc"} - set(_preloads())
    if missing:
        print(f"  not installed here (apt-get install libjemalloc2 libtcmalloc-minimal4): {', '.join(sorted(missing))}")
    for label, extra in env_variants():
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env.update(extra)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {label}: {got['threads']}; {load_average()}")
        yield got


def run_env(batch: int, repeat: int) -> int:
    print(f"op speed under each setting, batch {batch}, fastest of {repeat}; machine: {machine()}")
    base: dict[str, Any] | None = None
    for got in env_runs([sys.executable, __file__, "--batch", str(batch), "--repeat", str(repeat), "--raw"]):
        base = base or got
        for name in SHAPES:
            r = got["ops"][name]
            print(
                f"    {name:<10} torch {r['torch'] * 1e3:8.2f} ms "
                f"({r['torch'] / base['ops'][name]['torch']:4.2f}x default)"
                f"  paddle {r['paddle'] * 1e3:8.2f} ms "
                f"({r['paddle'] / base['ops'][name]['paddle']:4.2f}x default)  ratio {r['ratio']:5.2f}"
            )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--env", action="store_true", help="compare thread, math-library and allocator settings")
    ap.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.env:
        return run_env(args.batch, args.repeat)
    ops = measure(args.batch, args.repeat)
    if args.raw:
        print(json.dumps({"threads": threads_info(), "ops": ops}))
        return 0
    print(
        f"per-op Paddle / PyTorch, batch {args.batch}, fastest of {args.repeat} alternating calls; {threads_info()}; "
        f"{load_average()}; machine: {machine()}"
    )
    for name, desc in SHAPES.items():
        r = ops[name]
        print(
            f"  {name:<10} {desc:<42} torch {r['torch'] * 1e3:8.2f} ms  paddle {r['paddle'] * 1e3:8.2f} ms  "
            f"ratio {r['ratio']:5.2f}x  (target: none, the kernels' own; infer.py predicts from these)"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"machine": machine(), "threads": threads_info(), "batch": args.batch, "ops": ops}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
