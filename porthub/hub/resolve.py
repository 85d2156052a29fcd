"""Finding a repository and pretrained weights: a folder, the local hub, the Hugging Face Hub, AI Studio,
and last the authors' own file (fetched, converted, verified and installed by :mod:`porthub.sources`).

Loading checks each file's sha256 against ``config.json`` before anything is loaded; huggingface_hub and
aistudio-sdk are imported only when their hub is actually asked (``porthub list`` stays fast).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from ..errors import HubError, IntegrityError
from ..spec import PADDLE, TORCH
from .local import fetch_folder, local_repo_dir, model_from_config
from .repo import (
    CONFIG_NAME,
    DEFAULT_ORG,
    Fetched,
    check_repo_id,
    check_revision,
    default_repo_id,
    files_for,
    read_weights,
)

__all__ = ["HUBS", "hub_order", "fetch", "pretrained_state", "from_pretrained"]


def fetch(repo_id_or_path: str, frameworks: Sequence[str] = (TORCH,), revision: str | None = None,
          endpoint: str | None = None, local: bool = True) -> Fetched:
    """The config and the weight files ``frameworks`` need, checked against their sha256.

    ``repo_id_or_path`` is a repository folder, or ``ORG/NAME``: looked up in the local hub, then on
    the Hugging Face Hub (``endpoint``, default ``HF_ENDPOINT``)."""
    if os.path.isdir(repo_id_or_path) and os.path.isfile(os.path.join(repo_id_or_path, CONFIG_NAME)):
        return fetch_folder(os.path.abspath(repo_id_or_path), frameworks, repo_id_or_path)
    repo_id = check_repo_id(repo_id_or_path)
    revision = check_revision(revision)
    folder = local_repo_dir(repo_id, revision)
    if local and os.path.isfile(os.path.join(folder, CONFIG_NAME)):
        return fetch_folder(folder, frameworks, f"local hub repository {repo_id}")
    from .remote import remote_fetch

    return remote_fetch(repo_id, frameworks, revision, endpoint, local_folder=folder)


#: the hubs pretrained weights are looked for in, in this order unless PORTHUB_HUBS says otherwise
HUBS = ("local", "hf", "aistudio")


def hub_order() -> list[str]:
    """``PORTHUB_HUBS`` (comma-separated, default ``local,hf,aistudio``) as a list of hub names."""
    raw = os.environ.get("PORTHUB_HUBS", ",".join(HUBS))
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if not names or any(n not in HUBS for n in names):
        raise HubError(f"PORTHUB_HUBS={raw!r} must name hubs from {', '.join(HUBS)}, comma-separated, "
                       "e.g. local,hf,aistudio")
    return names


def pretrained_state(variant_name: str, framework: str = TORCH, revision: str | None = None,
                     repo_id: str | None = None) -> "OrderedDict[str, np.ndarray]":
    """The published weights of a registered variant as a canonical numpy state dict, from the first hub
    of :func:`hub_order` that has them (a file failing its sha256 stops the search)."""
    repo = check_repo_id(repo_id or default_repo_id(variant_name))
    failures = []
    for hub in hub_order():
        try:
            if hub == "aistudio":
                from .aistudio import pretrained_state as from_aistudio

                return from_aistudio(variant_name, framework, revision, repo)
            folder = local_repo_dir(repo, revision)
            if hub == "local":
                if not os.path.isfile(os.path.join(folder, CONFIG_NAME)):
                    failures.append(f"local hub: no {repo} in {folder}")
                    continue
                fetched = fetch_folder(folder, (framework,), f"local hub repository {repo}")
            else:
                from ..sources import offline
                from .remote import remote_fetch

                if offline() and not os.environ.get("HF_HUB_OFFLINE"):
                    # PORTHUB_OFFLINE: huggingface_hub only knows its own switch, read at its import
                    failures.append("hf: skipped (PORTHUB_OFFLINE is set)")
                    continue
                fetched = remote_fetch(repo, (framework,), check_revision(revision), None, local_folder=folder)
            if fetched.config.get("variant") != variant_name:
                raise HubError(f"{fetched.where} holds {fetched.config.get('variant')!r}, not {variant_name!r}; "
                               "pass the repository of this model")
            name = files_for(fetched.config, (framework,))[0]
            return read_weights(fetched.paths[name], fetched.config, framework)
        except IntegrityError:
            raise
        except HubError as exc:
            failures.append(f"{hub}: {exc}")
    if revision is None and repo_id in (None, default_repo_id(variant_name)):
        # last: the authors' own file, fetched, converted, verified and installed in the local hub
        from ..sources import pretrained_from_official

        return pretrained_from_official(variant_name, framework, failures)
    raise HubError(f"no published weights of {variant_name} in {', '.join(hub_order())} "
                   f"({' | '.join(failures)})")


def _official_variant(repo_id: str) -> str | None:
    """The registered variant ``porthub/<variant>`` names (the repositories porthub installs from the
    official sources), or None."""
    from ..registry import list_models

    org, _, name = repo_id.partition("/")
    return name if org == DEFAULT_ORG and not os.path.isdir(repo_id) and name in list_models() else None


def from_pretrained(repo_id_or_path: str, framework: str = TORCH, revision: str | None = None,
                    dtype: str = "float32", endpoint: str | None = None, hub: str | None = None) -> Any:
    """The model of a porthub repository, built from its config.json, weights loaded strictly.
    ``hub="aistudio"`` reads it from AI Studio (its Paddle weights serve either framework)."""
    from ..registry import get_spec
    from ..runtime import load_state

    if hub == "aistudio":
        from .aistudio import fetch as aistudio_fetch

        fetched, stored = aistudio_fetch(repo_id_or_path, (framework,), revision), PADDLE
    elif hub in (None, "local", "hf"):
        try:
            fetched, stored = fetch(repo_id_or_path, (framework,), revision, endpoint, local=hub != "hf"), framework
        except IntegrityError:
            raise
        except HubError as exc:
            official = _official_variant(repo_id_or_path) if hub is None and revision is None else None
            if official is None:
                raise
            # porthub/<model> published nowhere: install the authors' file as that repository, then load it
            from ..sources import pretrained_from_official

            pretrained_from_official(official, framework, [str(exc)])
            fetched, stored = fetch(repo_id_or_path, (framework,)), framework
    else:
        raise HubError(f"hub {hub!r} is not one of local, hf, aistudio")
    config = fetched.config
    model = model_from_config(config, framework, dtype)
    name = files_for(config, (stored,))[0]
    state = read_weights(fetched.paths[name], config, stored)
    load_state(model, state, get_spec(str(config["family"])), framework, str(config.get("variant", repo_id_or_path)))
    return model
