"""Start-up time of the commands that must not import torch or paddle.

    python benchmarks/startup.py [--repeat 7]

Prints, for `porthub --help`, `porthub list` and `porthub info shunted_b`, the median wall time of a
fresh process beside the time of `python -c pass` (the interpreter's own floor) and of importing
torch and paddle (what a lazy CLI avoids). Target: under 0.5 s for `list` and `--help`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from convert import machine

TARGET = 0.5


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    floor = timed([py, "-c", "pass"], args.repeat)
    rows = [
        ("porthub --help", timed([py, "-m", "porthub.cli", "--help"], args.repeat), TARGET),
        ("porthub list", timed([py, "-m", "porthub.cli", "list"], args.repeat), TARGET),
        ("porthub info shunted_b", timed([py, "-m", "porthub.cli", "info", "shunted_b"], args.repeat), TARGET),
        ("python -c 'import torch' (avoided)", timed([py, "-c", "import torch"], max(3, args.repeat // 2)), None),
        ("python -c 'import paddle' (avoided)", timed([py, "-c", "import paddle"], max(3, args.repeat // 2)), None),
    ]
    print(f"start-up, median of {args.repeat}; interpreter floor {floor:.3f} s; machine: {machine()}")
    ok = True
    for label, value, target in rows:
        verdict = "" if target is None else ("ok" if value < target else "MISSED")
        ok &= target is None or value < target
        print(f"  {label:<38} {value:6.3f} s  {'target < %.1f s' % target if target else '':<16} {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
