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

Writing is two steps, so that a zip writer can run them on two threads: :func:`stage` puts an
array's bytes in order (a transpose into a scratch buffer; nothing for a contiguous view) and, if
asked, computes their CRC-32; :func:`emit` writes staged bytes out. While one tensor is emitted the
next can be staged: the transposes, the CRC and the writes then share the machine's cores.
"""

from __future__ import annotations

import errno
import io
import os
import threading
import zlib
from dataclasses import dataclass
from typing import IO

import numpy as np

from .mapped import release, source_span

__all__ = ["Staged", "stage", "emit", "emit_at", "pwrite_all", "uses_scratch", "write_array", "clear_scratch"]

#: bytes of source rows per transposed strip: a strip that stays in the L1 cache while its columns are
#: scattered (32 KB) measured 1.5-2x faster than 64-row strips (128-512 KB for 512-2048 columns) on a
#: shared AMD EPYC; each strip is at least a cache line (64 bytes) of every output row
_STRIP_BYTES = 32 << 10
_LINE = 64
#: bytes per read when a contiguous mapped tensor must pass through user space
_CHUNK = 8 << 20
#: scratch buffers larger than this are not kept between tensors
_KEEP = 64 << 20
#: errors that mean "no kernel-side copy between these two files", not a failed write
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.ETXTBSY})

_local = threading.local()


#: scratch slots per thread: 0 for reads from the source, 1 for transposes
_SLOTS = 2


def _scratch(slot: int, nbytes: int) -> np.ndarray:
    """A reused uint8 buffer of at least ``nbytes``: already-faulted pages cost nothing the second time."""
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = [np.empty(0, np.uint8) for _ in range(_SLOTS)]
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
    done = _kernel_copy_at(src, offset, dst, pos, nbytes)
    out.seek(pos + done)
    return done


@dataclass
class Staged:
    """An array's bytes in the order they are written: ``data`` is C-contiguous and little-endian,
    either a view of the mapped source (copied out kernel-side) or a buffer in memory. ``crc`` is
    their CRC-32 when :func:`stage` was asked for it."""

    data: np.ndarray
    crc: int | None = None


def _transposed(src: np.ndarray, into: np.ndarray | None) -> np.ndarray:
    """``src.T`` in C order, in ``into`` (a uint8 buffer at least as large) or this thread's scratch;
    ``src`` is C-contiguous and 2-D."""
    rows, cols = src.shape
    span = source_span(src)
    if span is not None:
        a = _scratch(0, src.nbytes).view(src.dtype).reshape(rows, cols)
        _pread_into(span[0], span[1], a)
    else:
        a = src
    out = _scratch(1, src.nbytes) if into is None else into[:src.nbytes]
    bt = out.view(src.dtype).reshape(cols, rows)
    strip = max(_LINE // src.itemsize, _STRIP_BYTES // max(1, cols * src.itemsize))
    for i in range(0, rows, strip):
        bt[:, i:i + strip] = a[i:i + strip].T
    return bt


def uses_scratch(arr: np.ndarray) -> bool:
    """Whether :func:`stage` writes ``arr`` into a buffer (a transposed view) rather than viewing it.

    A memory-layout question only: the engine has already transposed the Linear weights (by their
    declared kind); this asks whether the view it made is a transpose of contiguous bytes."""
    return (
        arr.dtype.byteorder != ">"
        and not arr.flags.c_contiguous
        and arr.ndim == 2
        and arr.T.flags.c_contiguous
        and arr.size > 0
    )


def stage(arr: np.ndarray, into: np.ndarray | None = None, checksum: bool = False) -> Staged:
    """Put ``arr``'s bytes in order for :func:`emit`. A transpose lands in ``into`` (a uint8 buffer of
    at least ``arr.nbytes``), or else in this thread's scratch, valid until its next transpose."""
    if arr.dtype.byteorder == ">":
        data = arr.astype(arr.dtype.newbyteorder("<"))
    elif arr.flags.c_contiguous:
        data = arr
    elif uses_scratch(arr):
        data = _transposed(arr.T, into)
    else:
        data = np.ascontiguousarray(arr)
    crc = zlib.crc32(memoryview(data.reshape(-1)).cast("B")) if checksum else None
    return Staged(data, crc)


def emit(out: IO[bytes], staged: Staged) -> None:
    """Write staged bytes: kernel-side from the source file where they are a view of it."""
    arr = staged.data
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


def pwrite_all(fd: int, views: list[memoryview], offset: int) -> None:
    """Write ``views`` one after another at ``offset`` of ``fd`` (the file position is neither used nor
    moved), however many calls the kernel takes (one write moves at most about 2 GB on Linux)."""
    views = [v for v in views if v.nbytes]
    while views:
        got = os.pwritev(fd, views, offset)
        if got <= 0:
            raise OSError(errno.EIO, "the output file accepted no more bytes")
        offset += got
        while views and got >= views[0].nbytes:
            got -= views[0].nbytes
            views.pop(0)
        if got:
            views[0] = views[0][got:]


def _kernel_copy_at(src: int, src_offset: int, dst: int, dst_offset: int, nbytes: int) -> int:
    """Copy what the kernel can from ``src_offset`` of ``src`` to ``dst_offset`` of ``dst``; return how many
    bytes it copied (the rest goes through user space)."""
    done = 0
    try:
        while done < nbytes:
            got = os.copy_file_range(src, dst, nbytes - done, src_offset + done, dst_offset + done)
            if got == 0:
                break
            done += got
    except OSError as exc:
        if exc.errno not in _NO_KERNEL_COPY:
            raise
    return done


def emit_at(fd: int, offset: int, staged: Staged, head: bytes = b"") -> None:
    """Write ``head`` then the staged bytes at ``offset`` of the regular file ``fd``, positionally
    (several threads can each write their own part of one file): kernel-side from the source file
    where the bytes are a view of it, else in one ``pwritev`` with ``head``."""
    arr = staged.data
    span = source_span(arr)
    if span is None:
        pwrite_all(fd, [memoryview(head), memoryview(arr.reshape(-1)).cast("B")], offset)
        return
    if head:
        pwrite_all(fd, [memoryview(head)], offset)
        offset += len(head)
    src, src_offset = span
    nbytes = arr.nbytes
    done = _kernel_copy_at(src, src_offset, fd, offset, nbytes) if hasattr(os, "copy_file_range") else 0
    while done < nbytes:
        step = min(_CHUNK, nbytes - done)
        buf = _scratch(0, step)
        _pread_into(src, src_offset + done, buf)
        pwrite_all(fd, [memoryview(buf)], offset + done)
        done += step


def write_array(out: IO[bytes], arr: np.ndarray) -> None:
    """Write ``arr``'s bytes, little-endian and in C order, then drop its mapped source pages."""
    try:
        emit(out, stage(arr))
    finally:
        release(arr)
