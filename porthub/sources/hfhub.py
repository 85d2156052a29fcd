"""Hub-hosted copies of official files (e.g. timm's re-saves) through huggingface_hub, imported only when used."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ..errors import FrameworkMissingError, SourceUnavailableError

__all__ = ["hf_file", "evict"]


def _hf() -> Any:
    try:
        import huggingface_hub
    except ImportError as exc:
        raise FrameworkMissingError("Hub-hosted copies need huggingface_hub: pip install 'porthub[hub]'") from exc
    return huggingface_hub


def hf_file(repo_id: str, filename: str) -> str:
    """The path of ``filename`` of ``repo_id`` in huggingface_hub's cache (downloaded when missing)."""
    h = _hf()
    errors = h.errors
    try:
        return str(h.hf_hub_download(repo_id, filename))
    except (errors.LocalEntryNotFoundError, errors.RepositoryNotFoundError, errors.EntryNotFoundError,
            errors.RevisionNotFoundError) as exc:
        raise SourceUnavailableError(f"{repo_id}/{filename}: {str(exc).splitlines()[0]}") from None
    except errors.HfHubHTTPError as exc:
        raise SourceUnavailableError(f"{repo_id}/{filename}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise SourceUnavailableError(f"{repo_id}/{filename}: {exc}") from None


def evict(path: str) -> None:
    """Remove a refused file from huggingface_hub's cache (the snapshot link and its blob), so it is
    fetched again instead of trusted next time."""
    blob = os.path.realpath(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    if blob != os.path.abspath(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(blob)
