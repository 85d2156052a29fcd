"""The registry of families and variants, read from the specs in ``converters/``."""

from __future__ import annotations

import fnmatch
import importlib
from functools import lru_cache

from .errors import SpecError, UnknownModelError
from .spec import FamilySpec, Variant

__all__ = ["FAMILIES", "get_spec", "all_specs", "resolve", "list_models", "normalise"]

#: every family porthub ships, in the order the docs list them
FAMILIES = ("shunted", "twins", "crossformer", "focal", "seaformer")


def normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_")


@lru_cache(maxsize=None)
def get_spec(family: str) -> FamilySpec:
    family = normalise(family)
    if family not in FAMILIES:
        raise UnknownModelError(f"unknown family {family!r}; porthub has {', '.join(FAMILIES)}")
    module = importlib.import_module(f"converters.{family}")
    spec = getattr(module, "SPEC", None)
    if not isinstance(spec, FamilySpec):
        raise SpecError(f"converters.{family} defines no SPEC of type FamilySpec")
    return spec


def all_specs() -> list[FamilySpec]:
    specs = []
    for family in FAMILIES:
        try:
            specs.append(get_spec(family))
        except ModuleNotFoundError as exc:
            # a family whose spec module is not there yet; any other import failure is a bug to surface
            if exc.name != f"converters.{family}":
                raise
    return specs


@lru_cache(maxsize=None)
def _index() -> dict[str, tuple[FamilySpec, Variant]]:
    index: dict[str, tuple[FamilySpec, Variant]] = {}
    for spec in all_specs():
        for variant in spec.variants:
            for name in (variant.name, *variant.aliases):
                index.setdefault(normalise(name), (spec, variant))
    return index


def _by_prefix(key: str) -> tuple[FamilySpec, Variant] | None:
    """Registered names start with their family's name, so most look-ups import one spec only
    (conversion's start-up time is part of what it costs)."""
    for family in FAMILIES:
        if key.startswith(family):
            for variant in get_spec(family).variants:
                if key == normalise(variant.name):
                    return get_spec(family), variant
    return None


def resolve(name: str) -> tuple[FamilySpec, Variant]:
    """A variant by its name or any alias (official factory names, PaddleClas names)."""
    key = normalise(name)
    found = _by_prefix(key) or _index().get(key)
    if found is None:
        close = [n for n in _index() if key[:5] and n.startswith(key[:5])][:6]
        hint = f"; did you mean {', '.join(close)}?" if close else "; run `porthub list` to see every model"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return found


def list_models(pattern: str | None = None) -> list[str]:
    """Registered variant names (not aliases), optionally filtered by a shell-style pattern."""
    names = [v.name for spec in all_specs() for v in spec.variants]
    if pattern:
        pat = normalise(pattern)
        pat = pat if any(c in pat for c in "*?[") else f"*{pat}*"
        names = [n for n in names if fnmatch.fnmatchcase(n, pat)]
    return names
