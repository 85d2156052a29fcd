"""porthub's hub: where converted weights are published and loaded from.

A repository holds ``config.json`` (everything needed to rebuild the model, and the sha256 of every
other file), the weights for each framework, a model card and a reference input/output pair. It lives
in the local hub (``PORTHUB_HOME``), on a Hugging Face Hub endpoint, or on AI Studio.

Modules, each importing only those before it: :mod:`~porthub.hub.repo` (format, config, sha256, file
names) < :mod:`~porthub.hub.local` (the local hub folder) < :mod:`~porthub.hub.remote` (huggingface_hub)
and :mod:`~porthub.hub.aistudio` (aistudio-sdk) < :mod:`~porthub.hub.card` < :mod:`~porthub.hub.publish`
< :mod:`~porthub.hub.resolve` (the pretrained lookup chain). This package re-exports their public names.
"""

from __future__ import annotations

from .local import fetch_folder, hub_home, local_repo_dir, model_from_config
from .repo import (
    CONFIG_NAME,
    DEFAULT_ORG,
    FORMAT_VERSION,
    STATE_LAYOUTS,
    Fetched,
    check_relpath,
    check_repo_id,
    check_revision,
    default_repo_id,
    files_for,
    read_config,
    read_weights,
    safe_join,
    sha256_file,
)
from .resolve import HUBS, fetch, from_pretrained, hub_order, pretrained_state

__all__ = [
    "DEFAULT_ORG",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "STATE_LAYOUTS",
    "HUBS",
    "hub_home",
    "default_repo_id",
    "check_repo_id",
    "check_revision",
    "check_relpath",
    "safe_join",
    "local_repo_dir",
    "sha256_file",
    "Fetched",
    "fetch",
    "fetch_folder",
    "files_for",
    "read_config",
    "read_weights",
    "model_from_config",
    "pretrained_state",
    "from_pretrained",
    "hub_order",
]
