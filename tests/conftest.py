"""Shared test setup. Paddle pins OMP_NUM_THREADS=1 at import when it is unset (and children inherit
it); the tests run Paddle with the settings porthub's commands use (the machine's cores, MKL's AVX2
path on AMD processors), set before any test module imports paddle."""

from __future__ import annotations

import glob
import os

import pytest

from porthub.runtime import paddle_cpu_settings

paddle_cpu_settings()

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "official")


def reference_cases() -> list[str]:
    """Every reference case JSON the repository carries (a case is a JSON with its .pth beside it)."""
    return sorted(p for p in glob.glob(os.path.join(DATA, "*", "*.json")) if os.path.exists(p[:-5] + ".pth"))


@pytest.fixture(scope="session")
def data_dir() -> str:
    return DATA
