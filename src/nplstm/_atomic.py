"""Atomic file writing: a crash mid-write leaves the old file intact."""

from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file; on success it replaces ``path``, on error it vanishes.

    The data goes to a temporary file in the same directory, is flushed and
    fsynced, then ``os.replace``-d over ``path`` (atomic on POSIX and Windows).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nplstm-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
