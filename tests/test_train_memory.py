"""nplstm train memory: LSTM against a plain RNN on the two-sequence problem."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest
from helpers import T, torch

import nplstm
from nplstm import optim, train
from nplstm.cli import main

TINY = ["--epochs", "2", "--steps", "2", "--hidden", "5", "--delay", "6", "--no-progress"]


def torch_model(model):
    """torch.nn.LSTM/RNN + nn.Linear in float64 with the model's weights."""
    cls = {"LSTM": torch.nn.LSTM, "RNN": torch.nn.RNN}[type(model.rnn).__name__]
    rnn = cls(model.rnn.input_size, model.rnn.hidden_size).double()
    fc = torch.nn.Linear(model.fc.in_features, model.fc.out_features).double()
    rnn.load_state_dict({k: T(v) for k, v in model.rnn.state_dict().items()})
    fc.load_state_dict({k: T(v) for k, v in model.fc.state_dict().items()})
    return rnn, fc


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_grad_per_step_equals_autograd(kind):
    """‖dL/dx_t‖ averaged over the batch, L = Σ of the last step's outputs."""
    m = train.Model.build(kind, 3, 5, 2, seed=4, dtype=np.float64,
                          forget_bias=1.5 if kind == "lstm" else 0.0)
    x = np.random.default_rng(1).standard_normal((7, 2, 3))  # (L, N, H_in)
    rnn, fc = torch_model(m)
    xt = T(x).requires_grad_(True)
    fc(rnn(xt)[0])[-1].sum().backward()
    want = xt.grad.norm(dim=-1).mean(dim=1).numpy()  # (L,)
    np.testing.assert_allclose(train.grad_per_step(m, x), want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", ["lstm", "rnn"])
def test_last_step_loss_step_equals_torch(kind):
    """train_step(last=True): cross-entropy on the last step only, one SGD step."""
    m = train.Model.build(kind, 1, 5, 2, seed=2, dtype=np.float64)
    x, cls = train.two_sequence(np.random.default_rng(3), 6, 4, dtype=np.float64)
    rnn, fc = torch_model(m)
    loss_t = torch.nn.functional.cross_entropy(fc(rnn(T(x))[0])[-1], T(cls))
    loss_t.backward()
    loss, _, _ = train.train_step(m, optim.SGD(m.modules, lr=0.5), x, cls[None], "ce",
                                  clip=0, last=True)
    assert abs(loss - loss_t.item()) <= 1e-12
    for name, p in {**{f"rnn.{k}": v for k, v in rnn.named_parameters()},
                    **{f"fc.{k}": v for k, v in fc.named_parameters()}}.items():
        want = (p - 0.5 * p.grad).detach().numpy()
        np.testing.assert_allclose(m.state_dict()[name], want, rtol=0, atol=1e-12)


def test_forget_bias():
    a = train.Model.build("lstm", 1, 4, 2, seed=0)
    b = train.Model.build("lstm", 1, 4, 2, seed=0, forget_bias=2.0)
    sa, sb = a.rnn.state_dict(), b.rnn.state_dict()
    d = sb["bias_ih_l0"] - sa["bias_ih_l0"]  # (4H,), gates i, f, g, o
    np.testing.assert_allclose(d, np.r_[np.zeros(4), 2 * np.ones(4), np.zeros(8)], atol=1e-6)
    np.testing.assert_array_equal(sa["bias_hh_l0"], sb["bias_hh_l0"])
    with pytest.raises(ValueError, match="forget_bias is for an LSTM, got kind 'rnn'"):
        train.Model.build("rnn", 1, 4, 2, forget_bias=1.0)


def test_two_sequence_batch():
    x, cls = train.two_sequence(np.random.default_rng(0), 40, 3000)
    assert x.shape == (41, 3000, 1) and x.dtype == np.float32 and cls.shape == (3000,)
    np.testing.assert_array_equal(x[0, :, 0], 2.0 * cls - 1.0)
    assert abs(cls.mean() - 0.5) < 0.05
    assert abs(x[1:].mean()) < 0.01 and abs(x[1:].var() - 0.2) < 0.005


def test_cli_runs_saves_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "m"
    assert main(["train", "memory", *TINY, "--plot", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "LSTM: validation accuracy" in text and " RNN: validation accuracy" in text
    assert "chance 50%, ln 2 = 0.6931" in text
    meta = json.loads((out / "model.json").read_text())
    assert meta["delay"] == 6 and meta["chance_loss"] == math.log(2)
    assert 0 <= meta["rnn_val_acc"] <= 1 and 0 <= meta["lstm_val_acc"] <= 1
    log = (out / "loss.csv").read_text().splitlines()
    assert log[0] == ("step,lstm_train_loss,lstm_val_loss,lstm_val_acc,"
                      "rnn_train_loss,rnn_val_loss,rnn_val_acc") and len(log) == 3
    assert (out / "memory.png").read_bytes()[:4] == b"\x89PNG"
    sd = nplstm.load_weights(out / "model.safetensors")  # the LSTM
    assert sd["rnn.weight_ih_l0"].shape == (20, 1) and sd["fc.weight"].shape == (2, 5)


def test_cli_reproducible_with_a_seed(tmp_path, capsys):
    runs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / name
        assert main(["train", "memory", *TINY, "--seed", seed, "--out", str(out)]) == 0
        runs[name] = ((out / "loss.csv").read_text(),
                      (out / "model.safetensors").read_bytes())
    capsys.readouterr()
    assert runs["a"] == runs["b"] and runs["a"][0] != runs["c"][0]


@pytest.mark.parametrize("argv,message", [
    (["--delay", "0"], "--delay must be >= 1, got 0"),
    (["--forget-bias", "nan"], "--forget-bias must be a finite number, got nan"),
    (["--forget-bias", "inf"], "--forget-bias must be a finite number, got inf"),
    (["--hidden", "0"], "--hidden must be >= 1, got 0"),
    (["--cell", "gru"], "unrecognized arguments: --cell gru"),
    (["--window", "5"], "unrecognized arguments: --window 5"),
])
def test_errors_name_the_option(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) if "unrecognized" in message else contextlib.nullcontext():
        assert main(["train", "memory", *argv, "--out", str(tmp_path / "o"),
                     "--no-progress"]) == 2
    assert message in capsys.readouterr().err

