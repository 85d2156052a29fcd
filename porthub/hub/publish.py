"""Publishing: convert a checkpoint, prove the result, and write one hub repository.

``build_repo`` writes into a fresh folder: the PyTorch weights (``model.safetensors``), the Paddle
weights (``model.paddle.safetensors`` and ``model.pdparams``), a reference input and the source
checkpoint's outputs (``test/``), the model card and ``config.json``. Before anything is published the
written files are read back, run in each framework and dtype, and compared with the source
checkpoint run in PyTorch; a result over the family's tolerance stops the push.

With ``inference`` (``porthub push --with-inference paddle-inference,onnx``) the repository also holds
deployment models, each exported by :func:`porthub.export.export_model` from the same checkpoint into
its own folder (``inference/paddle/``: ``inference.json``, ``inference.pdiparams``, ``inference.yml``;
``inference/onnx/``: ``model.onnx``; each with its ``export.json``), with a dynamic batch axis, and
verified there (the artefact run standalone against the dynamic model) before it is kept; a failed
export stops the push.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..catalogue import provenance as source_provenance
from ..compare import compare_outputs, flatten_outputs
from ..engine import detect_layout, from_canonical
from ..errors import HubError, InputError, MissingFileError, PorthubError
from ..io import atomic_write, load_checkpoint, save_checkpoint
from ..io.atomic import stale_temporaries, temporary_prefix
from ..io.pdparams import read_pdparams
from ..spec import PADDLE, TORCH, FamilySpec, Variant
from ..version import __version__
from .card import render_card
from .local import hub_home, local_repo_dir
from .repo import (
    CONFIG_NAME,
    FORMAT_VERSION,
    STATE_LAYOUTS,
    check_repo_id,
    check_revision,
    default_repo_id,
    read_weights,
    sha256_file,
)

__all__ = ["WEIGHT_FILES", "INFERENCE_DIRS", "check_inference", "build_repo", "publish_local", "push", "resolve_hub"]

#: file name -> (framework, format)
WEIGHT_FILES = {
    "model.safetensors": (TORCH, "safetensors"),
    "model.paddle.safetensors": (PADDLE, "safetensors"),
    "model.pdparams": (PADDLE, "pdparams"),
}
_LOADED_FROM = {TORCH: "model.safetensors", PADDLE: "model.paddle.safetensors"}
#: deployment format (porthub.export) -> its folder in a repository
INFERENCE_DIRS = {"paddle-inference": "inference/paddle", "onnx": "inference/onnx"}

Progress = Callable[[str], None]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise HubError(
        f"constructor argument {value!r} ({type(value).__name__}) cannot be written to config.json; "
        "the family's spec must use JSON values (text for norm layers)"
    )


def _verify(
    spec: FamilySpec,
    variant: Variant,
    source: Mapping[str, np.ndarray],
    folder: str,
    config: Mapping[str, Any],
    dtypes: Sequence[str],
    say: Progress,
) -> dict[str, Any]:
    """Run the source state in PyTorch, then the published files in each framework, on the seeded input."""
    from ..pairs import seeded_input
    from ..runtime import build_model, load_state, run_model

    ref = variant.model()
    x = seeded_input(variant)
    os.makedirs(os.path.join(folder, "test"), exist_ok=True)
    np.save(os.path.join(folder, "test", "input.npy"), x)
    published = {fw: read_weights(os.path.join(folder, name), config, fw) for fw, name in _LOADED_FROM.items()}
    pdparams = read_pdparams(os.path.join(folder, "model.pdparams"))
    paddle_file = load_checkpoint(os.path.join(folder, "model.paddle.safetensors"))
    same_pdparams = list(pdparams) == list(paddle_file) and all(
        np.array_equal(pdparams[k], paddle_file[k]) for k in paddle_file
    )
    results = []
    for dtype in dtypes:
        say(f"verifying {dtype}: source checkpoint in torch")
        model = build_model(spec, ref, TORCH, dtype)
        load_state(model, source, spec, TORCH, variant.name)
        expected = run_model(model, x, TORCH, dtype)[0]
        # the reference output file holds the final item of a list output; every item is compared below
        np.save(os.path.join(folder, "test", f"output.{dtype}.npy"), list(flatten_outputs(expected).values())[-1])
        for fw in (TORCH, PADDLE):
            say(f"verifying {dtype}: {_LOADED_FROM[fw]} in {fw}")
            if fw == PADDLE:
                del model
                model = build_model(spec, ref, PADDLE, dtype)
            load_state(model, published[fw], spec, fw, variant.name)
            got = run_model(model, x, fw, dtype)[0]
            for c in compare_outputs(expected, got, spec.tolerance(fw).for_dtype(dtype), fw, dtype):
                name = {} if c.output == "output" else {"output": c.output}
                results.append(
                    {
                        "framework": fw,
                        "file": _LOADED_FROM[fw],
                        "dtype": dtype,
                        **name,
                        "max_abs_diff": c.max_abs_diff,
                        "tolerance": c.tolerance,
                        "ok": c.ok,
                    }
                )
        del model
    return {
        "input": "test/input.npy",
        "outputs": {d: f"test/output.{d}.npy" for d in dtypes},
        "reference": "the source checkpoint run in PyTorch",
        "results": results,
        "pdparams_identical_to_paddle_safetensors": bool(same_pdparams),
        "ok": bool(same_pdparams) and all(r["ok"] for r in results),
    }


def check_inference(formats: Sequence[str] | str | None) -> tuple[str, ...]:
    """The deployment formats asked for (a sequence, or text such as ``"paddle-inference,onnx"``), each once,
    in the order given; an unknown one is an InputError naming the choices (before any conversion)."""
    if not formats:
        return ()
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in (str(i).strip() for i in items):
        if item not in INFERENCE_DIRS:
            raise InputError(
                f"unknown inference format {item!r}; choose from {', '.join(INFERENCE_DIRS)} (comma-separated)"
            )
        if item not in out:
            out.append(item)
    return tuple(out)


#: ``porthub.export.export_model``'s signature, as the hub calls it (the front passes it in: porthub.export
#: reads pretrained weights through porthub.hub, so the hub cannot import it back without a circle)
Exporter = Callable[..., Any]


def _add_inference(
    model: str, weights: str, folder: str, formats: Sequence[str], files: dict[str, dict[str, Any]], say: Progress,
    export_model: Exporter,
) -> dict[str, Any]:
    """Export ``weights`` in each of ``formats`` into the repository ``folder``; record the files; return
    config.json's ``inference`` table (folder, files, the export's verification figures)."""
    table: dict[str, Any] = {}
    for fmt in formats:
        sub = INFERENCE_DIRS[fmt]
        say(f"exporting {fmt} into {sub}/ (verified against the dynamic model)")
        target = os.path.join(folder, *sub.split("/"))
        # export_model writes beside its target and renames; the parent must exist
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            result = export_model(model, fmt, weights=weights, out=target, dynamic_batch=True)
        except PorthubError as exc:
            raise HubError(f"{model}: the {fmt} export failed ({exc}); nothing was published") from None
        report = dict(result.report)
        names = sorted(
            os.path.relpath(os.path.join(base, n), folder).replace(os.sep, "/")
            for base, _dirs, found in os.walk(result.out_dir)
            for n in found
        )
        for name in names:
            files[name] = {"role": f"{fmt} inference model", "format": fmt}
        table[fmt] = {
            "dir": sub,
            "files": names,
            "dynamic_batch": bool(report.get("dynamic_batch", True)),
            "input_size": report.get("input_size"),
            "dtype": report.get("dtype", "float32"),
            "verification": _jsonable(report.get("verification", {})),
        }
        name = _paddlex_model_name(os.path.join(result.out_dir, "inference.yml"))
        if name:
            table[fmt]["paddlex_model_name"] = name
    return table


#: the indented ``model_name`` of the top-level ``Global:`` block, quoted or not
_GLOBAL_MODEL_NAME = r"^Global:\s*\n(?:[ \t]+.*\n)*?[ \t]+model_name:[ \t]*['\"]?([^'\"\n]+?)['\"]?[ \t]*$"


def _paddlex_model_name(path: str) -> str | None:
    """``Global.model_name`` of a PaddleX ``inference.yml`` (the card's PaddleX usage names it), read as
    text: porthub needs no YAML library."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    match = re.search(_GLOBAL_MODEL_NAME, text, re.M)
    return match.group(1) if match else None


def _check_exporter(formats: Sequence[str], exporter: Exporter | None) -> None:
    if formats and exporter is None:
        raise InputError(
            "inference models need the exporter: pass exporter=porthub.export.export_model "
            "(porthub push --with-inference does)"
        )


def _record(folder: str, files: dict[str, dict[str, Any]]) -> None:
    for name, info in files.items():
        if "sha256" not in info:
            path = os.path.join(folder, *name.split("/"))
            info["sha256"] = sha256_file(path)
            info["size"] = os.path.getsize(path)


def build_repo(
    model: str,
    weights: str,
    folder: str,
    repo_id: str | None = None,
    dtypes: Sequence[str] = ("float32", "float64"),
    progress: Progress | None = None,
    provenance: Mapping[str, Any] | None = None,
    inference: Sequence[str] = (),
    exporter: Exporter | None = None,
) -> dict[str, Any]:
    """Write the repository of ``model`` converted from ``weights`` (any released layout, either
    framework) into ``folder``; return its config. Raises HubError when verification fails.
    ``inference``: deployment formats (``paddle-inference``, ``onnx``) exported beside the weights by
    ``exporter`` (:func:`porthub.export.export_model`).

    ``provenance`` (from :mod:`porthub.sources`) says where the file came from; without it the file
    counts as official only when its sha256 is one the sources catalogue records."""
    from ..manifest import manifest_for
    from ..registry import resolve
    from ..verify import frameworks_of_file

    say = progress or (lambda _msg: None)
    spec, variant = resolve(model)
    repo_id = check_repo_id(repo_id or default_repo_id(variant.name))
    ref = variant.model()
    say(f"reading {weights}")
    source_sha = sha256_file(weights)
    if not provenance or provenance.get("sha256") != source_sha:
        provenance = source_provenance(spec.sources.get(variant.name), source_sha)
    manifest = manifest_for(spec, ref, variant.name, variant)
    layout, state = detect_layout(load_checkpoint(weights), spec, manifest, frameworks_of_file(weights))
    files: dict[str, dict[str, Any]] = {}
    for name, (fw, fmt) in WEIGHT_FILES.items():
        say(f"writing {name}")
        obj = state if fw == TORCH else from_canonical(state, STATE_LAYOUTS[fw], spec)
        meta = (
            {
                "format": "pt" if fw == TORCH else "paddle",
                "porthub.framework": fw,
                "porthub.layout": STATE_LAYOUTS[fw].name,
                "porthub.model": variant.name,
                "porthub.version": __version__,
            }
            if fmt == "safetensors"
            else None
        )
        save_checkpoint(obj, os.path.join(folder, name), fmt, meta)
        files[name] = {"framework": fw, "layout": STATE_LAYOUTS[fw].name, "format": fmt}
    config: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "porthub_version": __version__,
        "repo_id": repo_id,
        "family": spec.family,
        "variant": variant.name,
        "architecture": variant.class_name,
        "constructor_kwargs": _jsonable(dict(ref.kwargs)),
        "num_classes": variant.num_classes,
        "task": variant.task,
        "preprocessing": _jsonable({"input_size": list(variant.input_size), **dict(spec.preprocessing)}),
        "source_checkpoint": {
            "name": os.path.basename(weights),
            "sha256": source_sha,
            "layout": layout.name,
            "framework": layout.framework,
            "official_file": str(variant.meta.get("checkpoint_file", "")),
        },
        "licence": spec.licence or str(variant.meta.get("licence", "")),
        "paper": spec.paper,
        "official_repo": spec.official_repo,
        "meta": _jsonable(dict(variant.meta)),
        "provenance": _jsonable(dict(provenance)),
        "frameworks": {
            TORCH: {"file": "model.safetensors", "layout": STATE_LAYOUTS[TORCH].name},
            PADDLE: {
                "file": "model.paddle.safetensors",
                "layout": STATE_LAYOUTS[PADDLE].name,
                "pdparams": "model.pdparams",
            },
        },
        "files": files,
    }
    config["equivalence"] = _verify(spec, variant, state, folder, config, dtypes, say)
    if not config["equivalence"]["ok"]:
        bad = (
            "; ".join(
                f"{r['framework']} {r['dtype']} max|diff| {r['max_abs_diff']:.3e} > {r['tolerance']:.1e}"
                for r in config["equivalence"]["results"]
                if not r["ok"]
            )
            or "model.pdparams differs from model.paddle.safetensors"
        )
        raise HubError(
            f"{variant.name}: the converted weights do not reproduce the source checkpoint ({bad}); "
            "nothing was published: run `porthub verify` on the checkpoint and report the family"
        )
    for name in ("test/input.npy", *config["equivalence"]["outputs"].values()):
        files[name] = {"role": "reference input" if name.endswith("input.npy") else "source checkpoint output"}
    formats = check_inference(inference)
    _check_exporter(formats, exporter)
    if formats:
        config["inference"] = _add_inference(variant.name, weights, folder, formats, files, say, exporter)
    _record(folder, files)
    say("writing README.md")
    with atomic_write(os.path.join(folder, "README.md")) as fh:
        fh.write(render_card(spec, variant, config, repo_id).encode("utf-8"))
    files["README.md"] = {"role": "model card"}
    _record(folder, files)
    with atomic_write(os.path.join(folder, CONFIG_NAME)) as fh:
        fh.write((json.dumps(config, indent=1) + "\n").encode("utf-8"))
    return config


def resolve_hub(hub: str | None) -> tuple[str, str]:
    """``("local", folder)``, ``("hf", endpoint)`` or ``("aistudio", "")`` for ``--hub``: nothing or ``local``
    (PORTHUB_HOME), a folder, ``hf`` (HF_ENDPOINT), an http(s) URL of a Hub endpoint, or ``aistudio``
    (AI Studio, STUDIO_GIT_HOST)."""
    if hub in (None, "", "local"):
        return "local", hub_home()
    if hub == "hf":
        return "hf", ""
    if hub == "aistudio":
        return "aistudio", ""
    if hub.startswith(("http://", "https://")):
        return "hf", hub
    return "local", os.path.abspath(os.path.expanduser(hub))


def publish_local(folder: str, repo_id: str, revision: str | None, root: str) -> str:
    """Move a built folder into the local hub, replacing the previous version in one rename, so a
    reader sees either the old repository or the new one, never a mix."""
    target = local_repo_dir(repo_id, revision, root)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # mkdtemp and atomic_write create owner-only entries; a published hub is readable like any cache
    umask = os.umask(0)
    os.umask(umask)
    for base, _dirs, names in os.walk(folder):
        os.chmod(base, 0o777 & ~umask)
        for name in names:
            os.chmod(os.path.join(base, name), 0o666 & ~umask)
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix=".replaced-", dir=os.path.dirname(target))
        os.replace(target, os.path.join(old, "repo"))
    os.replace(folder, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def push(
    model: str,
    weights: str,
    repo_id: str | None = None,
    hub: str | None = None,
    revision: str | None = None,
    private: bool = False,
    dtypes: Sequence[str] = ("float32", "float64"),
    progress: Progress | None = None,
    provenance: Mapping[str, Any] | None = None,
    inference: Sequence[str] | str | None = None,
    exporter: Exporter | None = None,
) -> dict[str, Any]:
    """Convert ``weights``, verify, and publish one repository to the local hub or a Hub endpoint;
    ``inference``: deployment formats exported and verified beside the weights by ``exporter``
    (``porthub.export.export_model``; see :func:`build_repo`)."""
    from ..registry import resolve

    formats = check_inference(inference)
    _check_exporter(formats, exporter)
    if not os.path.isfile(weights):
        raise MissingFileError(f"no such checkpoint: {weights}; pass the official file")
    variant = resolve(model)[1]
    repo_id = check_repo_id(repo_id or default_repo_id(variant.name))
    revision = check_revision(revision)
    kind, dest = resolve_hub(hub)
    if kind == "aistudio":
        from .aistudio import check_publishable

        # no token, no client or a bad name: say so before the (slow) conversion and verification
        check_publishable(repo_id, revision)
    staging_root = os.path.join(dest, ".staging") if kind == "local" else None
    slug = os.path.join(staging_root or tempfile.gettempdir(), repo_id.replace("/", "--"))
    if staging_root:
        os.makedirs(staging_root, exist_ok=True)
        # the folder of a push killed outright (SIGKILL, power loss) is removed by the next push of the repository
        for old in stale_temporaries(slug):
            shutil.rmtree(old, ignore_errors=True)
    folder = tempfile.mkdtemp(prefix=temporary_prefix(slug), suffix=".partial", dir=staging_root)
    try:
        config = build_repo(model, weights, folder, repo_id, dtypes, progress, provenance, formats, exporter)
        if kind == "local":
            where = publish_local(folder, repo_id, revision, dest)
            result = {"repo_id": repo_id, "hub": "local", "path": where, "revision": revision or "main"}
        elif kind == "aistudio":
            from .aistudio import publish as aistudio_publish

            result = aistudio_publish(folder, repo_id, revision=revision, private=private, progress=progress)
        else:
            from .remote import remote_publish

            result = {**remote_publish(folder, repo_id, dest or None, revision, private), "hub": "hf"}
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(folder)
    result.update(
        {
            "model": variant.name,
            "files": {k: v["sha256"] for k, v in config["files"].items()},
            "equivalence": config["equivalence"]["results"],
            "provenance": config["provenance"],
            "inference": config.get("inference", {}),
        }
    )
    return result
