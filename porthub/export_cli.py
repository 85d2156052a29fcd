"""``porthub export``: inference artefacts (Paddle Inference, ONNX, TorchScript), verified before they are kept."""

from __future__ import annotations

import argparse
import json
import os

__all__ = ["add_parser", "cmd_export"]

_FORMATS = ("paddle-inference", "onnx", "torchscript")


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("export", help="write a verified inference model: paddle-inference, onnx or torchscript")
    s.add_argument("model", help="registered model (see `porthub list`)")
    s.add_argument("--format", required=True, choices=_FORMATS, dest="fmt",
                   help="paddle-inference (inference.json/.pdiparams/.yml), onnx (model.onnx), torchscript (model.pt)")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--weights", help="checkpoint in any layout of the family (default: seeded random weights)")
    src.add_argument("--pretrained", action="store_true", help="the published weights (local hub, Hub, official)")
    s.add_argument("--out", help="output folder (default: ./MODEL_FORMAT); refused if it exists, unless --force")
    s.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), help="input size (default: the model's)")
    s.add_argument("--dynamic-batch", action="store_true", help="leave the batch axis free (verified on batch 2)")
    s.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="float32 (default) or float16 (a GPU for Paddle: its CPU kernels are float32/float64 only)")
    s.add_argument("--device", default="cpu", help="cpu, cuda[:N] or gpu[:N] (default cpu)")
    s.add_argument("--legacy-pdmodel", action="store_true",
                   help="paddle-inference: also the legacy inference.pdmodel (refused: see the message)")
    s.add_argument("--via", choices=("torch", "paddle2onnx"),
                   help="onnx: from the PyTorch model (default), or from the Paddle model through paddle2onnx "
                   "(as PaddleX's high-performance inference does; pip install paddle2onnx)")
    s.add_argument("--force", action="store_true", help="replace an earlier export at --out")
    s.add_argument("--json", action="store_true", help="print export.json as one JSON object")


def _summary(result: object) -> list[str]:
    report = result.report  # type: ignore[attr-defined]
    lines = [f"{report['model']} -> {result.out_dir} ({report['format']}, {report['dtype']}, "  # type: ignore[attr-defined]
             f"input {report['input_size'][0]}x{report['input_size'][1]}, "
             f"batch {'dynamic' if report['dynamic_batch'] else report['batch']})"]
    sizes = []
    for name in report["files"]:
        path = os.path.join(result.out_dir, name)  # type: ignore[attr-defined]
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        sizes.append(f"{name} ({size / 1e6:.1f} MB)" if size >= 1e5 else name)
    lines.append("files: " + ", ".join(sizes))
    for key, verdict in report["verification"].items():
        if not isinstance(verdict, dict) or "ok" not in verdict:
            continue
        if verdict["ok"] is None:
            lines.append(f"verified against {key}: {verdict.get('note', 'not compared')}")
            continue
        lines.append(f"verified against the {verdict['against']} model: max|diff| {verdict['max_abs_diff']:.2e} "
                     f"(limit {verdict['tolerance']:g} x max(1, max|ref|)) {'ok' if verdict['ok'] else 'FAILED'}")
    exporter = (report.get("onnx") or {}).get("exporter")
    if exporter:
        lines.append(f"exporter: {exporter}")
    runtime = report.get("runtime") or {}
    if "onednn" in runtime:
        why = runtime.get("onednn_probe_cause")
        lines.append(f"oneDNN: {'on' if runtime['onednn'] else 'off'}" + (f" ({why})" if why else ""))
    lines.append(f"time: {report['seconds'].get('total', 0.0):.1f} s")
    return lines


def cmd_export(args: argparse.Namespace) -> int:
    from .errors import ExportError
    from .export import export_model

    options: dict = {"legacy_pdmodel": True} if args.legacy_pdmodel else {}
    if options and args.fmt != "paddle-inference":
        raise ExportError("--legacy-pdmodel is a paddle-inference option")
    if args.via:
        if args.fmt != "onnx":
            raise ExportError("--via is an onnx option (which model the ONNX file is made from)")
        options["via"] = args.via
    result = export_model(
        args.model, args.fmt, weights=args.weights, pretrained=args.pretrained, out=args.out,
        input_size=tuple(args.input_size) if args.input_size else None, dynamic_batch=args.dynamic_batch,
        dtype=args.dtype, device=args.device, force=args.force, options=options,
    )
    if args.json:
        print(json.dumps({"ok": True, "out_dir": result.out_dir, **result.report}))
    else:
        print("\n".join(_summary(result)))
    return 0
