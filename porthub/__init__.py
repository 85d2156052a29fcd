"""porthub: official efficient vision transformers for PyTorch and PaddlePaddle, with proof they agree.

>>> import porthub
>>> porthub.list_models("shunted")
['shunted_t', 'shunted_s', 'shunted_b']
>>> model = porthub.create_model("shunted_t", framework="paddle")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["__version__", "create_model", "list_models", "from_pretrained", "convert", "read_checkpoint", "data_config",
           "create_transform"]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered (``"twins*"``, ``"seg"``)."""
    from .registry import list_models as _list

    return _list(pattern)


def create_model(name: str, framework: str = "torch", pretrained: bool = False, dtype: str = "float32",
                 device: str | None = None, **overrides: Any) -> Any:
    """Build a registered model in ``framework`` ("torch" or "paddle"), in eval mode.

    ``device``: "cpu" (default), "cuda[:N]" or "gpu[:N]" (either spelling for either framework); a GPU
    the installed build cannot use raises :class:`porthub.errors.DeviceError` (a ValueError) before
    anything is built or downloaded. ``dtype``: "float32" (default), "float64", "float16" or "bfloat16"
    (pretrained weights are cast as they load; Paddle runs half precision on a GPU only, and each
    family's declared agreement with float32 is ``FamilySpec.half_tolerance``).

    ``overrides`` replace the official constructor arguments (``num_classes=10``, ``features_only=True``
    with ``out_indices``); unknown ones raise TypeError. With ``pretrained=True`` the converted official
    weights are loaded strictly from the local hub or the Hugging Face Hub, except a classifier whose shape
    differs from theirs (another ``num_classes``): that one stays freshly initialised, with a warning. Every forward
    checks its input against the family's rule (channels, size): a wrong one raises
    :class:`porthub.errors.InputError` (a ValueError) naming the constraint.
    """
    from .devices import check_dtype
    from .registry import resolve
    from .runtime import build_model, load_state, resolve_device

    spec, variant = resolve(name)
    # the device and dtype first: a GPU the framework cannot use fails before a download or a build
    where = resolve_device(device, framework)
    check_dtype(where, dtype)
    state = None
    if pretrained:
        from .hub import pretrained_state

        # weights first: a missing or damaged repository fails before the (slow) model build
        state = pretrained_state(variant.name, framework)
    model = build_model(spec, variant.model(**overrides), framework, dtype, name=variant.name, device=where)
    if state is not None:
        load_state(model, _fit_classifier(model, state, spec, variant, framework), spec, framework, variant.name)
    # what porthub.data_config reads off the model
    model.porthub_variant = variant.name
    return model


def _fit_classifier(model: Any, state: Any, spec: Any, variant: Any, framework: str) -> Any:
    """``state`` with the model's own freshly initialised classifier (``spec.classifier``) in place of the
    pretrained one when their shapes differ (``num_classes=10``), and without it when the model has none
    (``num_classes=0``); every other key still loads strictly."""
    import warnings

    from .engine import to_canonical
    from .runtime import to_numpy
    from .spec import PADDLE, Layout

    prefix = spec.classifier + "."
    if variant.task != "classification" or not any(key.startswith(prefix) for key in state):
        return state
    own = {key: to_numpy(value) for key, value in model.state_dict().items() if key.startswith(prefix)}
    if framework == PADDLE:
        own, _ = to_canonical(own, Layout(name="paddle-model", framework=PADDLE), spec)
    theirs = {key: value for key, value in state.items() if key.startswith(prefix)}
    if set(own) == set(theirs) and all(tuple(own[k].shape) == tuple(theirs[k].shape) for k in own):
        return state
    fitted = {key: value for key, value in state.items() if not key.startswith(prefix)}
    fitted.update(own)
    bias = theirs.get(prefix + "bias")
    had = bias.shape[0] if bias is not None else "?"
    num = getattr(model, "num_classes", "?")
    warnings.warn(f"{variant.name}: classifier '{spec.classifier}' freshly initialised for {num} classes "
                  f"(the pretrained weights have {had}); every other weight loaded", UserWarning, stacklevel=3)
    return fitted


def data_config(model_or_name: Any) -> dict[str, Any]:
    """The evaluation data configuration of a registered model (name) or a model from :func:`create_model`:
    ``input_size`` (C, H, W), ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``."""
    from .preprocess import data_config as _data_config

    return _data_config(model_or_name)


def create_transform(config: Any, framework: str | None = None, dtype: str = "float32") -> Any:
    """The evaluation preprocessing of ``config`` (from :func:`data_config`) as a callable on Pillow images,
    HxWx3 uint8 arrays or image paths: a [3, H, W] numpy array, or a ``framework`` tensor ("torch", "paddle").
    The arithmetic is numpy's and Pillow's, so both frameworks get the same array."""
    from .preprocess import create_transform as _create_transform

    return _create_transform(config, framework, dtype)


def from_pretrained(repo_id_or_path: str, framework: str = "torch", **kwargs: Any) -> Any:
    """A model from a porthub hub repository (local folder, local hub id, or Hugging Face Hub id)."""
    from .hub import from_pretrained as _from_pretrained

    return _from_pretrained(repo_id_or_path, framework, **kwargs)


def convert(model: str, src: str, to: str, out: str | None = None, force: bool = False,
            **options: Any) -> dict[str, Any]:
    """Convert the checkpoint ``src`` of ``model`` to ``to`` ("torch" or "paddle"), whatever container,
    wrapper prefix or layout it was saved in; returns a summary (layout and container read, layout
    written, tensors written, output path). ``out`` defaults to a name beside ``src`` that names no
    existing file; an existing ``out`` is refused unless ``force``, and ``src`` is never written over.
    ``options``: ``fmt``, ``layout``, ``from_layout``, ``dtype``, ``allow_missing``, ``config``
    (see :func:`porthub.convert.convert`)."""
    from .convert import convert as _convert

    return _convert(model, src, to, out, force, **options)


def read_checkpoint(path: str, model: str, **options: Any) -> tuple[Any, Any]:
    """``(state, found)``: the canonical state dict of ``model`` (official PyTorch keys, numpy arrays)
    in the checkpoint at ``path``, and what was found (``found.layout``, ``found.container``,
    ``found.stripped``, ``found.dtypes``). ``options``: ``layout``, ``framework``, ``allow_missing``,
    ``config`` (see :func:`porthub.convert.read_checkpoint`)."""
    from .convert import read_checkpoint as _read

    return _read(path, model, **options)
