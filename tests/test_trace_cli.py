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
    assert rc == 0 and "x.npy, shape (2, 6, 3) (N, L, H_in), run time-major as (6, 2, 3)" in out
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
    sd = {**lstm.state_dict(prefix="rnn."), **head.state_dict(prefix="fc.")}
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
    assert "--cell gru: the weights in" in err and "are an LSTM's (--cell lstm), not a GRU's" \
        in err and "pass --cell lstm, or leave --cell out" in err


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
    (["--plot", "out.jpg"], "--plot out.jpg: expected a file name ending in .png, .svg, .pdf"),
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


def _numbers(tokens):
    """The trailing tokens that are numbers."""
    out = []
    for token in reversed(tokens):
        try:
            float(token)
        except ValueError:
            break
        out.insert(0, token)
    return out


def _rows(out, name):
    """The numbers of each printed table row whose function column is ``name``."""
    return [_numbers(line.split()) for line in out.splitlines()
            if len(line.split()) > 2 and line.split()[1] == name and _numbers(line.split())]


def _titles(out, name):
    """The column titles above the first table row whose function column is ``name``."""
    lines = out.splitlines()
    k = next(i for i, line in enumerate(lines) if len(line.split()) > 2
             and line.split()[1] == name and _numbers(line.split()))
    return next(line for line in lines[k::-1] if " function " in line
                and " shape " in line).split()[2:]


def test_relu_demo_model(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    rc, out, err = _run(capsys, "trace", "--cell", "rnn", "--nonlinearity", "relu",
                        "--hidden-size", "4", "--length", "6", "--save",
                        str(tmp_path / "t.npz"))
    assert rc == 0, err
    trace = nplstm.Trace.load(tmp_path / "t.npz")
    assert trace.nonlinearity == "relu" and trace.output.min() >= 0
    rng = np.random.default_rng(0)  # the demo model: U(-1, 1), state_dict order
    ref = torch.nn.RNN(1, 4, nonlinearity="relu").double()
    ref.load_state_dict({k: torch.from_numpy(rng.uniform(-1, 1, tuple(v.shape)))
                         for k, v in ref.state_dict().items()})
    with torch.no_grad():
        want = ref(torch.from_numpy(nplstm.demo.series(6, 1)))[0].numpy()
    assert np.abs(trace.output - want).max() < 1e-12
    assert "h = relu(W_ih x + b_ih + W_hh h_prev + b_hh)" in out and "tanh" not in out
    assert "RNN(1, 4, nonlinearity='relu'" in out
    rc, _, err = _run(capsys, "trace", "--nonlinearity", "relu")
    assert rc == 2 and "--nonlinearity is an RNN option" in err


def test_relu_weights_file(tmp_path, capsys):
    rnn = nplstm.RNN(2, 3, nonlinearity="relu", dtype=np.float64, seed=4)
    nplstm.save_weights(rnn.state_dict(), tmp_path / "w.npz")
    rc, out, _ = _run(capsys, "trace", "--weights", str(tmp_path / "w.npz"), "--cell", "rnn",
                      "--nonlinearity", "relu", "--save", str(tmp_path / "t.npz"))
    assert rc == 0 and "relu(" in out
    x = nplstm.demo.series(5, 2)
    assert np.array_equal(nplstm.Trace.load(tmp_path / "t.npz").output, rnn(x)[0])


def test_prefix_is_suggested(tmp_path, capsys):
    lstm, head = nplstm.LSTM(2, 3, seed=0), nplstm.Linear(3, 1, seed=1)
    sd = {**lstm.state_dict(prefix="model.lstm."), **lstm.state_dict(prefix="enc."),
          **head.state_dict(prefix="fc.")}
    nplstm.save_weights(sd, tmp_path / "w.npz")
    rc, _, err = _run(capsys, "trace", "--weights", str(tmp_path / "w.npz"))
    assert rc == 2 and "no key 'weight_ih_l0'" in err
    assert "--prefix enc. or --prefix model.lstm." in err
    rc, _, err = _run(capsys, "trace", "--weights", str(tmp_path / "w.npz"), "--prefix", "enc.",
                      "--head", "out.")
    assert rc == 2 and "no key 'out.weight'" in err and "--head fc." in err
    rc, _, err = _run(capsys, "trace", "--weights", str(tmp_path / "w.npz"), "--prefix", "enc.",
                      "--head", "fc.")
    assert rc == 0, err


@pytest.mark.parametrize("argv, message", [
    (["--prefix", "lstm."], "--prefix needs --weights"),
    (["--head", "fc."], "--head needs --weights"),
    (["--weights", "{w}", "--hidden-size", "4"], "--hidden-size is an option of the demo model"),
    (["--weights", "{w}", "--seed", "1", "--input-size", "2"],
     "--input-size, --seed are options of the demo model"),
    (["--cell", "gru", "--proj-size", "1"], "--proj-size is an LSTM option"),
    (["--proj-size", "3"], "--proj-size must be between 0 and --hidden-size - 1 (2), got 3"),
])
def test_options_never_silently_ignored(tmp_path, capsys, argv, message):
    nplstm.save_weights(nplstm.LSTM(1, 3, seed=0).state_dict(), tmp_path / "w.npz")
    rc, _, err = _run(capsys, "trace", *[a.format(w=tmp_path / "w.npz") for a in argv])
    assert rc == 2 and message in err, err


def test_linear_row_only_for_the_last_layer(capsys):
    model = nplstm.demo.build("lstm", 1, 4, 2, 2, 0, use_torch=False)
    x = nplstm.demo.series(5, 1)
    rc, out, _ = _run(capsys, "trace", "--num-layers", "2", "--hidden-size", "4",
                      "--output-size", "2", "--layer", "0")
    assert rc == 0
    assert not _rows(out, "Linear") and "y = W h + b" not in out
    assert "the Linear head reads the last layer's h: --layer 1 shows its y" in out
    rc, out, _ = _run(capsys, "trace", "--num-layers", "2", "--hidden-size", "4",
                      "--output-size", "2", "--layer", "1")
    y = model.head(model.layer(x)[0])  # (L, 2)
    assert _rows(out, "Linear") == [[f"{v:.4f}" for v in y_t] for y_t in y]


def test_projection_columns_and_final_state_units(tmp_path, capsys):
    rc, out, _ = _run(capsys, "trace", "--proj-size", "2", "--hidden-size", "5", "--steps",
                      "0:2", "--save", str(tmp_path / "t.npz"))
    assert rc == 0
    layer = nplstm.demo.build("lstm", 1, 5, 1, 1, 0, use_torch=False, proj_size=2).layer
    want = layer.trace(nplstm.demo.series(5, 1))
    assert np.array_equal(nplstm.Trace.load(tmp_path / "t.npz").output, want.output)
    assert _titles(out, "hidden_update") == ["p0", "p1"]
    assert _titles(out, "cell_update") == [f"u{k}" for k in range(5)]
    assert _titles(out, "(h_0)") == ["p0", "p1"]
    assert _rows(out, "hidden_update") == [[f"{v:.4f}" for v in want.gate("h")[t]]
                                           for t in range(2)]
    assert "h = W_hr (o ⊙ tanh(c))" in out and "P=2" in out
    # final h_n and c_n: both follow --units (h_n, of P=2 entries, the units below 2)
    rc, out, _ = _run(capsys, "trace", "--proj-size", "2", "--hidden-size", "5", "--units",
                      "1:4")
    assert _rows(out, "c_n[0]") == [[f"{v:.4f}" for v in want.c_n[0][1:4]]]
    assert _rows(out, "h_n[0]") == [[f"{v:.4f}" for v in want.h_n[0][1:2]]]
    assert _titles(out, "c_n[0]") == ["u1", "u2", "u3"]
    assert _titles(out, "h_n[0]") == ["p1"]


def test_final_state_follows_units(capsys):
    model = nplstm.demo.build("lstm", 1, 6, 1, 1, 0, use_torch=False)
    want = model.layer.trace(nplstm.demo.series(5, 1))
    rc, out, _ = _run(capsys, "trace", "--hidden-size", "6", "--units", "2:5")
    assert rc == 0
    assert _rows(out, "h_n[0]") == [[f"{v:.4f}" for v in want.h_n[0][2:5]]]
    assert _rows(out, "c_n[0]") == [[f"{v:.4f}" for v in want.c_n[0][2:5]]]


def test_card_cli_words_and_units(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from nplstm import card

    rc, _, _ = _run(capsys, "trace", "--hidden-size", "6", "--save", str(tmp_path / "t.npz"))
    assert rc == 0
    rc, _, err = _run(capsys, "card", "--cell", "gru", "--trace", str(tmp_path / "t.npz"),
                      "-o", str(tmp_path / "c.png"))
    assert rc == 2 and "a trace of an LSTM, not a GRU: pass --cell lstm" in err
    assert "cell=" not in err and "a LSTM" not in err
    seen = []
    monkeypatch.setattr(card, "draw", lambda *a, **kw: seen.append(kw["units"]) or
                        __import__("matplotlib.figure").figure.Figure())
    for spec, want in (("2", [2]), ("0:2", [0, 1]), (":2", [0, 1]), ("3:6", [3, 4, 5]), ("1:6:2", [1, 3, 5]),
                       ("-1:", [5])):
        rc, _, err = _run(capsys, "card", "--trace", str(tmp_path / "t.npz"), f"--units={spec}",
                          "-o", str(tmp_path / "c.png"))
        assert rc == 0, err
        assert list(seen[-1]) == want, spec
    room = "selects 4 units, but a gate's box has room for 3 at --precision 2"
    for argv, message in ((["--units", "0:4"], room),
                          (["--units", "7"], "--units 7: out of range, there are 6 (0..5)"),
                          (["--units", "0:2", "--precision", "9"], "--precision must be"),
                          (["--units", "x"], "bad --units 'x'")):
        rc, _, err = _run(capsys, "card", "--trace", str(tmp_path / "t.npz"), *argv, "-o",
                          str(tmp_path / "c.png"))
        assert rc == 2 and message in err, (argv, err)
    for option in ("--units", "--batch", "--layer", "--direction", "--precision"):
        rc, _, err = _run(capsys, "card", option, "1", "-o", str(tmp_path / "c.png"))
        assert rc == 2 and f"{option} needs --trace" in err
    with pytest.raises(SystemExit):
        main(["card", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "an integer K is unit K alone" in help_text and "the first N units are :N" \
        in help_text  # one meaning, as in trace


def test_plot_of_a_projected_h_follows_the_tables(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for units in ("1:4", "3:5"):  # p1 (the one below P=2); none below P: p0, p1
        rc, out, err = _run(capsys, "trace", "--proj-size", "2", "--hidden-size", "5",
                            "--units", units, "--plot", str(tmp_path / "p.png"))
        assert rc == 0, err
        assert out.endswith(f"wrote {tmp_path / 'p.png'}\n")
        assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _titles(out, "hidden_update") == ["p0", "p1"]


@pytest.mark.parametrize("argv, message", [
    (["--batch-first"], "--batch-first needs --input: it says a 3-D .npy is (N, L, H_in)"),
    (["--batch-first", "--input", "{x2}"],
     "--batch-first: --input {x2} has shape (4, 3), one sequence (L, H_in)"),
    (["--batch-first", "--input", "{csv}"], "--batch-first: --input {csv} is a table"),
    (["--length", "4", "--input", "{x2}"],
     "--length 4 is the length of the built-in series; with --input {x2} the file decides"),
    (["--length", "0"], "--length must be >= 1, got 0"),
    (["--weights", "{w}", "--length", "0"], "--length must be >= 1, got 0"),
    (["--lengths", "3,2"], ("--lengths 3,2: needs a batched --input (L, N, H_in) (or (N, L, "
                           "H_in) with --batch-first); the built-in series is one sequence")),
    (["--lengths", "3", "--input", "{x2}"], "--input {x2} is one sequence, shape (4, 3)"),
    (["--weights", "{w}", "--nonlinearity", "relu"],
     "--nonlinearity is an RNN option (--cell rnn), not one of --cell gru"),
])
def test_input_options_never_silently_ignored(tmp_path, capsys, argv, message):
    files = {"x2": tmp_path / "x2.npy", "csv": tmp_path / "x.csv", "w": tmp_path / "w.npz"}
    np.save(files["x2"], np.ones((4, 3)))
    files["csv"].write_text("1,2\n3,4\n")
    nplstm.save_weights(nplstm.GRU(1, 3, seed=0).state_dict(), files["w"])
    rc, out, err = _run(capsys, "trace", *[a.format(**files) for a in argv])
    assert rc == 2 and message.format(**files) in err, err
    assert out == ""  # refused before anything is printed


def test_cell_family_read_off_the_weights(tmp_path, capsys):
    gru = nplstm.GRU(2, 4, dtype=np.float64, seed=3)
    nplstm.save_weights(gru.state_dict(), tmp_path / "gru.npz")
    rc, out, err = _run(capsys, "trace", "--weights", str(tmp_path / "gru.npz"), "--save",
                        str(tmp_path / "t.npz"))
    assert rc == 0, err
    assert "GRU(2, 4" in out and "reset_gate" in out
    want = gru(nplstm.demo.series(5, 2))[0]
    assert np.array_equal(nplstm.Trace.load(tmp_path / "t.npz").output, want)
    rc, _, err = _run(capsys, "trace", "--weights", str(tmp_path / "gru.npz"), "--cell", "gru")
    assert rc == 0, err  # --cell given and agreeing is honoured
    for cell, noun in (("lstm", "an LSTM's"), ("rnn", "an RNN's")):
        rc, _, err = _run(capsys, "trace", "--weights", str(tmp_path / "gru.npz"), "--cell",
                          cell)
        assert rc == 2 and f"--cell {cell}: the weights in {tmp_path / 'gru.npz'} are a " \
            f"GRU's (--cell gru), not {noun}" in err and "pass --cell gru" in err, err
    sd = {k: v for k, v in gru.state_dict().items()}
    sd["weight_ih_l0"] = sd["weight_ih_l0"][:10]  # 10 rows: 2.5 x H, no family's
    nplstm.save_weights(sd, tmp_path / "bad.npz")
    rc, _, err = _run(capsys, "trace", "--weights", str(tmp_path / "bad.npz"))
    assert rc == 2 and "these are no LSTM's, GRU's or RNN's weights" in err
    assert "weight_ih_l0 has 10 rows; an LSTM with hidden_size 4 needs 4 x 4 = 16" in err


def test_linear_head_has_its_own_titles(capsys):
    rc, out, _ = _run(capsys, "trace", "--output-size", "2", "--steps", "0:2")
    assert rc == 0
    assert _titles(out, "Linear") == ["y0", "y1"]
    assert _titles(out, "hidden_update") == ["u0", "u1", "u2"]
    rc, out, _ = _run(capsys, "trace", "--proj-size", "2", "--hidden-size", "5",
                      "--output-size", "3")
    assert _titles(out, "Linear") == ["y0", "y1", "y2"]
    assert _titles(out, "hidden_update") == ["p0", "p1"]


def test_card_cli_nonlinearity_and_wide_values(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from nplstm import card

    out_png = str(tmp_path / "c.png")
    rc, _, err = _run(capsys, "card", "--cell", "rnn", "--nonlinearity", "relu", "-o", out_png)
    assert rc == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG", err
    rnn = nplstm.RNN(3, 6, nonlinearity="relu", dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    rnn.load_state_dict({k: rng.uniform(0, 2, v.shape) for k, v in rnn.state_dict().items()})
    rnn.trace(rng.uniform(0, 1, (6, 3))).save(tmp_path / "relu.npz")
    nplstm.RNN(3, 6, seed=0).trace(np.ones((6, 3))).save(tmp_path / "tanh.npz")
    relu, tanh = str(tmp_path / "relu.npz"), str(tmp_path / "tanh.npz")
    values = nplstm.Trace.load(relu).step(4)
    room, widest = card.room(values, np.arange(3))
    assert room == 2 and len(widest) == 7  # values of 4 digits before the point
    rc, _, err = _run(capsys, "card", "--trace", relu, "--step", "4", "--nonlinearity", "relu",
                      "--units", "1:3", "-o", out_png)
    assert rc == 0, err
    for argv, message in (
            (["--nonlinearity", "relu"], ("--nonlinearity is an RNN option (--cell rnn), not "
                                         "one of --cell lstm")),
            (["--cell", "gru", "--nonlinearity", "tanh"], "not one of --cell gru"),
            (["--trace", tanh, "--nonlinearity", "relu"],
             f"--nonlinearity relu: --trace {tanh} is of an RNN with nonlinearity tanh"),
            (["--trace", relu, "--step", "4", "--units", "0:3"],
             ("--units 0:3: selects 3 units, but a gate's box has room for 2 values as wide as "
             f"{widest} (at --precision 2)"))):
        rc, _, err = _run(capsys, "card", *argv, "-o", out_png)
        assert rc == 2 and message in err, (argv, err)
    rc, _, _ = _run(capsys, "trace", "--save", str(tmp_path / "lstm.npz"))
    rc, _, err = _run(capsys, "card", "--trace", str(tmp_path / "lstm.npz"), "--nonlinearity",
                      "tanh", "-o", out_png)
    assert rc == 2 and "--nonlinearity is an RNN option, but --trace" in err
    assert "is a trace of an LSTM" in err
