"""Entry points for ``torch.hub`` and ``paddle.hub``: one per registered porthub model.

    torch.hub.load("path/to/porthub", "shunted_b", source="local", pretrained=True)    # a torch.nn.Module
    paddle.hub.load("path/to/porthub", "shunted_b", source="local", pretrained=True)   # a paddle.nn.Layer

Both hubs call the same function; it builds the model for whichever hub called it (``framework=``
overrides). Pretrained weights come from porthub's hub: the local hub (PORTHUB_HOME), then the
Hugging Face Hub, sha256-checked.
"""

from __future__ import annotations

import sys
import typing as _t

# No sys.path edit: torch.hub.load(source="local") keeps this folder on sys.path while it imports this
# file and while the entry point runs; paddle.hub.load keeps it there only while it imports this file.
# Importing the four top-level packages now binds each to its folder (its __path__), so the modules
# porthub reads at call time (converters.<family>, torch_models.<family>, paddle_models.<family>) load
# from this clone afterwards too. The packages' __init__ files import nothing heavy.
import converters  # noqa: F401
import paddle_models  # noqa: F401
import porthub
import torch_models  # noqa: F401
from porthub.registry import list_models as _list_models

dependencies = ["numpy", "packaging"]

#: the module each hub's loader lives in, and the framework its models must be
_HUB_MODULES = {"torch.hub": "torch", "paddle.hapi.hub": "paddle"}


def _calling_framework() -> str:
    """Which hub called the entry point, read off the call stack: torch.hub.load and paddle.hub.load
    pass the same arguments, so the caller is the only thing that tells them apart."""
    frame = sys._getframe(2)
    while frame is not None:
        framework = _HUB_MODULES.get(frame.f_globals.get("__name__", ""))
        if framework:
            return framework
        frame = frame.f_back
    return "torch"


def _entry(name: str) -> _t.Callable[..., _t.Any]:
    def entry(pretrained: bool = False, framework: str | None = None, **overrides: _t.Any) -> _t.Any:
        return porthub.create_model(
            name, framework=framework or _calling_framework(), pretrained=pretrained, **overrides
        )

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (
        f"porthub's {name}, as a torch.nn.Module (torch.hub) or paddle.nn.Layer (paddle.hub).\n\n"
        "pretrained=True loads the converted official weights; framework='torch'|'paddle' overrides\n"
        "the calling hub; other keyword arguments replace constructor arguments (num_classes=10)."
    )
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
del _name
