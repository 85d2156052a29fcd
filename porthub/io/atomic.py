"""Atomic file writes: write beside the destination, then rename.

A reader never sees a partial file: until the rename the destination holds its old content (or does
not exist), and a process killed at any moment leaves the old file or the new one. That needs no
fsync: the kernel holds every byte written before the rename. fsync adds durability across a power
loss or an OS crash, at the cost of waiting for the disk (more than the conversion itself on a busy
disk); ``PORTHUB_FSYNC=1`` asks for it, as conversions of weights one can regenerate seldom need it. Two writers of
one destination each fill their own temporary, so the result is one writer's whole file, never a mix.

Temporaries are hidden files named ``.NAME.<host>-<pid>-<random>.partial`` beside ``NAME``. A failure
removes its own; a writer killed outright (SIGKILL, power loss) cannot, so each write first removes
the temporaries of ``NAME`` left by writers on this host whose process no longer exists. At most the
leftovers of writers killed since the last write to ``NAME`` are ever present, and a temporary of a
writer still running, here or on another host, is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import tempfile
from typing import IO, Iterator

from ..errors import OutputExistsError, PorthubError

__all__ = ["atomic_write", "stale_temporaries", "temporary_prefix", "durable"]

#: room left in a 255-byte file name for the prefix dot, the tag and the suffix
_NAME_ROOM = 160


def _host_tag() -> str:
    return hashlib.blake2s(socket.gethostname().encode(), digest_size=4).hexdigest()


def _prefix(path: str) -> str:
    return f".{os.path.basename(path)[:_NAME_ROOM]}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def stale_temporaries(path: str) -> list[str]:
    """Temporaries of ``path`` left by writers on this host that are no longer running."""
    directory = os.path.dirname(os.path.abspath(path))
    prefix, host = _prefix(path), _host_tag()
    stale = []
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".partial")):
                continue
            tag = name[len(prefix):-len(".partial")].split("-")
            if len(tag) != 3 or tag[0] != host or not tag[1].isdigit():
                continue
            pid = int(tag[1])
            if pid > 0 and not _alive(pid):
                stale.append(os.path.join(directory, name))
    return stale


def temporary_prefix(path: str) -> str:
    """The name prefix of this process's temporaries of ``path`` (``.NAME.<host>-<pid>-``). A temporary
    folder named with it and the suffix ``.partial`` (``tempfile.mkdtemp(prefix=..., suffix=".partial")``)
    is listed by :func:`stale_temporaries` once its process is gone."""
    return f"{_prefix(path)}{_host_tag()}-{os.getpid()}-"


def _default_mode(path: str) -> int:
    """The destination's current permissions, else what ``open()`` would give a new file
    (mkstemp creates 0600, which would make every published checkpoint private)."""
    with contextlib.suppress(FileNotFoundError):
        return os.stat(path).st_mode & 0o7777
    return 0o666 & ~_umask()


def _umask() -> int:
    # Linux reports it without changing it; setting and restoring it would race with other threads.
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def durable() -> bool:
    """Whether writes wait for the disk (``PORTHUB_FSYNC=1``)."""
    return os.environ.get("PORTHUB_FSYNC", "") not in ("", "0", "false", "no")


def _no_temporary_names(exc: OSError, path: str) -> OSError:
    """The error of a failed write, naming the destination the caller asked for rather than the
    hidden temporary the failure happened on."""
    out = type(exc)(exc.errno, f"cannot write {path}: {exc.strerror or exc}")
    return out


@contextlib.contextmanager
def atomic_write(path: str, overwrite: bool = True) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temporary beside it. ``overwrite=False`` publishes the result only if
    ``path`` still does not exist when the write completes (a hard link cannot replace a file), and
    raises :class:`~porthub.errors.OutputExistsError` otherwise."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        for old in stale_temporaries(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(old)
        mode = _default_mode(path)
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_prefix(path)}{_host_tag()}-{os.getpid()}-", suffix=".partial", dir=directory
        )
    except OSError as exc:
        raise _no_temporary_names(exc, path) from None
    try:
        with os.fdopen(fd, "w+b") as fh:
            os.fchmod(fh.fileno(), mode)
            yield fh
            fh.flush()
            if durable():
                os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"{path} exists (it appeared during the write); nothing was written") from None
            except OSError:
                # a file system without hard links: check, then rename (a writer racing in between can still lose)
                if os.path.lexists(path):
                    raise OutputExistsError(
                        f"{path} exists (it appeared during the write); nothing was written") from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, PorthubError) or tmp not in str(exc):
            raise
        raise _no_temporary_names(exc, path) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if not durable():
        return
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
