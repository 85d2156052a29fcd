"""Resumable HTTP(S) downloads with the standard library.

The bytes go to ``<dest>.part``; an interrupted transfer keeps it, and the next attempt asks for the
rest with ``Range: bytes=N-`` (a server that ignores Range answers 200 and the file starts over). Only
a complete file, of the size the server announced, is renamed to ``dest``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from typing import Any, Iterator

from ..errors import SourceUnavailableError

__all__ = ["download", "mirror_url"]

_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
# errors after which a retry can continue from the bytes already written
_TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def mirror_url(url: str, mirror: str | None = None) -> str:
    """``https://HOST/PATH`` as ``BASE/HOST/PATH`` when ``PORTHUB_SOURCE_MIRROR=BASE`` is set (an
    organisation's mirror, or a test server on 127.0.0.1); other URLs unchanged."""
    base = mirror if mirror is not None else os.environ.get("PORTHUB_SOURCE_MIRROR", "")
    if base and url.startswith("https://"):
        return base.rstrip("/") + "/" + url[len("https://"):]
    return url


@contextlib.contextmanager
def _bar(total: int | None, initial: int, name: str, progress: bool) -> Iterator[Any]:
    """A tqdm bar on a terminal; nothing when output goes to a file or a pipe."""
    if not progress or not sys.stderr.isatty():
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with huggingface_hub; without it there is simply no bar
        yield None
        return
    with tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
              file=sys.stderr) as bar:
        yield bar


def _open(url: str, start: int, timeout: float) -> Any:
    from ..version import __version__

    headers = {"User-Agent": f"porthub/{__version__}", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download(url: str, dest: str, expected_size: int | None = None, progress: bool = True, retries: int = 3,
             timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest``, resuming ``dest + '.part'`` when one is there; returns ``dest``.

    Raises SourceUnavailableError when the server refuses the file (HTTP 4xx/5xx) or the transfer still
    breaks off after ``retries`` resumptions; the partial file is then kept so a later call resumes."""
    if not url.startswith(("http://", "https://")):
        raise SourceUnavailableError(f"{url!r} is not an http(s) URL; check PORTHUB_SOURCE_MIRROR (or the catalogue)")
    part = dest + ".part"
    name = os.path.basename(dest)
    last = ""
    for _attempt in range(retries + 1):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if expected_size is not None and have > expected_size:
            os.remove(part)
            have = 0
        try:
            with _open(url, have, timeout) as resp:
                total = _total(resp, have)
                mode = "ab" if have and resp.status == 206 else "wb"
                written = have if mode == "ab" else 0
                with open(part, mode) as fh, _bar(total, written, name, progress) as bar:
                    while True:
                        block = resp.read(_CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        written += len(block)
                        if bar is not None:
                            bar.update(len(block))
            if total is not None and written != total:
                last = f"the server sent {written} of {total} bytes"
                continue
            if expected_size is not None and written != expected_size:
                os.remove(part)
                raise SourceUnavailableError(f"{url} gave {written} bytes, not the {expected_size} the catalogue "
                                             "has: the file there is not the catalogued one (removed)")
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                # the part file is already whole, or the file changed on the server: start over
                os.remove(part)
                last = "the server refused the resume range (HTTP 416)"
                continue
            raise SourceUnavailableError(f"{url} answered HTTP {exc.code} ({exc.reason})") from None
        except _TRANSIENT as exc:
            last = f"{type(exc).__name__}: {exc}"
    got = os.path.getsize(part) if os.path.exists(part) else 0
    raise SourceUnavailableError(f"downloading {url} broke off ({last}); {got} bytes are kept in {part} and the next "
                                 "attempt resumes from there")


def _total(resp: Any, have: int) -> int | None:
    """The whole file's size from Content-Range (206) or Content-Length (200)."""
    if resp.status == 206:
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != have:
            raise http.client.HTTPException(f"the server answered the range request with Content-Range "
                                            f"{resp.headers.get('Content-Range')!r}, not one starting at byte {have}")
        return None if match.group(3) == "*" else int(match.group(3))
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None
