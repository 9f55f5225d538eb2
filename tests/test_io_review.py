"""Second hostile-file review of the weights reader (issue 11): what it found, as tests.

A FIFO as the path hung the process (opening it waits for a writer); a storage key
given two dtypes was silently read with the first one; errors raised inside a tensor
rebuild did not name the file; a NumPy array inside a torch.save file got a hint
that did not apply to it; an .npz entry cost 2.5 times its size at peak.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from pt_assembler import call, glob, state, storage, tensor, value, write_pt
from test_io_hostile import assert_later_loads_unchanged, refused

import nplstm.io as nio

_LOAD = ("import sys, nplstm.io as nio\n"
         "try:\n    nio.load_weights(sys.argv[1])\n"
         "except nio.WeightsFormatError as e:\n    print('refused:', e)\n")


def _load_in_subprocess(path) -> str:
    """Load ``path`` in a child process that must finish within 60 s (no hang)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True,
                         text=True, timeout=60, env=env, check=True)
    return out.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this OS")
@pytest.mark.parametrize("name", ["pipe", "pipe.pt", "pipe.safetensors", "pipe.npz"])
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, name):
    path = tmp_path / name
    os.mkfifo(path)
    assert "a FIFO (named pipe), not a regular file" in _load_in_subprocess(path)


def test_a_symlink_to_a_fifo_is_refused_too(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this OS")
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "pipe", tmp_path / "link.pt")
    assert "a FIFO (named pipe)" in _load_in_subprocess(tmp_path / "link.pt")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_a_character_device_is_refused(device):
    with pytest.raises(nio.WeightsFormatError, match="a character device, not a regular"):
        nio.load_weights(device)


def test_a_directory_is_an_os_error(tmp_path):
    with pytest.raises(IsADirectoryError if os.name != "nt" else OSError):
        nio.load_weights(tmp_path)


def test_cli_refuses_a_fifo_without_a_traceback(tmp_path, capsys):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this OS")
    from nplstm.cli import main

    os.mkfifo(tmp_path / "pipe.pt")
    assert main(["convert", str(tmp_path / "pipe.pt"), "--list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nplstm convert: error: ") and "FIFO" in err


def _double(key="0"):
    return tensor(storage(key=key, kind="DoubleStorage", numel=2), size=(2,))


@pytest.mark.parametrize("order", ["float first", "double first"])
def test_one_storage_given_two_dtypes_is_refused(tmp_path, order):
    # torch.save refuses to write tensors viewing one storage as two types; a file
    # that does so was read with whichever dtype came first, sizes unchecked.
    pair = ({"a": tensor(), "b": _double()} if order == "float first"
            else {"b": _double(), "a": tensor()})
    first, second = ("float32", "float64") if order == "float first" else ("float64",
                                                                             "float32")
    refused(write_pt(tmp_path / "two.pt", state(**pair)),
            f"storage '0' is given two dtypes, {first} and {second}")
    assert_later_loads_unchanged(tmp_path)


def test_one_storage_shared_by_tensors_of_one_dtype_still_loads(tmp_path):
    path = write_pt(tmp_path / "shared.pt", state(a=tensor(), b=tensor(offset=2, size=(2,))))
    sd = nio.load_weights(path)
    assert sd["a"].tolist() == [0, 1, 2, 3] and sd["b"].tolist() == [2, 3]
    assert not (sd["a"].base is not None and sd["a"].base is sd["b"].base)


def test_errors_inside_a_tensor_rebuild_name_the_file(tmp_path):
    path = write_pt(tmp_path / "offset.pt", state(w=tensor(offset=-1)))
    error = refused(path, "storage offset must be an int >= 0")
    assert str(error).startswith(f"{path}: tensor in storage data/0")
    param = call(glob("torch._utils", "_rebuild_parameter"), 1, False,
                 call(glob("collections", "OrderedDict")))
    error = refused(write_pt(tmp_path / "param.pt", state(w=param)), "expected a tensor")
    assert str(error).startswith(str(tmp_path / "param.pt") + ": parameter")


def test_a_numpy_array_inside_a_torch_file_gets_a_numpy_hint(tmp_path):
    # What torch.save writes for {"w": np.arange(4.0)}: numpy's _reconstruct global.
    pkl = b"\x80\x02}" + value("w") + glob("numpy._core.multiarray", "_reconstruct") \
        + b")R" + b"s."
    error = refused(write_pt(tmp_path / "np.pt", pkl),
                    "refusing to load global 'numpy._core.multiarray._reconstruct'",
                    nio.UnsafeWeightsError)
    assert "torch.from_numpy" in str(error) and ".npz" in str(error)


def test_cli_says_a_directory_is_a_directory(tmp_path, capsys):
    from nplstm.cli import main

    assert main(["convert", str(tmp_path), "--list"]) == 2
    assert "is a directory, not a weight file" in capsys.readouterr().err


def _peak_bytes_loading(path) -> int:
    tracemalloc.start()
    try:
        nio.load_weights(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_entries_cost_their_size_once(tmp_path, save):
    # Each entry was read whole as bytes, then copied: 2.5x its size at peak (a 50 KB
    # deflated file took 125 MB). It is now inflated straight into the array.
    path = tmp_path / "z.npz"
    save(path, w=np.zeros(20 << 20, dtype=np.uint8), v=np.arange(6.0).reshape(2, 3).T)
    assert _peak_bytes_loading(path) < 1.2 * (20 << 20)
    sd = nio.load_weights(path)
    assert sd["v"].tolist() == np.arange(6.0).reshape(2, 3).T.tolist()
    assert all(a.flags.c_contiguous and a.flags.writeable for a in sd.values())


def test_npz_with_a_corrupt_deflate_stream_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez_compressed(path, w=np.random.default_rng(0).random(5000))
    raw = bytearray(path.read_bytes())
    raw[20_000:20_060] = bytes(60)  # inside the deflated data of the only entry
    path.write_bytes(bytes(raw))
    refused(path, "cannot read zip entry 'w.npy'")


def _legacy_state(path, n: int):
    """A legacy file of ``n`` tensors ``k<i>`` = [i, i+1], one storage each."""
    from test_io_hostile import legacy_file

    def lstorage(key):
        return (b"(" + value("storage") + glob("torch", "FloatStorage") + value(key)
                + value("cpu") + value(2) + b"NtQ")

    pkl = state(**{f"k{i}": tensor(lstorage(str(i)), size=(2,)) for i in range(n)})
    arrays = [np.arange(i, i + 2, dtype="<f4") for i in range(n)]
    return legacy_file(path, pkl, keys=[str(i) for i in range(n)], storages=arrays)


def test_legacy_pickles_longer_than_the_first_read_load(tmp_path, monkeypatch):
    from nplstm.io import torch_legacy

    monkeypatch.setattr(torch_legacy, "_FIRST_READ", 64)  # the pickles are ~3 KB
    sd = nio.load_weights(_legacy_state(tmp_path / "old.pt", 30))
    assert [sd[f"k{i}"].tolist() for i in range(30)] == [[i, i + 1] for i in range(30)]


_TRUNCATE_WHILE_READING = """
import sys, os, nplstm.io as nio
from nplstm.io import torch_legacy
check = torch_legacy._check_header
def truncating(data, source):  # the file shrinks after it was opened
    os.truncate(sys.argv[1], 4096)  # its pickles run on past this page
    return check(data, source)
torch_legacy._check_header = truncating
try:
    nio.load_weights(sys.argv[1])
except nio.WeightsFormatError as e:
    print('refused:', e)
"""


def test_a_legacy_file_truncated_while_read_is_refused_not_a_crash(tmp_path):
    # The legacy reader memory-mapped the file: touching its pages after the file
    # shrank killed the process with SIGBUS.
    path = _legacy_state(tmp_path / "old.pt", 400)  # pickles span several pages
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _TRUNCATE_WHILE_READING, str(path)],
                         capture_output=True, text=True, timeout=60, env=env,
                         check=False)
    assert out.returncode == 0, out.stderr[-500:]
    assert "refused:" in out.stdout and "ends" in out.stdout


def test_a_lone_surrogate_in_a_pickled_key_is_refused(tmp_path):
    # It loaded, then broke `convert --list` and .npz writing, and went into a
    # .safetensors header that strict JSON readers reject.
    pkl = b"\x80\x02}(" + b"X\x03\x00\x00\x00\xed\xa0\x80" + tensor() + b"u."
    refused(write_pt(tmp_path / "s.pt", pkl), "is not UTF-8")


def test_a_lone_surrogate_in_a_safetensors_key_is_refused(tmp_path):
    header = b'{"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path = tmp_path / "s.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    refused(path, "header is not valid JSON.*surrogate")


def test_npz_whose_entries_point_before_the_file_is_refused(tmp_path):
    # Found by the fuzz test once entries were streamed: zipfile seeks to a negative
    # offset and raises a bare OSError (EINVAL).
    path = tmp_path / "half.npz"
    np.savez(path, a=np.arange(50.0), b=np.arange(50.0))
    raw = path.read_bytes()
    path.write_bytes(raw[len(raw) // 2:])
    refused(path, "cannot read zip entry|bad local header|cannot read the")
