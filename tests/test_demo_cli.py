"""`nplstm demo` and the demo model it shares with `nplstm trace`: one seed, one model."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import nplstm
from nplstm.cli import main
from nplstm.demo import build

torch = pytest.importorskip("torch")

SRC = os.path.join(os.path.dirname(__file__), os.pardir, "src")
NO_TORCH = "import sys; sys.modules['torch'] = None; from nplstm.cli import main; "
TORCH = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def _reference(cell, input_size, hidden_size, output_size, seed, **kw):
    """The documented demo model, built here in torch: every parameter ~ U(-1, 1) from
    numpy's default_rng(seed), drawn in PyTorch's state_dict order, layer then head."""
    rng = np.random.default_rng(seed)
    layer = TORCH[cell](input_size, hidden_size, **kw).double()
    head = torch.nn.Linear(kw.get("proj_size") or hidden_size, output_size).double()
    for module in (layer, head):
        module.load_state_dict({k: torch.from_numpy(rng.uniform(-1, 1, tuple(v.shape)))
                                for k, v in module.state_dict().items()})
    return layer, head


def _x(steps, input_size):
    t, k = np.arange(steps)[:, None], np.arange(input_size)[None, :]
    return np.sin(0.5 * t + k)  # (L, H_in): the demo's series


def _final_h(out):
    """The numbers on the demo's ``final h:`` line, nplstm.gates column."""
    line = next(x for x in out.splitlines() if x.startswith("final h:"))
    return np.array([float(v) for v in
                     re.search(r"nplstm\.gates \[([^\]]*)\]", line)[1].split()])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_build_is_one_model_with_or_without_torch(cell):
    with_torch = build(cell, 2, 4, 3, seed=7)
    without = build(cell, 2, 4, 3, seed=7, use_torch=False)
    layer, head = _reference(cell, 2, 4, 3, seed=7)
    for mine, other, ref in ((with_torch.layer, without.layer, layer),
                             (with_torch.head, without.head, head)):
        for key, value in ref.state_dict().items():
            assert np.array_equal(mine.state_dict()[key], value.numpy())
            assert np.array_equal(other.state_dict()[key], value.numpy())
    for twin, ref in ((with_torch.torch_layer, layer), (with_torch.torch_head, head)):
        for key, value in ref.state_dict().items():
            assert torch.equal(twin.state_dict()[key], value)


def test_build_relu_and_projection():
    model = build("rnn", 1, 3, nonlinearity="relu", seed=2)
    assert model.layer.nonlinearity == model.torch_layer.nonlinearity == "relu"
    model = build("lstm", 2, 5, 1, seed=2, proj_size=3)
    layer, head = _reference("lstm", 2, 5, 1, seed=2, proj_size=3)
    x = _x(4, 2)
    with torch.no_grad():
        want = head(layer(torch.from_numpy(x))[0]).numpy()
    assert np.abs(model(x)[0] - want).max() < 1e-12
    with pytest.raises(ValueError, match="nonlinearity is an RNN option"):
        build("gru", nonlinearity="relu")
    with pytest.raises(ValueError, match="proj_size is an LSTM option"):
        build("rnn", hidden_size=3, proj_size=1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_demo_and_trace_run_the_same_model(tmp_path, capsys, cell):
    argv = ["--cell", cell, "--input-size", "2", "--hidden-size", "4", "--seed", "3"]
    assert main(["demo", *argv, "--steps", "6", "--precision", "8"]) == 0
    demo_out = capsys.readouterr().out
    command = f"nplstm trace --cell {cell} --input-size 2 --hidden-size 4 --seed 3 --length 6"
    assert f"the same model: {command}" in demo_out
    assert main(["trace", *argv, "--length", "6", "--save", str(tmp_path / "t.npz")]) == 0
    trace_out = capsys.readouterr().out
    assert f"same as: nplstm demo --cell {cell} --input-size 2 --hidden-size 4 --seed 3" \
        in trace_out
    layer, _head = _reference(cell, 2, 4, 1, seed=3)
    with torch.no_grad():
        out, _ = layer(torch.from_numpy(_x(6, 2)))
    want = out[-1].numpy()
    assert np.abs(nplstm.Trace.load(tmp_path / "t.npz").h_n[0] - want).max() < 1e-12
    assert np.abs(_final_h(demo_out) - want).max() < 1e-8  # printed with 8 decimals


def test_demo_prints_the_same_model_without_torch():
    def final_h(code):
        r = subprocess.run([sys.executable, "-c", code + "sys.exit(main(['demo', '--seed', "
                            "'5', '--precision', '8']))"], check=False, capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": SRC})
        assert r.returncode == 0, r.stderr
        return _final_h(r.stdout), r.stdout

    without, out = final_h(NO_TORCH)
    assert "PyTorch is not installed" in out
    with_torch, out = final_h("import sys; from nplstm.cli import main; ")
    assert "copied into PyTorch" in out
    layer, _ = _reference("lstm", 1, 3, 1, seed=5)
    with torch.no_grad():
        want = layer(torch.from_numpy(_x(5, 1)))[1][0][0].numpy()
    assert np.array_equal(without, with_torch)
    assert np.abs(without - want).max() < 1e-8


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_demo_words(capsys, cell):
    assert main(["demo", "--cell", cell, "--steps", "1", "--hidden-size", "4",
                 "--input-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "1 step of sin" in out and "1 steps" not in out
    rows = nplstm.gates.GATE_ORDER[cell]
    shape = (len(rows) * 4, 2)  # (G*H, H_in)
    if cell == "rnn":
        assert f"one block in weight_ih_l0 {shape}, rows: h" in out
    else:
        assert f"gates stacked in weight_ih_l0 {shape}, rows: {' | '.join(rows)}" in out
    footer = next(x for x in out.splitlines() if x.startswith("largest difference"))
    assert ("final h and c" in footer) == (cell == "lstm")
    assert "final h" in footer
    assert main(["demo", "--steps", "2"]) == 0
    assert "2 steps of sin" in capsys.readouterr().out
