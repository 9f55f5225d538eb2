"""``nplstm convert``: conversions, --list, --key and every error path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nplstm.io as nio
from nplstm.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
RNG = np.random.default_rng(1)
SD = {"lstm.weight_ih_l0": RNG.standard_normal((20, 3)).astype(np.float32),
      "lstm.bias_ih_l0": RNG.standard_normal(20).astype(np.float32),
      "fc.weight": RNG.standard_normal((2, 5)), "steps": np.arange(3)}


def assert_exact(got, want):
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), k


@pytest.fixture(scope="module")
def torch_checkpoint(tmp_path_factory):
    """A real torch.save checkpoint: (path, the model's state_dict as NumPy)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    torch.save({"epoch": 3, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "loss": 0.5}, path)
    return path, {k: v.numpy() for k, v in model.state_dict().items()}


def test_pt_to_safetensors_to_npz(tmp_path, torch_checkpoint, capsys):
    path, want = torch_checkpoint
    st, npz = tmp_path / "m.safetensors", tmp_path / "m.npz"
    assert main(["convert", str(path), str(st)]) == 0
    assert f"wrote {st}: 4 tensors from {path} ['model']" in capsys.readouterr().out
    assert main(["convert", str(st), str(npz)]) == 0
    assert_exact(nio.load_weights(st), want)
    assert_exact(nio.load_weights(npz), want)


def test_list_a_checkpoint(torch_checkpoint, capsys):
    path, _ = torch_checkpoint
    assert main(["convert", str(path), "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{path}: state_dict at ['model']; also in the file: 'epoch', " \
                     "'optimizer', 'loss'"
    assert out[1].split() == ["key", "shape", "dtype"]
    assert out[2].split() == ["0.weight", "(4,", "3)", "float32"]
    assert out[-1] == "4 tensors, 26 values, 104 bytes"
    # the columns line up
    assert len({line.index("(") for line in out[2:-1]}) == 1


def test_list_and_convert_with_key(tmp_path, capsys):
    src = tmp_path / "two.npz"
    nio.save_weights(SD, src)
    assert main(["convert", str(src), "--list", "--key", "fc.weight"]) == 2
    assert "key 'fc.weight' is not a dict of tensors" in capsys.readouterr().err
    assert main(["convert", str(src), str(tmp_path / "o.safetensors"), "--list"]) == 0
    out = capsys.readouterr().out
    assert "lstm.weight_ih_l0  (20, 3)  float32" in out and "steps" in out
    assert_exact(nio.load_weights(tmp_path / "o.safetensors"), SD)


ERRORS = {
    "nothing to do": (["IN"], "give OUT to convert to, or --list"),
    "missing input": (["MISSING", "out.npz"], "missing.npz: no such file"),
    "bad output suffix": (["IN", "out.pt"], "cannot write .pt; OUT must end in .safetensors"),
    "no output suffix": (["IN", "out"], "cannot write a file without a suffix"),
    "not weights": (["TXT", "out.npz"], "not a weight file nplstm reads: it starts with b'he"),
    "missing key": (["CKPT", "--list", "--key", "net"], "no key 'net' in the top level"),
    "ambiguous": (["CKPT", "--list"], "several dicts of tensors: 'a', 'b'"),
    "unsafe": (["EVIL", "--list"], "refusing to load global 'os.system'"),
    "corrupt": (["NOISE", "--list"], "not a torch.save zip archive"),
    "missing output directory": (["IN", "nodir/out.npz"],
                                 "{tmp}/nodir/out.npz: there is no folder {tmp}/nodir"),
}


@pytest.fixture
def inputs(tmp_path):
    """Placeholder -> path of a small input file for each error case."""
    paths = {"IN": tmp_path / "in.npz", "TXT": tmp_path / "in.txt",
             "CKPT": tmp_path / "ckpt.pt", "EVIL": tmp_path / "evil.pt",
             "NOISE": tmp_path / "noise.pt", "MISSING": tmp_path / "missing.npz"}
    nio.save_weights(SD, paths["IN"])
    paths["TXT"].write_text("hello")
    paths["NOISE"].write_bytes(b"\x00" * 64)
    from test_io_security import call, glob, state, write_pt

    write_pt(paths["EVIL"], b"\x80\x02" + call(glob("os", "system"), "true") + b".")
    write_pt(paths["CKPT"], state(a=state_body(), b=state_body()))
    return paths


def state_body() -> bytes:
    from test_io_security import tensor

    return b"}(" + b"X\x01\x00\x00\x00w" + tensor() + b"u"


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors_exit_2_naming_the_problem(name, inputs, capsys):
    argv, message = ERRORS[name]
    argv = [str(inputs.get(a, a)) for a in argv]
    if argv[1:2] and argv[1].startswith(("out", "nodir")):
        argv[1] = str(inputs["IN"].parent / argv[1])
    assert main(["convert", *argv]) == 2
    err = capsys.readouterr().err
    message = message.format(tmp=inputs["IN"].parent)
    assert err.startswith("nplstm convert: error: ") and message in err, err
    assert ".tmp" not in err.replace(str(inputs["IN"].parent), "")


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "nplstm convert model.pt model.safetensors" in out and "--key" in out


def test_python_m_nplstm_without_torch(tmp_path, torch_checkpoint):
    """The installed command path: ``python -m nplstm convert`` with torch unimportable."""
    path, want = torch_checkpoint
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(SRC)]))
    out = tmp_path / "m.npz"
    proc = subprocess.run([sys.executable, "-m", "nplstm", "convert", str(path), str(out),
                           "--key", "model"], env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert_exact(nio.load_weights(out), want)
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env,
                           capture_output=True, text=True, check=False)
    assert check.returncode != 0 and "import of torch halted" in check.stderr
    bad = subprocess.run([sys.executable, "-m", "nplstm", "convert", str(path)], env=env,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "give OUT" in bad.stderr
