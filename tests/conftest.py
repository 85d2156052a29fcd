"""Shared test setup. Paddle pins OMP_NUM_THREADS=1 at import when it is unset (and children inherit
it); the tests use the machine's cores like porthub's commands do."""

from __future__ import annotations

import glob
import os

os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))

import pytest  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "official")


def reference_cases() -> list[str]:
    """Every reference case JSON the repository carries (a case is a JSON with its .pth beside it)."""
    return sorted(p for p in glob.glob(os.path.join(DATA, "*", "*.json")) if os.path.exists(p[:-5] + ".pth"))


@pytest.fixture(scope="session")
def data_dir() -> str:
    return DATA
