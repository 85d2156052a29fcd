"""Mutated real checkpoints either load or raise porthub's own error, within time and memory.

The inputs are tests/data/official/*/*.pth and files porthub writes, mutated blindly and with
knowledge of each format by tools/fuzz_readers.py (which runs thousands per format; here a few
hundred, so the suite stays fast). Each loaded result is walked to the last byte of every array.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from porthub.io import load_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
_spec = importlib.util.spec_from_file_location("fuzz_readers", os.path.join(REPO, "tools", "fuzz_readers.py"))
fr = sys.modules.get("fuzz_readers") or importlib.util.module_from_spec(_spec)
if "fuzz_readers" not in sys.modules:
    sys.modules["fuzz_readers"] = fr
    _spec.loader.exec_module(fr)

#: mutated inputs per format in the seeded loop
PER_FORMAT = 100
#: seconds one read may take; real reads of these files take milliseconds
READ_LIMIT = 10


class _Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Hang()


@pytest.fixture(scope="module")
def seeds():
    return fr.seed_corpus()


def _check(tmp_path, fmt: str, data: bytes, label: str) -> str:
    path = str(tmp_path / ("input" + fr._SUFFIX[fmt]))
    with open(path, "wb") as fh:
        fh.write(data)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(READ_LIMIT)
    try:
        outcome = fr.classify(path, trace_memory=True)
    except _Hang:
        pytest.fail(f"{label}: no answer within {READ_LIMIT} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert outcome.kind != "bug", f"{label}: {outcome.detail}"
    return outcome.kind


def test_every_seed_loads(seeds, tmp_path):
    assert all(len(seeds[fmt]) >= 4 for fmt in fr.FORMATS)
    assert sum(name.startswith("tests/") for name, _ in seeds["pth"]) >= 5  # the real checkpoints
    for fmt in fr.FORMATS:
        for name, data in seeds[fmt]:
            assert _check(tmp_path, fmt, data, name) == "loaded", name


@pytest.mark.parametrize("fmt", fr.FORMATS)
def test_mutated_files_load_or_are_refused(fmt, seeds, tmp_path):
    counts = {"loaded": 0, "refused-unsafe": 0, "refused-format": 0}
    for label, data in fr.fuzz_inputs(seeds, fmt, PER_FORMAT, seed=20240):
        counts[_check(tmp_path, fmt, data, label)] += 1
    assert sum(counts.values()) == PER_FORMAT
    # the mutations reach both sides: some files still load, most are refused
    assert counts["loaded"] >= 5 and counts["refused-format"] >= PER_FORMAT // 3, counts


_EDIT = st.tuples(st.sampled_from(["set", "insert", "delete", "truncate", "snippet", "int"]),
                  st.floats(0, 1, allow_nan=False), st.binary(min_size=1, max_size=12))


def _apply(data: bytes, edits) -> bytes:
    for kind, where, raw in edits:
        at = int(where * len(data))
        if kind == "set":
            data = data[:at] + raw + data[at + len(raw):]
        elif kind == "insert":
            data = data[:at] + raw + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + raw[0]:]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "snippet":
            data = data[:at] + fr._SNIPPETS[raw[0] % len(fr._SNIPPETS)] + data[at:]
        else:
            value = fr._INTERESTING_INTS[raw[0] % len(fr._INTERESTING_INTS)]
            width = (1, 2, 4, 8)[raw[-1] % 4]
            data = data[:at] + (value % (1 << 8 * width)).to_bytes(width, "little") + data[at + width:]
    return data


@pytest.mark.parametrize("fmt", fr.FORMATS)
def test_property_any_edit_of_a_real_file_loads_or_is_refused(fmt, seeds, tmp_path_factory):
    # the smallest seeds of each format, so that edits land in headers and pickles more often than in tensor bytes
    pool = sorted((d for _, d in seeds[fmt]), key=len)[:4]
    folder = tmp_path_factory.mktemp(f"prop_{fmt}")

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.integers(0, len(pool) - 1), st.lists(_EDIT, min_size=1, max_size=4))
    def prop(index, edits):
        _check(folder, fmt, _apply(pool[index], edits), f"{fmt} seed {index} edits {edits}")

    prop()


@pytest.mark.parametrize("fmt", fr.FORMATS)
def test_property_format_aware_mutations(fmt, seeds, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"aware_{fmt}")
    pool = sorted(seeds[fmt], key=lambda s: len(s[1]))[:6]

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(0, len(pool) - 1), st.integers(0, 2**32))
    def prop(index, seed):
        rng = random.Random(seed)
        data = fr.mutate(pool[index][1], fmt, rng, [d for _, d in pool])
        _check(folder, fmt, data, f"{fmt} seed file {pool[index][0]} rng {seed}")

    prop()


def test_truncation_at_every_header_byte(seeds, tmp_path):
    """Cut a small file of each format at every offset of its first 512 bytes and its last 128."""
    for fmt in fr.FORMATS:
        data = min((d for _, d in seeds[fmt]), key=len)
        cuts = sorted(set(range(0, min(len(data), 512))) | set(range(max(0, len(data) - 128), len(data))))
        for cut in cuts:
            kind = _check(tmp_path, fmt, data[:cut], f"{fmt} cut at {cut}")
            assert kind.startswith("refused"), f"{fmt} cut at {cut} of {len(data)} loaded"


def test_loaded_arrays_are_read_only_views_of_the_file(seeds, tmp_path):
    """Reading still memory-maps: a tensor stored contiguously is a view of the file, not a copy
    (crossformer's strided bias tables are the few that must be copied)."""
    for name, data in seeds["pth"]:
        if not name.startswith("tests/"):
            continue
        path = tmp_path / "real.pth"
        path.write_bytes(data)
        arrays = [v for v in fr._flat_arrays(load_checkpoint(str(path))).values() if v.size > 16]
        views = [a for a in arrays if not a.flags.owndata and not a.flags.writeable]
        assert len(views) >= 0.9 * len(arrays), name
        if "shunted" in name:
            assert len(views) == len(arrays)
