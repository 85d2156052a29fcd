"""Shared test setup. Paddle pins OMP_NUM_THREADS=1 at import when it is unset (and children inherit
it); the tests run Paddle with the settings porthub's commands use (the machine's cores, MKL's AVX2
path on AMD processors), set before any test module imports paddle.

No test leaves 127.0.0.1: the default hub order (``local,hf,aistudio``) would ask huggingface.co and AI
Studio for a repository the local hub lacks, so the Hub endpoint and both AI Studio hosts point at a
loopback port nothing listens on (a refused connection, at once), before any module reads them
(huggingface_hub reads HF_ENDPOINT at import). Tests that need a hub start a double on 127.0.0.1 and
set these for themselves; commands the tests start inherit the dead hosts.
"""

from __future__ import annotations

import glob
import os

import pytest

from porthub.devices import usable_cores
from porthub.runtime import paddle_cpu_settings

#: a loopback address with nothing listening (port 9, discard, is not served on a test machine)
DEAD_HOST = "http://127.0.0.1:9"
for _key in ("HF_ENDPOINT", "STUDIO_GIT_HOST", "STUDIO_MODEL_API_URL_PREFIX"):
    os.environ[_key] = DEAD_HOST
os.environ["STUDIO_CDN_HOST"] = "127.0.0.1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
_no_proxy = [h for h in os.environ.get("NO_PROXY", "").split(",") if h]
os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(
    _no_proxy + [h for h in ("127.0.0.1", "localhost") if h not in _no_proxy]
)

# pytest-xdist workers share the cores: each takes its share of the threads unless the caller set a count
# (measured on two cores: two workers of one thread 5.5 minutes, of two threads each 7.6). The controlling
# process runs this file first and sets OMP_NUM_THREADS below, so it records for the workers whether the
# count was the caller's.
os.environ.setdefault("PORTHUB_TESTS_CALLER_THREADS", "1" if "OMP_NUM_THREADS" in os.environ else "0")
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1 and os.environ["PORTHUB_TESTS_CALLER_THREADS"] == "0":
    os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cores() // _workers))
paddle_cpu_settings()

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "official")


def reference_cases() -> list[str]:
    """Every reference case JSON the repository carries (a case is a JSON with its .pth beside it)."""
    return sorted(p for p in glob.glob(os.path.join(DATA, "*", "*.json")) if os.path.exists(p[:-5] + ".pth"))


@pytest.fixture(scope="session")
def data_dir() -> str:
    return DATA
