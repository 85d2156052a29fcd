"""The Hugging Face Hub side of porthub's hub, through huggingface_hub (imported here only).

huggingface_hub reads ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and
``HF_HUB_DISABLE_XET`` once, when it is imported; porthub passes them through untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from typing import Any, Sequence
from urllib.parse import urlsplit

from packaging.version import Version

from ..errors import HubError, IntegrityError
from .repo import CONFIG_NAME, HOW_TO_PROVIDE, Fetched, check_relpath, check_sha, files_for, read_config

__all__ = ["hf", "endpoint_of", "remote_fetch", "remote_publish"]

_MIN_HF = Version("0.20")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def hf() -> Any:
    """huggingface_hub, or a clear error saying how to get it."""
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors
    except ImportError as exc:
        raise HubError(
            "the Hugging Face Hub needs huggingface_hub: pip install 'porthub[hub]' "
            "(or use the local hub: PORTHUB_HOME)"
        ) from exc
    if Version(huggingface_hub.__version__) < _MIN_HF:
        raise HubError(
            f"huggingface_hub {huggingface_hub.__version__} is too old; pip install -U 'huggingface_hub>={_MIN_HF}'"
        )
    return huggingface_hub


def endpoint_of(endpoint: str | None) -> str:
    if endpoint:
        return endpoint.rstrip("/")
    return str(hf().constants.ENDPOINT).rstrip("/")


def _offline() -> bool:
    return bool(hf().constants.HF_HUB_OFFLINE)


def _reachable(endpoint: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the endpoint opens. huggingface_hub retries a dead endpoint with
    backoff for half a minute before it falls back to its cache; one quick probe lets porthub go to
    the cache at once. Behind a proxy the probe would say nothing, so it is skipped there."""
    if any(
        os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    ):
        return True
    url = urlsplit(endpoint)
    if not url.hostname:
        raise HubError(f"Hub endpoint {endpoint!r} is not a URL; set HF_ENDPOINT like https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download(
    repo_id: str, filename: str, revision: str | None, endpoint: str | None, where: str, cache_only: bool
) -> str:
    h = hf()
    errors = h.errors
    try:
        return h.hf_hub_download(repo_id, filename, revision=revision, endpoint=endpoint, local_files_only=cache_only)
    except errors.LocalEntryNotFoundError:
        state = "HF_HUB_OFFLINE is set" if _offline() else f"{endpoint_of(endpoint)} could not be reached"
        raise HubError(
            f"{repo_id} ({filename}) is in neither the local hub ({where}) nor the Hugging Face cache "
            f"({h.constants.HF_HUB_CACHE}), and {state}; {HOW_TO_PROVIDE}"
        ) from None
    except errors.RepositoryNotFoundError:
        raise HubError(
            f"no repository {repo_id} in the local hub ({where}) or on {endpoint_of(endpoint)}; {HOW_TO_PROVIDE}"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubError(
            f"{repo_id} on {endpoint_of(endpoint)} has no revision {revision!r}; pass an existing branch, tag or commit"
        ) from None
    except errors.EntryNotFoundError:
        raise HubError(
            f"{repo_id} on {endpoint_of(endpoint)} has no file {filename}; is it a porthub repository?"
        ) from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise HubError(
            f"{endpoint_of(endpoint)} answered HTTP {status} for {filename} of {repo_id}@{revision or 'main'}: "
            f"{str(exc).splitlines()[0]}; check the repository id, the revision and HF_TOKEN"
        ) from None


def _evict(path: str) -> None:
    """Remove a bad file from huggingface_hub's cache: the blob and the snapshot link to it, so the
    next download fetches it again instead of trusting it."""
    blob = os.path.realpath(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    if blob != os.path.abspath(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(blob)


def remote_fetch(
    repo_id: str, frameworks: Sequence[str], revision: str | None, endpoint: str | None, local_folder: str
) -> Fetched:
    where = local_folder
    cache_only = _offline() or not _reachable(endpoint_of(endpoint))
    config_path = _download(repo_id, CONFIG_NAME, revision, endpoint, where, cache_only)
    config = read_config(config_path)
    # Pin the weights to the commit the config came from, so a push between the two downloads cannot
    # pair this config with another revision's weights.
    commit = os.path.basename(os.path.dirname(config_path))
    pinned = commit if _COMMIT.fullmatch(commit) else revision
    paths = {CONFIG_NAME: config_path}
    names = files_for(config, frameworks)
    for name in names:
        check_relpath(name)
        path = _download(repo_id, name, pinned, endpoint, where, cache_only)
        try:
            check_sha(path, name, config, f"{repo_id}@{pinned or 'main'}")
        except IntegrityError as exc:
            _evict(path)
            raise IntegrityError(
                f"{exc}; the bad file was removed from the cache, download again "
                "(if it fails again, the repository itself is damaged)"
            ) from None
        paths[name] = path
    return Fetched(
        config, paths, f"{repo_id}@{pinned or 'main'}", "hf", commit if _COMMIT.fullmatch(commit) else None, names
    )


def remote_publish(
    folder: str,
    repo_id: str,
    endpoint: str | None,
    revision: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> dict[str, Any]:
    """Upload a built repository folder as one commit (creating the repository and branch if needed)."""
    h = hf()
    if not _reachable(endpoint_of(endpoint)):
        raise HubError(
            f"cannot reach {endpoint_of(endpoint)}; check the endpoint (HF_ENDPOINT) and the network, "
            "or publish to the local hub"
        )
    api = h.HfApi(endpoint=endpoint_of(endpoint))
    errors = h.errors
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            revision=revision,
            commit_message=commit_message or f"porthub: publish {repo_id}",
        )
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        hint = "check HF_TOKEN (a write token) and the repository name" if status in (401, 403) else "see the message"
        raise HubError(
            f"uploading to {endpoint_of(endpoint)} failed (HTTP {status}): {str(exc).splitlines()[0]}; {hint}"
        ) from None
    except RuntimeError as exc:
        # huggingface_hub wraps a failed LFS upload ("Error while uploading X to the Hub") in RuntimeError
        cause = exc.__cause__
        raise HubError(
            f"{exc} ({str(cause).splitlines()[0] if cause else 'no detail'}); nothing was committed, run push again"
        ) from None
    except errors.HTTPError as exc:
        # the HTTP client's own base error (a connection dropped mid-upload); the class depends on the
        # huggingface_hub version (requests, httpx or httpx2), and huggingface_hub.errors re-exports it
        raise HubError(
            f"uploading to {endpoint_of(endpoint)} was interrupted ({exc}); nothing was committed, run push again"
        ) from None
    return {
        "repo_id": repo_id,
        "endpoint": endpoint_of(endpoint),
        "commit": getattr(info, "oid", None),
        "url": getattr(info, "commit_url", None),
        "revision": revision or "main",
    }
