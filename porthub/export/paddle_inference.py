"""Paddle Inference export: ``inference.json`` + ``inference.pdiparams`` (Paddle 3's PIR program, written by
``paddle.jit.save``) and ``inference.yml`` in PaddleX's layout, run by a Paddle Inference predictor.

* The program's input ``x`` is [N, 3, H, W] with N free when exported with ``dynamic_batch``, else fixed;
  H and W are fixed at the exported size (position tables and windows are built for it).
* ``inference.yml``: ``Global.model_name``; classifiers ``PreProcess.transform_ops`` (ResizeImage of the
  short side, CropImage, NormalizeImage on the 0..1 scale, ToCHWImage) and ``PostProcess.Topk`` with the
  ImageNet-1k label list; segmentation ``Deploy.transforms`` (Resize to the exported size, Normalize) as
  PaddleSeg's ``deploy.yaml`` and PaddleX read it. PaddleX's ResizeImage resizes bilinearly whatever the
  ``interpolation`` says; these models were evaluated bicubic, so PaddleX's top-1 may be a little lower.
* The predictor (:func:`runner`): IR passes on; on the CPU porthub's thread count and oneDNN on unless
  ``options["onednn"]`` is False. Paddle 3.3.0/3.3.1's CPU executor with oneDNN fails on some PIR
  attributes (:data:`porthub.runtime.paddle.ONEDNN_BUG`; measured: seaformer_seg_tiny, whose
  interpolation carries a list of doubles); a child process runs the oneDNN predictor once first, and
  on a failure the runner uses oneDNN off with one warning. The probe's result is kept in
  ``export.json`` (``runtime``) for the Paddle version that made it, so loading an export probes no more.
* The legacy ``inference.pdmodel`` (``options["legacy_pdmodel"]``) is refused: Paddle 3.3.1 writes it only
  in a process that imported Paddle with ``FLAGS_enable_pir_api=0`` (the old IR, whose dy2static is not
  what porthub verifies), and a PIR program cannot be converted to it (Paddle#74210).
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Callable

import numpy as np

from ..devices import parse_device
from ..errors import ExportError
from ..runtime.paddle import ONEDNN_BUG, inference_predictor, jit_save_inference, paddle_version, probe_onednn
from ..spec import PADDLE
from .yml import dumps

__all__ = ["FRAMEWORK", "FILES", "PREFIX", "write", "runner", "check_options", "inference_yml", "report_fields"]

FRAMEWORK = PADDLE
PREFIX = "inference"
FILES = (f"{PREFIX}.json", f"{PREFIX}.pdiparams", f"{PREFIX}.yml")
#: the options this format takes: at export (legacy_pdmodel, topk) and for its runner (onednn, threads)
OPTIONS = ("legacy_pdmodel", "topk", "onednn", "threads")
#: the top-k PaddleX's classification post-processing reports
TOPK = 5


def check_options(options: dict[str, Any]) -> None:
    """Refuse an option this format lacks, and the legacy .pdmodel, before any work."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ExportError(f"paddle-inference takes the options {', '.join(OPTIONS)}, not {', '.join(unknown)}")
    if options.get("legacy_pdmodel"):
        raise ExportError(
            "the legacy inference.pdmodel cannot be written by this export: Paddle 3.3.1 saves .pdmodel only in a "
            "process that imported Paddle with FLAGS_enable_pir_api=0 (the old IR), and a PIR program cannot be "
            "converted to it (Paddle#74210); inference.json works with Paddle Inference and PaddleX 3")
    onednn = options.get("onednn")
    if onednn not in (None, True, False, "auto"):
        raise ExportError(f"onednn must be True, False or 'auto', not {onednn!r}")


def report_fields(options: dict | None = None) -> dict[str, Any]:
    """What export.json records beside the common fields: the Paddle version and program format."""
    return {"paddle_version": paddle_version(), "program": "pir (inference.json)"}


def _variant_name(model: Any) -> str:
    name = getattr(model, "porthub_variant", None)
    if not isinstance(name, str):
        raise ExportError("the model carries no porthub_variant; export it through porthub.export.export_model")
    return name


def _round(values: Any) -> list[float]:
    return [round(float(v), 6) for v in values]


def inference_yml(name: str, input_size: tuple[int, int], topk: int = TOPK) -> dict[str, Any]:
    """The ``inference.yml`` mapping of variant ``name`` exported at ``input_size`` (H, W), from
    :func:`porthub.data_config` (the family's evaluation preprocessing)."""
    from ..preprocess import data_config
    from ..registry import resolve

    _spec, variant = resolve(name)
    config = data_config(name)
    h, w = input_size
    mean, std = _round(config["mean"]), _round(config["std"])
    if variant.task == "segmentation":
        return {
            "Global": {"model_name": name},
            "Deploy": {
                "model": FILES[0],
                "params": FILES[1],
                # the program's spatial size is fixed: the whole image is resized to it (PaddleSeg: (w, h))
                "transforms": [
                    {"type": "Resize", "target_size": [w, h], "keep_ratio": False, "size_divisor": None,
                     "interp": config["interpolation"].upper() if config["interpolation"] != "bilinear"
                     else "LINEAR"},
                    {"type": "Normalize", "mean": mean, "std": std},
                ],
                "input_shape": [-1, 3, h, w],
                # the program returns logits [N, classes, H, W]; the mask is their argmax over classes
                "output_op": "none",
                "num_classes": int(variant.num_classes),
            },
        }
    crop: Any = h if h == w else [w, h]
    if config["crop_mode"] == "center":
        resize: dict[str, Any] = {"resize_short": int(round(max(h, w) / float(config["crop_pct"])))}
    else:
        resize = {"size": [w, h]}
    resize["interpolation"] = config["interpolation"]
    post: dict[str, Any] = {"topk": int(topk)}
    if int(variant.num_classes) == 1000:
        from ..report import imagenet_classes

        post["label_list"] = imagenet_classes()
    return {
        "Global": {"model_name": name},
        "PreProcess": {
            "transform_ops": [
                {"ResizeImage": resize},
                {"CropImage": {"size": crop}},
                {"NormalizeImage": {"mean": mean, "std": std, "scale": 1.0 / 255.0, "order": ""}},
                {"ToCHWImage": None},
            ]
        },
        "PostProcess": {"Topk": post},
    }


def write(model: Any, example: np.ndarray, out_dir: str, *, dynamic_batch: bool = False, dtype: str = "float32",
          options: dict | None = None) -> list[str]:
    """``model`` (a porthub Paddle model in ``dtype``) traced for inputs shaped like ``example`` into
    ``out_dir/inference.json`` + ``.pdiparams``, and ``inference.yml``. Returns the files written."""
    options = dict(options or {})
    check_options(options)
    name = _variant_name(model)
    batch, _, h, w = (int(n) for n in example.shape)
    shape: list[int | None] = [None if dynamic_batch else batch, 3, h, w]
    written = jit_save_inference(model, os.path.join(out_dir, PREFIX), shape, dtype)
    missing = [f for f in FILES[:2] if f not in written]
    if missing:
        raise ExportError(f"paddle.jit.save wrote {written}, not {', '.join(missing)}")
    with open(os.path.join(out_dir, FILES[2]), "w", encoding="utf-8") as fh:
        fh.write(dumps(inference_yml(name, (h, w), int(options.get("topk") or TOPK))))
    return [*FILES[:2], FILES[2]]


def _cached_probe(out_dir: str, version: str) -> dict[str, Any] | None:
    """The oneDNN probe recorded in ``out_dir/export.json`` by this Paddle version, if any."""
    try:
        with open(os.path.join(out_dir, "export.json"), encoding="utf-8") as fh:
            runtime = json.load(fh).get("runtime") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if runtime.get("paddle_version") == version and isinstance(runtime.get("onednn_probe_ok"), bool):
        return runtime
    return None


def _input_shape(out_dir: str) -> list[int]:
    """A shape the program accepts, for the probe: from the export.json beside it, else read off the
    inference.yml (the yml is always there)."""
    try:
        with open(os.path.join(out_dir, "export.json"), encoding="utf-8") as fh:
            report = json.load(fh)
        return [1, 3, *[int(v) for v in report["input_size"]]] if report.get("dynamic_batch") else \
            [int(report.get("batch", 1)), 3, *[int(v) for v in report["input_size"]]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return _shape_from_program(out_dir)


def _shape_from_program(out_dir: str) -> list[int]:
    from ..registry import resolve

    with open(os.path.join(out_dir, FILES[2]), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  model_name:"):
                _spec, variant = resolve(json.loads(line.partition(":")[2].strip()))
                return [1, 3, *variant.input_size]
    raise ExportError(f"{out_dir} has no export.json and its {FILES[2]} names no model")


def runner(out_dir: str, *, device: str = "cpu", options: dict | None = None
           ) -> Callable[[np.ndarray], list[np.ndarray]]:
    """The predictor of ``out_dir`` as numpy NCHW -> outputs; ``device`` cpu or a GPU (cuda:N / gpu:N);
    ``options``: ``onednn`` (True forces it, False turns it off, default: on unless the probe found it
    failing), ``threads`` (CPU; default porthub's). Its ``info`` says what was chosen and why."""
    from ..runtime import resolve_device

    options = dict(options or {})
    where = resolve_device(parse_device(device, PADDLE), PADDLE)
    model_file, params_file = (os.path.join(out_dir, f) for f in FILES[:2])
    for path in (model_file, params_file):
        if not os.path.isfile(path):
            raise ExportError(f"{out_dir} lacks {os.path.basename(path)}: it is not a complete paddle-inference export")
    threads = options.get("threads")
    version = paddle_version()
    info: dict[str, Any] = {"paddle_version": version, "device": where.name}
    onednn = False
    if not where.is_gpu:
        wanted = options.get("onednn")
        if wanted in (None, "auto"):
            cached = _cached_probe(out_dir, version)
            if cached is None:
                ok, why = probe_onednn(model_file, params_file, _input_shape(out_dir), threads)
                probe = {"onednn_probe_ok": ok, "onednn_probe_cause": why}
            else:
                probe = {k: cached[k] for k in ("onednn_probe_ok", "onednn_probe_cause") if k in cached}
            info.update(probe)
            onednn = bool(probe["onednn_probe_ok"])
            if not onednn:
                cause = probe.get("onednn_probe_cause") or ONEDNN_BUG
                warnings.warn(f"Paddle Inference runs this export with oneDNN off: {cause}", RuntimeWarning,
                              stacklevel=3)
        else:
            onednn = bool(wanted)
        info["onednn"] = onednn
    run = inference_predictor(model_file, params_file, device=where.name, onednn=onednn, threads=threads)

    def call(x: np.ndarray) -> list[np.ndarray]:
        return run(x)

    call.info = info  # type: ignore[attr-defined]
    return call
