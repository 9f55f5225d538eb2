"""``nplstm trace`` and ``nplstm card`` on the command line: tables, files, errors."""

from __future__ import annotations

import numpy as np
import pytest

import nplstm
from nplstm.cli import main


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("cell, names", [("lstm", ("input_gate", "forget_gate",
                                                   "cell_candidate", "output_gate",
                                                   "cell_update", "hidden_update")),
                                         ("gru", ("reset_gate", "update_gate", "new_gate",
                                                  "gru_hidden_update")),
                                         ("rnn", ("rnn_step",))])
def test_trace_prints_a_table_per_step(capsys, cell, names):
    rc, out, err = _run(capsys, "trace", "--cell", cell, "--no-color")
    assert rc == 0 and err == ""
    assert "\x1b[" not in out
    for t in range(5):
        assert f"step {t}   x_t = [" in out
    for name in names:
        assert out.count(name) == 6  # the legend and each of the 5 steps
    assert "Linear" in out and "final h_n[0]" in out and "saturation" in out
    # the table's numbers are the trace's
    model = nplstm.demo.build(cell, 1, 3, 1, 1, 0, use_torch=False)
    trace = model.layer.trace(nplstm.demo.series(5, 1))
    last_h_row = [line for line in out.splitlines() if f" {names[-1]} " in line][-1]
    assert last_h_row.split()[-3:] == [f"{v:.4f}" for v in trace.gate("h")[4]]


def test_steps_units_layer_and_precision(capsys):
    rc, out, _ = _run(capsys, "trace", "--num-layers", "2", "--layer", "1", "--hidden-size",
                      "6", "--length", "9", "--steps", "2:4", "--units", "1:3",
                      "--precision", "2")
    assert rc == 0
    assert "step 2 " in out and "step 3 " in out and "step 4 " not in out
    assert "step 1 " not in out
    header = next(line for line in out.splitlines() if "function " in line and "u1" in line)
    assert header.split()[-2:] == ["u1", "u2"]
    assert "layer 1" in out and "units 1..2 of 6" in out
    assert "(h_prev)" in out  # the printout starts mid-sequence: its previous state
    rc, out, _ = _run(capsys, "trace", "--steps", "-1")
    assert "step 4 " in out and "step 3 " not in out


def test_color(capsys):
    _, out, _ = _run(capsys, "trace", "--color")
    assert "\x1b[38;2;0;114;178m" in out  # the input gate's blue, as in the plots


def test_input_files_lengths_and_save(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(2, 6, 3))  # (N, L, H_in)
    np.save(tmp_path / "x.npy", x)
    rc, out, _ = _run(capsys, "trace", "--cell", "gru", "--input", str(tmp_path / "x.npy"),
                      "--batch-first", "--lengths", "6,4", "--batch", "1",
                      "--save", str(tmp_path / "t.npz"))
    assert rc == 0 and "shape (6, 2, 3)" in out
    assert "step 5 " in out and "past length 4 of sequence 1" in out
    trace = nplstm.Trace.load(tmp_path / "t.npz")
    layer = nplstm.demo.build("gru", 3, 3, 1, 1, 0, use_torch=False).layer
    want = layer.trace(x.transpose(1, 0, 2), lengths=[6, 4])
    assert np.array_equal(trace.output, want.output)
    (tmp_path / "x.csv").write_text("a,b\n" + "\n".join(f"{t},{-t}" for t in range(4)))
    rc, out, _ = _run(capsys, "trace", "--input", str(tmp_path / "x.csv"))
    assert rc == 0 and "shape (4, 2)" in out and "LSTM(2, 3" in out


def test_weights_file(tmp_path, capsys):
    lstm = nplstm.LSTM(3, 4, bidirectional=True, dtype=np.float64, seed=1)
    head = nplstm.Linear(8, 2, dtype=np.float64, seed=2)
    sd = {**lstm.state_dict("rnn."), **head.state_dict("fc.")}
    nplstm.save_weights(sd, tmp_path / "w.npz")
    rc, out, err = _run(capsys, "trace", "--weights", str(tmp_path / "w.npz"), "--prefix",
                        "rnn.", "--head", "fc.", "--direction", "1", "--length", "4")
    assert rc == 0, err
    assert "LSTM(3, 4, bidirectional=True" in out and "reverse" in out
    assert out.index("step 3 ") < out.index("step 0 ")  # the reverse direction runs backwards
    assert "(h_0)" in out.split("step 3 ")[1].split("step 2 ")[0]
    rc, _, err = _run(capsys, "trace", "--weights", str(tmp_path / "w.npz"), "--prefix",
                      "rnn.", "--cell", "gru")
    assert rc == 2 and "these look like an LSTM's weights" in err


@pytest.mark.parametrize("argv, message", [
    (["--steps", "x"], "bad --steps 'x'"),
    (["--steps", "9"], "--steps 9: out of range"),
    (["--steps", "3:3"], "selects nothing"),
    (["--units", "1:2:0"], "bad --units"),
    (["--layer", "1"], "--layer 1: this trace has 1"),
    (["--direction", "1"], "--direction 1"),
    (["--input", "missing.npy"], "no such file"),
    (["--weights", "missing.pt"], "no such file"),
    (["--input-size", "2", "--input", "{x3}"], "has 3 features, but the model's input_size is 2"),
    (["--input", "{bad}"], "expected a .npy or .csv"),
    (["--lengths", "a,b"], "bad --lengths"),
    (["--lengths", "9"], "lengths"),
    (["--plot", "out.jpg"], "expected a .png, .svg or .pdf"),
    (["--precision", "40"], "--precision"),
    (["--hidden-size", "0"], "--hidden-size must be >= 1"),
])
def test_trace_errors(tmp_path, capsys, argv, message):
    np.save(tmp_path / "x3.npy", np.ones((4, 3)))
    (tmp_path / "bad.txt.gz").write_text("")
    argv = [a.format(x3=tmp_path / "x3.npy", bad=tmp_path / "bad.txt.gz") for a in argv]
    rc, _out, err = _run(capsys, "trace", *argv)
    assert rc == 2
    assert message in err and err.startswith("nplstm trace: error:")


def test_help_has_examples(capsys):
    for command in ("trace", "card"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "examples:" in out and f"nplstm {command}" in out


def test_card_cli(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rc, _, _ = _run(capsys, "trace", "--length", "6", "--save", str(tmp_path / "t.npz"),
                      "--plot", str(tmp_path / "p.png"))
    assert rc == 0 and (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rc, _out, _ = _run(capsys, "card", "--trace", str(tmp_path / "t.npz"), "--step", "5",
                      "-o", str(tmp_path / "c.png"), "--dpi", "60")
    assert rc == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    rc, _, _ = _run(capsys, "card", "--cell", "rnn", "-o", str(tmp_path / "c.pdf"))
    assert rc == 0 and (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"
    for argv, message in ((["-o", "c.jpg"], "expected a file name ending in"),
                          (["--step", "1", "-o", "c.png"], "--step needs --trace"),
                          (["--trace", "nope.npz", "-o", "c.png"], "no such file"),
                          (["--trace", str(tmp_path / "t.npz"), "--step", "6", "-o",
                            str(tmp_path / "c.png")], "--step 6: the trace has 6"),
                          (["--trace", str(tmp_path / "t.npz"), "--cell", "gru", "-o",
                            str(tmp_path / "c.png")], "not a GRU"),
                          (["--units", "0", "-o", "c.png"], "--units")):
        rc, _, err = _run(capsys, "card", *argv)
        assert rc == 2 and message in err, (argv, err)
