"""The ``porthub`` command line. Imports stay lazy so that ``porthub list`` and ``--help`` start fast:
torch and paddle are imported only by the commands that run a model."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from typing import Sequence

__all__ = ["main"]

_EXAMPLES = """examples:
  porthub list twins
  porthub convert shunted_b --to paddle --src ckpt_B.pth
  porthub convert shunted_b --to torch --src ckpt_B.pdparams --out ckpt_B_back.pth
  porthub verify shunted_t
  porthub verify --reference tests/data/official/shunted/mini_a.json --dtype float64
  porthub verify shunted_t --weights ckpt_T.pth --input cat.jpg --topk 5 --report out/
"""


def _parser() -> argparse.ArgumentParser:
    from .version import __version__

    p = argparse.ArgumentParser(
        prog="porthub",
        description=(
            "Port official vision-transformer checkpoints between PyTorch and PaddlePaddle, with proof they agree."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"porthub {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("list", help="list the registered models")
    s.add_argument("pattern", nargs="?", help="substring or shell pattern (e.g. 'twins_*')")
    s.add_argument("--aliases", action="store_true", help="also show each model's other names")

    s = sub.add_parser("info", help="show a model's family, preprocessing, constructor arguments and layouts")
    s.add_argument("model")
    s.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("convert", help="convert a checkpoint to PyTorch or Paddle layout")
    s.add_argument("model", help="registered model (see `porthub list`), or a family name with --config")
    s.add_argument("--to", required=True, choices=("paddle", "torch"), help="target framework")
    s.add_argument(
        "--src", required=True, help="checkpoint to convert (.pth, .pdparams or .safetensors, any released layout)"
    )
    s.add_argument(
        "--out",
        help="output file, or an existing folder to write the default name into (default: "
        "beside --src with the format's suffix; NAME_torch.pth / NAME_paddle.pdparams when that exists)",
    )
    s.add_argument("--force", action="store_true", help="overwrite an existing output file (never --src itself)")
    s.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16", "float64"),
        help="cast the floating weights (default: keep the file's own, float16 and bfloat16 included)",
    )
    s.add_argument(
        "--format",
        choices=("pdparams", "safetensors", "pth"),
        help="output format (default: pdparams for paddle, pth for torch)",
    )
    s.add_argument("--config", help="a reference case JSON, or any JSON with 'constructor' and 'kwargs'")
    s.add_argument(
        "--layout",
        help="write this layout of the family (e.g. paddleseg, paddleclas); default: the "
        "official release / Paddle's (see `porthub info MODEL`)",
    )
    s.add_argument(
        "--from-layout", dest="source_layout", help="read --src as exactly this layout instead of detecting it"
    )
    s.add_argument(
        "--from",
        dest="source_framework",
        choices=("torch", "paddle"),
        help="which framework's layout --src holds, when its format does not say (safetensors without metadata)",
    )
    s.add_argument(
        "--allow-missing",
        action="append",
        default=[],
        metavar="KEY_REGEX",
        help="let keys matching this regex be absent from --src (repeatable)",
    )
    s.add_argument("--json", action="store_true", help="print a JSON summary")

    s = sub.add_parser("verify", help="check that porthub's models match the official outputs, and each other")
    s.add_argument("model", nargs="?", help="registered model: compare PyTorch and Paddle at full size")
    s.add_argument("--reference", help="an official reference case JSON")
    s.add_argument(
        "--weights",
        "--checkpoint",
        dest="weights",
        action="append",
        metavar="FILE",
        help="weights to compare on, either framework's file in any layout (default: the case's own "
        "with --reference, seeded random weights with MODEL); --checkpoint is the same option",
    )
    s.add_argument(
        "--input",
        metavar="IMAGE_OR_NPY",
        help=(
            "with MODEL: a photo (preprocessed as the family evaluates) or a .npy array [N,3,H,W] "
            "(default: seeded noise)"
        ),
    )
    s.add_argument(
        "--report",
        metavar="DIR",
        help="with MODEL: write a per-layer JSON, Markdown and PNG report (both dtypes) into DIR",
    )
    s.add_argument(
        "--topk", type=int, default=0, metavar="K", help="with MODEL: print both frameworks' top K classes side by side"
    )
    s.add_argument("--framework", choices=("torch", "paddle", "both"), default="both")
    s.add_argument(
        "--dtype",
        choices=("float32", "float64", "float16", "bfloat16"),
        default="float32",
        help="float16/bfloat16 (with MODEL): each --framework's half-precision model against its float32 model, "
        "within the family's declared limit (Paddle runs half precision on a GPU only)",
    )
    s.add_argument("--device", default="cpu", help="where the models run: cpu, cuda[:N] or gpu[:N]")
    s.add_argument("--no-features", action="store_true", help="compare only the final output")
    s.add_argument(
        "--backward",
        action="store_true",
        help="with MODEL: also back-propagate a seeded loss in train mode (dropout and drop path off) in "
        "both frameworks and compare every parameter's gradient",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser(
        "push", help="convert a checkpoint, verify it, and publish a hub repository (local hub by default)"
    )
    s.add_argument("model", help="registered model (see `porthub list`)")
    s.add_argument(
        "--weights", required=True, help="the checkpoint to publish (official release, or either framework's file)"
    )
    s.add_argument("--repo-id", help="ORG/NAME of the repository (default: porthub/MODEL)")
    s.add_argument(
        "--hub",
        metavar="DEST",
        help="local (default: PORTHUB_HOME), a folder, hf (HF_ENDPOINT), "
        "a Hub URL, or aistudio (AI Studio: AISTUDIO_ACCESS_TOKEN, repository id <your AI Studio namespace>/NAME)",
    )
    s.add_argument("--revision", help="branch to publish to (default: main)")
    s.add_argument("--private", action="store_true", help="create the Hub repository private")
    from .hub_cli import add_inference_argument

    add_inference_argument(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser(
        "download", help="fetch a model's published weights (local hub, then the Hugging Face Hub), sha256-checked"
    )
    s.add_argument("model", help="registered model, ORG/NAME repository id, or a repository folder")
    s.add_argument("--framework", choices=("torch", "paddle", "both"), default="both", help="whose weights to fetch")
    s.add_argument("--repo-id", help="ORG/NAME to fetch MODEL from (default: porthub/MODEL)")
    s.add_argument("--revision", help="branch, tag or commit to pin")
    s.add_argument(
        "--hub",
        metavar="URL",
        help="Hub endpoint (default: HF_ENDPOINT; the local hub is asked first), "
        "or aistudio to fetch from AI Studio (Paddle weights, for either framework)",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("fetch", help="get a model's official checkpoint; convert, verify, install it as porthub/MODEL")
    s.add_argument("model", help="registered model (see `porthub list`)")
    s.add_argument(
        "--source",
        action="append",
        choices=("local", "url", "gdrive", "hf", "baidu"),
        help="only look here (repeatable; default: PORTHUB_SOURCES folders and the cache, then every "
        "catalogued location in order)",
    )
    s.add_argument("--force", action="store_true", help="download again and rebuild the repository even if it exists")
    s.add_argument(
        "--hub", metavar="DEST", help="where to install: local (default: PORTHUB_HOME), a folder, hf or a Hub URL"
    )
    s.add_argument(
        "--dtype",
        action="append",
        choices=("float32", "float64"),
        help="verify in this dtype (repeatable; default both)",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser(
        "evaluate", help="measure top-1/top-5 (or mIoU) on a validation folder, in either framework or both"
    )
    s.add_argument("model", help="registered model (see `porthub list`)")
    s.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="one sub-folder per class (WordNet ids: ImageNet-1k "
        "indices), a flat folder with val.txt/labels.txt ('FILENAME LABEL'), or for segmentation models "
        "images/ + annotations/ (ADE20K layout)",
    )
    s.add_argument("--framework", choices=("torch", "paddle", "both"), default="both")
    s.add_argument(
        "--weights",
        metavar="FILE",
        help="checkpoint in any layout porthub reads (default: the published "
        "weights, from the hubs then the official source)",
    )
    s.add_argument("--limit", type=int, metavar="N", help="evaluate the first N images only")
    s.add_argument("--device", default="cpu", help="where the models run: cpu, cuda[:N] or gpu[:N]")
    s.add_argument("--batch-size", type=int, default=32, metavar="B")
    s.add_argument("--workers", type=int, metavar="W", help="decoding threads (default: up to 8, the cores)")
    s.add_argument(
        "--write-card",
        nargs="?",
        const="",
        metavar="REPO",
        help="write the figures into the local hub repository's card and config.json (default porthub/MODEL), "
        "labelled as measured by porthub; --weights must then be the file it was built from",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser(
        "publish-zoo", help="(maintainers) fetch, convert, verify and publish every available official file"
    )
    s.add_argument(
        "--hub",
        required=True,
        metavar="DEST",
        help="local (PORTHUB_HOME), a folder, hf (HF_ENDPOINT), a Hub URL, or aistudio (AI Studio, STUDIO_GIT_HOST; "
        "the token's namespace)",
    )
    s.add_argument(
        "--sources",
        metavar="DIR",
        action="append",
        help="a folder of official files under their official names (repeatable; before PORTHUB_SOURCES)",
    )
    s.add_argument("--data", metavar="DIR", help="also evaluate each published model on this validation folder")
    s.add_argument(
        "--only", metavar="PATTERN", action="append", help="only variants matching this shell pattern (repeatable)"
    )
    s.add_argument(
        "--dtype", action="append", choices=("float32", "float64"), help="verify in this dtype (default both)"
    )
    s.add_argument("--json", action="store_true", help="print one JSON object")

    # deployment commands live in their own front modules (one owner each); they register here
    from . import export_cli, predict_cli

    export_cli.add_parser(sub)
    predict_cli.add_parser(sub)

    s = sub.add_parser("manifests", help="(maintainers) regenerate the shipped key manifests from the PyTorch models")
    s.add_argument("families", nargs="*")
    return p


def _cmd_list(args: argparse.Namespace) -> int:
    from .registry import all_specs, list_models

    names = set(list_models(args.pattern))
    for spec in all_specs():
        for v in spec.variants:
            if v.name not in names:
                continue
            acc = v.meta.get("top1") or v.meta.get("miou")
            extra = f"  ({', '.join(v.aliases)})" if args.aliases and v.aliases else ""
            metric = f"  {acc}" if acc is not None else ""
            print(f"{v.name:<34} {spec.family:<12} {v.task:<15}{metric}{extra}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .preprocess import data_config
    from .registry import resolve

    spec, v = resolve(args.model)
    info = {
        "name": v.name,
        "aliases": list(v.aliases),
        "family": spec.family,
        "class": v.class_name,
        "kwargs": dict(v.kwargs),
        "release_layout": v.release_layout,
        "input_size": list(v.input_size),
        "num_classes": v.num_classes,
        "task": v.task,
        "meta": dict(v.meta),
        "layouts": {layout.name: f"{layout.framework}: {layout.description}" for layout in spec.layouts},
        "data_config": data_config(v.name),
    }
    if getattr(args, "json", False):
        print(json.dumps(info, indent=1, default=str))
        return 0
    pre = info["data_config"]
    crop = (
        f"short side to {round(max(pre['input_size'][1:]) / pre['crop_pct'])}, centre crop"
        if pre["crop_mode"] == "center"
        else "whole image resized to"
    )
    lines = [
        f"{v.name}: {spec.title} ({spec.family}), {v.task}, {v.num_classes} classes, class {v.class_name}",
        f"  aliases:        {', '.join(v.aliases) or '-'}",
        f"  input:          {'x'.join(map(str, pre['input_size']))} (C x H x W)",
        f"  preprocessing:  {crop} {pre['input_size'][1]}x{pre['input_size'][2]} (crop_pct {pre['crop_pct']:.4g}), "
        f"{pre['interpolation']} interpolation",
        f"  normalise:      mean {', '.join(f'{m:.4g}' for m in pre['mean'])}; "
        f"std {', '.join(f'{x:.4g}' for x in pre['std'])}",
        f"  release layout: {v.release_layout}",
        "  layouts:",
        *(f"    {name:<16} {text}" for name, text in info["layouts"].items()),
        "  constructor:    " + ", ".join(f"{k}={val!r}" for k, val in v.kwargs.items()),
    ]
    print("\n".join(lines))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_file, resolve_target
    from .errors import KeyMismatchError, OutputExistsError

    target = resolve_target(args.model, args.config)
    try:
        result = convert_file(
            target,
            args.src,
            args.to,
            args.out,
            args.format,
            args.layout,
            args.source_layout,
            args.allow_missing,
            args.source_framework,
            force=args.force,
            dtype=args.dtype,
        )
    except OutputExistsError as exc:
        path = getattr(exc, "path", None)
        if path is None:
            raise
        if getattr(exc, "is_source", False):
            raise OutputExistsError(
                f"--out {path} is --src; porthub never writes over its source: pass another --out"
            ) from None
        raise OutputExistsError(
            f"{path} exists; nothing was written: pass another --out, or --force to overwrite it"
        ) from None
    except KeyMismatchError as exc:
        if "allow the keys you mean to leave out" not in str(exc):
            raise
        raise KeyMismatchError(
            str(exc).replace(
                "allow the keys you mean to leave out as missing",
                "--allow-missing KEY_REGEX for keys you mean to leave out",
            )
        ) from None
    if args.json:
        print(json.dumps(result))
    else:
        dtypes = "/".join(result["dtypes"]) or "no float"
        print(
            f"wrote {result['out']}: {result['tensors']} tensors ({dtypes}), read as {result['read']}, "
            f"written as {result['to_layout']}"
        )
        for note in result["notes"]:
            print("note: " + re.sub(r"needs layout '([\w-]+)'", r"needs --layout \1", note))
    return 0


def _verify_weights(args: argparse.Namespace) -> str | None:
    """The one weights file of --weights/--checkpoint, checked to exist before any model is built."""
    from .errors import InputError

    given = sorted(set(args.weights or []))
    if len(given) > 1:
        raise InputError(f"--weights/--checkpoint given twice with different files ({', '.join(given)}); pass one")
    if given and not os.path.isfile(given[0]):
        raise FileNotFoundError(f"no such checkpoint: {given[0]}")
    return given[0] if given else None


def _cmd_verify(args: argparse.Namespace) -> int:
    from .errors import InputError

    frameworks = ("torch", "paddle") if args.framework == "both" else (args.framework,)
    weights = _verify_weights(args)
    if args.reference and args.model:
        raise InputError("verify takes a MODEL or --reference CASE.json, not both")
    if args.reference and (args.input or args.report or args.topk):
        raise InputError("--input, --report and --topk go with MODEL, not --reference")
    if args.reference and args.backward:
        raise InputError("--backward compares PyTorch's gradients with Paddle's on a MODEL, not on --reference")
    if args.topk < 0:
        raise InputError("--topk must be a positive number of classes")
    half = args.dtype in ("float16", "bfloat16")
    if half and (args.reference or not args.model or args.backward or args.report or args.topk):
        raise InputError(f"--dtype {args.dtype} compares a MODEL's half-precision outputs with its float32 ones; "
                         "it goes without --reference, --backward, --report and --topk")
    from .runtime import on_device, resolve_device

    # the device for every framework that will run, before any model is built
    for framework in frameworks:
        resolve_device(args.device, framework)
    if half:
        from .devices import check_dtype
        from .pairs import verify_half

        for framework in frameworks:
            check_dtype(resolve_device(args.device, framework), args.dtype)
        report = verify_half(args.model, args.dtype, weights, image=args.input, device=args.device,
                             frameworks=frameworks)
    elif args.reference:
        from .verify import verify_reference

        with on_device(args.device):
            report = verify_reference(args.reference, frameworks, args.dtype, weights, not args.no_features)
    elif args.model:
        from .pairs import verify_pair
        from .registry import resolve

        _spec, variant = resolve(args.model)
        if args.topk and variant.task != "classification":
            raise InputError(f"--topk lists classes of a classifier; {variant.name} is a {variant.task} model")
        if args.framework != "both":
            raise InputError(
                f"verify {variant.name} compares Paddle with PyTorch on the same weights, so it runs both "
                "frameworks; --framework torch/paddle goes with --reference"
            )
        if args.no_features and args.report:
            raise InputError("--report is the per-layer comparison; it cannot go with --no-features")
        report = verify_pair(
            args.model,
            args.dtype,
            weights,
            image=args.input,
            report_dir=args.report,
            topk=args.topk,
            device=args.device,
            **({"features": False} if args.no_features else {}),
        )
        if args.backward:
            from .gradients import verify_gradients

            with on_device(args.device):
                grads = verify_gradients(args.model, args.dtype, weights, image=args.input)
            report["gradients"] = grads.as_dict()
            report["ok"] = report["ok"] and grads.ok
            report.setdefault("notes", []).extend(grads.lines())
    else:
        raise InputError("verify needs a MODEL or --reference CASE.json")
    if args.json:
        print(json.dumps(report))
    else:
        if report.get("weights") == "seeded":
            print("weights: seeded random (no --weights given): the outputs and top classes are an untrained model's")
        for r in report["results"]:
            mark = "ok  " if r["ok"] else "FAIL"
            print(
                f"{mark} {r['framework']:<7} {r['output']:<28} max|diff| {r['max_abs_diff']:.3e}  "
                f"(limit {r['tolerance']:.1e}, {r['dtype']})"
            )
        for line in report.get("notes", []):
            print(line)
        print("all within tolerance" if report["ok"] else "SOME COMPARISONS FAILED")
    return 0 if report["ok"] else 1


def _cmd_manifests(args: argparse.Namespace) -> int:
    from .manifest import write_manifests
    from .registry import all_specs

    for spec in all_specs():
        if args.families and spec.family not in args.families:
            continue
        print(write_manifests(spec))
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub_cli import cmd_push

    return cmd_push(args)


def _cmd_download(args: argparse.Namespace) -> int:
    from .hub_cli import cmd_download

    return cmd_download(args)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .errors import SourceUnavailableError
    from .sources import install_details

    say = (lambda _msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    try:
        result = install_details(
            args.model,
            hub=args.hub,
            source=args.source,
            force=args.force,
            progress=not args.json,
            dtypes=tuple(args.dtype or ("float32", "float64")),
            say=say,
        )
    except SourceUnavailableError as exc:
        raise SourceUnavailableError(f"{exc} Then run `porthub fetch {args.model}` again.") from None
    fetched = result.pop("source")
    summary = {
        **result,
        "source": {
            "path": fetched.path,
            "sha256": fetched.sha256,
            "pinned": fetched.pinned,
            "from": fetched.source,
            "provenance": fetched.provenance,
        },
    }
    if args.json:
        print(json.dumps(summary, default=str))
        return 0
    pin = (
        "sha256 matches the catalogue"
        if fetched.pinned
        else "unpinned: the authors publish no sha256; this file's is recorded"
    )
    print(f"source {fetched.path} from {fetched.source}: sha256 {fetched.sha256} ({pin})")
    if result.get("skipped"):
        print(f"{result['repo_id']} is already installed from this file: {result['path']} (--force rebuilds it)")
        return 0
    for r in result.get("equivalence", []):
        print(
            f"ok   {r['framework']:<7} {r['file']:<26} {r['dtype']} max|diff| {r['max_abs_diff']:.3e} "
            f"(limit {r['tolerance']:.1e})"
        )
    where = result.get("path") or result.get("url")
    print(f"installed {result['repo_id']} ({fetched.provenance.get('kind')}): {where}")
    return 0


_COMMANDS = {
    "list": _cmd_list,
    "info": _cmd_info,
    "convert": _cmd_convert,
    "verify": _cmd_verify,
    "manifests": _cmd_manifests,
    "push": _cmd_push,
    "download": _cmd_download,
}
_COMMANDS["fetch"] = _cmd_fetch


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import card_target, check_frameworks, evaluate, write_card
    from .runtime import on_device, resolve_device

    # the device for each framework first, then the repository (and that --weights is its file), all
    # before any image is read
    for framework in check_frameworks(args.framework):
        resolve_device(args.device, framework)
    target = None if args.write_card is None else card_target(args.model, args.weights, args.write_card or None)
    with on_device(args.device):
        result = evaluate(
            args.model,
            args.data,
            args.framework,
            args.weights if target is None else target.weights,
            args.limit,
            args.batch_size,
            args.workers,
            progress=None if not args.json else False,
        )
    if target is not None:
        result["card"] = write_card(target, result, args.data)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['model']} on {args.data}: {result['samples']} images ({result['layout']}), "
        f"weights {result['weights']}"
    )
    for fw, r in result["frameworks"].items():
        speed = f"  ({r['images_per_s']:.1f} images/s)" if r.get("images_per_s") else ""
        if "top1" in r:
            print(f"{fw:<7} top-1 {100 * r['top1']:.2f}%  top-{result['top_k']} {100 * r['top5']:.2f}%{speed}")
        else:
            print(f"{fw:<7} mIoU {100 * r['miou']:.2f}%  aAcc {100 * r['aacc']:.2f}%{speed}")
    if result.get("agreement_top1") is not None:
        print(f"torch and paddle agree on the top-1 class of {100 * result['agreement_top1']:.2f}% of the images")
    if result.get("agreement_pixels") is not None:
        print(f"torch and paddle agree on {100 * result['agreement_pixels']:.4f}% of the pixels")
    if result.get("protocol"):
        print(f"protocol: {result['protocol']}")
    if result.get("card"):
        print(f"figures written into {result['card']} (and config.json), labelled as measured by porthub")
    return 0


def _cmd_publish_zoo(args: argparse.Namespace) -> int:
    from .zoo import publish_zoo

    say = (lambda _msg: None) if args.json else (lambda msg: print(f"porthub: {msg}", file=sys.stderr, flush=True))
    report = publish_zoo(
        args.hub, args.sources, args.data, args.only, tuple(args.dtype or ("float32", "float64")), say=say
    )
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.table())
    return 0 if report.ok else 1


_COMMANDS["evaluate"] = _cmd_evaluate
_COMMANDS["publish-zoo"] = _cmd_publish_zoo


def _cmd_export(args: argparse.Namespace) -> int:
    from .export_cli import cmd_export

    return cmd_export(args)


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict_cli import cmd_predict

    return cmd_predict(args)


_COMMANDS["export"] = _cmd_export
_COMMANDS["predict"] = _cmd_predict


@contextlib.contextmanager
def _native_writes_to_stderr():
    """While a command runs, file descriptor 1 points at stderr and ``sys.stdout`` at the original stdout.

    porthub's stdout is data (one JSON object with ``--json``, labels, tables) that scripts parse, but
    native code writes to descriptor 1 directly: Paddle Inference's C++ passes print lines such as
    ``ReduceMeanCheckIfOneDNNSupport`` that no Python setting silences. Those go to stderr with Paddle's
    other messages instead. Skipped when ``sys.stdout`` is not the process's own (tests capturing it).
    """
    try:
        own = sys.stdout is sys.__stdout__ and sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        own = False
    if not own:
        yield
        return
    sys.stdout.flush()
    data_fd = os.dup(1)
    os.dup2(2, 1)
    original = sys.stdout
    sys.stdout = os.fdopen(data_fd, "w", encoding=original.encoding, errors=original.errors, closefd=False)
    try:
        yield
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            # the reader left before the last buffered line: what is left goes nowhere, as in main()
            os.dup2(os.open(os.devnull, os.O_WRONLY), data_fd)
            sys.stdout.flush()
        finally:
            sys.stdout = original
            os.dup2(data_fd, 1)
            os.close(data_fd)


def main(argv: Sequence[str] | None = None) -> int:
    with _native_writes_to_stderr():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from .errors import PorthubError

    try:
        return _COMMANDS[args.command](args)
    except BrokenPipeError:
        # the reader went away (`porthub info X | head`): not an error of the command; later writes
        # (the interpreter's flush at exit) go nowhere instead of failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (PorthubError, OSError) as exc:
        # porthub's own errors and the operating system's (a file that cannot be read or written); any
        # other exception is a bug and keeps its traceback. A KeyError's str() quotes its argument.
        text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
        msg = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": msg, "type": type(exc).__name__}))
        print(f"porthub: error: {msg}", file=sys.stderr)
        if os.environ.get("PORTHUB_DEBUG"):
            raise
        return 1
    except KeyboardInterrupt:
        print("porthub: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
