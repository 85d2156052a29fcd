"""porthub: official efficient vision transformers for PyTorch and PaddlePaddle, with proof they agree.

>>> import porthub
>>> porthub.list_models("shunted")
['shunted_t', 'shunted_s', 'shunted_b']
>>> model = porthub.create_model("shunted_t", framework="paddle")   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["__version__", "create_model", "list_models", "from_pretrained", "convert", "read_checkpoint"]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, optionally filtered (``"twins*"``, ``"seg"``)."""
    from .registry import list_models as _list

    return _list(pattern)


def create_model(name: str, framework: str = "torch", pretrained: bool = False, dtype: str = "float32",
                 **overrides: Any) -> Any:
    """Build a registered model in ``framework`` ("torch" or "paddle"), in eval mode.

    ``overrides`` replace the official constructor arguments (``num_classes=10``,
    ``features_only=True`` where the family supports it). With ``pretrained=True`` the converted
    official weights are loaded strictly from the local hub or the Hugging Face Hub. Every forward
    checks its input against the family's rule (channels, size): a wrong one raises
    :class:`porthub.errors.InputError` (a ValueError) naming the constraint.
    """
    from .runtime import build_model, load_state
    from .registry import resolve

    spec, variant = resolve(name)
    state = None
    if pretrained:
        from .hub import pretrained_state

        # weights first: a missing or damaged repository fails before the (slow) model build
        state = pretrained_state(variant.name, framework)
    model = build_model(spec, variant.model(**overrides), framework, dtype, name=variant.name)
    if state is not None:
        load_state(model, state, spec, framework, variant.name)
    return model


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
