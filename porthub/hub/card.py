"""The model card (README.md) of a published porthub repository.

The YAML front matter uses only keys of huggingface_hub's ``ModelCardData`` (``license``,
``license_name``, ``license_link``, ``library_name``, ``pipeline_tag``, ``tags``, ``datasets``,
``metrics``, ``model-index``) so the Hub indexes it: the licence, the frameworks, the dataset and the
official accuracy with its source. It is written by hand, with every scalar a JSON string or number
(valid YAML), so porthub needs no YAML library.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from ..catalogue import OFFICIAL, OFFICIAL_SOURCE, USER
from ..spec import FamilySpec, Variant

__all__ = ["hub_licence", "card_metadata", "render_card", "render_yaml", "preprocessing_line", "deployment_section",
           "measured_section"]

#: SPDX-style identifiers the Hub accepts as ``license`` (the ones the official repositories use)
_HUB_LICENCES = (
    "apache-2.0",
    "mit",
    "bsd-3-clause",
    "bsd-2-clause",
    "bsd",
    "gpl-3.0",
    "cc-by-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "cc-by-sa-4.0",
    "openrail",
)
#: Hub dataset ids of the datasets the variants were trained or evaluated on
_DATASETS = {
    "imagenet-1k": "imagenet-1k",
    "imagenet1k": "imagenet-1k",
    "ade20k": "scene_parse_150",
    "cityscapes": "cityscapes",
}
_TASKS = {
    "classification": "image-classification",
    "segmentation": "image-segmentation",
    "semantic_segmentation": "image-segmentation",
}


def hub_licence(text: str, official_repo: str) -> dict[str, str]:
    """The Hub's ``license`` fields for a spec's free-text licence ("MIT (LICENSE of ...)" -> ``mit``).
    A licence the authors did not state becomes ``other`` with a link to the official repository, so
    nobody mistakes it for a permissive one."""
    first = re.split(r"[\s(:;,]", text.strip(), maxsplit=1)[0].lower() if text.strip() else ""
    if first in _HUB_LICENCES:
        return {"license": first}
    url = official_repo.split(" @ ")[0].strip() or "https://github.com/porthub"
    name = "unstated" if not first or first == "not" else re.sub(r"[^a-z0-9.-]+", "-", first).strip("-") or "unstated"
    return {"license": "other", "license_name": name, "license_link": url}


def _arxiv(paper: str) -> str | None:
    match = re.search(r"arXiv:\s*(\d{4}\.\d{4,5})", paper)
    return match.group(1) if match else None


def _dataset_id(name: str) -> str:
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    return _DATASETS.get(key, _DATASETS.get(key.replace("-", ""), key))


def _metric(variant: Variant) -> tuple[str, str, float] | None:
    """(metric type, display name, value) of the variant's headline result."""
    meta = variant.meta
    if meta.get("top1") is not None:
        return "accuracy", "Top-1 accuracy", float(meta["top1"])
    for key in ("miou", "miou_ss"):
        if meta.get(key) is not None:
            return "mean_iou", "mIoU (single scale)", float(meta[key])
    return None


def card_metadata(spec: FamilySpec, variant: Variant, official: bool = True) -> dict[str, Any]:
    """The YAML metadata as a plain dict (keys in the order they are written). The authors' result is
    indexed (``model-index``) only for ``official`` weights: it is not a user checkpoint's own."""
    task = _TASKS.get(
        variant.task, "image-classification" if variant.task.startswith("class") else "image-segmentation"
    )
    dataset = str(variant.meta.get("dataset", ""))
    arxiv = _arxiv(spec.paper or str(variant.meta.get("paper", "")))
    tags = ["pytorch", "paddlepaddle", "safetensors", "porthub", "vision", task, spec.family]
    if arxiv:
        tags.append(f"arxiv:{arxiv}")
    meta: dict[str, Any] = dict(hub_licence(spec.licence or str(variant.meta.get("licence", "")), spec.official_repo))
    meta.update({"library_name": "porthub", "pipeline_tag": task, "tags": tags})
    if dataset:
        meta["datasets"] = [_dataset_id(dataset)]
    metric = _metric(variant)
    if metric and dataset and official:
        mtype, mname, value = metric
        meta["metrics"] = [mtype]
        result: dict[str, Any] = {
            "task": {"type": task},
            "dataset": {"name": dataset, "type": _dataset_id(dataset), "split": "validation"},
            "metrics": [{"type": mtype, "value": value, "name": mname}],
        }
        source = variant.meta.get("accuracy_source")
        if source:
            result["source"] = {"name": str(source), "url": spec.official_repo.split(" @ ")[0].strip()}
        meta["model-index"] = [{"name": variant.name, "results": [result]}]
    return meta


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def render_yaml(data: Any, indent: int = 0) -> list[str]:
    """Block-style YAML of nested dicts/lists of scalars; every string is JSON-quoted."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, (Mapping, list)) and value:
                lines.append(f"{pad}{key}:")
                lines += render_yaml(value, indent + 2)
            else:
                lines.append(f"{pad}{key}: {_scalar(value)}")
    else:
        for item in data:
            if isinstance(item, (Mapping, list)):
                inner = render_yaml(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines += inner[1:]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def preprocessing_line(variant: Variant) -> str:
    """The family's evaluation preprocessing, read from its spec (the same text for every family and task)."""
    from ..preprocess import data_config

    pre = data_config(variant.name)
    _, h, w = pre["input_size"]
    if pre["crop_mode"] == "center":
        how = f"resize the short side to {round(max(h, w) / pre['crop_pct'])}, centre crop {h}x{w}"
    else:
        how = f"resize the whole image to {h}x{w}"
    return (f"{how} (crop_pct {pre['crop_pct']:.4g}), {pre['interpolation']} interpolation, mean "
            f"{[round(m, 4) for m in pre['mean']]}, std {[round(x, 4) for x in pre['std']]} (on the 0..1 scale).")


def _verification_line(info: Mapping[str, Any]) -> str:
    """The export's own figures (export.json ``verification``): every number and flag, as written there."""
    ver = info.get("verification") or {}
    parts = []
    for key, value in ver.items():
        if isinstance(value, Mapping) and "max_abs_diff" in value:
            # one comparison: the artefact against the dynamic model of a framework
            against = value.get("against", key)
            limit = value.get("tolerance")
            bound = f" (tolerance {limit:.0e} x max(1, max|ref|))" if isinstance(limit, (int, float)) else ""
            verdict = "ok" if value.get("ok") else "FAILED"
            parts.append(f"against the {against} model max |diff| {float(value['max_abs_diff']):.3e}{bound} {verdict}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.3e}")
        elif isinstance(value, (int, bool, str)):
            parts.append(f"{key} {value}")
    return "; ".join(parts) or "see export.json"


def deployment_section(config: Mapping[str, Any]) -> str:
    """The card's "Deployment" section for the inference models in ``config["inference"]`` (empty without
    any): where each is, how it was checked, and code that runs it from the repository's root folder."""
    table = config.get("inference") or {}
    if not table:
        return ""
    parts = [
        "## Deployment",
        "",
        "Inference models exported by `porthub export` from the same checkpoint, each run standalone by its "
        "runtime on a seeded input and compared with the dynamic model before it was published (figures from "
        "its `export.json`). The code below runs from this repository's folder; `out` should match "
        "`test/output.float32.npy`.",
    ]
    pd = table.get("paddle-inference")
    if pd:
        listed = ", ".join(f"`{n.rsplit('/', 1)[-1]}`" for n in pd["files"])
        parts += [
            "",
            f"Paddle Inference (`{pd['dir']}/`: {listed}; "
            f"batch {'dynamic' if pd.get('dynamic_batch') else 'fixed'}; verified: {_verification_line(pd)}):",
            "",
            "```python",
            "import numpy as np",
            "import paddle",
            "import paddle.inference as paddle_infer",
            "",
            f'config = paddle_infer.Config("{pd["dir"]}/inference.json", "{pd["dir"]}/inference.pdiparams")',
            "config.disable_gpu()  # with paddlepaddle-gpu: config.enable_use_gpu(1024, 0)",
            "config.set_cpu_math_library_num_threads(4)",
            'if paddle.__version__.startswith(("3.3.0", "3.3.1")):',
            "    config.disable_mkldnn()  # these releases' oneDNN crashes on some PIR attributes (fixed after 3.3.1)",
            "predictor = paddle_infer.create_predictor(config)",
            'x = np.load("test/input.npy")  # float32 NCHW, preprocessed as above',
            "handle = predictor.get_input_handle(predictor.get_input_names()[0])",
            "handle.reshape(list(x.shape))",
            "handle.copy_from_cpu(x)",
            "predictor.run()",
            "out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()",
            "```",
        ]
        name = pd.get("paddlex_model_name")
        if name:
            parts += [
                "",
                f"PaddleX 3 layout: `inference.yml` names the model `{name}` (`Global.model_name`) and holds the "
                "preprocessing. PaddleX builds a predictor only for the model names it registers, so the call "
                "below needs a PaddleX that knows this name; porthub's tests do not run it (PaddleX resizes "
                "bilinearly whatever the interpolation, so its accuracy can be slightly lower than the bicubic "
                "evaluation):",
                "",
                "```python",
                "from paddlex import create_model",
                f'model = create_model(model_name="{name}", model_dir="{pd["dir"]}")',
                'for result in model.predict("image.jpg"):',
                "    result.print()",
                "```",
            ]
    ox = table.get("onnx")
    if ox:
        parts += [
            "",
            f"ONNX Runtime (`{ox['dir']}/model.onnx`, exported from the PyTorch model; batch "
            f"{'dynamic' if ox.get('dynamic_batch') else 'fixed'}; verified: {_verification_line(ox)}):",
            "",
            "```python",
            "import numpy as np",
            "import onnxruntime as ort",
            "",
            f'session = ort.InferenceSession("{ox["dir"]}/model.onnx", providers=["CPUExecutionProvider"])',
            'x = np.load("test/input.npy")',
            "out = session.run(None, {session.get_inputs()[0].name: x})[0]",
            "```",
        ]
    parts += ["", "The same folders load with `porthub.export.load_exported(FOLDER)` (a callable on NCHW arrays).", ""]
    return "\n".join(parts) + "\n"


def _pct(value: Any) -> str:
    return f"{100 * float(value):.2f}" if isinstance(value, (int, float)) else "-"


def measured_section(variant: Variant, config: Mapping[str, Any], official: bool) -> str:
    """The card's "Measured by porthub" section for the evaluations in ``config["measured"]`` (empty
    without any; written by ``porthub evaluate --write-card``): each one's date, images, preprocessing
    and figures per framework. The authors' figure stands beside them only for the official weights;
    for anything else it is named as the official release's, not this checkpoint's."""
    runs = config.get("measured") or []
    if not runs:
        return ""
    metric = _metric(variant)
    parts = ["## Measured by porthub", ""]
    if metric and official:
        parts.append(f"The authors report {metric[1]} {metric[2]} "
                     f"({variant.meta.get('accuracy_source', 'official README')}); porthub measured these weights:")
    elif metric:
        parts.append(f"porthub measured this checkpoint. The authors' {metric[1]} {metric[2]} is their official "
                     "release's figure, not this checkpoint's, and is not compared here.")
    else:
        parts.append("porthub measured these weights:")
    for run in runs:
        frameworks = run.get("frameworks") or {}
        seg = any("miou" in r for r in frameworks.values())
        head = ["framework", "mIoU %", "aAcc %"] if seg else ["framework", "top-1 %", "top-5 %"]
        keys = ("miou", "aacc") if seg else ("top1", "top5")
        rows = [[fw, *(_pct(r.get(k)) for k in keys)] for fw, r in frameworks.items()]
        if metric and official:
            rows.insert(0, ["authors (reported)", f"{metric[2]}", "-"])
        agree = run.get("agreement_pixels") if seg else run.get("agreement_top1")
        agreement = (f" torch and paddle agree on {_pct(agree)}% of the {'pixels' if seg else 'top-1 classes'}."
                     if agree is not None else "")
        parts += [
            "",
            f"Measured by porthub {run.get('porthub_version', '?')} on {run.get('date', '?')}: {run.get('samples')} "
            f"images of `{run.get('data', '?')}` ({run.get('layout', '?')}), source checkpoint sha256 "
            f"`{str(run.get('source_sha256') or run.get('weights_sha256', '?'))[:16]}...`; preprocessing: "
            f"{run.get('preprocessing', '?')}."
            f"{agreement}",
            "",
            _table(rows, head),
        ]
    return "\n".join(parts) + "\n\n"


def render_card(spec: FamilySpec, variant: Variant, config: Mapping[str, Any], repo_id: str) -> str:
    """The whole README.md: metadata, usage in both frameworks, provenance and measured equivalence."""
    prov = dict(config.get("provenance") or {"kind": USER, "why": "no provenance recorded"})
    official = prov.get("kind") in (OFFICIAL, OFFICIAL_SOURCE)
    meta = card_metadata(spec, variant, official)
    source = config["source_checkpoint"]
    eq = config["equivalence"]
    metric = _metric(variant)
    eq_rows = [
        [r["framework"], r["file"], r["dtype"], f"{r['max_abs_diff']:.3e}", f"{r['tolerance']:.1e}"]
        for r in eq["results"]
    ]
    files = config["files"]
    file_rows = [
        [f"`{name}`", info.get("framework", "-"), info.get("layout", "-"), info["size"], f"`{info['sha256'][:16]}...`"]
        for name, info in files.items()
    ]
    reported = (
        (
            f"{metric[1]} {metric[2]} on {variant.meta.get('dataset', '?')}, as reported by the authors "
            f"({variant.meta.get('accuracy_source', 'official README')})"
        )
        if metric
        else ""
    )
    if official:
        again = "porthub's own measurement is below" if config.get("measured") else "porthub did not re-evaluate it"
        accuracy = f"{reported}; {again}." if metric else ""
        what = f"The official {spec.title} weights ({variant.meta.get('readme_name', variant.name)})"
    else:
        accuracy = (
            (
                f"Not the official weights: the authors' figure ({reported}) belongs to their release, not to "
                "this checkpoint."
            )
            if metric
            else ""
        )
        readme_name = variant.meta.get("readme_name", variant.name)
        what = f"A user-supplied checkpoint `{source['name']}` of {spec.title} {readme_name}"
    prov_line = {
        OFFICIAL: "official weights: the source file's sha256 is the one porthub's sources catalogue records",
        OFFICIAL_SOURCE: "official weights from the catalogued source, unpinned: the authors publish no "
        "sha256, so the file's own is recorded here",
        USER: "the user's own checkpoint (not the official release as far as porthub can tell)",
    }.get(str(prov.get("kind")), "unknown")
    where = f" Downloaded from {prov['location']}." if prov.get("location") else ""
    body = f"""
# {variant.name}: {spec.title} for PyTorch and PaddlePaddle

{what}, converted by porthub {config["porthub_version"]} into both frameworks, with the
differences measured below.

* Paper: {spec.paper or variant.meta.get("paper", "see the official repository")}
* Official code: {spec.official_repo}
* Licence: {spec.licence or variant.meta.get("licence", "see the official repository")}
* {accuracy}

{measured_section(variant, config, official)}## Usage

PyTorch:

```python
import porthub
model = porthub.create_model("{variant.name}", framework="torch", pretrained=True)
# or without porthub's registry:
model = porthub.from_pretrained("{repo_id}", framework="torch")
```

PaddlePaddle:

```python
import porthub
model = porthub.create_model("{variant.name}", framework="paddle", pretrained=True)
# or load the state dict yourself (AI Studio, PaddleClas):
import paddle
state = paddle.load("model.pdparams")   # set_state_dict on porthub's Paddle {config["architecture"]}
```

`config.json` alone rebuilds the model (`architecture`, `constructor_kwargs`) in either framework.
Evaluation preprocessing (`porthub.data_config("{variant.name}")`): {preprocessing_line(variant)}

{deployment_section(config)}## Files

{_table(file_rows, ["file", "framework", "layout", "bytes", "sha256"])}

`model.safetensors` loads into the PyTorch model with `load_state_dict(strict=True)`; `model.paddle.safetensors`
and `model.pdparams` hold the same tensors in Paddle's layout (Linear weights transposed, BatchNorm
`_mean`/`_variance`). Every file's sha256 is in `config.json` and checked on download.

## Provenance

{prov_line}.{where} Source file `{source["name"]}`, sha256 `{source["sha256"]}`.

## Equivalence

Source checkpoint `{source["name"]}` (sha256 `{source["sha256"]}`, read as layout `{source["layout"]}`).
porthub ran the source checkpoint in PyTorch on `test/input.npy` and compared the published files, loaded
back from this repository, in each framework and dtype (max |difference| of the output):

{_table(eq_rows, ["framework", "file", "dtype", "max abs diff", "limit"])}

## Check an install

`test/input.npy` is the input and `test/output.<dtype>.npy` the source checkpoint's output; a model built
from this repository should reproduce them within the limits above.
"""
    return "---\n" + "\n".join(render_yaml(meta)) + "\n---\n" + body
