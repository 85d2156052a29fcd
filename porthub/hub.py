"""porthub's hub: where converted weights are published and loaded from.

A repository holds ``config.json`` (everything needed to rebuild the model, and the sha256 of every
other file), the weights for each framework, a model card and a reference input/output pair. It lives
either in the local hub (``PORTHUB_HOME``, default ``~/.cache/porthub``: ``models/<org>/<name>``,
laid out like a Hub repository, so everything works offline) or on a Hugging Face Hub endpoint.

Loading looks in the local hub first, then asks the Hugging Face Hub (through huggingface_hub: its
cache, revision pinning, ``HF_HUB_OFFLINE``, progress bars) for only the files the framework needs,
and checks each file's sha256 against ``config.json`` before anything is loaded. huggingface_hub is
imported only when the Hub is actually asked (``porthub list`` stays fast).
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

from .engine import to_canonical
from .errors import HubError, IntegrityError
from .spec import FRAMEWORKS, PADDLE, TORCH, Layout, ModelRef

__all__ = [
    "DEFAULT_ORG",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "hub_home",
    "default_repo_id",
    "check_repo_id",
    "check_relpath",
    "safe_join",
    "local_repo_dir",
    "sha256_file",
    "Fetched",
    "fetch",
    "read_config",
    "read_weights",
    "model_from_config",
    "pretrained_state",
    "from_pretrained",
    "hub_order",
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
_HOW_TO_PROVIDE = ("publish it with `porthub push MODEL --weights CHECKPOINT`, point PORTHUB_HOME at a hub that has it, "
                   "or set HF_ENDPOINT to a reachable Hub")


def hub_home() -> str:
    """The local hub folder: ``$PORTHUB_HOME``, else ``$XDG_CACHE_HOME/porthub``, else ``~/.cache/porthub``."""
    home = os.environ.get("PORTHUB_HOME")
    if home:
        return os.path.abspath(os.path.expanduser(home))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "porthub")


def default_repo_id(variant_name: str) -> str:
    return f"{DEFAULT_ORG}/{variant_name}"


def check_repo_id(repo_id: str) -> str:
    """``ORG/NAME`` with the Hub's characters only, so it can never name a path outside the hub."""
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise HubError(f"repository id {repo_id!r} is not ORG/NAME (letters, digits, '-', '_', '.'; no '..'); "
                       f"for example {DEFAULT_ORG}/shunted_t")
    return repo_id


def check_revision(revision: str | None) -> str | None:
    if revision is None:
        return None
    if not _REVISION.fullmatch(revision) or ".." in revision or "//" in revision or revision.endswith("/"):
        raise HubError(f"revision {revision!r} is not a branch, tag or commit name; use e.g. main, v1 or a 40-hex commit")
    return revision


def check_relpath(relpath: str) -> list[str]:
    """The components of a file name read from a repository, refusing anything that could name a path
    outside it (absolute paths, ``..``, backslashes, empty components)."""
    parts = relpath.split("/") if isinstance(relpath, str) else []
    if (not parts or "\\" in relpath or relpath.startswith("/") or os.path.isabs(relpath) or "\x00" in relpath
            or any(p in ("", ".", "..") for p in parts)):
        raise HubError(f"file name {relpath!r} in a repository is not a plain relative path; refusing it "
                       "(the repository is malformed or hostile: do not use it)")
    return parts


def safe_join(root: str, relpath: str) -> str:
    """``root/relpath`` inside a folder porthub owns (the local hub), refusing names that leave it and
    symlinks that point out of it."""
    path = os.path.join(root, *check_relpath(relpath))
    real_root = os.path.realpath(root)
    if os.path.commonpath([os.path.realpath(path), real_root]) != real_root:
        raise HubError(f"file {relpath!r} resolves outside its repository folder; refusing it")
    return path


def local_repo_dir(repo_id: str, revision: str | None = None, root: str | None = None) -> str:
    """Where the local hub keeps ``repo_id`` (``main``, or ``<name>@<revision>`` for another revision)."""
    org, name = check_repo_id(repo_id).split("/")
    revision = check_revision(revision)
    if revision not in (None, "main"):
        name = f"{name}@{revision.replace('/', '--')}"
    return safe_join(os.path.join(root or hub_home(), "models"), f"{org}/{name}")


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
        raise HubError(f"{path} has format_version {version!r}; this porthub reads up to {FORMAT_VERSION}: "
                       "pip install -U porthub")
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
            raise ValueError(f"framework must be 'torch' or 'paddle', not {fw!r}")
        name = table.get(fw, {}).get("file") if isinstance(table.get(fw), dict) else None
        if not name:
            raise HubError(f"this repository has no {fw} weights (config.json 'frameworks' lists {sorted(table)})")
        if name not in config["files"]:
            raise HubError(f"config.json names {name!r} for {fw} but records no sha256 for it; the repository is malformed")
        out.append(name)
    return out


def _check_sha(path: str, name: str, config: Mapping[str, Any], where: str) -> None:
    want = config["files"][name].get("sha256") if isinstance(config["files"][name], dict) else None
    got = sha256_file(path)
    if got != want:
        raise IntegrityError(f"{name} from {where} has sha256 {got[:16]}..., but config.json records {str(want)[:16]}...; "
                             "refusing it")


def _fetch_folder(folder: str, frameworks: Sequence[str], where: str) -> Fetched:
    config = read_config(os.path.join(folder, CONFIG_NAME))
    names = files_for(config, frameworks)
    paths = {}
    for name in names:
        path = safe_join(folder, name)
        if not os.path.isfile(path):
            raise HubError(f"{where} lists {name} but the file is missing; publish the repository again with `porthub push`")
        try:
            _check_sha(path, name, config, where)
        except IntegrityError as exc:
            raise IntegrityError(f"{exc}; the local hub copy is damaged: publish it again with `porthub push` "
                                 f"or delete {folder}") from None
        paths[name] = path
    paths[CONFIG_NAME] = os.path.join(folder, CONFIG_NAME)
    return Fetched(config, paths, folder, "local", files=names)


def fetch(repo_id_or_path: str, frameworks: Sequence[str] = (TORCH,), revision: str | None = None,
          endpoint: str | None = None, local: bool = True) -> Fetched:
    """The config and the weight files ``frameworks`` need, checked against their sha256.

    ``repo_id_or_path`` is a repository folder, or ``ORG/NAME``: looked up in the local hub, then on
    the Hugging Face Hub (``endpoint``, default ``HF_ENDPOINT``)."""
    if os.path.isdir(repo_id_or_path) and os.path.isfile(os.path.join(repo_id_or_path, CONFIG_NAME)):
        return _fetch_folder(os.path.abspath(repo_id_or_path), frameworks, repo_id_or_path)
    repo_id = check_repo_id(repo_id_or_path)
    revision = check_revision(revision)
    folder = local_repo_dir(repo_id, revision)
    if local and os.path.isfile(os.path.join(folder, CONFIG_NAME)):
        return _fetch_folder(folder, frameworks, f"local hub repository {repo_id}")
    from .hub_remote import remote_fetch

    return remote_fetch(repo_id, frameworks, revision, endpoint, local_folder=folder)


def read_weights(path: str, config: Mapping[str, Any], framework: str) -> "OrderedDict[str, np.ndarray]":
    """A published weight file as a canonical state (official PyTorch keys and shapes)."""
    from .io import load_checkpoint, read_safetensors_metadata
    from .registry import get_spec

    spec = get_spec(str(config["family"]))
    if path.endswith(".safetensors"):
        declared = read_safetensors_metadata(path).get("porthub.framework")
        if declared != framework:
            raise HubError(f"{os.path.basename(path)} holds {declared or 'undeclared'} weights, not {framework}; "
                           "config.json and the file disagree: publish the repository again")
    state, strays = to_canonical(load_checkpoint(path), STATE_LAYOUTS[framework], spec)
    if strays:
        raise HubError(f"{os.path.basename(path)} has entries that are not tensors: {strays[:4]}")
    return state


def model_from_config(config: Mapping[str, Any], framework: str = TORCH, dtype: str = "float32") -> Any:
    """Build the model a config.json describes (its family, class and constructor arguments)."""
    from .frameworks import build_model
    from .registry import get_spec

    spec = get_spec(str(config["family"]))
    return build_model(spec, ModelRef(str(config["architecture"]), dict(config["constructor_kwargs"])), framework, dtype)


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
                from .hub_aistudio import pretrained_state as from_aistudio

                return from_aistudio(variant_name, framework, revision, repo)
            folder = local_repo_dir(repo, revision)
            if hub == "local":
                if not os.path.isfile(os.path.join(folder, CONFIG_NAME)):
                    failures.append(f"local hub: no {repo} in {folder}")
                    continue
                fetched = _fetch_folder(folder, (framework,), f"local hub repository {repo}")
            else:
                from .hub_remote import remote_fetch
                from .sources import offline

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
        from .sources import pretrained_from_official

        return pretrained_from_official(variant_name, framework, failures)
    raise HubError(f"no published weights of {variant_name} in {', '.join(hub_order())} "
                   f"({' | '.join(failures)})")


def _official_variant(repo_id: str) -> str | None:
    """The registered variant ``porthub/<variant>`` names (the repositories porthub installs from the
    official sources), or None."""
    from .registry import list_models

    org, _, name = repo_id.partition("/")
    return name if org == DEFAULT_ORG and not os.path.isdir(repo_id) and name in list_models() else None


def from_pretrained(repo_id_or_path: str, framework: str = TORCH, revision: str | None = None,
                    dtype: str = "float32", endpoint: str | None = None, hub: str | None = None) -> Any:
    """The model of a porthub repository, built from its config.json, weights loaded strictly.
    ``hub="aistudio"`` reads it from AI Studio (its Paddle weights serve either framework)."""
    from .frameworks import load_state
    from .registry import get_spec

    if hub == "aistudio":
        from .hub_aistudio import fetch as aistudio_fetch

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
            from .sources import pretrained_from_official

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
