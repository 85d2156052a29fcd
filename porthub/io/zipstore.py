"""A zip archive of stored (uncompressed) entries, written in one pass, as ``torch.save`` makes them.

``zipfile`` pushes every byte of an entry through Python with its CRC-32 computed in the same
thread. Here arrays go out through :mod:`porthub.io.stream`: a helper thread stages the next
tensor (its transpose and CRC-32) while this one is written (kernel-side from a mapped source where
it can be), so every CRC is known before its local header is written. Each entry's
data starts on an ``align``-byte boundary (the local header's extra field is padded, as torch does),
so ``torch.load(..., mmap=True)`` can view the storages in place. Zip64 records are written where a
size, an offset or the number of entries needs them (APPNOTE 4.5.3).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Iterable

import numpy as np

from .mapped import release
from .stream import Staged, emit, emit_at, pwrite_all, stage, uses_scratch

__all__ = ["StoredZipWriter"]

#: a size or offset at least this large is written in a zip64 extra field
ZIP64_LIMIT = 0xFFFFFFFF
#: more entries than this need the zip64 end of central directory
ZIP64_COUNT = 0xFFFF
#: what a header field holds when the zip64 record has the value
_MARK32 = 0xFFFFFFFF
_MARK16 = 0xFFFF
#: 1980-01-01 00:00, the earliest date a zip header can hold (torch writes it too)
_DOS_DATE = (0 << 9) | (1 << 5) | 1
_DOS_TIME = 0
#: one thread stages arrays beside the writing one (a second one measured slower on two cores: it
#: competes with the writes for memory bandwidth), over two transpose buffers
_HELPERS = 1
_BUFFERS = 2
#: bytes staged ahead of the writes at most: a sixteenth of the checkpoint within these bounds (a
#: CRC reads a mapped tensor's pages into memory, and they are dropped only once it is written;
#: 32 MB measured 10% faster than 8 MB on a 400 MB checkpoint, 8 MB keeps a 57 MB one under 1x)
_AHEAD_MIN, _AHEAD_MAX = 8 << 20, 32 << 20
_PAD_ID = 0x4246  # "FB": the padding record torch uses to align entry data
#: written to a regular file, entries up to this size are gathered into runs of at most _RUN bytes,
#: each written with one call (a state dict has hundreds of biases and norms of a few KB)
_SMALL = 64 << 10
_RUN = 1 << 20


@dataclass
class _Entry:
    name: bytes
    crc: int
    size: int
    offset: int


class StoredZipWriter:
    """Write entries to ``out`` (a binary file that can tell its position); :meth:`close` writes the directory."""

    def __init__(self, out: IO[bytes], align: int = 64) -> None:
        self._out = out
        self._align = align
        self._entries: list[_Entry] = []
        self._closed = False

    def __enter__(self) -> StoredZipWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def add(self, name: str, data: bytes | memoryview) -> None:
        """A small entry held in memory."""
        self._write(name, len(data) if isinstance(data, bytes) else data.nbytes, data, zlib.crc32(data))

    def add_arrays(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """One entry per array, in order; each array's mapped source pages are dropped once written.

        Into a regular file, see :meth:`_add_arrays_at`. Into any other stream (no descriptor, or
        not seekable), the following.

        A helper thread stages the arrays ahead of the writes (transposes and CRCs on another
        core while this thread writes), as far ahead as :func:`_gates` allows. The helper may run
        several entries ahead: a transposed weight is usually followed by its small bias, so with
        a lookahead of one entry they would mostly wait."""
        items = list(items)
        fd = _regular_fd(self._out)
        if fd is not None:
            self._add_arrays_at(fd, items)
            return
        buffers = [np.empty(0, np.uint8) for _ in range(_BUFFERS)]
        turns = [n for n, (_name, arr) in enumerate(items) if uses_scratch(arr)]
        written = [threading.Event() for _ in items]
        gates = _gates([arr.nbytes for _name, arr in items], turns)

        def job(n: int, arr: np.ndarray, nth: int | None) -> Staged:
            if gates[n] >= 0:
                written[gates[n]].wait()
            if nth is None:
                return stage(arr, None, True)
            slot = nth % _BUFFERS
            if buffers[slot].nbytes < arr.nbytes:
                buffers[slot] = np.empty(arr.nbytes, np.uint8)
            return stage(arr, buffers[slot], True)

        nth_of = {n: nth for nth, n in enumerate(turns)}
        pool = ThreadPoolExecutor(max_workers=_HELPERS, thread_name_prefix="porthub-stage")
        try:
            futures = [pool.submit(job, n, arr, nth_of.get(n)) for n, (_name, arr) in enumerate(items)]
            for n, ((name, arr), future) in enumerate(zip(items, futures)):
                staged = future.result()
                try:
                    self._write(name, staged.data.nbytes, staged, staged.crc)
                finally:
                    release(arr)
                written[n].set()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            # helpers waiting for a buffer that will not be written out any more must not block
            for event in written:
                event.set()
            pool.shutdown(wait=True)

    def _add_arrays_at(self, fd: int, items: list[tuple[str, np.ndarray]]) -> None:
        """Every entry's place in the file is known before any is written (its size and name fix
        its header and padding), so each is written at its own offset: this thread and the helpers
        each take the next entry (or run of small entries), stage it (transpose, CRC-32) and write
        header and data, so a transpose is written from the cache of the core that made it and no
        thread waits for another's buffer. The bytes are those of writing the entries in order.
        At most one entry per thread is staged at a time: its mapped pages are dropped once written."""
        out = self._out
        out.flush()
        offset = out.tell()
        tasks: list[list[tuple[_Entry, bytes, np.ndarray]]] = []
        run_bytes = _RUN
        for name, arr in items:
            raw_name = name.encode("utf-8")
            size = arr.nbytes
            extra = self._layout(raw_name, size, offset)
            entry = _Entry(raw_name, 0, size, offset)
            self._entries.append(entry)
            span = 30 + len(raw_name) + len(extra) + size
            if size > _SMALL or run_bytes + span > _RUN:
                tasks.append([])
                run_bytes = 0 if size <= _SMALL else _RUN
            tasks[-1].append((entry, extra, arr))
            run_bytes += span
            offset += span
        end = offset
        lock = threading.Lock()
        queue = iter(tasks)
        stop = threading.Event()
        errors: list[BaseException] = []

        def work() -> None:
            while not stop.is_set():
                with lock:
                    task = next(queue, None)
                if task is None:
                    return
                try:
                    self._write_task(fd, task)
                except BaseException as exc:  # handed to the calling thread, which raises it
                    errors.append(exc)
                    stop.set()
                    return

        helpers = [threading.Thread(target=work, name=f"porthub-write-{n}", daemon=True)
                   for n in range(min(_HELPERS, len(tasks) - 1))]
        for thread in helpers:
            thread.start()
        try:
            work()
        finally:
            stop.set()  # the helpers finish the entry they hold and take no other
            for thread in helpers:
                thread.join()
        if errors:
            raise errors[0]
        out.seek(end)

    def _write_task(self, fd: int, task: list[tuple[_Entry, bytes, np.ndarray]]) -> None:
        if len(task) == 1 and task[0][0].size > _SMALL:
            entry, extra, arr = task[0]
            try:
                staged = stage(arr, None, True)
                entry.crc = staged.crc or 0
                emit_at(fd, entry.offset, staged, self._header(entry.name, extra, entry.size, entry.crc))
            finally:
                release(arr)
            return
        buf = bytearray()
        for entry, extra, arr in task:
            data = memoryview(stage(arr).data.reshape(-1)).cast("B")
            entry.crc = zlib.crc32(data)
            buf += self._header(entry.name, extra, entry.size, entry.crc)
            buf += data
        pwrite_all(fd, [memoryview(buf)], task[0][0].offset)
        for _entry, _extra, arr in task:
            release(arr)

    def _layout(self, raw_name: bytes, size: int, offset: int) -> bytes:
        """The local header's extra field of an entry at ``offset``: zip64 sizes where needed, then
        padding that puts the data on an ``align`` boundary."""
        extra = struct.pack("<HHQQ", 0x0001, 16, size, size) if size >= ZIP64_LIMIT else b""
        start = offset + 30 + len(raw_name) + len(extra) + 4
        pad = -start % self._align
        return extra + struct.pack("<HH", _PAD_ID, pad) + b"Z" * pad

    @staticmethod
    def _header(raw_name: bytes, extra: bytes, size: int, crc: int) -> bytes:
        zip64 = size >= ZIP64_LIMIT
        stored_size = _MARK32 if zip64 else size
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 45 if zip64 else 20, 0, 0, _DOS_TIME, _DOS_DATE, crc,
                           stored_size, stored_size, len(raw_name), len(extra)) + raw_name + extra

    def _write(self, name: str, size: int, data: Staged | bytes | memoryview, crc: int | None) -> None:
        out = self._out
        raw_name = name.encode("utf-8")
        offset = out.tell()
        out.write(self._header(raw_name, self._layout(raw_name, size, offset), size, crc or 0))
        if isinstance(data, Staged):
            emit(out, data)
        else:
            out.write(data)
        self._entries.append(_Entry(raw_name, crc or 0, size, offset))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        out = self._out
        cd_offset = out.tell()
        for e in self._entries:
            fields = [v for v in (e.size, e.size) if v >= ZIP64_LIMIT]
            if e.offset >= ZIP64_LIMIT:
                fields.append(e.offset)
            extra = struct.pack(f"<HH{len(fields)}Q", 0x0001, 8 * len(fields), *fields) if fields else b""
            version = 45 if fields else 20
            size = _MARK32 if e.size >= ZIP64_LIMIT else e.size
            out.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, version, version, 0, 0, _DOS_TIME, _DOS_DATE,
                                  e.crc, size, size, len(e.name), len(extra), 0, 0, 0, 0,
                                  _MARK32 if e.offset >= ZIP64_LIMIT else e.offset))
            out.write(e.name)
            out.write(extra)
        cd_end = out.tell()
        cd_size = cd_end - cd_offset
        count = len(self._entries)
        if count > ZIP64_COUNT or cd_offset >= ZIP64_LIMIT or cd_size >= ZIP64_LIMIT:
            out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, cd_size, cd_offset))
            out.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        short_count = _MARK16 if count > ZIP64_COUNT else count
        out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, short_count, short_count,
                              _MARK32 if cd_size >= ZIP64_LIMIT else cd_size,
                              _MARK32 if cd_offset >= ZIP64_LIMIT else cd_offset, 0))


def _regular_fd(out: IO[bytes]) -> int | None:
    """The descriptor of ``out`` if it is a regular file (positional writes work), else None."""
    try:
        fd = out.fileno()
        return fd if out.seekable() and stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, io.UnsupportedOperation, OSError, ValueError):
        return None


def _gates(sizes: list[int], turns: list[int]) -> list[int]:
    """For entry n, the entry that must have been written before n is staged (-1: none).

    The n-th transpose goes into buffer n % ``_BUFFERS`` after transpose n - ``_BUFFERS``, the
    buffer's previous content, is written; and the entries staged but not yet written hold at
    most a budget of bytes (always at least entry n itself). Waiting on one earlier entry, rather
    than on a count of free buffers, keeps the order: a later entry can never take what an earlier
    one waits for."""
    budget = min(_AHEAD_MAX, max(_AHEAD_MIN, sum(sizes) // 16))
    gates = []
    lo, ahead = 0, 0
    for n, size in enumerate(sizes):
        ahead += size
        while lo < n and ahead > budget:
            ahead -= sizes[lo]
            lo += 1
        gates.append(lo - 1)
    for nth, n in enumerate(turns):
        if nth >= _BUFFERS:
            gates[n] = max(gates[n], turns[nth - _BUFFERS])
    return gates
