"""``porthub export``: inference artefacts (Paddle Inference, ONNX, TorchScript), verified before they are kept."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "cmd_export"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("export", help="write a verified inference model: paddle-inference, onnx or torchscript")
    s.add_argument("model", help="registered model (see `porthub list`)")


def cmd_export(args: argparse.Namespace) -> int:
    raise NotImplementedError("porthub export is being built")
