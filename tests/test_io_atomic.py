"""Interrupted saves leave nothing behind: SIGKILL, SIGTERM, and stale temporaries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import nplstm.io as nio
from nplstm import _atomic

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

# The child saves a 16 MiB array over and over; "named" forces the fallback path
# (a named temporary file), as on systems without O_TMPFILE.
CHILD = """
import signal; signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a fresh program has it
import sys, numpy as np, nplstm.io as nio, nplstm._atomic as a
if sys.argv[2] == "named":
    a._open_anonymous = lambda directory: (None, None)
w = np.zeros(4 << 20, np.float32)
print("ready", flush=True)
while True:
    nio.save_weights({"w": w}, sys.argv[1])
"""


def start_child(path, mode):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def finish(child) -> str:
    """The child's stderr once it exits; killed (and the test failed) after 30 s."""
    try:
        return child.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise


def hidden(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


@pytest.mark.parametrize("mode", ["anonymous", "named"])
def test_sigkill_mid_write_leaves_nothing_after_the_next_save(tmp_path, mode):
    path = tmp_path / "w.npz"
    for delay in (0.05, 0.15, 0.3):
        child = start_child(path, mode)
        time.sleep(delay)
        child.kill()
        finish(child)
    fd, _ = _atomic._open_anonymous(str(tmp_path))  # does this file system have them?
    if fd is not None:
        os.close(fd)
    if mode == "anonymous" and fd is not None:
        # The kernel freed the unnamed files; only a kill in the microseconds between
        # linking a complete file in and renaming it could leave one.
        assert len(hidden(tmp_path)) <= 1
    nio.save_weights({"w": np.ones(3)}, path)  # the next write removes stale ones
    assert os.listdir(tmp_path) == ["w.npz"]
    assert nio.load_weights(path)["w"].tolist() == [1, 1, 1]


# The child writes half a file, says so, and waits inside the write for the signal.
SLOW_CHILD = """
import signal; signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a fresh program has it
import sys, time, numpy as np, nplstm.io as nio, nplstm._atomic as a
if sys.argv[2] == "named":
    a._open_anonymous = lambda directory: (None, None)
real = nio.npz.write_npz
def slow(f, arrays):
    f.write(b"half a file")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
nio.npz.write_npz = slow
nio.save_weights({"w": np.zeros(3)}, sys.argv[1])
"""


@pytest.mark.parametrize("mode", ["anonymous", "named"])
def test_sigterm_mid_write_acts_as_ctrl_c(tmp_path, mode):
    path = tmp_path / "w.npz"
    nio.save_weights({"w": np.ones(2)}, path)
    child = subprocess.Popen([sys.executable, "-c", SLOW_CHILD, str(path), mode],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    if mode == "named":
        assert len(hidden(tmp_path)) == 1  # the named temporary file, half written
    child.send_signal(signal.SIGTERM)
    err = finish(child)
    assert "KeyboardInterrupt: signal 15 (SIGTERM) while writing" in err
    assert os.listdir(tmp_path) == ["w.npz"]
    assert nio.load_weights(path)["w"].tolist() == [1, 1]  # the old file, untouched


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    old = time.time() - 2 * 3600
    names = {
        ".w.npz.999999999.deadbeef.tmp": False,  # no such process: removed
        ".w.npz.deadbeef.tmp": False,  # older naming, untouched for 2 hours: removed
        ".w.npz.cafef00d.tmp": True,  # older naming, fresh: may be another writer's
        f".w.npz.{os.getpid()}.0badf00d.tmp": True,  # this process's own
        ".other.npz.999999999.deadbeef.tmp": True,  # another file's
        ".w.npz.999999999.notahex.tmp": True,  # not our pattern
    }
    for name in names:
        (tmp_path / name).write_bytes(b"partial")
    os.utime(tmp_path / ".w.npz.deadbeef.tmp", (old, old))
    nio.save_weights({"w": np.ones(2)}, tmp_path / "w.npz")
    left = set(os.listdir(tmp_path))
    assert left == {"w.npz"} | {n for n, kept in names.items() if kept}


def test_cli_convert_sigterm_exits_130_and_leaves_nothing(tmp_path):
    src = tmp_path / "in.npz"
    nio.save_weights({"w": np.zeros(8 << 20, np.float32)}, src)
    code = ("import signal; signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
            "import sys, nplstm.io as nio, time\n"
            "real = nio.save_weights\n"
            "def slow(sd, path):\n    print('writing', flush=True); time.sleep(30)\n"
            "nio.save_weights = slow\n"
            "from nplstm.cli import main\nsys.exit(main(['convert', sys.argv[1], sys.argv[2]]))\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(src), str(tmp_path / "o.npz")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGTERM)
    err = finish(child)
    assert child.returncode == 130 and "Traceback" not in err
    assert err.strip() == f"nplstm convert: interrupted; {tmp_path / 'o.npz'} left as it was"
    assert sorted(os.listdir(tmp_path)) == ["in.npz"]
