"""Files written by real ``torch.save``, read back in a process where torch cannot load.

The torch side writes each file and keeps what torch holds as NumPy arrays; one
subprocess with ``sys.modules["torch"] = None`` reads them all with nplstm and pickles
the results back; every array must match bit for bit, dtype and shape included.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

SRC = Path(__file__).resolve().parents[1] / "src"

READER = """
import pickle, sys
sys.modules["torch"] = None          # `import torch` now raises ImportError
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch is importable")
import nplstm.io as nio
jobs, dest = pickle.load(open(sys.argv[1], "rb"))
out = {name: (nio.load_checkpoint(path), nio.load_weights(path)) for name, path in jobs}
assert sys.modules["torch"] is None and not any(m.startswith("torch.") for m in sys.modules)
pickle.dump(out, open(dest, "wb"))
"""


def to_numpy(obj):
    """What nplstm should return for ``obj``: tensors as arrays (bf16 widened)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(v) for v in obj)
    return obj


def assert_same(got, want, where="top"):
    """Recursive exact equality: arrays by dtype, shape and bytes."""
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), where
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert got.tobytes() == want.tobytes(), where
        assert got.flags.c_contiguous and got.flags.writeable, where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for k in want:
            assert_same(got[k], want[k], f"{where}/{k}")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}/{i}")
    else:
        assert got == want and type(got) is type(want), where


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True)
        self.fc = nn.Linear(5, 2)


def randomized(module):
    """Non-zero random values everywhere (biases start at zero in some modules)."""
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-1, 1)
    return module


def checkpoint():
    model = randomized(Model())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out, _ = model.lstm(torch.randn(2, 7, 3))
    model.fc(out).pow(2).mean().backward()
    opt.step()
    return {"epoch": 3, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "loss": 0.5, "note": b"\x00\xffbytes", "device": torch.device("cuda", 0),
            "dtype": torch.float16, "tags": {"a", "b"}}


def dtypes():
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-40, 3.5])
    return {
        "f16": torch.randn(3, 4).half(), "bf16": torch.randn(4, 3).bfloat16(),
        "bf16_special": special.bfloat16(), "f64": torch.randn(2, 5, dtype=torch.float64),
        "f32_special": special, "i64": torch.arange(-3, 3), "i32": torch.arange(5).int(),
        "i16": torch.arange(4).short(), "i8": torch.arange(-2, 2).char(),
        "u8": torch.arange(250, 256).byte(), "bool": torch.tensor([True, False, True]),
        "u16": torch.tensor([1, 65535]).to(torch.uint16),
        "c64": torch.randn(3, 2, dtype=torch.cfloat),
        "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
    }


def views():
    t = torch.randn(10)
    m = torch.randn(4, 6)
    return {"a": t[2:5], "b": t[::2], "c": t.view(2, 5).t(), "whole": t, "m": m,
            "col": m[:, 3], "block": m[1:3, 2:5], "expanded": torch.randn(3, 1).expand(3, 4),
            "param": nn.Parameter(torch.randn(2, 2))}


CASES = {
    "lstm": lambda: randomized(nn.LSTM(3, 5, num_layers=2, bidirectional=True,
                                       proj_size=2)).state_dict(),
    "gru": lambda: randomized(nn.GRU(4, 6, num_layers=2)).state_dict(),
    "rnn": lambda: randomized(nn.RNN(3, 4, nonlinearity="relu", bidirectional=True)).state_dict(),
    "linear": lambda: randomized(nn.Linear(5, 2)).state_dict(),
    "model": lambda: randomized(Model()).state_dict(),
    "checkpoint": checkpoint,
    "dtypes": dtypes,
    "views": views,
}


def rewrite_zip(src, dst, edit):
    """Copy a zip, passing each (name, data) through ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info)))


def cuda_tagged(tmp, sd):
    """A real torch.save file whose storages are tagged 'cuda:0' (patched on CPU)."""
    plain, path = tmp / "plain.pt", tmp / "cuda.pt"
    torch.save(sd, plain)
    cpu, cuda = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"

    def edit(name, data):
        return data.replace(cpu, cuda) if name.endswith("data.pkl") else data

    rewrite_zip(plain, path, edit)
    return path


def big_endian(tmp, sd):
    """A torch.save file of float32 tensors rewritten with byteorder 'big'."""
    plain, path = tmp / "plain_le.pt", tmp / "big.pt"
    torch.save(sd, plain)

    def edit(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            return np.frombuffer(data, "<f4").astype(">f4").tobytes()
        return data

    rewrite_zip(plain, path, edit)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """name -> (path, torch's object as NumPy, expected state_dict)."""
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("pt")
    out = {}
    for name, make in CASES.items():
        obj = make()
        path = tmp / f"{name}.pt"
        torch.save(obj, path)
        out[name] = (path, obj)
    lstm_sd = CASES["lstm"]()
    out["cuda"] = (cuda_tagged(tmp, lstm_sd), lstm_sd)
    out["big_endian"] = (big_endian(tmp, lstm_sd), lstm_sd)
    buffer = io.BytesIO()  # saved to a buffer: the top folder is 'archive'
    torch.save(lstm_sd, buffer)
    (tmp / "weights.v2.pth").write_bytes(buffer.getvalue())
    out["pth_archive"] = (tmp / "weights.v2.pth", lstm_sd)
    for suffix in (".bin", ".ckpt"):
        torch.save(lstm_sd, tmp / f"model{suffix}")
        out[suffix] = (tmp / f"model{suffix}", lstm_sd)
    return {name: (path, obj) for name, (path, obj) in out.items()}


@pytest.fixture(scope="module")
def torch_free(files, tmp_path_factory):
    """name -> (load_checkpoint result, load_weights result), read without torch."""
    tmp = tmp_path_factory.mktemp("torch_free")
    jobs = tmp / "jobs.pkl"
    dest = tmp / "out.pkl"
    with open(jobs, "wb") as f:
        pickle.dump(([(n, str(p)) for n, (p, _) in files.items()], str(dest)), f)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.run([sys.executable, "-c", READER, str(jobs)], env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    with open(dest, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "linear", "model", "dtypes",
                                  "views", "cuda", "big_endian", "pth_archive", ".bin",
                                  ".ckpt"])
def test_state_dict_matches_torch_exactly(files, torch_free, name):
    _, obj = files[name]
    _, got_sd = torch_free[name]
    assert_same(got_sd, to_numpy(dict(obj)))
    assert type(got_sd) is dict


def test_state_dict_keys_are_pytorch_names(torch_free):
    sd = torch_free["lstm"][1]
    assert "weight_hr_l1_reverse" in sd and sd["weight_hr_l1_reverse"].shape == (2, 5)
    assert list(torch_free["model"][1]) == ["lstm.weight_ih_l0", "lstm.weight_hh_l0",
                                            "lstm.bias_ih_l0", "lstm.bias_hh_l0",
                                            "fc.weight", "fc.bias"]


def test_checkpoint_finds_model_and_keeps_the_rest(files, torch_free):
    _, obj = files["checkpoint"]
    got_obj, got_sd = torch_free["checkpoint"]
    assert_same(got_sd, to_numpy(dict(obj["model"])))
    assert got_obj["epoch"] == 3 and got_obj["loss"] == 0.5
    assert got_obj["note"] == b"\x00\xffbytes"
    assert got_obj["device"] == "cuda:0" and got_obj["tags"] == {"a", "b"}
    state = got_obj["optimizer"]["state"]
    for index, tensors in obj["optimizer"]["state"].items():
        assert_same(state[index], to_numpy(tensors))
    assert got_obj["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)


def test_views_are_independent_copies(torch_free):
    sd = torch_free["views"][1]
    sd["a"][0] = 123.0
    assert sd["whole"][2] != 123.0 and sd["b"][1] != 123.0
    sd["m"][:] = 0.0  # "m" came before its views "col" and "block"
    assert sd["col"].all() and sd["block"].all()
    assert sum(np.shares_memory(sd[a], sd[b]) for a in sd for b in sd if a < b) == 0
    assert sd["expanded"].shape == (3, 4) and (sd["expanded"] == sd["expanded"][:, :1]).all()


def test_cuda_tagged_file_is_genuine(files):
    """The patched file is one torch itself reads (with map_location) as the original."""
    path, sd = files["cuda"]
    loaded = torch.load(path, map_location="cpu")
    for k, v in sd.items():
        assert torch.equal(loaded[k], v)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path)


def test_big_endian_file_is_genuine(files):
    path, sd = files["big_endian"]
    loaded = torch.load(path)
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())


def test_torchscript_archive_is_refused(tmp_path):
    import nplstm.io as nio

    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():  # torch deprecates TorchScript; the files remain
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(nn.Linear(2, 3)), path)
    with pytest.raises(nio.WeightsFormatError, match="TorchScript"):
        nio.load_weights(path)


def test_whole_module_pickle_is_refused(tmp_path):
    import nplstm.io as nio

    path = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 3), path)
    with pytest.raises(nio.UnsafeWeightsError, match="torch.nn.modules.linear.Linear"):
        nio.load_weights(path)


def unsupported_tensor(name):
    """A small tensor of torch dtype ``name``, quietly (some warn: experimental, ...)."""
    dtype = getattr(torch, name, None)
    if dtype is None:
        pytest.skip(f"this torch has no {name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name.startswith("q"):
            return torch.quantize_per_tensor(torch.ones(2), 0.1, 0, dtype)
        if name == "complex32":
            return torch.ones(2, dtype=torch.complex64).to(dtype)
        return torch.ones(2).to(dtype)


@pytest.mark.parametrize("name, hint", [
    ("float8_e4m3fn", ".float()"), ("float8_e5m2", ".float()"), ("complex32", ".float()"),
    ("qint8", ".dequantize()"), ("quint8", ".dequantize()"), ("qint32", ".dequantize()"),
])
def test_unsupported_dtypes_are_named_with_their_key(tmp_path, name, hint):
    import nplstm.io as nio

    path = tmp_path / "u.pt"
    torch.save({"model": {"fine": torch.ones(2), "lstm.weight": unsupported_tensor(name)}},
               path)
    with pytest.raises(nio.WeightsFormatError) as info:
        nio.load_weights(path)
    assert not isinstance(info.value, nio.UnsafeWeightsError)
    assert f"unsupported dtype {name} in key 'model/lstm.weight'; " in str(info.value)
    assert f"convert with {hint} before saving" in str(info.value)


def test_dtype_values_in_a_checkpoint(torch_free):
    got_obj, _ = torch_free["checkpoint"]
    assert got_obj["dtype"] == "torch.float16"
