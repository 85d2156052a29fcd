"""The repository format of porthub's hub: ``config.json`` (everything needed to rebuild the model and
the sha256 of every other file), file names, ids and revisions, and reading one published weight file.

Nothing here knows where a repository lives (:mod:`porthub.hub.local`, :mod:`porthub.hub.remote`,
:mod:`porthub.hub.aistudio`) or touches a framework.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..engine import to_canonical
from ..errors import HubError, IntegrityError, UnknownFrameworkError
from ..spec import FRAMEWORKS, PADDLE, TORCH, Layout

__all__ = [
    "DEFAULT_ORG",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "STATE_LAYOUTS",
    "HOW_TO_PROVIDE",
    "default_repo_id",
    "check_repo_id",
    "check_revision",
    "check_relpath",
    "safe_join",
    "sha256_file",
    "check_sha",
    "Fetched",
    "read_config",
    "files_for",
    "read_weights",
]

#: the organisation porthub publishes the registered variants under
DEFAULT_ORG = "porthub"
CONFIG_NAME = "config.json"
#: bumped when config.json changes incompatibly; a newer one is refused with "upgrade porthub"
FORMAT_VERSION = 1
#: the state-dict layouts the published weight files hold (each framework's own model.state_dict())
STATE_LAYOUTS = {TORCH: Layout("torch-state-dict", TORCH), PADDLE: Layout("paddle-state-dict", PADDLE)}

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"({_NAME})/({_NAME})")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
HOW_TO_PROVIDE = (
    "publish it from a checkpoint (porthub's push), point PORTHUB_HOME at a hub that has it, "
    "or set HF_ENDPOINT to a reachable Hub"
)


def default_repo_id(variant_name: str) -> str:
    return f"{DEFAULT_ORG}/{variant_name}"


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` with the Hub's characters only, so it can never name a path outside the hub."""
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise HubError(
            f"repository id {repo_id!r} is not ORG/NAME (letters, digits, '-', '_', '.'; no '..'); "
            f"for example {DEFAULT_ORG}/shunted_t"
        )
    return repo_id


def check_revision(revision: str | None) -> str | None:
    if revision is None:
        return None
    if not _REVISION.fullmatch(revision) or ".." in revision or "//" in revision or revision.endswith("/"):
        raise HubError(
            f"revision {revision!r} is not a branch, tag or commit name; use e.g. main, v1 or a 40-hex commit"
        )
    return revision


def check_relpath(relpath: str) -> list[str]:
    """The components of a file name read from a repository, refusing anything that could name a path
    outside it (absolute paths, ``..``, backslashes, empty components)."""
    parts = relpath.split("/") if isinstance(relpath, str) else []
    if (
        not parts
        or "\\" in relpath
        or relpath.startswith("/")
        or os.path.isabs(relpath)
        or "\x00" in relpath
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise HubError(
            f"file name {relpath!r} in a repository is not a plain relative path; refusing it "
            "(the repository is malformed or hostile: do not use it)"
        )
    return parts


def safe_join(root: str, relpath: str) -> str:
    """``root/relpath`` inside a folder porthub owns (the local hub), refusing names that leave it and
    symlinks that point out of it."""
    path = os.path.join(root, *check_relpath(relpath))
    real_root = os.path.realpath(root)
    if os.path.commonpath([os.path.realpath(path), real_root]) != real_root:
        raise HubError(f"file {relpath!r} resolves outside its repository folder; refusing it")
    return path


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Fetched:
    """A repository's config and the local paths of the files fetched from it."""

    config: dict[str, Any]
    paths: dict[str, str]
    where: str
    source: str = "local"
    commit: str | None = None
    files: list[str] = field(default_factory=list)


def read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except json.JSONDecodeError as exc:
        raise HubError(f"{path} is not JSON ({exc}); the repository is damaged: publish it again") from None
    if not isinstance(config, dict) or "files" not in config or "family" not in config:
        raise HubError(f"{path} is not a porthub config.json (no 'family'/'files'); is this a porthub repository?")
    version = config.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise HubError(
            f"{path} has format_version {version!r}; this porthub reads up to {FORMAT_VERSION}: pip install -U porthub"
        )
    if not isinstance(config["files"], dict):
        raise HubError(f"{path}: 'files' must map file names to their sha256")
    for name in config["files"]:
        check_relpath(name)
    return config


def files_for(config: Mapping[str, Any], frameworks: Sequence[str]) -> list[str]:
    """The weight files a framework needs, from the config (never the whole repository)."""
    table = config.get("frameworks", {})
    out = []
    for fw in frameworks:
        if fw not in FRAMEWORKS:
            raise UnknownFrameworkError(f"framework must be 'torch' or 'paddle', not {fw!r}")
        name = table.get(fw, {}).get("file") if isinstance(table.get(fw), dict) else None
        if not name:
            raise HubError(f"this repository has no {fw} weights (config.json 'frameworks' lists {sorted(table)})")
        if name not in config["files"]:
            raise HubError(
                f"config.json names {name!r} for {fw} but records no sha256 for it; the repository is malformed"
            )
        out.append(name)
    return out


def check_sha(path: str, name: str, config: Mapping[str, Any], where: str) -> None:
    want = config["files"][name].get("sha256") if isinstance(config["files"][name], dict) else None
    got = sha256_file(path)
    if got != want:
        raise IntegrityError(
            f"{name} from {where} has sha256 {got[:16]}..., but config.json records {str(want)[:16]}...; refusing it"
        )


def read_weights(path: str, config: Mapping[str, Any], framework: str) -> "OrderedDict[str, np.ndarray]":
    """A published weight file as a canonical state (official PyTorch keys and shapes)."""
    from ..io import load_checkpoint, read_safetensors_metadata
    from ..registry import get_spec

    spec = get_spec(str(config["family"]))
    if path.endswith(".safetensors"):
        declared = read_safetensors_metadata(path).get("porthub.framework")
        if declared != framework:
            raise HubError(
                f"{os.path.basename(path)} holds {declared or 'undeclared'} weights, not {framework}; "
                "config.json and the file disagree: publish the repository again"
            )
    state, strays = to_canonical(load_checkpoint(path), STATE_LAYOUTS[framework], spec)
    if strays:
        raise HubError(f"{os.path.basename(path)} has entries that are not tensors: {strays[:4]}")
    return state
