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
from nplstm.cli import build_parser, main

pytest.importorskip("torch")
from helpers import randomize

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
    (["verify", "--num-layers", "0"], "--num-layers must be >= 1, got 0"),
    (["verify", "--cell", "gru", "--cell", "rnn", "--proj-size", "2"],
     r"--proj-size 2 is an LSTM option; the cells verified are gru, rnn \(from --cell\)"),
    (["verify", "--cell", "lstm", "--cell", "gru", "--nonlinearity", "relu"],
     r"--nonlinearity relu is an RNN option; the cells verified are lstm, gru \(from --cell\)"),
    (["verify", "--proj-size", "5"], r"--proj-size must be in \[0, hidden size 5\), got 5"),
    (["verify", "--prefix", "lstm."], "--prefix 'lstm.' needs --weights"),
    (["verify", "--weights", "missing.pt"], "missing.pt"),
    (["verify", "--weights", "m.pt", "--cell", "gru", "--num-layers", "1"],
     "--num-layers: with --weights the sizes and layer options come from m.pt"),
    (["verify", "--weights", "m.pt", "--hidden-size", "4", "--no-bidirectional"],
     "--hidden-size, --bidirectional: with --weights the sizes and layer options come from"),
    (["demo", "--hidden-size", "100000", "--no-torch"], "not enough memory"),
])
def test_cli_errors(argv, match, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nplstm {argv[0]}: error:")
    assert re.search(match, err), err


def _spy(monkeypatch):
    """What PyTorch ran, as seen from its side: the module's options and its inputs."""
    import torch

    ran = []
    for cls in (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN):
        def forward(self, x, hx=None, _forward=cls.forward):
            ran.append({"cell": type(self).__name__.lower(), "num_layers": self.num_layers,
                        "bidirectional": self.bidirectional, "batch_first": self.batch_first,
                        "proj_size": self.proj_size, "bias": self.bias,
                        "nonlinearity": getattr(self, "nonlinearity", "tanh"),
                        "sizes": (self.input_size, self.hidden_size), "shape": tuple(x.shape),
                        "dtype": str(x.dtype).removeprefix("torch."),
                        "with_state": hx is not None})
            return _forward(self, x, hx)
        monkeypatch.setattr(cls, "forward", forward)
    return ran


PIN_ON = ["--num-layers", "2", "--bidirectional", "--batch-first", "--proj-size", "2",
          "--no-bias", "--nonlinearity", "relu", "--unbatched", "--with-state",
          "--dtype", "float32"]
PIN_OFF = ["--num-layers", "1", "--no-bidirectional", "--no-batch-first", "--proj-size", "0",
           "--bias", "--nonlinearity", "tanh", "--batched", "--zero-state", "--dtype", "float64"]


@pytest.mark.parametrize("pins,want", [
    (PIN_ON, {"num_layers": 2, "bidirectional": True, "batch_first": True, "bias": False,
              "shape": (7, 3), "dtype": "float32", "with_state": True}),
    (PIN_OFF, {"num_layers": 1, "bidirectional": False, "batch_first": False, "bias": True,
               "shape": (7, 2, 3), "dtype": "float64", "with_state": False}),
])
def test_verify_pins_one_configuration_per_cell(pins, want, monkeypatch, capsys):
    ran = _spy(monkeypatch)
    assert main(["verify", *pins]) == 0
    out = capsys.readouterr().out
    assert "3 configurations (lstm 1, gru 1, rnn 1)" in out and "3 of 3 configurations match" in out
    proj, nonlinearity = pins[pins.index("--proj-size") + 1], pins[pins.index("--nonlinearity") + 1]
    assert [r["cell"] for r in ran] == ["lstm", "gru", "rnn"]
    for r in ran:
        assert {k: r[k] for k in want} == want
        assert r["proj_size"] == (int(proj) if r["cell"] == "lstm" else 0)
        assert r["nonlinearity"] == (nonlinearity if r["cell"] == "rnn" else "tanh")


def test_verify_unset_axes_stay_in_the_grid(monkeypatch, capsys):
    ran = _spy(monkeypatch)
    argv = ["verify", "--cell", "lstm", "--num-layers", "1", "--dtype", "float64", "-v"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    seen = {(r["bidirectional"], r["batch_first"], r["proj_size"], r["bias"], r["shape"],
             r["with_state"]) for r in ran}
    assert len(ran) == len(seen) == 64  # 2 ** 6: directions, layout, proj, bias, input, h_0
    assert {(r["num_layers"], r["dtype"]) for r in ran} == {(1, "float64")}
    assert "64 configurations (lstm 64)" in out and out.count("  ok") == 64


def test_verify_one_configuration(monkeypatch, capsys):
    ran = _spy(monkeypatch)
    assert main(["verify", "--cell", "gru", *PIN_OFF[:7], *PIN_OFF[9:]]) == 0
    out = capsys.readouterr().out
    assert len(ran) == 1 and "1 configuration (gru 1)" in out
    assert "1 of 1 configuration matches PyTorch" in out
    assert re.search(r"\ngru +1  uni L,N +0  yes  batched   zero  float64 .*  ok\n", out), out


def test_verify_grid_passes(capsys):
    assert main(["verify", "--cell", "gru"]) == 0
    out = capsys.readouterr().out
    assert "128 of 128 configurations match PyTorch" in out  # 64 per dtype


def test_verify_grid_has_both_rnn_nonlinearities(monkeypatch, capsys):
    ran = _spy(monkeypatch)
    assert main(["verify", "--cell", "rnn", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert [sum(r["nonlinearity"] == n for r in ran) for n in ("tanh", "relu")] == [64, 64]
    for nonlinearity in ("tanh", "relu"):
        assert re.search(rf"rnn {nonlinearity}  float64 +64 .* ok", out), out


@pytest.mark.parametrize("seed", [4, 5, 9, 14])
def test_verify_relu_rnn_float32_holds_for_seeds_with_large_states(seed, capsys):
    """With U(-1, 1) weights these seeds drove ReLU states into the hundreds and float32
    past 1e-5 absolute; verify draws a ReLU RNN's weights at 1/sqrt(H), as PyTorch does."""
    argv = ["verify", "--cell", "rnn", "--nonlinearity", "relu", "--dtype", "float32",
            "--seed", str(seed)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ReLU RNN U(-1/sqrt(H), 1/sqrt(H))" in out and "64 of 64" in out


def test_verify_weight_scale():
    from nplstm.cli.verify import _weight_scale
    assert _weight_scale({"cell": "rnn", "nonlinearity": "relu"}, 16) == 0.25
    assert _weight_scale({"cell": "rnn", "nonlinearity": "tanh"}, 16) == 1.0
    assert _weight_scale({"cell": "lstm", "nonlinearity": "tanh"}, 16) == 1.0


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
    assert out.count("32 FAIL") == 2 and "0 of 64 configurations match" in out


def test_verify_catches_a_relu_rnn_that_runs_tanh(monkeypatch, capsys):
    tanh_only = dataclasses.replace(cells.RNN, prepare=lambda p, nonlinearity="tanh":
                                    cells.RNN.prepare(p, "tanh"))
    monkeypatch.setattr(nplstm.RNN, "family", tanh_only)
    assert main(["verify", "--cell", "rnn", "--dtype", "float64", "--num-layers", "1"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"rnn tanh  float64 +32 .* ok", out)
    assert re.search(r"rnn relu  float64 +32 .* 32 FAIL", out)


def _save(tmp_path, layer, name="model.pt"):
    """``layer`` (random non-zero weights) saved as the ``rnn.`` submodule of a model."""
    import torch

    randomize(layer, seed=3)
    model = torch.nn.Module()
    model.rnn, model.fc = layer, torch.nn.Linear(2, 1)
    torch.save(model.state_dict(), tmp_path / name)
    return str(tmp_path / name)


def test_verify_user_weights(tmp_path, capsys):
    import torch

    path = _save(tmp_path, torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3))
    assert main(["verify", "--weights", path, "--prefix", "rnn.", "--cell", "lstm"]) == 0
    out = capsys.readouterr().out
    assert "16 of 16 configurations match PyTorch" in out and "lstm       2  bi" in out


@pytest.mark.parametrize("kind,opts", [
    ("LSTM", {"num_layers": 2, "bidirectional": True, "proj_size": 3}),
    ("GRU", {"bias": False}),
    ("RNN", {"num_layers": 3, "nonlinearity": "relu"}),
])
def test_verify_weights_infer_the_cell(kind, opts, tmp_path, monkeypatch, capsys):
    import torch

    layer = getattr(torch.nn, kind)(4, 6, **opts)
    path = _save(tmp_path, layer)
    ran = _spy(monkeypatch)
    assert main(["verify", "--weights", path, "--prefix", "rnn."]) == 0
    out = capsys.readouterr().out
    assert f"16 configurations ({kind.lower()} 16)" in out and "16 of 16" in out
    assert len(ran) == 16
    for r in ran:  # the file's family, sizes and options; tanh for an RNN unless told
        assert r["cell"] == kind.lower() and r["sizes"] == (4, 6)
        for key in ("num_layers", "bidirectional", "proj_size", "bias"):
            assert r[key] == getattr(layer, key)
        assert r["nonlinearity"] == "tanh"
    assert ("nonlinearity tanh assumed" in out) == (kind == "RNN")


def test_verify_weights_relu_rnn(tmp_path, monkeypatch, capsys):
    import torch

    path = _save(tmp_path, torch.nn.RNN(4, 6, nonlinearity="relu"))
    ran = _spy(monkeypatch)
    argv = ["verify", "--weights", path, "--prefix", "rnn.", "--nonlinearity", "relu",
            "--batch-first", "--batched", "--zero-state", "--dtype", "float64"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1 configuration (rnn 1)" in out and "nonlinearity relu (--nonlinearity)" in out
    assert [(r["nonlinearity"], r["batch_first"], r["shape"]) for r in ran] == \
        [("relu", True, (2, 7, 4))]


def test_verify_weights_errors(tmp_path, capsys):
    import torch

    gru = _save(tmp_path, torch.nn.GRU(4, 6))
    lstm = _save(tmp_path, torch.nn.LSTM(4, 6), "lstm.pt")
    odd = tmp_path / "odd.npz"
    np.savez(odd, weight_ih_l0=np.ones((12, 4)), weight_hh_l0=np.ones((12, 6)))
    fc = tmp_path / "fc.npz"
    np.savez(fc, weight=np.ones((1, 2)))
    for argv, match in [
        (["--weights", gru, "--prefix", "rnn.", "--cell", "lstm"],
         (rf"--cell lstm: the weights in {re.escape(gru)} are a GRU's \(rnn.weight_ih_l0 has "
          r"3 x 6 rows; LSTM 4 x H, GRU 3 x H, RNN 1 x H\)")),
        (["--weights", gru, "--prefix", "rnn.", "--cell", "gru", "--cell", "rnn"],
         "--cell gru, rnn: the weights in .* are a GRU's"),
        (["--weights", lstm, "--prefix", "rnn.", "--nonlinearity", "tanh"],
         (r"--nonlinearity tanh is an RNN option; the cells verified are lstm \(from the "
          r"weights in .*lstm.pt\)")),
        (["--weights", gru],
         r"--prefix '': .*model.pt has no weight_ih_l0; its layers have prefix 'rnn.'"),
        (["--weights", str(fc)],
         "--prefix '': .* has no weight_ih_l0; it holds no LSTM, GRU or RNN layer"),
        (["--weights", str(tmp_path / "missing.pt")], r"--weights .*missing.pt: no such file"),
        (["--weights", str(odd)],
         ("these are no LSTM's, GRU's or RNN's weights:\n"
          r"  weight_ih_l0 has 12 rows; an LSTM with hidden_size 6 needs 4 x 6 = 24\n"
          r"  weight_ih_l0 has 12 rows; a GRU with hidden_size 6 needs 3 x 6 = 18\n"
          r"  weight_ih_l0 has 12 rows; an RNN with hidden_size 6 needs 1 x 6 = 6")),
    ]:
        assert main(["verify", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("nplstm verify: error:") and re.search(match, err), err


def test_verify_help_explains_every_option(capsys):
    parser = build_parser().subcommands["verify"]
    for action in parser._actions:
        assert action.help, action.option_strings
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for pair in ("--bidirectional, --no-bidirectional", "--batch-first, --no-batch-first",
                 "--bias, --no-bias", "--unbatched, --batched", "--with-state, --zero-state"):
        assert pair in out


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
    with pytest.raises(ValueError, match="weight_ih_l0 has 18 rows; an LSTM with hidden_size 6"):
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
