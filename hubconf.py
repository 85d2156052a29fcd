"""Entry points for ``torch.hub`` and ``paddle.hub``: one per registered porthub model.

    torch.hub.load("path/to/porthub", "shunted_b", source="local", pretrained=True)    # a torch.nn.Module
    paddle.hub.load("path/to/porthub", "shunted_b", source="local", pretrained=True)   # a paddle.nn.Layer

Both hubs call the same function; it builds the model for whichever hub called it (``framework=``
overrides). Pretrained weights come from porthub's hub: the local hub (PORTHUB_HOME), then the
Hugging Face Hub, sha256-checked.
"""

from __future__ import annotations

import os
import sys
import typing as _t

# paddle.hub takes this folder off sys.path again right after importing this file, but porthub reads
# its family specs (converters/) lazily, at call time; keep the clone importable for the entry points.
_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import porthub  # noqa: E402  (after the sys.path line above, on purpose)
from porthub.registry import list_models as _list_models  # noqa: E402

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
        return porthub.create_model(name, framework=framework or _calling_framework(), pretrained=pretrained, **overrides)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"porthub's {name}, as a torch.nn.Module (torch.hub) or paddle.nn.Layer (paddle.hub).\n\n"
                     "pretrained=True loads the converted official weights; framework='torch'|'paddle' overrides\n"
                     "the calling hub; other keyword arguments replace constructor arguments (num_classes=10).")
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
del _name
