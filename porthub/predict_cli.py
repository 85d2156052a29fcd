"""``porthub predict``: labels and scores (or a segmentation mask) for images, with any backend."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "cmd_predict"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("predict", help="classify images (or write segmentation masks) with any backend")
    s.add_argument("model", help="registered model, or a folder written by `porthub export`")


def cmd_predict(args: argparse.Namespace) -> int:
    raise NotImplementedError("porthub predict is being built")
