""".safetensors and .npz reading and writing, atomic saves, finding a state_dict."""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import zipfile

import numpy as np
import pytest

import nplstm.io as nio
from nplstm.io import safetensors as st_module
from nplstm.io.checkpoint import find_state_dict

RNG = np.random.default_rng(0)

SAMPLE = {
    "lstm.weight_ih_l0": RNG.standard_normal((20, 3)).astype(np.float32),
    "lstm.bias_hh_l0": RNG.standard_normal(20).astype(np.float32),
    "f64": RNG.standard_normal((2, 3)),
    "f16": RNG.standard_normal((3, 2)).astype(np.float16),
    "i64": np.arange(-3, 3), "i32": np.arange(4, dtype=np.int32),
    "i16": np.arange(2, dtype=np.int16), "i8": np.array([-128, 127], np.int8),
    "u8": np.array([0, 255], np.uint8), "u16": np.array([65535], np.uint16),
    "u32": np.array([2**32 - 1], np.uint32), "u64": np.array([2**64 - 1], np.uint64),
    "bool": np.array([True, False]), "scalar": np.array(1.5, np.float32),
    "empty": np.zeros((0, 4), np.float32), "file": np.ones(1), "allow_pickle": np.ones(1),
}


def assert_exact(got: dict, want: dict):
    assert list(got) == list(want)
    for k, value in want.items():
        w = np.asarray(value)
        assert got[k].dtype == w.dtype and got[k].shape == w.shape, k
        assert got[k].tobytes() == w.tobytes(), k


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_round_trip_is_exact(tmp_path, suffix):
    path = tmp_path / f"w{suffix}"
    nio.save_weights(SAMPLE, path)
    assert_exact(nio.load_weights(path), SAMPLE)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_non_contiguous_and_big_endian_inputs(tmp_path, suffix):
    sd = {"t": RNG.standard_normal((4, 3)).T, "be": np.arange(3, dtype=">f4"),
          "stepped": np.arange(10.0)[::3]}
    nio.save_weights(sd, tmp_path / f"w{suffix}")
    got = nio.load_weights(tmp_path / f"w{suffix}")
    for k, v in sd.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].dtype.isnative and got[k].flags.c_contiguous


def test_safetensors_layout_is_aligned(tmp_path):
    path = tmp_path / "w.safetensors"
    nio.save_weights({"b": np.ones(3, np.uint8), "a": np.ones(3)}, path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert (8 + n) % 8 == 0 and list(header) == ["b", "a"]
    assert header["a"]["data_offsets"] == [0, 24] and header["b"]["dtype"] == "U8"


def test_package_reads_our_safetensors(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    nio.save_weights(SAMPLE, tmp_path / "w.safetensors")
    got = st_numpy.load_file(str(tmp_path / "w.safetensors"))
    assert_exact({k: got[k] for k in SAMPLE}, SAMPLE)


def test_we_read_package_safetensors(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    st_numpy.save_file(SAMPLE, str(tmp_path / "p.safetensors"), metadata={"format": "np"})
    got = nio.load_weights(tmp_path / "p.safetensors")
    assert_exact({k: got[k] for k in SAMPLE}, SAMPLE)


def test_bf16_from_torch_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    t = torch.tensor([1.5, -2.0, float("inf"), float("nan"), 3.14159]).bfloat16()
    st_torch.save_file({"w": t, "h": t.half()}, str(tmp_path / "b.safetensors"))
    got = nio.load_weights(tmp_path / "b.safetensors")
    assert got["w"].dtype == np.float32
    assert got["w"].tobytes() == t.float().numpy().tobytes()
    assert got["h"].dtype == np.float16


def raw_safetensors(path, header, data=b"", length=None):
    """Write a .safetensors with any header (dict or bytes) and data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(text) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + text + data)
    return path


def test_bf16_bits_are_widened_exactly(tmp_path):
    bits = np.array([0x3FC0, 0xC000, 0x7F80, 0x0001], "<u2")  # 1.5, -2, inf, tiny
    path = raw_safetensors(tmp_path / "b.safetensors", {
        "w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bits.tobytes())
    got = nio.load_weights(path)["w"]
    assert got.dtype == np.float32 and got.shape == (2, 2)
    assert got.reshape(-1)[:3].tolist() == [1.5, -2.0, np.inf] and got[1, 1] == 2.0**-133


F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
BAD_HEADERS = {
    "offsets past the end": ({"w": dict(F32, data_offsets=[0, 80])}, "outside the 8 data"),
    "negative offset": ({"w": dict(F32, data_offsets=[-4, 4])}, "outside the 8 data"),
    "shape disagrees": ({"w": dict(F32, shape=[3])}, "needs 12 bytes, data_offsets span 8"),
    "huge shape": ({"w": dict(F32, shape=[10**12])}, "needs 4000000000000 bytes"),
    "negative dim": ({"w": dict(F32, shape=[-2])}, "ints >= 0"),
    "unknown dtype": ({"w": dict(F32, dtype="F8_E4M3")}, "dtype 'F8_E4M3' is not supported"),
    "missing field": ({"w": {"dtype": "F32", "shape": [2]}}, "expected keys dtype"),
    "offsets wrong": ({"w": dict(F32, data_offsets=[0])}, r"data_offsets must be \[begin"),
    "overlap": ({"a": F32, "b": dict(F32, shape=[1], data_offsets=[4, 8])}, "overlap"),
    "not an object": ([1, 2], "must be a JSON object"),
    "not JSON": (b"{not json", "not valid JSON"),
    "not UTF-8": (b"\xff\xfe", "not valid JSON"),
    "duplicate key": (b'{"w": 1, "w": 2}', "duplicate key 'w'"),
}


@pytest.mark.parametrize("name", list(BAD_HEADERS))
def test_lying_safetensors_header(tmp_path, name):
    header, message = BAD_HEADERS[name]
    path = raw_safetensors(tmp_path / "bad.safetensors", header, bytes(8))
    with pytest.raises(nio.WeightsFormatError, match=message):
        nio.load_weights(path)


# Verdicts of the reference package (safetensors 0.8.0 ``safetensors.numpy.load``) on
# the same bytes: the tensors, sorted by offsets, must tile the data exactly.
def f32(begin, end, shape=None):
    return {"dtype": "F32", "shape": [(end - begin) // 4] if shape is None else shape,
            "data_offsets": [begin, end]}


LAYOUTS = {
    "exact": ({"w": f32(0, 8)}, 8, None),
    "empty file": ({}, 0, None),
    "zero-size tensor at the end": ({"a": f32(0, 8), "z": f32(8, 8)}, 8, None),
    "zero-size tensor at the start": ({"z": f32(0, 0), "a": f32(0, 8)}, 8, None),
    "trailing bytes": ({"w": f32(0, 8)}, 12, "end at data byte 8 but the file holds 12"),
    "only trailing bytes": ({}, 2, "end at data byte 0 but the file holds 2"),
    "gap at the start": ({"w": f32(4, 12)}, 12, "'w' starts at data byte 4.*leave a gap"),
    "gap between": ({"a": f32(0, 8), "b": f32(12, 20)}, 20,
                    "'b' starts at data byte 12, not right after tensor 'a'.*gap"),
    "zero-size inside another": ({"a": f32(0, 8), "z": f32(4, 4)}, 8, "'z'.*overlap"),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_safetensors_layout_is_checked_like_the_reference(tmp_path, name):
    header, data_size, message = LAYOUTS[name]
    path = raw_safetensors(tmp_path / "l.safetensors", header, bytes(data_size))
    if message is None:
        assert list(nio.load_checkpoint(path)) == list(header)
    else:
        with pytest.raises(nio.WeightsFormatError, match=message):
            nio.load_weights(path)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_verdicts_match_the_package(tmp_path, name):
    st_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import SafetensorError

    header, data_size, message = LAYOUTS[name]
    path = raw_safetensors(tmp_path / "l.safetensors", header, bytes(data_size))
    try:
        st_numpy.load_file(str(path))
    except SafetensorError:
        assert message is not None
    else:
        assert message is None


def test_huge_header_length(tmp_path):
    path = raw_safetensors(tmp_path / "bad.safetensors", b"{}", length=2**60)
    with pytest.raises(nio.WeightsFormatError, match="header length 1152921504606846976"):
        nio.load_weights(path)


@pytest.mark.parametrize("content", [b"", b"\x01\x02"])
def test_safetensors_too_short(tmp_path, content):
    path = tmp_path / "short.safetensors"
    path.write_bytes(content)
    with pytest.raises(nio.WeightsFormatError, match="too short"):
        nio.load_weights(path)


def test_truncated_safetensors(tmp_path):
    nio.save_weights(SAMPLE, tmp_path / "w.safetensors")
    raw = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-5])
    with pytest.raises(nio.WeightsFormatError, match="truncated"):
        nio.load_weights(tmp_path / "cut.safetensors")


# ---- .npz ---------------------------------------------------------------------------


def test_npz_written_by_numpy(tmp_path):
    sd = {"a": np.asfortranarray(RNG.standard_normal((3, 4))), "b": np.arange(3, dtype=">i4")}
    np.savez_compressed(tmp_path / "c.npz", **sd)
    got = nio.load_weights(tmp_path / "c.npz")
    for k, v in sd.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].flags.c_contiguous and got[k].dtype.isnative


def test_npz_object_array_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", w=np.array([{"x": 1}], dtype=object))
    with pytest.raises(nio.WeightsFormatError, match="'w'.*object arrays are refused"):
        nio.load_weights(tmp_path / "o.npz")


def test_npz_string_array_is_refused(tmp_path):
    np.savez(tmp_path / "s.npz", w=np.array(["abc"]))
    with pytest.raises(nio.WeightsFormatError, match="not numeric"):
        nio.load_weights(tmp_path / "s.npz")


def forged_npy(shape, payload=b"\x00" * 16, version=(1, 0)) -> bytes:
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    import io

    buf = io.BytesIO()
    writer = {(1, 0): np.lib.format.write_array_header_1_0,
              (2, 0): np.lib.format.write_array_header_2_0}[version]
    writer(buf, header)
    return buf.getvalue() + payload


@pytest.mark.parametrize("shape, message", [((10**12,), "4000000000000 bytes"),
                                            ((3,), "12 bytes"), ((5,), "20 bytes")])
def test_npz_header_that_lies_errors_before_allocating(tmp_path, shape, message):
    with zipfile.ZipFile(tmp_path / "f.npz", "w") as zf:
        zf.writestr("w.npy", forged_npy(shape))
    with pytest.raises(nio.WeightsFormatError, match=message):
        nio.load_weights(tmp_path / "f.npz")


def test_npz_version_2_header(tmp_path):
    with zipfile.ZipFile(tmp_path / "v2.npz", "w") as zf:
        zf.writestr("w.npy", forged_npy((4,), version=(2, 0)))
    assert nio.load_weights(tmp_path / "v2.npz")["w"].tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("blob, message", [(b"garbage", "bad .npy header"),
                                           (b"\x93NUMPY\x04\x00", "unsupported .npy version")])
def test_npz_bad_npy_header(tmp_path, blob, message):
    with zipfile.ZipFile(tmp_path / "b.npz", "w") as zf:
        zf.writestr("w.npy", blob)
    with pytest.raises(nio.WeightsFormatError, match=message):
        nio.load_weights(tmp_path / "b.npz")


def test_npz_with_a_foreign_entry(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as zf:
        zf.writestr("readme.txt", b"hi")
    with pytest.raises(nio.WeightsFormatError, match="'readme.txt' is not a .npy array"):
        nio.load_weights(tmp_path / "x.npz")


def test_npz_not_a_zip(tmp_path):
    (tmp_path / "n.npz").write_bytes(b"not a zip at all")
    with pytest.raises(nio.WeightsFormatError, match=r"cannot read the \.npz \(zip\) archive"):
        nio.load_weights(tmp_path / "n.npz")


# ---- dispatch and save_weights errors --------------------------------------------


@pytest.mark.parametrize("name", ["w.onnx", "w.h5", "weights", "w.txt"])
def test_unknown_content_on_read(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x08\x07hello, not weights")
    with pytest.raises(nio.WeightsFormatError, match=r"not a weight file nplstm reads: it "
                       r"starts with b'\\x08\\x07hello, not wei'; expected a torch.save"):
        nio.load_weights(tmp_path / name)


@pytest.mark.parametrize("name, hint", [("w.pt", "torch.save"), ("w.json", "supported")])
def test_unknown_suffix_on_write(tmp_path, name, hint):
    with pytest.raises(ValueError, match=hint):
        nio.save_weights(SAMPLE, tmp_path / name)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_bytes_paths(tmp_path, suffix):
    path = os.fsencode(tmp_path / f"w{suffix}")
    nio.save_weights(SAMPLE, path)
    assert_exact(nio.load_weights(path), SAMPLE)
    assert_exact(nio.load_checkpoint(path), SAMPLE)
    (tmp_path / "w.json").write_text("{}")
    with pytest.raises(nio.WeightsFormatError, match=r"/w\.json: not a weight file"):
        nio.load_weights(os.fsencode(tmp_path / "w.json"))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        nio.load_weights(tmp_path / "nope.safetensors")


BAD_STATE_DICTS = {
    "not a mapping": ([np.ones(2)], TypeError, "must be a mapping"),
    "int key": ({1: np.ones(2)}, TypeError, "keys must be non-empty strings, got 1"),
    "empty key": ({"": np.ones(2)}, TypeError, "got ''"),
    "list value": ({"w": [1.0, 2.0]}, TypeError, r"state_dict\['w'\]: expected a numpy"),
    "object dtype": ({"w": np.array([None])}, ValueError, r"\['w'\]: dtype object"),
    "complex": ({"w": np.ones(2, complex)}, ValueError, "dtype complex128 cannot be saved"),
    "strings": ({"w": np.array(["a"])}, ValueError, "dtype <U1 cannot be saved"),
}


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
@pytest.mark.parametrize("name", list(BAD_STATE_DICTS))
def test_save_rejects_bad_state_dicts(tmp_path, name, suffix):
    sd, error, message = BAD_STATE_DICTS[name]
    with pytest.raises(error, match=message):
        nio.save_weights(sd, tmp_path / f"w{suffix}")
    assert os.listdir(tmp_path) == []


def test_save_accepts_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"p": torch.nn.Parameter(torch.randn(3, 2)), "bf": torch.randn(4).bfloat16(),
          "i": torch.arange(3), "s": np.float32(2.0)}
    nio.save_weights(sd, tmp_path / "t.safetensors")
    got = nio.load_weights(tmp_path / "t.safetensors")
    assert got["p"].tobytes() == sd["p"].detach().numpy().tobytes()
    assert got["bf"].dtype == np.float32 and np.array_equal(got["bf"], sd["bf"].float().numpy())
    assert got["i"].dtype == np.int64 and got["s"].shape == ()


def test_save_refuses_meta_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    sd = {"ok": torch.ones(2), "lstm.weight_ih_l0": torch.empty(8, 2, device="meta")}
    with pytest.raises(ValueError, match=r"\['lstm.weight_ih_l0'\]: tensor on the 'meta' "
                                         "device has no data"):
        nio.save_weights(sd, tmp_path / "w.safetensors")
    assert os.listdir(tmp_path) == []


# ---- atomic writes -----------------------------------------------------------------


def test_save_into_a_missing_directory_names_the_path(tmp_path):
    path = tmp_path / "missing" / "out.npz"
    with pytest.raises(FileNotFoundError) as info:
        nio.save_weights(SAMPLE, path)
    assert info.value.filename == str(path) and ".tmp" not in str(info.value)
    assert f"directory {tmp_path / 'missing'} does not exist" in str(info.value)


def test_save_over_a_directory_names_the_path(tmp_path):
    path = tmp_path / "out.safetensors"
    path.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        nio.save_weights(SAMPLE, path)
    assert info.value.filename == str(path) and ".tmp" not in str(info.value)
    assert os.listdir(tmp_path) == ["out.safetensors"]


@pytest.mark.parametrize("suffix, module, writer", [
    (".safetensors", st_module, "write_safetensors"),
    (".npz", nio.npz, "write_npz"),
])
def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch, suffix, module, writer):
    path = tmp_path / f"w{suffix}"
    nio.save_weights(SAMPLE, path)
    before = path.read_bytes()
    real = getattr(module, writer)

    def half_then_fail(f, arrays):
        real(f, arrays)
        f.truncate(f.tell() // 2)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(module, writer, half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        nio.save_weights({"other": np.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(st_module, "write_safetensors",
                        lambda f, arrays: (f.write(b"partial"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        nio.save_weights(SAMPLE, tmp_path / "w.safetensors")
    assert os.listdir(tmp_path) == []


def test_saved_file_has_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        nio.save_weights(SAMPLE, tmp_path / "w.npz")
    finally:
        os.umask(umask)
    if os.name == "posix":
        assert stat.S_IMODE(os.stat(tmp_path / "w.npz").st_mode) == 0o644


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "w.safetensors"
    nio.save_weights({"a": np.ones(2)}, path)
    nio.save_weights({"b": np.zeros(3)}, path)
    assert list(nio.load_weights(path)) == ["b"] and os.listdir(tmp_path) == [path.name]


# ---- finding the state_dict in a checkpoint ------------------------------------------

A, B = {"w": np.ones(2)}, {"v": np.zeros(1)}


@pytest.mark.parametrize("obj, key, path", [
    (A, None, None),
    ({"epoch": 3, "model": A, "optimizer": {"state": {0: B}, "param_groups": [B]}}, None,
     "model"),
    ({"ema": B, "state_dict": A}, None, "state_dict"),
    ({"trainer": {"net": A}, "step": 1}, None, "trainer/net"),
    ({"ema": {"model": B}, "model": A}, "ema/model", "ema/model"),
    ({"empty": {}}, "empty", "empty"),
])
def test_find_state_dict(obj, key, path):
    found, sd = find_state_dict(obj, key)
    assert found == path
    assert sd == (B if key == "ema/model" else {} if key == "empty" else A)


@pytest.mark.parametrize("obj, key, message", [
    ({"a": A, "b": B}, None, r"several dicts of tensors: 'a', 'b'; pick one with key="),
    ({"epoch": 3, "loss": 0.5}, None,
     r"no dict of tensors found; the top level is a dict with keys 'epoch', 'loss'"),
    (np.ones(3), None, r"single tensor of shape \(3,\)"),
    ([A], None, "the top level is a list"),
    ({"model": A}, "net",
     r"no key 'net' in the top level; the top level is a dict with keys 'model'"),
    ({"model": A}, "model/w", "key 'model/w' is not a dict of tensors; it is a single"),
    ({"model": np.ones(2)}, "model/w", "no key 'w' in model; model is a single tensor"),
    ({"model": {"w": np.ones(1), "epoch": 3}}, "model", r"not tensors: 'epoch' \(int\)"),
    ({"model": 3}, "model", "it is an int"),
    ({"model": A}, "", "key must be a non-empty string"),
])
def test_find_state_dict_errors(obj, key, message):
    with pytest.raises(nio.WeightsFormatError, match=message):
        find_state_dict(obj, key)


def test_key_on_a_flat_file(tmp_path):
    nio.save_weights(A, tmp_path / "w.npz")
    with pytest.raises(nio.WeightsFormatError, match="no key 'model'.*keys 'w'"):
        nio.load_weights(tmp_path / "w.npz", key="model")


@pytest.mark.parametrize("head, hint", [
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model? use nplstm.from_keras)"),
    (b"\x93NUMPY\x01\x00", "a single .npy array"),
    (b"\x1f\x8b\x08\x00", "a gzip file"),
    (b"\x80\x02}q\x00.", "a pickle without torch's magic number"),
])
def test_unknown_content_says_what_it_looks_like(tmp_path, head, hint):
    (tmp_path / "w.bin").write_bytes(head + bytes(40))
    with pytest.raises(nio.WeightsFormatError, match=re.escape(hint)) as info:
        nio.load_weights(tmp_path / "w.bin")
    assert "not a torch.save zip archive or legacy torch.save file" in str(info.value)
