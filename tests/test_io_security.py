"""Hostile and malformed .pt files: every one refused with a clear error, nothing run.

Payloads are hand-assembled pickles inside hand-made torch.save-style zips, so these
tests need no torch. Each code-running payload is first shown to work with a plain
``pickle.loads`` (the marker file appears), then shown to be refused by nplstm (it
does not).
"""

from __future__ import annotations

import copyreg
import io
import pickle
import re
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from pt_assembler import call, glob, state, storage, tensor, value, write_pt

import nplstm.io as nio
from nplstm.io import checkpoint
from nplstm.io._common import check_zip_archive, check_zip_entry


def test_assembler_builds_what_nplstm_reads(tmp_path):
    path = write_pt(tmp_path / "ok.pt", state(w=tensor()))
    np.testing.assert_array_equal(nio.load_weights(path)["w"], [0, 1, 2, 3])


# ---- code-running payloads ------------------------------------------------------------


def python_cmd(marker) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def shell_cmd(marker) -> str:
    return f'"{sys.executable}" -c "{python_cmd(marker)}"'


class Reduce:
    """Pickles as ``func(*args)``: how real exploit pickles are made."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker):
    """name -> (data.pkl bytes, the global nplstm must name)."""
    import builtins
    import os

    ext_code = 0x7F0D  # registered by the ext_os_system fixture
    return {
        "GLOBAL os.system": (b"\x80\x02" + call(glob("os", "system"), shell_cmd(marker))
                             + b".", "os.system"),
        "posix.system": (pickle.dumps(Reduce(os.system, shell_cmd(marker)), protocol=2),
                         "posix.system"),
        "eval": (pickle.dumps(Reduce(builtins.eval, python_cmd(marker)), protocol=2),
                 "'__builtin__.eval' (builtins.eval)"),
        "exec STACK_GLOBAL": (pickle.dumps(Reduce(builtins.exec, python_cmd(marker)),
                                           protocol=4), "builtins.exec"),
        "subprocess.Popen": (pickle.dumps(Reduce(subprocess.Popen, [sys.executable, "-c",
                                          python_cmd(marker)]), protocol=2),
                             "'commands.Popen' (subprocess.Popen)"),
        "subprocess.check_call": (pickle.dumps(Reduce(subprocess.check_call, [
            sys.executable, "-c", python_cmd(marker)]), protocol=3), "subprocess.check_call"),
        "INST": (b"(" + value(shell_cmd(marker)) + b"ios\nsystem\n.", "os.system"),
        "OBJ": (b"\x80\x02(" + glob("os", "system") + value(shell_cmd(marker)) + b"o.",
                "os.system"),
        "EXT2": (b"\x80\x02\x83" + ext_code.to_bytes(2, "little") + b"("
                 + value(shell_cmd(marker)) + b"tR.", "extension code"),
        "inside a state_dict": (state(w=tensor(), x=call(glob("os", "system"),
                                                         shell_cmd(marker))), "os.system"),
    }


@pytest.fixture
def ext_os_system():
    """copyreg extension 0x7F0D -> os.system, as an attacker's target process might have."""
    copyreg.add_extension("os", "system", 0x7F0D)
    yield
    copyreg.remove_extension("os", "system", 0x7F0D)


NAMES = list(payloads("m"))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "inside a state_dict"])
def test_payload_runs_under_plain_pickle(tmp_path, name, ext_os_system):
    """Control: each payload really runs code when unpickled naively."""
    marker = tmp_path / "pwned"
    data, _ = payloads(marker)[name]
    result = pickle.loads(data)
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert marker.exists()


@pytest.mark.parametrize("name", NAMES)
def test_payload_is_refused_and_nothing_runs(tmp_path, name, ext_os_system):
    marker = tmp_path / "pwned"
    data, refused = payloads(marker)[name]
    path = write_pt(tmp_path / "evil.pt", data)
    with pytest.raises(nio.UnsafeWeightsError, match=re.escape(refused)) as err:
        nio.load_weights(path)
    assert isinstance(err.value, ValueError) and str(path) in str(err.value)
    assert not marker.exists()


def test_extension_cache_cannot_bypass_the_allowlist(tmp_path, ext_os_system):
    """Once any unpickle resolved an EXT code, CPython serves it from a cache without
    calling find_class; nplstm refuses EXT opcodes before unpickling."""
    marker = tmp_path / "pwned"
    data, _ = payloads(marker)["EXT2"]
    pickle.loads(b"\x80\x02\x83\x0d\x7f.")  # resolves 0x7F0D -> os.system into the cache
    assert not marker.exists()
    with pytest.raises(nio.UnsafeWeightsError, match="extension code 32525"):
        nio.load_weights(write_pt(tmp_path / "evil.pt", data))
    assert not marker.exists()


def test_unknown_global_in_storage_position(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor(storage(kind="EvilStorage"))))
    with pytest.raises(nio.UnsafeWeightsError, match=r"torch\.EvilStorage"):
        nio.load_weights(path)


# ---- allowed globals called with the wrong arguments ---------------------------------

REBUILD = glob("torch._utils", "_rebuild_tensor_v2")
V3 = glob("torch._utils", "_rebuild_tensor_v3")
PARAM = glob("torch._utils", "_rebuild_parameter")
HOOKS = call(glob("collections", "OrderedDict"))

BAD_CALLS = {
    "storage is a string": (call(REBUILD, "storage", 0, (4,), (1,), False, HOOKS),
                            "expected a storage"),
    "size is a string": (tensor(size="abcd"), "shape must be a list"),
    "BUILD on a tensor": (tensor() + value((1, (4,))) + b"b", "BUILD on a ndarray"),
    "size holds a float": (tensor(size=(4.0,)), "ints >= 0"),
    "stride length": (tensor(size=(2, 2), stride=(1,)), "differ in length"),
    "negative stride": (tensor(size=(2,), stride=(-1,)), "ints >= 0"),
    "negative offset": (tensor(offset=-1), "offset must be an int >= 0"),
    "offset is a string": (tensor(offset="0"), "offset must be an int >= 0"),
    "bool offset": (tensor(offset=True), "offset must be an int >= 0"),
    "requires_grad not bool": (tensor(grad=1), "requires_grad must be a bool"),
    "hooks not a dict": (tensor(hooks=value([])), "backward_hooks must be a dict"),
    "too few arguments": (call(REBUILD, storage(), 0), "_rebuild_tensor_v2: bad arguments"),
    "too many dimensions": (tensor(size=(1,) * 65, stride=(1,) * 65), "at most 64"),
    "parameter of a string": (call(PARAM, "x", False, HOOKS), "expected a tensor"),
    "v3 dtype not a dtype": (call(V3, storage(kind="UntypedStorage", numel=16), 0, (4,),
                                  (1,), False, HOOKS, "float32"), "expected a torch dtype"),
    "v3 bytes not whole elements": (call(V3, storage("1", "UntypedStorage", numel=3), 0,
                                         (1,), (1,), False, HOOKS, glob("torch", "float32")),
                                    "not a whole number"),
    "persistent id not storage": (b"(" + value("module") + value("x") + b"tQ",
                                  "unsupported persistent id"),
    "storage key not a string": (tensor(storage(key=0)), "malformed storage id"),
    "storage type not a type": (tensor(b"(" + value("storage") + value("FloatStorage")
                                       + value("0") + value("cpu") + value(4) + b"tQ"),
                                "malformed storage id"),
    "negative numel": (tensor(storage(numel=-1)), "malformed storage id"),
    "device bad": (call(glob("torch", "device"), 0), "torch.device"),
    "codecs not latin1": (call(glob("_codecs", "encode"), "x", "rot13"), "_codecs.encode"),
    "calling a dtype": (call(glob("torch", "float32"), 1), "torch.float32 is not callable"),
    "BUILD on a storage": (storage() + value({"data": 1}) + b"b", "BUILD on a _StorageRef"),
    "BUILD slots on a storage": (storage() + value((None, {"data": 1})) + b"b",
                                 "BUILD on a _StorageRef"),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_wrong_arguments_are_refused(tmp_path, name):
    bad, message = BAD_CALLS[name]
    storages = {"0": np.zeros(4, "<f4").tobytes(), "1": b"abc"}
    path = write_pt(tmp_path / "bad.pt", state(w=bad), storages)
    with pytest.raises(nio.WeightsFormatError, match=message):
        nio.load_checkpoint(path)


def test_allowed_plain_values_load(tmp_path):
    pkl = state(w=tensor(), dev=call(glob("torch", "device"), "cuda", 1),
                raw=call(glob("_codecs", "encode"), "\xff\x00", "latin1"),
                s=call(glob("__builtin__", "set"), [1, 2]),
                f=call(glob("builtins", "frozenset"), [3]),
                u16=call(V3, storage("1", "UntypedStorage", numel=4), 0, (2,), (1,), False,
                         HOOKS, glob("torch", "uint16")),
                p=call(PARAM, tensor(), True, HOOKS))
    obj = nio.load_checkpoint(write_pt(tmp_path / "ok.pt", pkl,
                                       {"0": np.arange(4, dtype="<f4").tobytes(),
                                        "1": np.array([7, 65535], "<u2").tobytes()}))
    assert obj["dev"] == "cuda:1" and obj["raw"] == b"\xff\x00"
    assert obj["s"] == {1, 2} and obj["f"] == frozenset({3})
    assert obj["u16"].dtype == np.uint16 and obj["u16"].tolist() == [7, 65535]
    np.testing.assert_array_equal(obj["p"], obj["w"])


# ---- malformed containers and storages -------------------------------------------------


def test_storage_shorter_than_the_pickle_says(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor()), {"0": b"\x00" * 12})
    with pytest.raises(nio.WeightsFormatError, match=r"data/0'? holds 12 bytes.*says 16"):
        nio.load_weights(path)


def test_tensor_reaching_past_its_storage(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor(size=(2, 3), stride=(3, 1))))
    with pytest.raises(nio.WeightsFormatError, match="reach element 5 but the storage holds 4"):
        nio.load_weights(path)


def test_absurd_shape_errors_before_allocating(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor(size=(10**12,))))
    tracemalloc.start()
    try:
        with pytest.raises(nio.WeightsFormatError, match="storage holds 4"):
            nio.load_weights(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_huge_expanded_view_is_refused(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor(size=(10**6, 10**6), stride=(0, 0))))
    with pytest.raises(nio.WeightsFormatError, match="expanded view"):
        nio.load_weights(path)


def peak_bytes(func):
    """Run ``func()``; return the peak memory tracemalloc saw (NumPy buffers included)."""
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_expanded_views_share_one_budget_per_file(tmp_path):
    # Four stride-0 views of one float, 20 MiB each: every one alone is allowed, but
    # together they exceed the file's copy allowance (32 MiB beyond 8x its size).
    n = 5 << 20
    views = {f"w{i}": tensor(size=(n,), stride=(0,)) for i in range(4)}
    path = write_pt(tmp_path / "s.pt", state(**views), {"0": bytes(16)})
    assert path.stat().st_size < 2000

    def load():
        with pytest.raises(nio.WeightsFormatError, match="expanded view") as info:
            nio.load_weights(path)
        assert "-byte file (at most 33" in str(info.value)

    assert peak_bytes(load) < 28 << 20  # the first view (20 MiB) at most


def test_one_storage_referenced_many_times_is_budgeted(tmp_path):
    # 100 overlapping views of a 1 MiB storage (offset 1: never the whole storage, so
    # each is a copy) would copy 100 MiB out of a 1 MiB file.
    n = 1 << 18
    stor = storage(numel=n)
    views = {f"w{i}": tensor(stor, offset=1, size=(n - 1,)) for i in range(100)}
    path = write_pt(tmp_path / "s.pt", state(**views), {"0": bytes(4 * n)})
    with pytest.raises(nio.WeightsFormatError, match="referenced many times"):
        nio.load_weights(path)


def test_a_few_shared_views_load(tmp_path):
    # Tied weights and slices of one buffer stay well inside the budget.
    stor = storage(numel=4)
    pkl = state(a=tensor(stor), b=tensor(stor), c=tensor(stor, offset=2, size=(2,)))
    got = nio.load_weights(write_pt(tmp_path / "s.pt", pkl))
    assert [v.tolist() for v in got.values()] == [[0, 1, 2, 3], [0, 1, 2, 3], [2, 3]]


def memo_bomb(width: int, tensors: bool = False) -> bytes:
    """A pickle of 5 nested dict levels, each dict one object shared by ``width`` keys.

    The pickle's memo makes each extra reference cost a few bytes, so the file is tiny
    while a naive walk of the tree visits ``width ** 4`` dicts.
    """
    node = {f"k{i}": (np.zeros(1) if tensors else i) for i in range(width)}
    for _ in range(4):
        node = {f"k{i}": node for i in range(width)}
    return pickle.dumps(node, protocol=2)


def test_shared_dicts_are_searched_once(tmp_path):
    # width 40: about 7 s before each dict was searched once; width 100 took minutes.
    # Now the interpreter refuses it first: 40 levels of 40 shared dicts unfold into
    # far more than 10 million values as a tree.
    path = write_pt(tmp_path / "memo.pt", memo_bomb(40), storages={})
    assert path.stat().st_size < 3000
    start = time.perf_counter()
    with pytest.raises(nio.WeightsFormatError, match="more than 10000000 values"):
        nio.load_weights(path)
    assert time.perf_counter() - start < 0.5


def test_one_state_dict_under_many_keys_is_not_ambiguous():
    sd = {"w": np.ones(2)}
    path, got = nio.find_state_dict({"a": sd, "b": {"c": sd}, "d": sd})
    assert path == "a" and list(got) == ["w"]


def test_a_dict_met_deep_first_is_still_searched_from_nearer_the_top():
    sd = {"w": np.ones(2)}
    shared = {"sd": sd}
    ckpt = {"deep": {"x": {"y": {"z": shared}}}, "near": shared}  # "deep/x/y/z/sd" is too deep
    assert nio.find_state_dict(ckpt)[0] == "near/sd"


def test_search_is_capped(monkeypatch):
    monkeypatch.setattr(checkpoint, "MAX_SEARCHED_ENTRIES", 100)
    ckpt = {f"k{i}": {"n": i} for i in range(200)}
    with pytest.raises(nio.WeightsFormatError, match="too large or too repetitive.*key="):
        nio.find_state_dict(ckpt)
    assert nio.find_state_dict({**ckpt, "model": {"w": np.ones(1)}}, key="model")[0] == "model"


def test_unsupported_dtype_is_named_not_called_unsafe(tmp_path):
    # What torch.save writes for a float8 tensor (or uint3, ... any dtype NumPy lacks).
    def v3(dtype):
        return call(glob("torch._utils", "_rebuild_tensor_v3"),
                    storage(kind="UntypedStorage", numel=4, module="torch.storage"), 0,
                    (4,), (1,), False, call(glob("collections", "OrderedDict")),
                    glob("torch", dtype))
    for dtype in ("float8_e4m3fn", "uint3", "float6_e3m2fn"):
        pkl = b"\x80\x02}(" + value("model") + state(ok=tensor(), bad=v3(dtype))[2:-1] + b"u."
        path = write_pt(tmp_path / f"{dtype}.pt", pkl)
        with pytest.raises(nio.WeightsFormatError) as info:
            nio.load_weights(path)
        assert not isinstance(info.value, nio.UnsafeWeightsError)
        assert (f"unsupported dtype {dtype} in key 'model/bad'; " in str(info.value)
                and ".float() before saving" in str(info.value))


def test_unsupported_dtype_as_a_plain_value_loads(tmp_path):
    path = write_pt(tmp_path / "d.pt", state(w=tensor(), d=glob("torch", "float8_e5m2")))
    assert nio.load_checkpoint(path)["d"] == "torch.float8_e5m2"


def test_legacy_quantized_storage_is_named(tmp_path):
    pkl = state(q=tensor(storage(kind="QInt8Storage")))
    with pytest.raises(nio.WeightsFormatError, match=r"dtype qint8 in key 'q'.*dequantize"):
        nio.load_weights(write_pt(tmp_path / "q.pt", pkl))


def test_non_dtype_torch_globals_stay_unsafe(tmp_path):
    for name in ("load", "float8_e4m3fn_evil()", "int"):
        with pytest.raises(nio.UnsafeWeightsError, match="refusing to load global"):
            nio.load_weights(write_pt(tmp_path / "g.pt", state(w=glob("torch", name))))


def with_duplicate(path, name: str, data: bytes):
    """Append a second entry called ``name`` (zipfile warns, then writes it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(name, data)
    return path


def test_duplicate_zip_entries_are_refused(tmp_path):
    path = write_pt(tmp_path / "dup.pt", state(w=tensor()))
    with_duplicate(path, "archive/data/0", np.arange(4, 8, dtype="<f4").tobytes())
    with pytest.raises(nio.WeightsFormatError, match="several entries named 'archive/data/0'"):
        nio.load_weights(path)


def test_duplicate_npz_entries_are_refused(tmp_path):
    path = tmp_path / "dup.npz"
    nio.save_weights({"w": np.ones(2)}, path)
    buf = io.BytesIO()
    np.save(buf, np.zeros(2))
    with_duplicate(path, "w.npy", buf.getvalue())
    with pytest.raises(nio.WeightsFormatError, match="several entries named 'w.npy'"):
        nio.load_weights(path)


class FakeZip:
    def __init__(self, *infos):
        self.infos = infos

    def infolist(self):
        return list(self.infos)


def deflated(name, file_size, compress_size):
    info = zipfile.ZipInfo(name)
    info.compress_type, info.file_size, info.compress_size = (zipfile.ZIP_DEFLATED,
                                                             file_size, compress_size)
    return info


def test_archive_inflating_too_much_in_total_is_refused():
    # Each entry is within deflate's possible ratio; together they claim 3 GB from 3 MB,
    # beyond 64x the file's size plus 64 MiB.
    infos = [deflated(f"w{i}.npy", 1000 * 10**6, 10**6) for i in range(3)]
    for info in infos:
        check_zip_entry(info, "bomb.npz", 3 * 10**6)
    with pytest.raises(nio.WeightsFormatError, match="claim 3000000000 bytes.*zip bomb"):
        check_zip_archive(FakeZip(*infos), "bomb.npz", 3 * 10**6)
    ok = deflated("w.npy", 200 * 10**6, 10**6)
    check_zip_archive(FakeZip(ok), "ok.npz", 3 * 10**6)  # within 64x + 64 MiB


def test_stored_entry_claiming_more_than_the_file_holds(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor(storage(numel=2**30 - 1))))
    blob = bytearray(path.read_bytes())
    central = blob.index(b"archive/data/0", blob.index(b"PK\x01\x02")) - 46
    assert blob[central: central + 4] == b"PK\x01\x02"
    blob[central + 24: central + 28] = struct.pack("<I", 4 * (2**30 - 1))  # its file_size
    path.write_bytes(bytes(blob))
    with pytest.raises(nio.WeightsFormatError, match="claims 4294967292 bytes stored in 16"):
        nio.load_weights(path)


def test_missing_storage_entry(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor()), skip=("data/0",))
    with pytest.raises(nio.WeightsFormatError, match=r"'archive/data/0' is missing"):
        nio.load_weights(path)


def test_missing_data_pkl(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor()), skip=("data.pkl",))
    with pytest.raises(nio.WeightsFormatError, match="without '<folder>/data.pkl'"):
        nio.load_weights(path)


def test_two_data_pkl_folders(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor()))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("other/data.pkl", state(w=tensor()))
    with pytest.raises(nio.WeightsFormatError, match="several data.pkl"):
        nio.load_weights(path)


def test_torchscript_layout_is_named(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor()))
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("archive/constants.pkl", b"")
    with pytest.raises(nio.WeightsFormatError, match="TorchScript"):
        nio.load_weights(path)


def test_bad_byteorder(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor()), byteorder=b"middle")
    with pytest.raises(nio.WeightsFormatError, match="byteorder entry says 'middle'"):
        nio.load_weights(path)


def test_missing_byteorder_means_little(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor()), skip=("byteorder",))
    assert nio.load_weights(path)["w"].tolist() == [0, 1, 2, 3]


def test_garbage_pickle(tmp_path):
    path = write_pt(tmp_path / "s.pt", b"\x80\x02}q\x00(garbage")
    with pytest.raises(nio.WeightsFormatError, match="not a valid torch.save pickle"):
        nio.load_weights(path)


def test_corrupt_storage_bytes_fail_the_crc(tmp_path):
    path = write_pt(tmp_path / "s.pt", state(w=tensor()))
    blob = bytearray(path.read_bytes())
    at = blob.index(np.arange(4, dtype="<f4").tobytes())
    blob[at + 5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(nio.WeightsFormatError, match="CRC"):
        nio.load_weights(path)


@pytest.mark.parametrize("cut", [10, 100, -30])
def test_truncated_file(tmp_path, cut):
    good = write_pt(tmp_path / "good.pt", state(w=tensor())).read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(good[:cut])
    with pytest.raises(nio.WeightsFormatError):
        nio.load_weights(path)


def test_random_bytes_with_pt_suffix(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(nio.WeightsFormatError, match="not a torch.save zip archive"):
        nio.load_weights(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(nio.WeightsFormatError, match="empty"):
        nio.load_weights(path)


def test_legacy_magic_without_torch(tmp_path):
    path = tmp_path / "old.pth"
    path.write_bytes(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.rest")
    with pytest.raises(nio.WeightsFormatError, match=r"legacy \(pre-1\.6\)"):
        nio.load_weights(path)


@pytest.mark.parametrize("suffix", [".pt", ".npz"])
@pytest.mark.parametrize("patch, message", [
    ((10, 8, b"\x63\x00"), "NotImplementedError|compressed \\(method 99\\)"),
    ((8, 6, b"\x01\x00"), "RuntimeError"),           # "encrypted" flag
])
def test_zip_features_we_cannot_read(tmp_path, suffix, patch, message):
    central, local, value_ = patch
    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        write_pt(path, state(w=tensor()))
    else:
        nio.save_weights({"w": np.ones(2)}, path)
    blob = path.read_bytes()
    for signature, offset in ((b"PK\x01\x02", central), (b"PK\x03\x04", local)):
        at = 0
        while (at := blob.find(signature, at)) >= 0:
            blob = blob[: at + offset] + value_ + blob[at + offset + 2:]
            at += 4
    path.write_bytes(blob)
    with pytest.raises(nio.WeightsFormatError, match=message):
        nio.load_weights(path)


def test_zip_bomb_entry_is_refused():
    info = zipfile.ZipInfo("archive/data/0")
    info.compress_type, info.file_size, info.compress_size = zipfile.ZIP_DEFLATED, 10**12, 100
    with pytest.raises(nio.WeightsFormatError, match="claims 1000000000000 bytes"):
        check_zip_entry(info, "bomb.npz", 10**6)


def test_compressed_pt_entries_are_refused_as_torch_load_refuses_them(tmp_path):
    path = tmp_path / "deflated.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", state(w=tensor()))
        zf.writestr("archive/data/0", np.arange(4, dtype="<f4").tobytes())
    with pytest.raises(nio.WeightsFormatError, match=r"'archive/data.pkl' is compressed "
                       r"\(method 8\); torch.save never compresses"):
        nio.load_weights(path)


# ---- fuzzing: damaged files fail cleanly ------------------------------------------------



def good_files(tmp_path_factory):
    """One valid file per reader, as bytes."""
    tmp = tmp_path_factory.mktemp("fuzz")
    pkl = state(w=tensor(), v=tensor(size=(2, 2), stride=(1, 2)),
                m=call(glob("collections", "OrderedDict")))
    sd = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.arange(3)}
    files = {".pt": write_pt(tmp / "w.pt", pkl)}
    for suffix in (".safetensors", ".npz"):
        nio.save_weights(sd, tmp / f"w{suffix}")
        files[suffix] = tmp / f"w{suffix}"
    return {suffix: path.read_bytes() for suffix, path in files.items()}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    return good_files(tmp_path_factory)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz"])
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=hs.lists(hs.tuples(hs.floats(0, 1, exclude_max=True), hs.integers(0, 255)),
                      min_size=1, max_size=4),
       cut=hs.one_of(hs.none(), hs.floats(0, 1)))
def test_damaged_files_load_or_raise_weights_format_error(tmp_path, originals, suffix,
                                                          edits, cut):
    blob = bytearray(originals[suffix])
    for where, byte in edits:
        blob[int(where * len(blob))] = byte
    if cut is not None:
        blob = blob[: int(cut * len(blob))]
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(bytes(blob))
    try:
        sd = nio.load_weights(path)
    except nio.WeightsFormatError:
        return
    assert all(isinstance(v, np.ndarray) for v in sd.values())
