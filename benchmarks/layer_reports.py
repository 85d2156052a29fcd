"""Per-layer PyTorch-vs-Paddle reports for the full-size variants (seeded weights, seeded input).

    OMP_NUM_THREADS=2 python benchmarks/layer_reports.py --out bench-out/layer_reports             # every variant
    OMP_NUM_THREADS=2 python benchmarks/layer_reports.py --smallest --dtypes float64              # one per family
    OMP_NUM_THREADS=2 python benchmarks/layer_reports.py shunted_t --dtypes float32 float64 \\
        --png docs/img/shunted_t_report.png

Writes ``<model>_report.{json,md,png}`` per variant and ``summary.json`` (the figures of
:func:`porthub.report.summary_figures`), one model in memory at a time, and exits 1 when any layer of
any model is out of tolerance. Families whose spec does not import yet are listed and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from porthub.io import atomic_write
from porthub.pairs import layer_report
from porthub.registry import FAMILIES, get_spec
from porthub.report import summary_figures, write_report


def _variants(names: list[str], smallest: bool, families: list[str]) -> tuple[list[str], list[str]]:
    chosen, missing = [], []
    for family in families or FAMILIES:
        try:
            spec = get_spec(family)
        except ImportError as exc:
            missing.append(f"{family}: {exc}")
            continue
        variants = [v for v in spec.variants if not names or v.name in names]
        if smallest and variants:
            variants = [min(variants, key=lambda v: v.meta.get("num_parameters") or float("inf"))]
        chosen += [v.name for v in variants]
    return chosen, missing


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="variant names (default: every registered variant)")
    p.add_argument("--family", action="append", default=[], help="only these families (repeatable)")
    p.add_argument("--smallest", action="store_true", help="only the smallest variant of each family")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--out", default="bench-out/layer_reports")
    p.add_argument("--png", help="also copy the (single) model's PNG here (the README figure)")
    args = p.parse_args()
    names, missing = _variants(args.models, args.smallest, args.family)
    for line in missing:
        print(f"skipped family {line}")
    summary = {}
    failed = []
    for name in names:
        start = time.perf_counter()
        report = layer_report(name, dtypes=args.dtypes)
        paths = write_report(report, args.out)
        figures = summary_figures(report)
        figures["seconds"] = round(time.perf_counter() - start, 1)
        summary[name] = figures
        if not report.ok:
            failed.append(name)
        cells = []
        for dtype in args.dtypes:
            f = figures[dtype]
            cells.append(
                f"{dtype}: {f['layers_within_tolerance']}/{f['layers']} layers ok, "
                f"worst local {f['worst_local_scaled']:.1e} ({f['worst_local_layer']}), "
                f"output {f['output_max_abs']:.1e}, first divergence {f['first_divergence']}"
            )
        print(
            f"{'ok  ' if report.ok else 'FAIL'} {name:<30} {figures['seconds']:>6.1f}s  " + "; ".join(cells), flush=True
        )
        if args.png:
            with open(paths["png"], "rb") as src, atomic_write(args.png) as dst:
                shutil.copyfileobj(src, dst)
        del report
    with atomic_write(os.path.join(args.out, "summary.json")) as fh:
        fh.write(json.dumps(summary, indent=1).encode("utf-8"))
    print(
        f"{len(names) - len(failed)}/{len(names)} models with every layer within tolerance"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
