"""Conversion speed and memory, measured side by side in one run.

For a full-size official-layout checkpoint (default ``shunted_b``, ~160 MB; any registered model
with ``--model``), in the same run:

* a plain copy of the file (the floor),
* ``porthub convert`` to Paddle and back, each as a whole process (start-up included) and, inside
  the process, the conversion alone,
* the straightforward converter a user would write: ``torch.load``, transpose the Linear weights,
  build the Paddle model, ``set_state_dict``, ``paddle.save`` (and the reverse).

Each figure is the best of ``--repeat`` runs; peak memory is the child's maximum resident set.
Targets (issue #2/#9): whole-process conversion >= 8x faster than the straightforward converter,
peak memory <= 1.3x the checkpoint's size, conversion after start-up within 3x of the copy.

    python benchmarks/convert.py [--model shunted_b] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from porthub.io import save_checkpoint  # noqa: E402
from porthub.manifest import load_manifest  # noqa: E402
from porthub.registry import resolve  # noqa: E402

TIMED_CONVERT = """
import sys, time, json
from porthub.convert import convert_file, resolve_target
target = resolve_target(sys.argv[1])
t = time.perf_counter()
convert_file(target, sys.argv[2], sys.argv[3], sys.argv[4])
print(json.dumps({"inner": time.perf_counter() - t}))
"""

NAIVE = """
import sys, time, json
t0 = time.perf_counter()
import numpy as np, torch, paddle
from porthub.registry import resolve
spec, variant = resolve(sys.argv[1])
src, to, out = sys.argv[2], sys.argv[3], sys.argv[4]
t1 = time.perf_counter()
if to == "paddle":
    import paddle_models
    mod = __import__(f"paddle_models.{spec.module}", fromlist=["x"])
    sd = torch.load(src, map_location="cpu", weights_only=True)
    sd = sd.get(variant.release_layout and "model", sd) if "model" in sd else sd
    conv = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        a = v.numpy()
        if a.ndim == 2 and k.endswith("weight"):
            a = a.T
        k = k.replace("running_mean", "_mean").replace("running_var", "_variance")
        conv[k] = a
    model = getattr(mod, variant.class_name)(**dict(variant.kwargs))
    model.set_state_dict(conv)
    paddle.save(model.state_dict(), out)
else:
    mod = __import__(f"torch_models.{spec.module}", fromlist=["x"])
    sd = paddle.load(src)
    conv = {}
    for k, v in sd.items():
        a = v.numpy() if hasattr(v, "numpy") else v
        if a.ndim == 2 and k.endswith("weight"):
            a = a.T
        k = k.replace("_mean", "running_mean").replace("_variance", "running_var")
        conv[k] = torch.from_numpy(np.ascontiguousarray(a))
    model = getattr(mod, variant.class_name)(**dict(variant.kwargs))
    model.load_state_dict(conv, strict=False)
    torch.save(model.state_dict(), out)
print(json.dumps({"inner": time.perf_counter() - t1, "startup": t1 - t0}))
"""


def run_child(cmd: list[str]) -> dict:
    """Wall time and peak RSS of one child process (and what it printed as JSON, if anything)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {err.strip()[-400:]}")
    info = {"wall": wall, "peak_rss": usage.ru_maxrss * 1024}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if lines:
        info.update(json.loads(lines[-1]))
    return info


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall"])


def make_checkpoint(name: str, path: str) -> int:
    spec, variant = resolve(name)
    rng = np.random.default_rng(0)
    state = {k: (rng.standard_normal(s, dtype=np.float32).astype(d) if np.dtype(d).kind == "f" else np.zeros(s, d))
             for k, (s, d) in load_manifest(spec, variant).entries.items()}
    layout = spec.layout(variant.release_layout)
    from porthub.engine import from_canonical

    save_checkpoint(from_canonical(state, layout, spec, variant.kwargs), path, "pth")
    return os.path.getsize(path)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shunted_b")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="porthub-bench-")
    try:
        src = os.path.join(tmp, f"{args.model}.pth")
        size = make_checkpoint(args.model, src)
        copies = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            shutil.copyfile(src, os.path.join(tmp, "copy.pth"))
            copies.append(time.perf_counter() - t)
        copy = min(copies)
        pd, back = os.path.join(tmp, "ph.pdparams"), os.path.join(tmp, "ph_back.pth")
        cli = [sys.executable, "-m", "porthub.cli", "convert", args.model]
        ph_to = best([run_child(cli + ["--to", "paddle", "--src", src, "--out", pd]) for _ in range(args.repeat)])
        ph_back = best([run_child(cli + ["--to", "torch", "--src", pd, "--out", back]) for _ in range(args.repeat)])
        inner_to = min(run_child([sys.executable, "-c", TIMED_CONVERT, args.model, src, "paddle", pd])["inner"] for _ in range(args.repeat))
        inner_back = min(run_child([sys.executable, "-c", TIMED_CONVERT, args.model, pd, "torch", back])["inner"] for _ in range(args.repeat))
        npd, nback = os.path.join(tmp, "naive.pdparams"), os.path.join(tmp, "naive_back.pth")
        nv_to = best([run_child([sys.executable, "-c", NAIVE, args.model, src, "paddle", npd]) for _ in range(args.repeat)])
        nv_back = best([run_child([sys.executable, "-c", NAIVE, args.model, npd, "torch", nback]) for _ in range(args.repeat)])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mb = size / 1e6
    rows = [
        ("to Paddle: straightforward / porthub (whole process)", nv_to["wall"] / ph_to["wall"], ">= 8x"),
        ("back to PyTorch: straightforward / porthub (whole process)", nv_back["wall"] / ph_back["wall"], ">= 8x"),
        ("to Paddle: porthub peak memory / checkpoint size", ph_to["peak_rss"] / size, "<= 1.3x"),
        ("back to PyTorch: porthub peak memory / checkpoint size", ph_back["peak_rss"] / size, "<= 1.3x"),
        ("to Paddle: conversion after start-up / plain copy", inner_to / copy, "<= 3x"),
        ("back to PyTorch: conversion after start-up / plain copy", inner_back / copy, "<= 3x"),
        ("straightforward converter peak memory / checkpoint size", max(nv_to["peak_rss"], nv_back["peak_rss"]) / size, "(reference)"),
    ]
    print(f"conversion benchmark: {args.model}, checkpoint {mb:.1f} MB, best of {args.repeat}; machine: {machine()}")
    print(f"  plain copy {copy * 1e3:.0f} ms | porthub {ph_to['wall']:.2f} s / {ph_back['wall']:.2f} s whole process, "
          f"{inner_to * 1e3:.0f} / {inner_back * 1e3:.0f} ms after start-up | straightforward {nv_to['wall']:.2f} s / {nv_back['wall']:.2f} s")
    ok = True
    for label, value, target in rows:
        good = target == "(reference)" or (value >= float(target[3:-1]) if target.startswith(">=") else value <= float(target[3:-1]))
        ok &= good
        print(f"  {label:<62} {value:6.2f}x  target {target:<10} {'ok' if good else 'MISSED'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"model": args.model, "checkpoint_bytes": size, "machine": machine(), "copy_s": copy,
                       "porthub": {"to": ph_to, "back": ph_back, "inner_to_s": inner_to, "inner_back_s": inner_back},
                       "straightforward": {"to": nv_to, "back": nv_back},
                       "ratios": {label: value for label, value, _ in rows}}, fh, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
