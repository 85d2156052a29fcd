"""Conversion speed and memory, measured side by side in one run.

For a full-size official-layout checkpoint (default ``shunted_b``, ~160 MB; any registered model
with ``--model``), in the same run:

* a plain copy of the file (the floor),
* ``porthub convert`` to Paddle and back, each as a whole process (start-up included) and, inside
  the process, the conversion alone,
* the straightforward converter a user would write: ``torch.load``, transpose the Linear weights,
  build the Paddle model, ``set_state_dict``, ``paddle.save`` (and the reverse).

Each figure is the best of ``--repeat`` rounds, the measurements of a round interleaved (a busy
machine slows all of them alike); peak memory is the child's own high-water mark (``VmHWM``: the
``ru_maxrss`` of a child counts the parent's pages it was forked with). porthub's children run with
torch and paddle made unimportable, as on a machine without them. ``--model all`` runs the largest
variant of every family.
porthub's packages are compiled to bytecode first, as ``pip install`` leaves them (an environment with
``PYTHONDONTWRITEBYTECODE=1``, like this project's sandbox, would otherwise compile every module in every
child: ~60 ms of each porthub start-up); torch's and paddle's are compiled by their installation.
Targets (issue #2/#9): whole-process conversion >= 8x faster than the straightforward converter,
peak memory <= 1.3x the checkpoint's size, conversion after start-up within 3x of the copy.

    python benchmarks/convert.py [--model shunted_b|all] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import compileall
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

#: run first in every child: report the child's own peak memory at exit; with BLOCK set, make torch
#: and paddle unimportable so that porthub's conversion is shown to need neither
PRELUDE = """
import atexit, json, os, sys
def _hwm():
    with open("/proc/self/status", encoding="ascii") as fh:
        kb = next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:"))
    frameworks = sorted(m for m in ("torch", "paddle") if m in sys.modules)
    sys.stdout.write("\\n" + json.dumps({"peak_rss": kb * 1024, "frameworks": frameworks}) + "\\n")
    sys.stdout.flush()
atexit.register(_hwm)
if os.environ.get("PORTHUB_BENCH_BLOCK"):
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "paddle"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the benchmark)", name=name)
    sys.meta_path.insert(0, _Block())
"""

CLI = (
    PRELUDE
    + """
import runpy
sys.argv = ["porthub"] + sys.argv[1:]
runpy.run_module("porthub.cli", run_name="__main__")
"""
)

TIMED_CONVERT = (
    PRELUDE
    + """
import time
from porthub.convert import convert_file, resolve_target
target = resolve_target(sys.argv[1])
t = time.perf_counter()
convert_file(target, sys.argv[2], sys.argv[3], sys.argv[4], force=True)
print(json.dumps({"inner": time.perf_counter() - t}))
"""
)

NAIVE = (
    PRELUDE
    + """
import time
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
    for wrap in ("model", "state_dict"):
        if isinstance(sd.get(wrap), dict):
            sd = sd[wrap]
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
)


def run_child(cmd: list[str], block: bool = False) -> dict:
    """Wall time and peak RSS of one child process (and what it printed as JSON)."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
    if block:
        env["PORTHUB_BENCH_BLOCK"] = "1"
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, _usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(a if len(a) < 80 else '<script>' for a in cmd)} failed: {err.strip()[-400:]}")
    info: dict = {"wall": wall}
    for line in out.splitlines():
        if line.startswith("{"):
            info.update(json.loads(line))
    return info


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall"])


def make_checkpoint(name: str, path: str) -> int:
    spec, variant = resolve(name)
    rng = np.random.default_rng(0)
    state = {
        k: (rng.standard_normal(s, dtype=np.float32).astype(d) if np.dtype(d).kind == "f" else np.zeros(s, d))
        for k, (s, d) in load_manifest(spec, variant).entries.items()
    }
    layout = spec.layout(variant.release_layout)
    from porthub.engine import from_canonical

    save_checkpoint(from_canonical(state, layout, spec, variant.kwargs), path, "pth")
    return os.path.getsize(path)


def largest_variants() -> list[str]:
    """Every family's variant with the most bytes of weights (from the shipped manifests)."""
    from porthub.registry import all_specs

    names = []
    for spec in all_specs():
        sizes = []
        for variant in spec.variants:
            entries = load_manifest(spec, variant).entries.values()
            sizes.append(
                (sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in entries), variant.name)
            )
        names.append(max(sizes)[1])
    return names


def load_average() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"


def bench(model: str, repeat: int, tmp: str) -> tuple[dict, list[tuple[str, float, str]]]:
    src = os.path.join(tmp, f"{model}.pth")
    size = make_checkpoint(model, src)
    pd, back = os.path.join(tmp, "ph.pdparams"), os.path.join(tmp, "ph_back.pth")
    ipd, iback = os.path.join(tmp, "inner.pdparams"), os.path.join(tmp, "inner_back.pth")
    npd, nback = os.path.join(tmp, "naive.pdparams"), os.path.join(tmp, "naive_back.pth")
    copy_out = os.path.join(tmp, "copy.pth")
    py = sys.executable
    cli = [py, "-c", CLI, "convert", model]
    runs: dict[str, list] = {k: [] for k in ("copy", "ph_to", "ph_back", "inner_to", "inner_back", "nv_to", "nv_back")}
    round_trip_identical = True
    load_before = load_average()
    for _ in range(repeat):
        # one round = every measurement once, so that a load spike hits all of them. Every measured
        # command writes a file that does not exist yet, and the outputs are removed between rounds,
        # outside the timing: replacing a file makes the kernel free its pages inside the rename (~135 ms
        # for 160 MB here), which would otherwise fall on some commands and not on others.
        t = time.perf_counter()
        shutil.copyfile(src, copy_out)
        runs["copy"].append(time.perf_counter() - t)
        runs["ph_to"].append(run_child(cli + ["--to", "paddle", "--src", src, "--out", pd], block=True))
        runs["ph_back"].append(run_child(cli + ["--to", "torch", "--src", pd, "--out", back], block=True))
        runs["inner_to"].append(run_child([py, "-c", TIMED_CONVERT, model, src, "paddle", ipd], block=True))
        runs["inner_back"].append(run_child([py, "-c", TIMED_CONVERT, model, ipd, "torch", iback], block=True))
        runs["nv_to"].append(run_child([py, "-c", NAIVE, model, src, "paddle", npd]))
        runs["nv_back"].append(run_child([py, "-c", NAIVE, model, npd, "torch", nback]))
        with open(src, "rb") as a, open(back, "rb") as b:
            round_trip_identical &= a.read() == b.read()
        for path in (copy_out, pd, back, ipd, iback, npd, nback):
            os.remove(path)
    os.remove(src)
    copy = min(runs["copy"])
    ph_to, ph_back = best(runs["ph_to"]), best(runs["ph_back"])
    nv_to, nv_back = best(runs["nv_to"]), best(runs["nv_back"])
    inner_to = min(r["inner"] for r in runs["inner_to"])
    inner_back = min(r["inner"] for r in runs["inner_back"])
    used = sorted(
        {fw for key in ("ph_to", "ph_back", "inner_to", "inner_back") for r in runs[key] for fw in r["frameworks"]}
    )
    rows = [
        ("to Paddle: straightforward / porthub (whole process)", nv_to["wall"] / ph_to["wall"], ">= 8x"),
        ("back to PyTorch: straightforward / porthub (whole process)", nv_back["wall"] / ph_back["wall"], ">= 8x"),
        ("to Paddle: porthub peak memory / checkpoint size", ph_to["peak_rss"] / size, "<= 1.3x"),
        ("back to PyTorch: porthub peak memory / checkpoint size", ph_back["peak_rss"] / size, "<= 1.3x"),
        ("to Paddle: conversion after start-up / plain copy", inner_to / copy, "<= 3x"),
        ("back to PyTorch: conversion after start-up / plain copy", inner_back / copy, "<= 3x"),
        (
            "straightforward converter peak memory / checkpoint size",
            max(nv_to["peak_rss"], nv_back["peak_rss"]) / size,
            "(reference)",
        ),
    ]
    figures = {
        "model": model,
        "checkpoint_bytes": size,
        "copy_s": copy,
        "load": [load_before, load_average()],
        "porthub": {"to": ph_to, "back": ph_back, "inner_to_s": inner_to, "inner_back_s": inner_back},
        "straightforward": {"to": nv_to, "back": nv_back},
        "frameworks_imported_by_porthub": used,
        "round_trip_byte_identical": round_trip_identical,
        "ratios": {label: value for label, value, _ in rows},
    }
    return figures, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shunted_b", help="a registered model, or 'all' for every family's largest")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    models = largest_variants() if args.model == "all" else [args.model]
    ok = True
    results = []
    print(f"conversion benchmark, best of {args.repeat} interleaved rounds; machine: {machine()}")
    for package in ("porthub", "converters", "torch_models", "paddle_models"):
        compileall.compile_dir(os.path.join(ROOT, package), quiet=1)
    for model in models:
        tmp = tempfile.mkdtemp(prefix="porthub-bench-")
        try:
            figures, rows = bench(model, args.repeat, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        results.append(figures)
        pt, ns = figures["porthub"], figures["straightforward"]
        print(
            f"{model}: checkpoint {figures['checkpoint_bytes'] / 1e6:.1f} MB; "
            f"{figures['load'][0]} (before), {figures['load'][1]} (after)"
        )
        print(
            f"  plain copy {figures['copy_s'] * 1e3:.0f} ms | "
            f"porthub {pt['to']['wall']:.2f} s / {pt['back']['wall']:.2f} s whole process, "
            f"{pt['inner_to_s'] * 1e3:.0f} / {pt['inner_back_s'] * 1e3:.0f} ms after start-up | "
            f"straightforward {ns['to']['wall']:.2f} s / {ns['back']['wall']:.2f} s"
        )
        fw_ok = not figures["frameworks_imported_by_porthub"]
        print(
            "  porthub ran with torch and paddle unimportable: "
            f"{'ok' if fw_ok else 'MISSED: imported ' + ', '.join(figures['frameworks_imported_by_porthub'])}; "
            f"round trip byte-identical to the source: {'yes' if figures['round_trip_byte_identical'] else 'NO'}"
        )
        ok &= fw_ok and figures["round_trip_byte_identical"]
        for label, value, target in rows:
            good = target == "(reference)" or (
                value >= float(target[3:-1]) if target.startswith(">=") else value <= float(target[3:-1])
            )
            ok &= good
            print(f"  {label:<62} {value:6.2f}x  target {target:<10} {'ok' if good else 'MISSED'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"machine": machine(), "results": results}, fh, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
