"""Atomic file replacement: a failure mid-write leaves the old file as it was, and an
interrupted write (even SIGKILL) leaves no temporary file behind for long.

Where Linux offers it, the data goes to an anonymous file (``open(dir, O_TMPFILE)``,
open(2)) that has no name until it is complete: a process killed mid-write leaves
nothing, as the kernel frees the file with its last descriptor. Only then is it
linked in (``linkat`` through ``/proc/self/fd``, linkat(2)) under a temporary name
and renamed over the target. Elsewhere the temporary file has a name from the start,
``.NAME.<pid>.<random>.tmp``; each write first removes those left by processes that
no longer exist. SIGTERM during a write raises KeyboardInterrupt (as Ctrl-C does) when
nobody else handles SIGTERM, so the usual cleanup runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import threading
import time

# Temporary files of the older naming (no pid) untouched this long are stale.
_OLD_STALE_SECONDS = 3600


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary file that replaces ``path`` only once fully written.

    The data is flushed and fsynced, then renamed over ``path`` (``os.replace``, atomic
    on POSIX and Windows). On any exception nothing is left but ``path`` as it was.
    The new file gets the usual permissions (0o666 minus the umask).

    An OSError about the temporary file (its directory is missing or read-only, the
    target is a directory, ...) is raised naming ``path``, the file the caller asked
    for, not the hidden temporary name.
    """
    path = os.fsdecode(os.fspath(path))
    directory, name = os.path.split(os.path.abspath(path))
    remove_stale_temporaries(directory, name)
    with sigterm_as_interrupt():
        try:
            fd, tmp = _open_anonymous(directory)
            if fd is None:
                tmp, fd = _create_temp(directory, name)
        except OSError as exc:
            raise _naming(exc, path, directory) from None
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
                if tmp is None:  # anonymous: give it a name only now
                    tmp = _link_anonymous(f.fileno(), directory, name)
            os.replace(tmp, path)
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if isinstance(exc, OSError) and exc.filename is not None \
                    and exc.filename in (tmp, directory):
                raise _naming(exc, path, directory) from None
            raise
    _fsync_directory(directory)


def _naming(exc: OSError, path: str, directory: str) -> OSError:
    """The same kind of OSError as ``exc``, about ``path`` instead of the temp file."""
    reason = exc.strerror or str(exc)
    if not os.path.isdir(directory):
        reason = f"cannot write: directory {directory} does not exist"
    return type(exc)(exc.errno, reason, path)


def _open_anonymous(directory: str):
    """``(fd, None)`` for an unnamed file in ``directory``, or ``(None, None)`` where
    that cannot work (no O_TMPFILE, no /proc, or linking it in fails there: EXDEV is
    seen in some containers); the answer is learnt once per file system."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None, None
    device = os.stat(directory).st_dev  # FileNotFoundError for a missing directory
    if device not in _ANONYMOUS_WORKS:
        _ANONYMOUS_WORKS[device] = _probe_anonymous(directory, flag)
    if not _ANONYMOUS_WORKS[device]:
        return None, None
    return os.open(directory, flag | os.O_WRONLY, 0o666), None


# st_dev -> whether an O_TMPFILE file can be linked in there (learnt by a probe).
_ANONYMOUS_WORKS: dict[int, bool] = {}


def _probe_anonymous(directory: str, flag: int) -> bool:
    """Create an anonymous file in ``directory``, link it in and remove it."""
    try:
        fd = os.open(directory, flag | os.O_WRONLY, 0o600)
    except OSError:
        return False
    try:
        tmp = _link_anonymous(fd, directory, "probe")
    except OSError:
        return False
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return True


def _link_anonymous(fd: int, directory: str, name: str) -> str:
    """Give the anonymous file ``fd`` a temporary name in ``directory``; return it.

    ``linkat(fd, "", AT_FDCWD, tmp, AT_EMPTY_PATH)`` first (root, or Linux >= 6.10),
    else ``linkat`` of ``/proc/self/fd/N`` with AT_SYMLINK_FOLLOW (linkat(2)).
    """
    tmp = _temp_name(directory, name)
    libc_linkat = _libc_linkat()
    if libc_linkat is not None:
        import ctypes

        if libc_linkat(fd, b"", _AT_FDCWD, os.fsencode(tmp), _AT_EMPTY_PATH) == 0:
            return tmp
        ctypes.set_errno(0)
    os.link(f"/proc/self/fd/{fd}", tmp, follow_symlinks=True)
    return tmp


_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000  # <fcntl.h> on Linux


def _libc_linkat():
    """libc's ``linkat`` through ctypes, or ``None`` where it cannot be had."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).linkat
    except (OSError, AttributeError, ImportError):  # pragma: no cover
        return None


def _temp_name(directory: str, name: str) -> str:
    return os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _create_temp(directory: str, name: str) -> tuple[str, int]:
    """Create ``directory/.name.<pid>.<random>.tmp`` exclusively; return path and fd."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = _temp_name(directory, name)
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def remove_stale_temporaries(directory: str, name: str) -> list[str]:
    """Remove ``.name.<pid>.<hex>.tmp`` files of processes that are gone (and older
    ``.name.<hex>.tmp`` ones untouched for an hour); return what was removed."""
    pattern = re.compile(re.escape(f".{name}.") + r"(?:(\d+)\.)?[0-9a-f]{8}\.tmp")
    removed: list[str] = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match is None:
            continue
        full = os.path.join(directory, entry)
        if _stale(full, match.group(1)):
            with contextlib.suppress(OSError):
                os.unlink(full)
                removed.append(full)
    return removed


def _stale(full: str, pid: str | None) -> bool:
    """Whether a temporary file is left over: its process is gone (POSIX), or, without
    a pid or a way to ask (os.kill(pid, 0) means Ctrl-C on Windows), old enough."""
    if pid is None or os.name != "posix":
        with contextlib.suppress(OSError):
            return time.time() - os.stat(full).st_mtime > _OLD_STALE_SECONDS
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError, ValueError):  # alive under another user, or absurd
        return False
    return False


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so cleanup
    runs; only in the main thread and when nobody else handles SIGTERM."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum} (SIGTERM) while writing")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
