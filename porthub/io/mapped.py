"""Memory-mapped sources and the release of their pages once a tensor has been written.

Reading maps the file read-only; a tensor is a view of the mapping. After a writer has copied a
tensor out, :func:`release` tells the kernel to drop those pages from this process (they are re-read
from the file if touched again), so converting a checkpoint keeps its resident memory far below the
checkpoint's size.
"""

from __future__ import annotations

import mmap
import os
import weakref
from typing import Any

import numpy as np

__all__ = ["map_file", "release", "source_span"]

#: id(mapping) -> (weak reference to it, start address, size, a descriptor of the file for preadv and
#: copy_file_range); the entry and the descriptor go when the last array viewing the mapping does
_MAPS: dict[int, tuple[weakref.ref, int, int, int]] = {}
_PAGE = mmap.PAGESIZE


def _drop(key: int, fd: int) -> None:
    entry = _MAPS.get(key)
    if entry is not None and entry[3] == fd:
        del _MAPS[key]
    os.close(fd)


def map_file(fileno: int) -> tuple[mmap.mmap, np.ndarray]:
    mm = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
    whole = np.frombuffer(mm, dtype=np.uint8)
    fd = os.dup(fileno)
    _MAPS[id(mm)] = (weakref.ref(mm), whole.__array_interface__["data"][0], len(mm), fd)
    weakref.finalize(mm, _drop, id(mm), fd)
    return mm, whole


def _root(arr: np.ndarray) -> Any:
    base: Any = arr
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    # np.frombuffer(mapping) keeps a memoryview of the mapping as its base
    return base.obj if isinstance(base, memoryview) else base


def _entry(arr: np.ndarray) -> tuple[mmap.mmap, int, int, int] | None:
    root = _root(arr)
    entry = _MAPS.get(id(root))
    if entry is None or entry[0]() is not root:
        return None
    return root, entry[1], entry[2], entry[3]


def source_span(arr: Any) -> tuple[int, int] | None:
    """``(fd, offset)`` of a C-contiguous array's bytes in the checkpoint file it is a view of, or None."""
    if not isinstance(arr, np.ndarray) or not arr.flags.c_contiguous:
        return None
    entry = _entry(arr)
    if entry is None:
        return None
    _mm, start, size, fd = entry
    lo = arr.__array_interface__["data"][0] - start
    if lo < 0 or lo + arr.nbytes > size:
        return None
    return fd, lo


def release(arr: Any) -> None:
    """Drop the pages under ``arr`` if it is a view of a mapped checkpoint; otherwise do nothing."""
    if not isinstance(arr, np.ndarray) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    entry = _entry(arr)
    if entry is None:
        return
    mm, start, size, _fd = entry
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
