"""Every hostile input of the reader review (issue 11), as a regression test.

Each is refused with a short WeightsFormatError (or loaded as arrays) in well under a
second of CPU time (process time, so a busy machine does not fail the test) and under
~100 MB (tracemalloc, NumPy buffers included), without a warning, and leaves later
loads unchanged.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from pt_assembler import call, glob, state, storage, tensor, value, write_pt

import nplstm.io as nio

BUDGET_S = 1.0
BUDGET_BYTES = 100 << 20


def refused(path, match: str, kind=nio.WeightsFormatError):
    """Load ``path``; it must raise ``kind`` matching ``match``, quickly and cheaply.

    Time and memory are measured in two loads: tracemalloc slows pure-Python code
    several-fold, and the CPU time is this thread's (``thread_time``), so threads
    left running by other tests in the process are not charged to the reader.
    """
    start = time.thread_time()
    with pytest.raises(kind, match=match):
        nio.load_weights(path)
    seconds = time.thread_time() - start
    tracemalloc.start()
    try:
        with pytest.raises(kind, match=match) as info:
            nio.load_weights(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < BUDGET_S, f"took {seconds:.2f} s of CPU"
    assert peak < BUDGET_BYTES, f"peak {peak / 2**20:.0f} MiB"
    assert len(str(info.value)) < 600 + len(str(path)), "the message quotes too much"
    return info.value


def good_file(tmp_path):
    """A small valid checkpoint with a device value, read after each hostile file."""
    pkl = state(w=tensor(), dev=call(glob("torch", "device"), "cpu"))
    return write_pt(tmp_path / "good.pt", pkl)


def assert_later_loads_unchanged(tmp_path):
    obj = nio.load_checkpoint(good_file(tmp_path))
    assert obj["dev"] == "cpu" and obj["w"].tolist() == [0, 1, 2, 3]
    assert type(obj) is dict and list(obj) == ["w", "dev"]


DEEP_TUPLE_KEY = b"\x80\x02}N" + b"\x85" * 1_000_000 + b"K\x01s."
DEEP_FROZENSET_KEY = b"\x80\x04}" + b"(" * 100_000 + b"N" + b"\x91" * 100_000 + b"K\x01s."
DEEP_LIST = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."

PICKLES = {
    "tuple nested 1e6 deep as a dict key": (DEEP_TUPLE_KEY, "nested more than 100 deep"),
    "frozenset nested 1e5 deep as a key": (DEEP_FROZENSET_KEY, "more than 216 open MARKs"),
    "LONG_BINPUT memo index 2**27": (b"\x80\x02Nr\x00\x00\x00\x08.",
                                     "memo index 134217728 skips ahead"),
    "list nested 1e5 deep": (DEEP_LIST, "nested more than 100 deep"),
    "deep top-level key": (b"\x80\x02}" + value("k") + b"]" * 5000 + b"a" * 4999 + b"s.",
                           "nested more than 100 deep"),
    "5000-digit int key": (b"\x80\x02}" + b"\x8b" + (2077).to_bytes(4, "little")
                           + b"\x01" * 2077 + b"K\x01s.", "an integer of 2077 bytes"),
    "tuple of 2**10 nodes as a key": (
        b"\x80\x02}N" + b"2\x86" * 10 + b"K\x01s.", "more than 64 nodes"),
    "lists doubling 100 times (2**100 values as a tree)": (
        b"\x80\x02K\x01" + b"2\x86" * 100 + b".", "more than 10000000 values"),
    "stride of 2**62": (state(w=tensor(size=(1,), stride=(2**62,))),
                        "_rebuild_tensor_v2: bad arguments"),
    "complex of a 1000-byte int": (state(c=call(glob("builtins", "complex"), 2**8000, 0)),
                                   "complex: bad arguments"),
    "device index of a 1000-byte int": (state(d=call(glob("torch", "device"), "cuda", 2**8000)),
                                        "torch.device: bad arguments"),
    "list as a dict key": (b"\x80\x02}]K\x01s.", "of type list .* cannot be hashed"),
    "list appended to itself": (b"\x80\x02]2a.", "inside itself"),
    "list changed after it was placed": (b"\x80\x02]q\x00]h\x00a" + b"h\x00K\x01a0.",
                                         "already inside another container"),
    "string longer than the pickle": (b"\x80\x02X\xff\xff\xff\x7f.", "pickle ends inside"),
    "huge GLOBAL text": (b"\x80\x02c" + b"os" * 50_000 + b"\nsystem\n)R.",
                         "unterminated text argument"),
    "huge module name via STACK_GLOBAL": (
        b"\x80\x04" + value("x" * 200_000) + value("system") + b"\x93)R.",
        "refusing to load global 'xxxx"),
    "set of 1000 colliding tuple keys": (
        b"\x80\x02\x8f(" + b"".join(value((i, -1)) for i in range(1000)) + b"\x90.",
        "more than 512 dict keys or set members"),
}


@pytest.mark.parametrize("name", list(PICKLES))
def test_hostile_pickles_are_refused(tmp_path, name):
    pkl, match = PICKLES[name]
    kind = nio.UnsafeWeightsError if "global" in name else nio.WeightsFormatError
    refused(write_pt(tmp_path / "evil.pt", pkl), match, kind)
    assert_later_loads_unchanged(tmp_path)


def test_deep_tuple_key_cannot_crash_the_process(tmp_path):
    # Under CPython's unpickler this file crashed the process (SIGSEGV while hashing).
    path = write_pt(tmp_path / "evil.pt", DEEP_TUPLE_KEY)
    code = ("import sys, nplstm.io as nio\n"
            "try:\n    nio.load_weights(sys.argv[1])\n"
            "except nio.WeightsFormatError as e:\n    print('refused:', e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], check=False,
                          capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "refused:" in done.stdout, done.stderr[-2000:]


def test_build_cannot_shadow_an_ordered_dicts_items(tmp_path):
    # BUILD on an OrderedDict used to set instance attributes ('items', 'keys') that
    # find_state_dict then called; the state is now dropped and a plain dict returned.
    shadow = value({"items": "not an array", "keys": "x", "w": "not an array"})
    od = call(glob("collections", "OrderedDict")) + b"(" + value("w") + tensor() + b"u"
    path = write_pt(tmp_path / "od.pt", b"\x80\x02" + od + shadow + b"b.")
    got = nio.load_weights(path)
    assert type(got) is dict and list(got) == ["w"] and got["w"].tolist() == [0, 1, 2, 3]


def test_build_on_a_global_is_refused_and_changes_nothing(tmp_path):
    # BUILD setting __defaults__ on the torch.device stand-in made every later file read
    # torch.device('cpu') as 'cpu:7', even though this file was refused.
    attack = glob("torch", "device") + value({"__defaults__": (7,)}) + b"b0"
    pkl = b"\x80\x02" + attack + state(w=tensor())[2:]
    refused(write_pt(tmp_path / "evil.pt", pkl), "BUILD on a Global")
    assert_later_loads_unchanged(tmp_path)


def test_unknown_ordered_dict_state_is_refused(tmp_path):
    od = call(glob("collections", "OrderedDict"))
    refused(write_pt(tmp_path / "od.pt", b"\x80\x02" + od + value([1]) + b"b."),
            "OrderedDict state must be a dict of attributes")


# ---- safetensors ----------------------------------------------------------------------


def safetensors_file(path, header: bytes, data: bytes = b""):
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


SAFETENSORS = {
    "JSON nested 1e5 deep": (b'{"w":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                             "not valid JSON"),
    "dtype is a list": (b'{"w":{"dtype":["F32"],"shape":[1],"data_offsets":[0,4]}}',
                        r"dtype a list of 1 items is not supported"),
    "shape [0, 2**63]": ((b'{"w":{"dtype":"F32","shape":[0,9223372036854775808],'
                         b'"data_offsets":[0,0]}}'), "ints >= 0"),
    "shape [0, 2**62]": ((b'{"w":{"dtype":"F32","shape":[0,4611686018427387904],'
                         b'"data_offsets":[0,0]}}'), "too large for any array"),
    "huge name": (b'{"' + b"n" * 500_000 + b'":{"dtype":"F32","shape":[2],'
                  b'"data_offsets":[0,4]}}', r"tensor 'nnnn.*\(500000 long\)"),
    "metadata not strings": (b'{"__metadata__":{"a":[1]}}', "__metadata__ must map"),
}


@pytest.mark.parametrize("name", list(SAFETENSORS))
def test_hostile_safetensors_are_refused(tmp_path, name):
    header, match = SAFETENSORS[name]
    refused(safetensors_file(tmp_path / "evil.safetensors", header, bytes(4)), match)
    assert_later_loads_unchanged(tmp_path)


# ---- npz ------------------------------------------------------------------------------


def npz_with_header(path, header: bytes, data: bytes = bytes(16)):
    blob = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("w.npy", blob)
    return path


NPY_HEADERS = {
    "tokenizer error": (b"{'descr': '<f4', 'shape': (4,), 'fortran_order': False, '''}",
                        "bad .npy header"),
    "syntax error": (b"{'descr': '<f4', 'shape': (4,) (, 'fortran_order': False}",
                     "bad .npy header"),
    "type error": (b"{'descr': '<f4', 'shape': {}, 'fortran_order': False}",
                   "bad .npy header"),
    "Python 2 long (4L,)": (b"{'descr': '<f4', 'fortran_order': False, 'shape': (4L,), }",
                            "bad .npy header"),
    "structured dtype": ((b"{'descr': [('a', '<f4')], 'fortran_order': False, "
                         b"'shape': (4,), }"), "bad .npy header"),
    "huge shape": ((b"{'descr': '<f4', 'fortran_order': False, "
                   b"'shape': (0, 9999999999999999999), }"), "ints >= 0"),
    "field twice": ((b"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                    b"'shape': (4,), }"), "bad .npy header"),
}


@pytest.mark.parametrize("name", list(NPY_HEADERS))
def test_hostile_npy_headers_are_refused(tmp_path, name):
    header, match = NPY_HEADERS[name]
    refused(npz_with_header(tmp_path / "evil.npz", header), match)
    assert_later_loads_unchanged(tmp_path)


def test_npy_header_parser_reads_what_numpy_writes(tmp_path):
    arrays = {"a": np.arange(6, dtype=">i2").reshape(2, 3), "b": np.ones((3, 2), "<c16").T,
              "c": np.array(True), "d": np.zeros((0, 4), "u8"),
              "e": np.asfortranarray(np.arange(12.0).reshape(3, 4))}
    path = tmp_path / "n.npz"
    np.savez(path, **arrays)
    got = nio.load_weights(path)
    for key, array in arrays.items():
        assert got[key].dtype == array.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got[key], array)


def patched_sizes(path, size: int):
    """Rewrite every entry's declared sizes (local and central headers) to ``size``."""
    blob = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
        at = 0
        while (at := blob.find(signature, at)) >= 0:
            blob[at + offset: at + offset + 8] = size.to_bytes(4, "little") * 2
            at += 4
    path.write_bytes(bytes(blob))
    return path


def test_stored_entry_whose_declared_size_lies(tmp_path):
    # Declared 4 GB stored in a tiny file: zipfile would try to read (allocate) it all.
    path = tmp_path / "lie.npz"
    nio.save_weights({"w": np.ones(2)}, path)
    refused(patched_sizes(path, 0xFFFFFFF0), "claims 4294967280 bytes stored in a file of")
    assert_later_loads_unchanged(tmp_path)


def test_deflated_npz_is_bounded_by_the_file_size(tmp_path):
    # 160 MiB of zeros deflates to ~160 KB: more than 64x the file plus 64 MiB.
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("w.npy", "w", force_zip64=True) as entry:
        entry.write(b"\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, "
                    b"'shape': (167772160,), }".ljust(118, b" ") + b"\n")
        for _ in range(160):
            entry.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    refused(path, "refusing a likely zip bomb")


def test_deflated_npz_within_the_budget_loads(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez_compressed(path, w=np.zeros((1000, 1000), np.float32), b=np.arange(5))
    got = nio.load_weights(path)
    assert got["w"].shape == (1000, 1000) and got["b"].tolist() == list(range(5))


# ---- the CLI --------------------------------------------------------------------------


def test_cli_never_prints_a_traceback_for_a_hostile_file(tmp_path):
    from nplstm.cli import main

    for pkl, _ in list(PICKLES.values())[:6]:
        path = write_pt(tmp_path / "evil.pt", pkl)
        err = io.StringIO()
        from contextlib import redirect_stderr

        with redirect_stderr(err):
            status = main(["convert", str(path), "--list"])
        assert status == 2 and "Traceback" not in err.getvalue()
        assert err.getvalue().startswith("nplstm convert: error: ")


def test_storage_outside_a_tensor_is_refused(tmp_path):
    refused(write_pt(tmp_path / "s.pt", state(s=storage())), "a storage outside a tensor")


def test_zip_with_too_many_entries_is_refused_before_zipfile_reads_them(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(3):
            zf.writestr(f"{i}.npy", b"")
    blob = bytearray(path.read_bytes())
    end = blob.rfind(b"PK\x05\x06")
    blob[end + 8:end + 12] = (60_000).to_bytes(2, "little") * 2  # entries claimed
    blob[end + 12:end + 16] = (50 << 20).to_bytes(4, "little")  # directory bytes
    path.write_bytes(bytes(blob))
    refused(path, "claims 60000 entries in a 52428800-byte directory")


def legacy_file(path, obj_pickle: bytes, keys=("root",), storages=None):
    """A legacy torch.save file: magic, protocol, sys_info, object, keys, storages."""
    import pickle

    storages = (np.zeros(0, "<f4"),) if storages is None else storages
    info = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, info))
    body = b"".join(a.size.to_bytes(8, "little") + a.tobytes() for a in storages)
    path.write_bytes(head + obj_pickle + pickle.dumps(list(keys), protocol=2) + body)
    return path


def test_hostile_legacy_object_pickle_is_refused(tmp_path):
    refused(legacy_file(tmp_path / "old.pt", b"\x80\x02Nr\x00\x00\x00\x08."),
            r"\[legacy \(pre-1.6\) torch.save\]: memo index 134217728 skips ahead")
    assert_later_loads_unchanged(tmp_path)


def test_legacy_storage_views_are_read_as_runs_of_their_storage(tmp_path):
    # Old torch wrote storage views as ('storage', type, root, loc, numel, (key, offset,
    # size)); offsets and sizes count elements (torch/serialization.py _legacy_load).
    view = (b"(" + value("storage") + glob("torch", "FloatStorage") + value("root")
            + value("cpu") + value(6) + value(("v", 2, 3)) + b"tQ")
    pkl = state(v=tensor(view, size=(3,)), w=tensor(view, offset=1, size=(2,)))
    data = np.arange(6, dtype="<f4")
    path = legacy_file(tmp_path / "views.pt", pkl, storages=(data,))
    got = nio.load_weights(path)
    assert got["v"].tolist() == [2, 3, 4] and got["w"].tolist() == [3, 4]
    bad = (b"(" + value("storage") + glob("torch", "FloatStorage") + value("root")
           + value("cpu") + value(6) + value(("v", 5, 3)) + b"tQ")
    path = legacy_file(tmp_path / "bad.pt", state(v=tensor(bad, size=(3,))),
                       storages=(data,))
    refused(path, "storage view 'v' reaches past its storage 'root'")
