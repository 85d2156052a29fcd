"""The README's parity table, measured: every reference case in tests/data/official, both frameworks,
both dtypes, max |porthub - official float64 output|.

    python tools/parity_table.py > /tmp/parity.md
"""

from __future__ import annotations

import glob
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from porthub.verify import verify_reference  # noqa: E402


def main() -> int:
    cases = sorted(
        p
        for p in glob.glob(os.path.join(ROOT, "tests", "data", "official", "*", "*.json"))
        if os.path.exists(p[:-5] + ".pth")
    )
    print("| case | PyTorch float32 | Paddle float32 | PyTorch float64 | Paddle float64 | features (worst / limit) |")
    print("|---|---|---|---|---|---|")
    ok = True
    for case in cases:
        cells, worst = {}, 0.0
        for dtype in ("float32", "float64"):
            report = verify_reference(case, ("torch", "paddle"), dtype)
            ok &= report["ok"]
            for r in report["results"]:
                if r["output"] == "output":
                    cells[(r["framework"], dtype)] = r["max_abs_diff"]
                else:
                    worst = max(worst, r["max_abs_diff"] / r["tolerance"])
        name = f"{os.path.basename(os.path.dirname(case))}/{os.path.basename(case)[:-5]}"
        feats = f"{worst:.3f}" if worst else "n/a"
        print(
            f"| {name} | "
            + " | ".join(f"{cells[(fw, dt)]:.1e}" for dt in ("float32", "float64") for fw in ("torch", "paddle"))
            + f" | {feats} |"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
