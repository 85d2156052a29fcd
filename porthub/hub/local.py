"""The local hub: repositories in a folder (``PORTHUB_HOME``, default ``~/.cache/porthub``:
``models/<org>/<name>``, laid out like a Hub repository, so everything works offline)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from ..errors import HubError, IntegrityError
from ..spec import TORCH, ModelRef
from .repo import CONFIG_NAME, Fetched, check_repo_id, check_revision, check_sha, files_for, read_config, safe_join

__all__ = ["hub_home", "local_repo_dir", "fetch_folder", "model_from_config"]


def hub_home() -> str:
    """The local hub folder: ``$PORTHUB_HOME``, else ``$XDG_CACHE_HOME/porthub``, else ``~/.cache/porthub``."""
    home = os.environ.get("PORTHUB_HOME")
    if home:
        return os.path.abspath(os.path.expanduser(home))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "porthub")


def local_repo_dir(repo_id: str, revision: str | None = None, root: str | None = None) -> str:
    """Where the local hub keeps ``repo_id`` (``main``, or ``<name>@<revision>`` for another revision)."""
    org, name = check_repo_id(repo_id).split("/")
    revision = check_revision(revision)
    if revision not in (None, "main"):
        name = f"{name}@{revision.replace('/', '--')}"
    return safe_join(os.path.join(root or hub_home(), "models"), f"{org}/{name}")


def fetch_folder(folder: str, frameworks: Sequence[str], where: str) -> Fetched:
    config = read_config(os.path.join(folder, CONFIG_NAME))
    names = files_for(config, frameworks)
    paths = {}
    for name in names:
        path = safe_join(folder, name)
        if not os.path.isfile(path):
            raise HubError(
                f"{where} lists {name} but the file is missing; publish the repository again with `porthub push`"
            )
        try:
            check_sha(path, name, config, where)
        except IntegrityError as exc:
            raise IntegrityError(
                f"{exc}; the local hub copy is damaged: publish it again with `porthub push` or delete {folder}"
            ) from None
        paths[name] = path
    paths[CONFIG_NAME] = os.path.join(folder, CONFIG_NAME)
    return Fetched(config, paths, folder, "local", files=names)


def model_from_config(config: Mapping[str, Any], framework: str = TORCH, dtype: str = "float32") -> Any:
    """Build the model a config.json describes (its family, class and constructor arguments)."""
    from ..registry import get_spec
    from ..runtime import build_model

    spec = get_spec(str(config["family"]))
    return build_model(
        spec, ModelRef(str(config["architecture"]), dict(config["constructor_kwargs"])), framework, dtype
    )
