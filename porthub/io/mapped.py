"""Memory-mapped sources and the release of their pages once a tensor has been written.

Reading maps the file read-only; a tensor is a view of the mapping. After a writer has copied a
tensor out, :func:`release` tells the kernel to drop those pages from this process (they are re-read
from the file if touched again), so converting a checkpoint keeps its resident memory far below the
checkpoint's size.
"""

from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np

__all__ = ["map_file", "release"]

_MAPS: dict[int, tuple[mmap.mmap, int, int]] = {}
_PAGE = mmap.PAGESIZE


def map_file(fileno: int) -> tuple[mmap.mmap, np.ndarray]:
    mm = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
    whole = np.frombuffer(mm, dtype=np.uint8)
    _MAPS[id(mm)] = (mm, whole.__array_interface__["data"][0], len(mm))
    return mm, whole


def _root(arr: np.ndarray) -> Any:
    base: Any = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


def release(arr: Any) -> None:
    """Drop the pages under ``arr`` if it is a view of a mapped checkpoint; otherwise do nothing."""
    if not isinstance(arr, np.ndarray) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    entry = _MAPS.get(id(_root(arr)))
    if entry is None:
        return
    mm, start, size = entry
    lo = arr.__array_interface__["data"][0] - start
    if lo < 0 or lo >= size:
        return
    hi = min(size, lo + arr.nbytes)
    lo_page = lo - lo % _PAGE
    hi_page = min(size, hi + (-hi % _PAGE))
    if hi_page > lo_page:
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo_page, hi_page - lo_page)
        except (ValueError, OSError):
            # the mapping is closed or the kernel refuses: memory use is then only higher, not wrong
            return


def forget(mm: mmap.mmap) -> None:
    _MAPS.pop(id(mm), None)


def file_size(path: str) -> int:
    return os.stat(path).st_size
