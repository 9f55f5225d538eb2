"""`nplstm demo`, `nplstm verify`, the top-level command and `python -m nplstm`."""

import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import nplstm
from nplstm import cells
from nplstm.cli import main

pytest.importorskip("torch")

SRC = os.path.join(os.path.dirname(__file__), os.pardir, "src")
NO_TORCH = "import sys; sys.modules['torch'] = None; from nplstm.cli import main; "


def _broken(monkeypatch, cls, family):
    """Make a layer's fused step wrong by 1e-3, to prove the checks can fail."""
    def bad_step(xp_t, state, w, record=None):
        new = family.step(xp_t, state, w, record)
        return (new[0] + 1e-3,) + tuple(new[1:])
    monkeypatch.setattr(cls, "family", dataclasses.replace(family, step=bad_step))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_demo_matches(cell, capsys):
    assert main(["demo", "--cell", cell, "--steps", "3", "--input-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "MATCH: within the float64 tolerance 1e-12" in out
    for func in nplstm.gates.GATE_FUNCTIONS[cell].values():
        assert out.count(func.__name__) == 3  # once per step
    assert out.count("\nstep ") == 3 and "torch [" in out


def test_demo_float32_and_sizes(capsys):
    assert main(["demo", "--float32", "--hidden-size", "4", "--output-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "float32 tolerance 1e-05" in out and "(4,)" in out and "(2,)" in out


def test_demo_no_torch_flag(capsys):
    assert main(["demo", "--no-torch", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "torch [" not in out and "--no-torch: only the NumPy side ran" in out


def test_demo_without_torch_installed():
    r = subprocess.run([sys.executable, "-c", NO_TORCH + "sys.exit(main(['demo']))"],
                       check=False, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 0, r.stderr
    assert "PyTorch is not installed" in r.stdout and "pip install 'nplstm[torch]'" in r.stdout


def test_demo_reports_mismatch(monkeypatch, capsys):
    _broken(monkeypatch, nplstm.LSTM, cells.LSTM)
    assert main(["demo", "--steps", "2"]) == 1
    assert "MISMATCH: beyond the float64 tolerance" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["demo", "--steps", "0"], "--steps must be >= 1, got 0"),
    (["demo", "--hidden-size", "-2"], "--hidden-size must be >= 1, got -2"),
    (["demo", "--precision", "40"], "--precision must be between 0 and 16"),
    (["verify", "--batch", "0"], "--batch must be >= 1"),
    (["verify", "--cell", "gru", "--proj-size", "2"], "--proj-size is an LSTM option"),
    (["verify", "--proj-size", "5"], r"--proj-size must be in \[0, hidden size 5\)"),
    (["verify", "--weights", "x.pt"], "--weights needs exactly one --cell"),
    (["verify", "--weights", "missing.pt", "--cell", "gru"], "missing.pt"),
    (["verify", "--weights", "m.pt", "--cell", "gru", "--num-layers", "1"],
     "--num-layers: the layer options come from --weights m.pt"),
    (["demo", "--hidden-size", "100000", "--no-torch"], "not enough memory"),
])
def test_cli_errors(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nplstm {argv[0]}: error:")
    assert re.search(match, err), err


def test_verify_grid_passes(capsys):
    assert main(["verify", "--cell", "gru"]) == 0
    out = capsys.readouterr().out
    assert "128 of 128 configurations match PyTorch" in out  # 64 per dtype


def test_verify_one_config_prints_rows(capsys):
    argv = ["verify", "--cell", "lstm", "--num-layers", "2", "--bidirectional", "--proj-size",
            "2", "--dtype", "float32"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("  ok") == 16 and "16 of 16" in out


def test_verify_fails_on_mismatch(monkeypatch, capsys):
    _broken(monkeypatch, nplstm.RNN, cells.RNN)
    assert main(["verify", "--cell", "rnn", "--dtype", "float64", "--num-layers", "1"]) == 1
    out = capsys.readouterr().out
    assert "32 FAIL" in out and "0 of 32 configurations match" in out


def test_verify_user_weights(tmp_path, capsys):
    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3)

    path = tmp_path / "model.pt"
    torch.save(Model().state_dict(), path)
    assert main(["verify", "--weights", str(path), "--prefix", "rnn.", "--cell", "lstm"]) == 0
    out = capsys.readouterr().out
    assert "16 of 16 configurations match PyTorch" in out and "lstm   2  bi" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "nplstm", "--version"], check=False,
                       capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": SRC})
    assert r.returncode == 0 and r.stdout.strip() == f"nplstm {nplstm.__version__}"


def test_from_state_dict_builds_the_right_layer():
    import torch

    t = torch.nn.GRU(4, 6, num_layers=3, bias=False, bidirectional=True)
    g = nplstm.GRU.from_state_dict(t.state_dict(), dtype=np.float64, batch_first=True)
    assert (g.input_size, g.hidden_size, g.num_layers, g.bias, g.bidirectional,
            g.batch_first) == (4, 6, 3, False, True, True)
    with pytest.raises(ValueError, match="weight_ih_l0 has 18 rows; a LSTM with hidden_size 6"):
        nplstm.LSTM.from_state_dict(t.state_dict())
    with pytest.raises(ValueError, match=r"state_dict has no 'm.weight_ih_l0'"):
        nplstm.GRU.from_state_dict(t.state_dict(), prefix="m.")
    with pytest.raises(ValueError, match="is an LSTM projection"):
        nplstm.RNN.from_state_dict(torch.nn.LSTM(2, 4, proj_size=1).state_dict())
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        nplstm.Linear.from_state_dict(None)


def test_verify_small_hidden_size_skips_projection(capsys):
    assert main(["verify", "--cell", "lstm", "--hidden-size", "2"]) == 0
    assert "128 of 128 configurations match" in capsys.readouterr().out
