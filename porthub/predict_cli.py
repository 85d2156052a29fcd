"""``porthub predict``: labels and scores (or a segmentation mask) for images, with any backend."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "cmd_predict"]

_EPILOG = """examples:
  porthub predict shunted_t cat.jpg --weights ckpt_T.pth --topk 5
  porthub predict shunted_t cat.jpg --pretrained --backend paddle
  porthub predict exported/shunted_t_onnx cat.jpg dog.jpg          (backend from its export.json)
  porthub predict seaformer_seg_tiny street.jpg --weights seg.pth --out masks/"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .devices import DEVICE_HELP

    s = sub.add_parser("predict", help="classify images (or write segmentation masks) with any backend",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help="registered model, or a folder written by `porthub export`")
    s.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything Pillow reads)")
    # checked by porthub.predict, not by argparse choices: a wrong one is then one line (JSON with --json)
    # the names are written out: importing porthub.predict (numpy) here would slow every command's start
    s.add_argument("--backend", default=None, metavar="torch|paddle|paddle-inference|onnxruntime|torchscript",
                   help="torch (default for a model name) or paddle: the dynamic model; paddle-inference, "
                        "onnxruntime, torchscript: an exported folder (inferred from its export.json)")
    weights = s.add_mutually_exclusive_group()
    weights.add_argument("--weights", metavar="FILE", help="checkpoint of the model (any layout porthub reads)")
    weights.add_argument("--pretrained", action="store_true", help="the published converted weights (porthub hub)")
    s.add_argument("--topk", type=int, default=5, metavar="K", help="classes to print per image (default 5)")
    s.add_argument("--device", default="cpu", help=DEVICE_HELP)
    s.add_argument("--out", metavar="DIR", help="segmentation: folder for the masks (default: the current folder)")
    s.add_argument("--force", action="store_true", help="overwrite masks that already exist")
    s.add_argument("--json", action="store_true", help="print one JSON object")


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    result = predict(args.model, args.images, backend=args.backend, weights=args.weights,
                     pretrained=args.pretrained, topk=args.topk, device=args.device, out=args.out, force=args.force)
    if args.json:
        print(json.dumps(result.as_dict()))
        return 0
    lines = [f"{result.model} ({result.backend}, {result.device}, weights: {result.weights})"]
    lines += [f"note: {note}" for note in result.notes]
    for p in result.predictions:
        if p.mask is not None:
            lines.append(f"{p.image}: mask {p.mask} ({p.size[0]}x{p.size[1]})")
            continue
        lines.append(f"{p.image}:")
        width = max(len(label) for _, label, _ in p.top)
        lines += [f"  {rank:>2}. {label:<{width}} ({index:>4})  {prob:.4f}"
                  for rank, (index, label, prob) in enumerate(p.top, 1)]
    print("\n".join(lines))
    return 0
