"""The command line as users and acceptance drive it: one clear line on stderr and a non-zero exit
for bad input, no file left behind, and conversion with neither torch nor paddle importable."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import DATA

from porthub.io import load_checkpoint, save_checkpoint

CASE = os.path.join(DATA, "shunted", "mini_a.json")
PTH = os.path.join(DATA, "shunted", "mini_a.pth")

# Runs porthub's CLI with torch and paddle made unimportable, as on a machine with only the core.
NO_FRAMEWORKS = (
    "import sys; sys.modules['torch'] = None; sys.modules['paddle'] = None; "
    "from porthub.cli import main; sys.exit(main(sys.argv[1:]))"
)


def porthub(*args, frameworks=True, cwd=None):
    cmd = [sys.executable, "-m", "porthub.cli", *args] if frameworks else [sys.executable, "-c", NO_FRAMEWORKS, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_list_names_first_on_each_line():
    p = porthub("list", "shunted")
    assert p.returncode == 0
    assert [line.split()[0] for line in p.stdout.splitlines()] == ["shunted_t", "shunted_s", "shunted_b"]


def test_unknown_model_is_one_line_error():
    p = porthub("convert", "shunted_x", "--to", "paddle", "--src", PTH)
    assert (
        p.returncode != 0 and p.stderr.count("\n") == 1 and "unknown model" in p.stderr and "Traceback" not in p.stderr
    )


def _official_shunted_t(path):
    from porthub.manifest import load_manifest
    from porthub.registry import resolve

    spec, variant = resolve("shunted_t")
    rng = np.random.default_rng(0)
    state = {
        k: (rng.standard_normal(s).astype(d) if np.dtype(d).kind == "f" else np.zeros(s, d))
        for k, (s, d) in load_manifest(spec, variant).entries.items()
    }
    save_checkpoint(state, str(path), "pth")
    return state


def _convert_both_ways(tmp_path, src, frameworks):
    pd, back = tmp_path / "m.pdparams", tmp_path / "back.pth"
    p1 = porthub("convert", "shunted_t", "--to", "paddle", "--src", str(src), "--out", str(pd), frameworks=frameworks)
    assert p1.returncode == 0, p1.stderr
    p2 = porthub("convert", "shunted_t", "--to", "torch", "--src", str(pd), "--out", str(back), frameworks=frameworks)
    assert p2.returncode == 0, p2.stderr
    return pd, back


def test_core_alone_converts_both_ways_to_the_same_bytes(tmp_path):
    """Registered variants ship their manifests, so keys and shapes are checked without torch or paddle."""
    src = tmp_path / "ckpt_T.pth"
    state = _official_shunted_t(src)
    (tmp_path / "free").mkdir()
    (tmp_path / "full").mkdir()
    pd_free, back_free = _convert_both_ways(tmp_path / "free", src, frameworks=False)
    pd_full, back_full = _convert_both_ways(tmp_path / "full", src, frameworks=True)
    assert pd_free.read_bytes() == pd_full.read_bytes()
    assert back_free.read_bytes() == back_full.read_bytes()
    out = load_checkpoint(str(pd_free))
    np.testing.assert_array_equal(out["head.weight"], state["head.weight"].T)
    assert "patch_embed1.conv.1.num_batches_tracked" not in out
    back = load_checkpoint(str(back_free))
    assert list(back) == list(state) and all(
        np.array_equal(state[k], back[k]) and state[k].dtype == back[k].dtype for k in state
    )


def test_output_defaults_to_beside_the_source(tmp_path):
    src = tmp_path / "ckpt_T.pth"
    _official_shunted_t(src)
    p = porthub("convert", "shunted_t", "--to", "paddle", "--src", str(src), frameworks=False)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "ckpt_T.pdparams").exists()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_files(tmp_path):
    marker = tmp_path / "PWNED"
    plain = tmp_path / "evil.pdparams"
    plain.write_bytes(pickle.dumps({"head.weight": _Evil(marker)}))
    zipped = tmp_path / "evil.pth"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": _Evil(marker)}, protocol=2))
        zf.writestr("archive/version", "3\n")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(PTH, "rb").read()[:50_000])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(os.urandom(4096))
    return marker, {
        "pickle as .pdparams": plain,
        "pickle in a .pth zip": zipped,
        "truncated": truncated,
        "garbage": garbage,
    }


@pytest.mark.parametrize("kind", ["pickle as .pdparams", "pickle in a .pth zip", "truncated", "garbage"])
def test_bad_input_is_refused_runs_nothing_and_writes_nothing(tmp_path, kind):
    marker, files = _bad_files(tmp_path)
    out = tmp_path / "out.pdparams"
    p = porthub("convert", "shunted", "--config", CASE, "--to", "paddle", "--src", str(files[kind]), "--out", str(out))
    assert p.returncode != 0
    assert p.stderr.startswith("porthub: error:") and p.stderr.count("\n") == 1, p.stderr
    assert not marker.exists(), "the checkpoint ran code"
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".out")], "a temporary file was left behind"
    if "pickle" in kind:
        assert "posix.system" in p.stderr or "os.system" in p.stderr


def test_checkpoint_of_another_variant_is_refused(tmp_path):
    out = tmp_path / "out.pdparams"
    p = porthub("convert", "shunted_t", "--to", "paddle", "--src", PTH, "--out", str(out))
    assert p.returncode != 0 and p.stderr.count("\n") == 1
    assert "shunted_t" in p.stderr and "shape mismatch" in p.stderr
    assert not out.exists()


def test_verify_reference_json_contract():
    import json

    p = porthub("verify", "--reference", CASE, "--framework", "both", "--dtype", "float64", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["ok"] is True
    finals = {r["framework"]: r for r in report["results"] if r["output"] == "output"}
    assert set(finals) == {"torch", "paddle"}
    assert all(r["max_abs_diff"] <= r["tolerance"] for r in finals.values())


def test_native_writes_to_descriptor_1_go_to_stderr_and_json_stays_parseable():
    """Paddle Inference's C++ passes write lines such as ``ReduceMeanCheckIfOneDNNSupport`` straight to
    descriptor 1; under porthub's CLI they land on stderr, and stdout holds only porthub's own output."""
    code = (
        "import os, sys\n"
        "from porthub import cli\n"
        "info = cli._COMMANDS['info']\n"
        "def noisy(args):\n"
        "    os.write(1, b'ReduceMeanCheckIfOneDNNSupport\\n')\n"
        "    return info(args)\n"
        "cli._COMMANDS['info'] = noisy\n"
        "sys.exit(cli.main(['info', 'shunted_t', '--json']))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    import json

    assert json.loads(p.stdout)["name"] == "shunted_t"
    assert "ReduceMeanCheckIfOneDNNSupport" in p.stderr


def test_reader_leaving_early_is_not_an_error():
    """`porthub info X | head -1`: no Broken pipe message, no traceback."""
    command = f"{sys.executable} -m porthub.cli info shunted_b | head -1"
    p = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert p.stdout.startswith("shunted_b") and p.stdout.count("\n") == 1
    assert "Broken pipe" not in p.stderr and "Traceback" not in p.stderr, p.stderr
