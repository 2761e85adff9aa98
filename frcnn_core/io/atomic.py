"""Atomic file writes: the target is either the old file or the complete new one, never half.

The bytes go to a temp file `.<name>.<random>.tmp` in the target's folder, are flushed and
fsync'd, take the target's permissions (or the usual 0644 for a new file, since temp files start
at 0600), then replace the target by a rename; the folder is fsync'd after it so that the rename
itself survives a power cut.

A process killed mid-write leaves its temp file behind. Such a file never shadows the target
(its name starts with "." and ends with ".tmp", which no reader here lists), and on POSIX the next
write of the same target removes it: a writer holds an advisory lock (flock) on its temp file
until the rename, so a temp file nobody holds a lock on belongs to a writer that died. Where
there is no flock (Windows) abandoned temp files stay.
"""
from __future__ import annotations

import errno
import glob
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

TEMP_SUFFIX = ".tmp"


def temp_files(path: str | os.PathLike) -> list[Path]:
    """The temp files of writes of `path` that are running or were abandoned, sorted by name."""
    target = Path(path)
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*{TEMP_SUFFIX}"))


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(stream)` on a temp file beside `path`, then rename it onto `path`.

    Abandoned temp files of earlier writes of `path` are removed first (module doc). When
    `write` or the rename fails, the temp file is removed and the target is untouched; an
    OSError (read-only folder, full disk) is raised again naming `path`, not the temp file.
    """
    target = Path(path)
    with _errors_about(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644
        _remove_abandoned(target)
        handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as stream:
                if fcntl is not None:
                    fcntl.flock(stream.fileno(), fcntl.LOCK_EX)  # released when the stream closes
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
                os.chmod(temp_name, mode)
                if fcntl is not None:  # rename while the lock is held, or a cleanup could take the file
                    os.replace(temp_name, target)
            if fcntl is None:  # Windows cannot rename an open file
                os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        _fsync_folder(target.parent)
    return target


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda stream: stream.write(data))


def backup_copy(path: str | os.PathLike) -> Path:
    """Copy `path` to <name>.bak (or .bak.1, .bak.2 ... when that holds other bytes), atomically;
    the backup's path."""
    source = Path(path)
    data = source.read_bytes()
    candidates = (source.with_name(f"{source.name}.bak{'' if n == 0 else f'.{n}'}") for n in range(10_000))
    backup = next(c for c in candidates if not c.exists() or c.read_bytes() == data)
    return write_bytes_atomic(backup, data)


def _remove_abandoned(target: Path) -> None:
    """Remove the temp files of `target` that no live writer holds a lock on (POSIX only)."""
    if fcntl is None:
        return
    for temp in temp_files(target):
        try:  # neither waiting on a FIFO nor following a link: only our own kind of file goes
            handle = os.open(temp, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:  # just renamed by its writer, another user's, or a link: not ours to judge
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if stat.S_ISREG(os.fstat(handle).st_mode):
                temp.unlink()
        except OSError:  # a live writer holds it (BlockingIOError), or the folder refuses changes,
            pass  # which the write that follows reports
        finally:
            os.close(handle)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable. Not possible on Windows (a folder cannot be opened);
    some file systems refuse it (EINVAL), and the rename has happened either way."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(handle)


@contextmanager
def _errors_about(target: Path) -> Iterator[None]:
    """Raise an OSError of the block that names a temp file of `target`, or no file (a full disk
    while writing), again as the same kind (PermissionError, ...) naming `target`: "[Errno 13]
    Permission denied: '<target>'", not a temp file the user never asked for. One that names
    another file (a parent that is not a folder) stays as it is."""
    try:
        yield
    except OSError as error:
        named = None if error.filename is None else Path(os.fsdecode(error.filename))
        about_temp = named is None or (named.parent == target.parent and named.name.startswith(f".{target.name}.")
                                       and named.name.endswith(TEMP_SUFFIX))
        if error.errno is None or not about_temp:
            raise
        raise OSError(error.errno, error.strerror, str(target)) from error
