"""nplstm train: tiny runs; the saved weights give the same predictions in PyTorch."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from helpers import T, torch

import nplstm
from nplstm import train
from nplstm.cli import main

TINY = ["--epochs", "1", "--steps", "3", "--hidden", "6", "--no-progress"]


def torch_twin(out):
    """nn.LSTM + nn.Linear loaded from model.safetensors, as the CLI tells users to."""
    from safetensors.torch import load_file

    meta = json.loads((out / "model.json").read_text())
    sd = load_file(str(out / "model.safetensors"))
    lstm = torch.nn.LSTM(meta["input_size"], meta["hidden_size"], meta["num_layers"])
    fc = torch.nn.Linear(meta["hidden_size"], sd["fc.weight"].shape[0])
    lstm.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith("rnn.")})
    fc.load_state_dict({k[3:]: v for k, v in sd.items() if k.startswith("fc.")})
    ours = train.Model(nplstm.LSTM.from_state_dict(sd, "rnn."),
                       nplstm.Linear.from_state_dict(sd, "fc."))
    return meta, lstm, fc, ours


def test_forecast_saves_weights_torch_reproduces(tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["train", "forecast", *TINY, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "vs naive last value" in text and "validation (457 weeks" in text
    meta, lstm, fc, ours = torch_twin(out)
    assert meta["naive_rmse"] > 0 and meta["window"] == 52
    log = (out / "loss.csv").read_text().splitlines()
    assert log[0] == "step,train_loss,val_loss" and len(log) == 2
    x = np.random.default_rng(0).standard_normal((52, 5, 1)).astype(np.float32)
    y, _ = ours.forward(x)
    with torch.no_grad():
        yt = fc(lstm(T(x))[0]).numpy()
    assert np.max(np.abs(y - yt)) <= 1e-5


def test_forecast_naive_baseline_is_the_last_value():
    y = train.load_co2()
    assert y.shape == (2284,) and not np.isnan(y).any()
    assert 310 < y.min() < 320 and 370 < y.max() < 380  # ppm, 1958-2001


def test_chars_saves_weights_torch_reproduces(tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_text("the cat sat on the mat. " * 40, encoding="utf-8")
    out = tmp_path / "c"
    assert main(["train", "chars", str(src), *TINY, "--window", "16", "--sample", "20",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sample:" in text and "vs ln 11 = 2.398" in text
    meta, lstm, fc, ours = torch_twin(out)
    assert meta["vocab"] == " .acehmnost"
    eye = np.eye(11, dtype=np.float32)
    x = eye[np.random.default_rng(0).integers(0, 11, (9, 3))]  # (9, 3, 11)
    y, _ = ours.forward(x)
    with torch.no_grad():
        yt = fc(lstm(T(x))[0]).numpy()
    assert np.max(np.abs(y - yt)) <= 1e-5


def test_chars_loss_falls_well_below_uniform(tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_text("abcdefgh" * 300, encoding="utf-8")
    out = tmp_path / "c"
    assert main(["train", "chars", str(src), "--epochs", "2", "--steps", "25", "--hidden",
                 "16", "--window", "12", "--lr", "0.03", "--sample", "0", "--no-progress",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["val_loss"] < 0.25 * math.log(8)


def test_default_text_is_bundled():
    text = train.load_text()
    assert 50_000 < len(text.encode()) < 200_000 and text.startswith("First Citizen:")


def test_plots_are_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "p"
    assert main(["train", "forecast", *TINY, "--plot", "--out", str(out)]) == 0
    for name in ("loss.png", "saturation.png", "gradflow.png", "forecast.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "training RNN the same way" in capsys.readouterr().out


def test_progress_bar_and_fallback(tmp_path, capsys, monkeypatch):
    pytest.importorskip("tqdm")
    args = ["train", "forecast", "--epochs", "1", "--steps", "2", "--hidden", "3"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "step/s" in capsys.readouterr().err  # tqdm's bar
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if not installed
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and "steps/s" in cap.out


@pytest.mark.parametrize("argv,message", [
    (["forecast", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["forecast", "--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
    (["forecast", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["forecast", "--clip", "-1"], "--clip must be >= 0"),
    (["forecast", "--clip", "nan"], "--clip must be >= 0, got nan"),
    (["chars", "--temperature", "0"], "--temperature must be a finite number > 0, got 0.0"),
    (["chars", "--temperature", "-1"], "--temperature must be a finite number > 0"),
    (["chars", "--sample", "-5"], "--sample must be >= 0, got -5"),
    (["forecast", "--window", "5000"], "--window must be < 1825"),
    (["chars", "MISSING.txt"], "FILE MISSING.txt: cannot read it (No such file"),
])
def test_errors(argv, message, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_unusable_out_folder(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        assert main(["train", "forecast", "--out", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"--out {out}: cannot make this folder" in err and "Traceback" not in err


def test_chars_text_errors(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00abc")
    assert main(["train", "chars", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
    short = tmp_path / "short.txt"
    short.write_text("abcdefgh", encoding="utf-8")
    assert main(["train", "chars", str(short), "--out", str(tmp_path / "o")]) == 2
    assert "too short for --window 64" in capsys.readouterr().err


def test_train_without_task_shows_help(capsys):
    assert main(["train"]) == 2
    assert "forecast" in capsys.readouterr().out


def test_grad_per_step_shape_and_vanishing():
    """Same sizes and input; the gradient from the last step reaching step 0."""
    x = np.random.default_rng(0).standard_normal((60, 4, 1))
    ratios = {}
    for kind in ("rnn", "lstm"):
        m = train.Model.build(kind, 1, 8, 1, seed=0, dtype=np.float64)
        g = train.grad_per_step(m, x)
        assert g.shape == (60,)
        ratios[kind] = g[0] / g[-1]
    assert ratios["rnn"] < 1e-3 and ratios["lstm"] < 1e-3


def test_grad_per_step_norm_does_not_underflow_in_float32():
    """A float32 gradient of ~1e-25 squares below float32's range; its norm is not 0."""
    x = np.random.default_rng(0).standard_normal((150, 4, 1)).astype(np.float32)
    m = train.Model.build("rnn", 1, 16, 1, seed=0)
    y, trace = m.forward(x)
    dy = np.zeros_like(y)
    dy[-1] = 1.0
    _, g = m.grads(trace, dy)
    assert np.all(g.input != 0)  # no gradient underflowed ...
    norms = train.grad_per_step(m, x)
    assert np.all(norms > 0)  # ... so no norm may be 0
    want = np.sqrt((g.input.astype(np.float64) ** 2).sum(-1)).mean(1)
    np.testing.assert_allclose(norms, want, rtol=1e-12)
