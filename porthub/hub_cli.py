"""``porthub push`` and ``porthub download``: the command-line side of :mod:`porthub.hub`.
Progress goes to stderr, results to stdout."""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["cmd_push", "cmd_download", "add_inference_argument"]

#: what ``--with-inference`` alone exports
DEFAULT_INFERENCE = "paddle-inference"


def add_inference_argument(parser: argparse.ArgumentParser) -> None:
    """``porthub push``'s ``--with-inference [FORMATS]`` (registered by porthub.cli)."""
    parser.add_argument(
        "--with-inference",
        nargs="?",
        const=DEFAULT_INFERENCE,
        default=None,
        metavar="FORMATS",
        help="also export, verify and publish deployment models: paddle-inference (default), onnx, or "
        "paddle-inference,onnx (files under inference/)",
    )


def _say(message: str) -> None:
    print(f"porthub: {message}", file=sys.stderr, flush=True)


def _quiet_http_log() -> None:
    # paddle installs an INFO handler on the root logger when imported (push verifies in Paddle), which
    # would print every HTTP request huggingface_hub's client makes; the progress bars already show them
    import logging  # here: `porthub list` builds the parser (which imports this module) and must stay fast

    for name in ("httpx", "httpx2", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def cmd_push(args: argparse.Namespace) -> int:
    from .export import export_model
    from .hub.publish import check_inference, push

    _quiet_http_log()
    # an unknown format is one line before the conversion
    formats = check_inference(getattr(args, "with_inference", None))
    result = push(
        args.model,
        args.weights,
        args.repo_id,
        args.hub,
        args.revision,
        args.private,
        progress=None if args.json else _say,
        inference=formats,
        exporter=export_model if formats else None,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    where = result.get("path") or f"{result.get('endpoint')} (commit {result.get('commit')})"
    if result.get("hub") == "aistudio":
        where = f"AI Studio {result.get('endpoint')} ({'created' if result.get('created') else 'updated'})"
    print(f"published {result['repo_id']}@{result['revision']} to {where}")
    for r in result["equivalence"]:
        print(
            f"  {r['framework']:<7} {r['file']:<26} {r['dtype']:<8} max|diff| vs source {r['max_abs_diff']:.3e}  "
            f"(limit {r['tolerance']:.1e})"
        )
    for fmt, info in result.get("inference", {}).items():
        print(f"  {fmt:<16} {info['dir']}/: {', '.join(n.rsplit('/', 1)[-1] for n in info['files'])} (verified)")
    return 0


_HOW_TO_PROVIDE_CLI = ("publish it with `porthub push MODEL --weights CHECKPOINT`, point PORTHUB_HOME at a hub that "
                       "has it, or set HF_ENDPOINT to a reachable Hub")


def cmd_download(args: argparse.Namespace) -> int:
    from .hub import default_repo_id, fetch
    from .registry import resolve

    target = args.repo_id
    if target is None:
        looks_like_repo = "/" in args.model or os.path.isdir(args.model)
        target = args.model if looks_like_repo else default_repo_id(resolve(args.model)[1].name)
    frameworks = ("torch", "paddle") if args.framework == "both" else (args.framework,)
    if args.hub == "aistudio":
        from .hub.aistudio import fetch as aistudio_fetch

        fetched = aistudio_fetch(target, frameworks, args.revision)
    else:
        from .errors import HubError
        from .hub.repo import HOW_TO_PROVIDE

        try:
            fetched = fetch(target, frameworks, args.revision, args.hub)
        except HubError as exc:
            if HOW_TO_PROVIDE not in str(exc):
                raise
            # the library says what to do in its words; the command line names the command and flags
            raise type(exc)(str(exc).replace(HOW_TO_PROVIDE, _HOW_TO_PROVIDE_CLI)) from None
    if args.json:
        print(
            json.dumps(
                {
                    "repo": target,
                    "where": fetched.where,
                    "source": fetched.source,
                    "commit": fetched.commit,
                    "paths": fetched.paths,
                }
            )
        )
        return 0
    print(f"{target}: from {fetched.where} (sha256 checked)")
    for name, path in fetched.paths.items():
        print(f"  {name:<26} {path}")
    return 0
