"""Array bytes out to a checkpoint file at the speed of a file copy.

Three things make a naive ``out.write(np.ascontiguousarray(arr))`` several times slower than
copying the file: touching a memory-mapped source faults its pages in one by one, a fresh
allocation for each transposed weight is faulted in the same way, and numpy's ``arr.T.copy()``
walks the source column by column. Here:

* a C-contiguous view of a mapped checkpoint goes kernel-side from the source file into the output
  (``os.copy_file_range``) when the output is a plain file, or is read with ``preadv`` into a
  reused buffer when it is not (a zip entry, whose CRC needs the bytes);
* a transposed 2-D view (a Linear weight) is read the same way and transposed in strips of rows,
  each strip staying in cache while its columns are scattered, into a second reused buffer.

Bytes are always written little-endian, in C order, exactly as before.
"""

from __future__ import annotations

import errno
import io
import os
import threading
from typing import IO

import numpy as np

from .mapped import release, source_span

__all__ = ["write_array", "clear_scratch"]

#: source rows per transposed strip: 64 rows of a Linear weight fit the L2 cache of any current CPU
_STRIP = 64
#: bytes per read when a contiguous mapped tensor must pass through user space
_CHUNK = 8 << 20
#: scratch buffers larger than this are not kept between tensors
_KEEP = 64 << 20
#: errors that mean "no kernel-side copy between these two files", not a failed write
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.ETXTBSY})

_local = threading.local()


def _scratch(slot: int, nbytes: int) -> np.ndarray:
    """A reused uint8 buffer of at least ``nbytes``: already-faulted pages cost nothing the second time."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = [np.empty(0, np.uint8), np.empty(0, np.uint8)]
    if bufs[slot].nbytes >= nbytes:
        return bufs[slot][:nbytes]
    buf = np.empty(nbytes, np.uint8)
    if nbytes <= _KEEP:
        bufs[slot] = buf
    return buf


def clear_scratch() -> None:
    """Free the reused buffers (called once a checkpoint is written)."""
    _local.bufs = None


def _fileno(out: IO[bytes]) -> int | None:
    try:
        return out.fileno()
    except (AttributeError, io.UnsupportedOperation, ValueError):
        return None


def _pread_into(fd: int, offset: int, buf: np.ndarray) -> None:
    view = memoryview(buf).cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise OSError(errno.EIO, "the source checkpoint shrank while it was being converted")
        done += got


def _kernel_copy(src: int, offset: int, out: IO[bytes], dst: int, nbytes: int) -> int:
    """Copy what the kernel can; return how many bytes it copied (the rest goes through user space)."""
    out.flush()
    pos = out.tell()
    done = 0
    try:
        while done < nbytes:
            got = os.copy_file_range(src, dst, nbytes - done, offset + done, pos + done)
            if got == 0:
                break
            done += got
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY:
            raise
    out.seek(pos + done)
    return done


def _write_contiguous(out: IO[bytes], arr: np.ndarray) -> None:
    span = source_span(arr)
    if span is None:
        out.write(memoryview(arr.reshape(-1)).cast("B"))
        return
    fd, offset = span
    nbytes = arr.nbytes
    done = 0
    dst = _fileno(out) if hasattr(os, "copy_file_range") else None
    if dst is not None:
        done = _kernel_copy(fd, offset, out, dst, nbytes)
    while done < nbytes:
        step = min(_CHUNK, nbytes - done)
        buf = _scratch(0, step)
        _pread_into(fd, offset + done, buf)
        out.write(memoryview(buf))
        done += step


def _write_transposed(out: IO[bytes], src: np.ndarray) -> None:
    """Write ``src.T`` in C order; ``src`` is C-contiguous and 2-D."""
    rows, cols = src.shape
    span = source_span(src)
    if span is not None:
        a = _scratch(0, src.nbytes).view(src.dtype).reshape(rows, cols)
        _pread_into(span[0], span[1], a)
    else:
        a = src
    b = _scratch(1, src.nbytes)
    bt = b.view(src.dtype).reshape(cols, rows)
    for i in range(0, rows, _STRIP):
        bt[:, i:i + _STRIP] = a[i:i + _STRIP].T
    out.write(memoryview(b))


def write_array(out: IO[bytes], arr: np.ndarray) -> None:
    """Write ``arr``'s bytes, little-endian and in C order, then drop its mapped source pages."""
    try:
        if arr.dtype.byteorder == ">":
            out.write(memoryview(arr.astype(arr.dtype.newbyteorder("<")).reshape(-1)).cast("B"))
        elif arr.flags.c_contiguous:
            _write_contiguous(out, arr)
        elif arr.ndim == 2 and arr.T.flags.c_contiguous and arr.size:
            _write_transposed(out, arr.T)
        else:
            out.write(memoryview(np.ascontiguousarray(arr).reshape(-1)).cast("B"))
    finally:
        release(arr)
