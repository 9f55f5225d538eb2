"""Atomic file replacement: a failure mid-write leaves the old file as it was."""

from __future__ import annotations

import contextlib
import os
import secrets


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file that replaces ``path`` only once fully written.

    The data goes to a hidden temporary file in the same directory (so the final
    rename stays on one file system), is flushed and fsynced, then ``os.replace``-d over
    ``path``, which is atomic on POSIX and Windows. On any exception the temporary file
    is removed and ``path`` is untouched. The new file gets the usual permissions
    (0o666 minus the umask), unlike ``tempfile.mkstemp``'s 0o600.

    An OSError about the temporary file (its directory is missing or read-only, the
    target is a directory, ...) is raised naming ``path``, the file the caller asked
    for, not the hidden temporary name.
    """
    path = os.fsdecode(os.fspath(path))
    directory, name = os.path.split(os.path.abspath(path))
    try:
        tmp, fd = _create_temp(directory, name)
    except OSError as exc:
        raise _naming(exc, path, directory) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and tmp in (exc.filename, exc.filename2):
            raise _naming(exc, path, directory) from None
        raise
    _fsync_directory(directory)


def _naming(exc: OSError, path: str, directory: str) -> OSError:
    """The same kind of OSError as ``exc``, about ``path`` instead of the temp file."""
    reason = exc.strerror or str(exc)
    if not os.path.isdir(directory):
        reason = f"cannot write: directory {directory} does not exist"
    return type(exc)(exc.errno, reason, path)


def _create_temp(directory: str, name: str) -> tuple[str, int]:
    """Create ``directory/.name.<random>.tmp`` exclusively; return its path and fd."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where the platform allows it (POSIX); else do nothing."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
