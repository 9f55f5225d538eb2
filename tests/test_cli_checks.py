"""The CLI checks before it works, names the option in its errors, gives each option
one meaning and says what it means (issue 12, items 11-15)."""

import pathlib
import sys

import pytest

from nplstm.cli import main
from nplstm.io.checkpoint import find_state_dict

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _no_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError


# ------------------------------------------------ 11. check before working --


def test_trace_checks_outputs_before_printing(tmp_path, capsys, monkeypatch):
    for argv, message in ((["--plot", str(tmp_path / "g.jpg")], "ending in .png, .svg, .pdf"),
                          (["--save", str(tmp_path / "t.txt")], "ending in .npz"),
                          (["--save", str(tmp_path / "no" / "t.npz")], "there is no folder"),
                          (["--plot", str(tmp_path / "no" / "g.png")], "there is no folder")):
        rc, out, err = _run(capsys, "trace", *argv)
        assert rc == 2 and message in err and out == "", argv
    _no_matplotlib(monkeypatch)
    rc, out, err = _run(capsys, "trace", "--plot", str(tmp_path / "g.png"))
    assert rc == 2 and out == ""
    assert "--plot needs matplotlib: pip install 'nplstm[plot]'" in err
    rc, out, err = _run(capsys, "card", "-o", str(tmp_path / "c.png"))
    assert rc == 2 and out == "" and "nplstm card needs matplotlib" in err
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "c.png").exists()


def test_convert_and_bench_check_their_output_first(tmp_path, capsys):
    import torch

    src = tmp_path / "m.pt"
    torch.save(torch.nn.GRU(2, 3).state_dict(), src)
    rc, out, err = _run(capsys, "convert", str(src), str(tmp_path / "no" / "m.npz"), "--list")
    assert rc == 2 and out == "" and "there is no folder" in err  # not after the listing
    rc, out, err = _run(capsys, "bench", "--config", "4,2,3", "--json",
                        str(tmp_path / "no" / "b.json"))
    assert rc == 2 and out == "" and "--json" in err and "there is no folder" in err


# ------------------------------------------- 12. errors in the CLI's words --


@pytest.mark.parametrize("command", ["demo", "verify", "trace"])
def test_seed_is_named_and_checked_first(capsys, command):
    with pytest.raises(SystemExit) as exc:
        main([command, "--seed", "-1"])
    out, err = capsys.readouterr()
    assert exc.value.code == 2 and out == ""  # no header before the error
    assert "argument --seed: expected an integer >= 0, got -1" in err


def test_csv_input_errors_name_the_file_and_line(tmp_path, capsys):
    cases = (("", "no rows of numbers in the file"),
             ("a,b\n", "no rows of numbers in the file"),
             ("1,2\n3\n", "line 2 has 1 value, the first row 2"),
             ("t,x\n1,2\n3,4,5\n", "line 3 has 3 values, the first row 2"),
             ("1,2\n3,x\n", "line 2 is not all numbers: '3,x'"))
    for k, (text, message) in enumerate(cases):
        path = tmp_path / f"in{k}.csv"
        path.write_text(text)
        rc, out, err = _run(capsys, "trace", "--input", str(path))  # warnings are errors
        assert rc == 2 and f"--input {path}: {message}" in err, (text, err)
        assert "usecols" not in err and out == ""
    path = tmp_path / "ok.csv"
    path.write_text("t,x\n\n0.5,1\n0.25,2\n")  # header and blank lines skipped
    rc, out, err = _run(capsys, "trace", "--input", str(path), "--cell", "rnn")
    assert rc == 0, err
    assert f"{path}, shape (2, 2)" in out


# ----------------------------------------------- 13. one meaning per option --


def test_units_mean_the_same_in_trace_and_card(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rc, out, _ = _run(capsys, "trace", "--hidden-size", "6", "--units", "2",
                      "--save", str(tmp_path / "t.npz"))
    assert rc == 0 and "units 2 of 6" in out
    rc, out, err = _run(capsys, "card", "--trace", str(tmp_path / "t.npz"), "--units", "2",
                        "-o", str(tmp_path / "c.png"))
    assert rc == 0, err
    from nplstm import card

    strings = [t.get_text() for ax in card.draw(trace=__import__("nplstm").Trace.load(
        tmp_path / "t.npz"), units=[2]).axes for t in ax.texts]
    assert any("units 2 shown" in s or "unit 2 shown" in s for s in strings)


def test_demo_has_trace_s_model_options_and_caps_its_rows(capsys):
    pytest.importorskip("torch")
    rc, out, err = _run(capsys, "demo", "--cell", "gru", "--num-layers", "2",
                        "--hidden-size", "17")
    assert rc == 0, err
    assert "MATCH: within the float64 tolerance" in out  # torch ran, layer by layer
    assert "  layer 1" in out and "values of units 0..3 of 17 printed" in out
    assert max(len(line) for line in out.splitlines()) < 180  # was ~400
    assert "nplstm trace --cell gru --hidden-size 17 --num-layers 2 --seed 0" in out
    rc, out, err = _run(capsys, "demo", "--cell", "rnn", "--nonlinearity", "relu")
    assert rc == 0 and "RNN(1, 3, nonlinearity='relu'" in out and "MATCH" in out
    assert "--nonlinearity relu" in out  # the same model in trace
    rc, out, err = _run(capsys, "demo", "--nonlinearity", "relu")
    assert rc == 2 and "--nonlinearity is an RNN option" in err
    rc, out, err = _run(capsys, "demo", "--num-layers", "0")
    assert rc == 2 and "--num-layers must be >= 1, got 0" in err


# ---------------------------------------------------------------- 14. words --


def test_rnn_words_do_not_speak_of_gates(capsys):
    rc, out, _ = _run(capsys, "demo", "--cell", "rnn", "--no-torch")
    assert rc == 0 and "per-gate" not in out and "gate by gate" not in out
    assert "an RNN has no gates" in out
    pytest.importorskip("matplotlib")
    from nplstm import card

    strings = [t.get_text() for ax in card.draw("rnn").axes for t in ax.texts]
    assert not any("gate by gate" in s for s in strings)
    assert any("one block (an RNN has no gates)" in s for s in strings)


def test_an_int_and_plurals():
    with pytest.raises(ValueError, match="the top level is an int"):
        find_state_dict(5)
    with pytest.raises(ValueError, match="the top level is a list"):
        find_state_dict([1])


def test_bench_words(capsys):
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    rc, out, _ = _run(capsys, "bench", "--config", "4,2,3", "--repeats", "1", "--min-time", "0",
                      "--stream", "--no-reference")
    assert rc == 0 and "1 configuration x threads" in out
    assert "ms for 4 calls" in out  # the progress line
    assert "stream rows: the time of all 4 one-step calls together (state carried), not " \
           "of one call" in out


# --------------------------------------------------------------- 15. README --


def test_readme_makes_the_venv_before_installing():
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("python3 -m venv .venv && . .venv/bin/activate")
    assert all(line.startswith("pip install") for line in lines[1:])
