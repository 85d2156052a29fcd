"""Google Drive files through gdown (the optional extra ``porthub[gdrive]``), imported only when used."""

from __future__ import annotations

import os
from typing import Any

from ..errors import FrameworkMissingError, SourceUnavailableError

__all__ = ["gdrive_download"]


def _gdown() -> Any:
    try:
        import gdown
    except ImportError as exc:
        raise FrameworkMissingError("Google Drive downloads need gdown: pip install 'porthub[gdrive]' "
                                    "(or download the file by hand into a PORTHUB_SOURCES folder)") from exc
    return gdown


def gdrive_download(file_id: str, dest: str, progress: bool = True) -> str:
    """Download Drive file ``file_id`` to ``dest`` (gdown resumes its own partial file)."""
    gdown = _gdown()
    errors: tuple[type[BaseException], ...] = (OSError,)
    retrieval = getattr(getattr(gdown, "exceptions", None), "FileURLRetrievalError", None)
    if isinstance(retrieval, type):
        errors = (*errors, retrieval)
    try:
        got = gdown.download(id=file_id, output=dest, quiet=not progress, resume=True)
    except errors as exc:
        # Drive answers a quota page or a sign-in page instead of the file for many public checkpoints
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SourceUnavailableError(f"Google Drive did not give file {file_id}: {why}") from None
    if not got or not os.path.isfile(dest):
        raise SourceUnavailableError(f"Google Drive did not give file {file_id} (gdown returned nothing)")
    return dest
