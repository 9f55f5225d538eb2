"""torch.save files of both formats read torch-free, equal to torch.load bit for bit.

The legacy (pre-1.6) format is made here with ``_use_new_zipfile_serialization=False``;
resemblyzer 0.1.4 ships a real one (``pretrained.pt``, a 3-layer LSTM speaker encoder).
Expected values come from ``torch.load(..., weights_only=True)`` in the test.
"""

from __future__ import annotations

import collections
import importlib.util
import os

import numpy as np
import pytest

import nplstm
import nplstm.io as nio

torch = pytest.importorskip("torch")

FORMATS = {"zip": True, "legacy": False}


def save(obj, path, fmt: str):
    torch.save(obj, path, _use_new_zipfile_serialization=FORMATS[fmt])
    return path


def plain(obj):
    """What nplstm promises for ``obj`` (a torch.load result), built with torch."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    if isinstance(obj, torch.Size):
        return tuple(obj)
    if isinstance(obj, (torch.device, torch.dtype, torch.layout)):
        return str(obj)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain(v) for v in obj)
    if isinstance(obj, bytearray):
        return bytes(obj)
    return obj


def assert_same(got, want, where="top"):
    """Equal structure and types; arrays equal bit for bit, with the same dtype."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), where
        assert got.flags.c_contiguous and got.flags.writeable, where
        return
    assert type(got) is type(want), f"{where}: {type(got)} vs {type(want)}"
    if isinstance(want, dict):
        assert list(got) == list(want), where
        for k in want:
            assert_same(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}/{i}")
    else:
        assert got == want, where


def check(obj, tmp_path, fmt, name="w.pt"):
    path = save(obj, tmp_path / name, fmt)
    want = plain(torch.load(path, weights_only=True))
    got = nio.load_checkpoint(path)
    assert_same(got, want)
    return got


def lstm_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(collections.OrderedDict(
        lstm=torch.nn.LSTM(3, 5, num_layers=2), fc=torch.nn.Linear(5, 4)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out, _ = model.lstm(torch.randn(7, 2, 3))
    model.fc(out).sum().backward()
    opt.step()
    return model, opt


@pytest.mark.parametrize("fmt", FORMATS)
def test_state_dict(tmp_path, fmt):
    model, _ = lstm_and_optimizer()
    got = check(model.state_dict(), tmp_path, fmt)
    assert list(got) == list(model.state_dict())


@pytest.mark.parametrize("fmt", FORMATS)
def test_checkpoint_with_optimizer_and_plain_values(tmp_path, fmt):
    model, opt = lstm_and_optimizer()
    ckpt = {
        "epoch": 3, "loss": 0.25, "name": "run", "model": model.state_dict(),
        "optimizer": opt.state_dict(), "size": torch.Size([2, 3]), "c": 1 + 2j,
        "dtype": torch.float16, "device": torch.device("cuda", 1), "cpu": torch.device("cpu"),
        "layout": torch.strided, "raw": b"\x00\xff", "ba": bytearray(b"xy"),
        "s": {1, 2}, "cfg": {"layers": [1, 2], "pair": (1, "a")},
        "none": None, "flag": True, "big": 2**70, "param": torch.nn.Parameter(torch.ones(2)),
    }
    got = check(ckpt, tmp_path, fmt)
    assert got["size"] == (2, 3) and got["device"] == "cuda:1" and got["c"] == 1 + 2j
    assert got["dtype"] == "torch.float16" and got["layout"] == "torch.strided"
    assert got["ba"] == b"xy" and got["s"] == {1, 2}
    key, sd = nio.find_state_dict(got)
    assert key == "model" and list(sd) == list(model.state_dict())


@pytest.mark.parametrize("fmt", FORMATS)
def test_dtypes(tmp_path, fmt):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 4, generator=g, dtype=torch.float64)
    tensors = {str(d): (base * 50).to(d) for d in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64,
        torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.complex64,
        torch.complex128)}
    tensors["empty"] = torch.zeros(0, 5)
    tensors["scalar"] = torch.tensor(2.5)
    check(tensors, tmp_path, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_shared_storages_views_and_offsets(tmp_path, fmt):
    a = torch.arange(24, dtype=torch.float32)
    h = torch.arange(10, dtype=torch.float16)
    views = {"a": a, "slice": a[2:9], "matrix_t": a.view(4, 6).t(), "step": a[1::3],
             "expand": a[:3].view(3, 1).expand(3, 4), "again": a, "h": h[4:], "h0": h[:2],
             "narrow": a.view(2, 3, 4)[:, 1:, ::2]}
    got = check(views, tmp_path, fmt)
    assert got["a"] is got["again"]  # one tensor object saved twice, as torch.load gives
    assert not any(np.shares_memory(got[x], got[y]) for x in got for y in got
                   if x < y and got[x] is not got[y])


@pytest.mark.parametrize("name", ["model_best.pth.tar", "model.pkl", "checkpoint"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_any_file_name(tmp_path, fmt, name):
    check({"w": torch.arange(3.0)}, tmp_path, fmt, name)


@pytest.mark.parametrize("writer", ["safetensors", "npz"])
def test_other_formats_under_any_name(tmp_path, writer):
    sd = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = tmp_path / f"w.{writer}"
    nio.save_weights(sd, path)
    os.rename(path, tmp_path / "weights")
    np.testing.assert_array_equal(nio.load_weights(tmp_path / "weights")["w"], sd["w"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_loaded_weights_run_like_torch(tmp_path, fmt):
    model, _ = lstm_and_optimizer()
    path = save({"model": model.state_dict(), "step": 1}, tmp_path / "c.pt", fmt)
    lstm = nplstm.LSTM.from_state_dict(nio.load_weights(path), prefix="lstm.")
    x = np.random.default_rng(2).standard_normal((7, 2, 3)).astype(np.float32)
    want, (h, c) = model.lstm(torch.from_numpy(x))
    got, (got_h, got_c) = lstm(x)
    for g, w in ((got, want), (got_h, h), (got_c, c)):
        np.testing.assert_allclose(g, w.detach().numpy(), rtol=0, atol=1e-5)


def test_legacy_storage_list_must_match_the_pickle(tmp_path):
    path = save({"w": torch.arange(4.0)}, tmp_path / "w.pt", "legacy")
    blob = bytearray(path.read_bytes())
    count_at = len(blob) - 16 - 8  # the storage's numel, before its 16 bytes
    assert int.from_bytes(blob[count_at:count_at + 8], "little") == 4
    blob[count_at] = 3
    path.write_bytes(bytes(blob) + bytes(4))
    with pytest.raises(nio.WeightsFormatError, match=r"holds 12 bytes, the pickle says 16"):
        nio.load_weights(path)
    path.write_bytes(bytes(blob[:-5]))
    with pytest.raises(nio.WeightsFormatError, match="past the end of the"):
        nio.load_weights(path)


def test_legacy_big_endian_sys_info_is_refused(tmp_path):
    path = save({"w": torch.arange(4.0)}, tmp_path / "w.pt", "legacy")
    blob = path.read_bytes()
    flag = blob.index(b"little_endianq\x02\x88") + len(b"little_endianq\x02")
    path.write_bytes(blob[:flag] + b"\x89" + blob[flag + 1:])
    with pytest.raises(nio.WeightsFormatError, match="big-endian files are not read"):
        nio.load_weights(path)


def test_legacy_pickled_module_is_refused(tmp_path):
    path = save(torch.nn.Linear(2, 3), tmp_path / "m.pt", "legacy")
    with pytest.raises(nio.UnsafeWeightsError, match="refusing to load global"):
        nio.load_weights(path)


def resemblyzer_weights():
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("resemblyzer is not installed (pip install --no-deps resemblyzer==0.1.4)")
    return os.path.join(spec.submodule_search_locations[0], "pretrained.pt")


def test_resemblyzer_pretrained_legacy_file():
    path = resemblyzer_weights()
    with open(path, "rb") as f:
        assert f.read(4) == b"\x80\x02\x8a\x0a"  # a legacy file, not a zip
    want = torch.load(path, map_location="cpu", weights_only=True)
    got = nio.load_checkpoint(path)
    assert_same(got, plain(want))
    sd = nio.load_weights(path)
    assert list(sd) == list(want["model_state"])
    lstm = nplstm.LSTM.from_state_dict(sd, prefix="lstm.")
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (40, 256, 3)
    ref = torch.nn.LSTM(40, 256, num_layers=3)
    ref.load_state_dict({k[5:]: v for k, v in want["model_state"].items()
                         if k.startswith("lstm.")})
    x = np.random.default_rng(3).standard_normal((11, 2, 40)).astype(np.float32)
    with torch.no_grad():
        out, (h, c) = ref(torch.from_numpy(x))
    got_out, (got_h, got_c) = lstm(x)
    for g, w in ((got_out, out), (got_h, h), (got_c, c)):
        np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's own
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("fmt", FORMATS)
def test_pickle_protocols_2_to_5(tmp_path, fmt, protocol):
    obj = {"w": torch.arange(6.0).view(2, 3), "s": "x" * 300, "l": list(range(300)),
           "raw": b"\x00" * 300, "big": 2**100, "neg": -5, "f": 1.5, "set": {1, 2},
           "c": 1 + 2j, "t": (1, (2, 3))}
    path = tmp_path / "p.pt"
    torch.save(obj, path, pickle_protocol=protocol, _use_new_zipfile_serialization=fmt == "zip")
    want = plain(torch.load(path, weights_only=False))  # our own file: trusted
    assert_same(nio.load_checkpoint(path), want)


@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")  # torch's own
@pytest.mark.parametrize("fmt", FORMATS)
def test_quantized_tensor_is_named_in_both_formats(tmp_path, fmt):
    q = torch.quantize_per_tensor(torch.arange(4.0), 0.5, 0, torch.qint8)
    path = save({"w": torch.ones(2), "q": q}, tmp_path / "q.pt", fmt)
    with pytest.raises(nio.WeightsFormatError, match=r"dtype qint8 in key 'q'.*dequantize"):
        nio.load_weights(path)
