"""`nplstm bench` runs on a tiny configuration and writes valid JSON (benchmarks
are not tests: nothing here checks a speed)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nplstm import bench
from nplstm.cli import main

pytest.importorskip("threadpoolctl")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

TINY = ["--config", "4,2,3", "--repeats", "1", "--min-time", "0", "--settle", "0"]
ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


@pytest.mark.parametrize("mode", ["sequence", "stream"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_runtimes_agree(cell, mode):
    """Every runtime computes nplstm's numbers: the ONNX gate-order conversion is right."""
    res = bench.run_config(bench.Config(cell, 6, 2, 5, mode), repeats=2, min_time=0,
                           settle=0)
    others = {"torch", "onnxruntime"} | ({"torch_cell"} if mode == "stream"
                                         else {"onnx_reference"})
    ours = {"nplstm_cell"} if mode == "stream" else set()
    if res["engine"] == "numba":  # the NumPy path runs beside the compiled one
        ours.add("nplstm_numpy")
        assert set(res["ratios"]["nplstm_numpy"]) == others
    assert set(res["max_abs_diff"]) == others | ours
    assert max(res["max_abs_diff"].values()) < 1e-5, res["max_abs_diff"]
    assert set(res["ratio"]) == others and all(t > 0 for t in res["times_ms"].values())
    for low, high in res["ratio_quartiles"]["nplstm"].values():
        assert 0 < low <= high
    assert {"nplstm", "torch", "onnxruntime"} <= set(res["runtimes"])
    assert "intra-op threads" in res["runtimes"]["torch"]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_onnx_model_is_valid(cell):
    layer = bench.make_layer(bench.Config(cell, 1, 1, 4))
    model = bench.onnx_model(layer)
    onnx.checker.check_model(model, full_check=True)


def test_cli_writes_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    argv = ["bench", *TINY, "--cell", "gru", "--cell", "rnn", "--threads", "1,2",
            "--json", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "gru T4 B2 H3" in out and "÷onnxruntime" in out and f"wrote {path}" in out
    data = json.loads(path.read_text())
    assert {"machine", "blas", "results"} <= set(data)
    assert len(data["results"]) == 4 and {r["threads"] for r in data["results"]} == {1, 2}
    r = data["results"][0]
    assert {"cell", "T", "B", "H", "mode", "times_ms", "ratio", "max_abs_diff"} <= set(r)
    assert data["blas"]["blas"][0]["internal_api"]


def test_cli_stream_and_markdown(capsys):
    assert main(["bench", *TINY, "--stream", "--markdown", "--no-reference"]) == 0
    out = capsys.readouterr().out
    assert "| lstm stream B2 H3 | 1 |" in out and "onnx_reference" not in out


def test_format_table_and_describe():
    info = bench.run([bench.Config("rnn", 3, 1, 2)], repeats=1, min_time=0,
                     with_reference=False, settle=0)
    text = bench.format_table(info["results"])
    assert text.splitlines()[1].startswith("rnn T3 B1 H2")
    assert "numpy" in bench.describe(info) and "vector extensions" in bench.describe(info)


def test_batch_one_also_runs_on_one_thread():
    """Only 2 threads asked: the B=1 configuration runs on 1 thread too, B>1 does not."""
    info = bench.run([bench.Config("gru", 3, 1, 2), bench.Config("gru", 3, 2, 2)], threads=(2,),
                     repeats=1, min_time=0, with_reference=False, settle=0)
    assert [(r["B"], r["threads"]) for r in info["results"]] == [(1, 1), (1, 2), (2, 2)]


def test_vector_extensions_read_from_cpuinfo(monkeypatch):
    import builtins
    import io

    real_open = builtins.open

    def fake(path, *args, **kwargs):
        if path == "/proc/cpuinfo":
            return io.StringIO("model name\t: Test CPU\nflags\t\t: fpu sse4_2 avx2 fma "
                               "avx512f\nmodel name\t: Test CPU\nflags\t\t: x\n")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake)
    m = bench.machine_info()
    assert m["processor"] == "Test CPU"
    assert m["vector_extensions"] == ["sse4_2", "avx2", "fma", "avx512f"]


def test_numpy_engine_column(monkeypatch):
    """With numba the NumPy path is timed beside it, and the table says which is which."""
    pytest.importorskip("numba")
    monkeypatch.setenv("NPLSTM_ENGINE", "auto")
    info = bench.run([bench.Config("lstm", 3, 1, 2)], repeats=1, min_time=0,
                     with_reference=False, settle=0)
    (r,) = info["results"]
    assert r["engine"] == "numba" and "nplstm_numpy" in r["times_ms"]
    head = bench.format_table(info["results"]).splitlines()[0]
    assert "numpy÷torch" in head and "engine" in head
    import os

    assert os.environ["NPLSTM_ENGINE"] == "auto"  # restored after the NumPy runs


@pytest.mark.parametrize("argv,match", [
    (["bench", "--config", "4,2"], "--config must be 3 integers"),
    (["bench", "--config", "4,x,2"], "--config must be comma-separated integers"),
    (["bench", "--threads", "0"], "--threads must be some integers >= 1"),
    (["bench", "--repeats", "0"], "--repeats must be >= 1"),
    (["bench", "--settle", "-1"], "--settle must be >= 0"),
    (["bench", "--stream"], "--stream applies to --config entries"),
    (["bench", "--memory", "1,2"], "--memory must be 3 integers"),
    (["bench", "--memory", "0,1,1"], "--memory must be 3 integers >= 1"),
])
def test_cli_errors(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_benchmarks_script_runs(tmp_path):
    path = tmp_path / "r.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), *TINY,
                        "--cell", "rnn", "--no-reference", "--json", str(path)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(path.read_text())["results"][0]["label"] == "rnn T4 B2 H3"


def test_default_configs():
    cfgs = bench.default_configs(("lstm", "gru"))
    assert len(cfgs) == 14 and cfgs[-1].mode == "stream"
    assert [(c.T, c.B, c.H) for c in cfgs[:6]] == bench.DEFAULT_CONFIGS
    assert np.all([c.cell == "lstm" for c in cfgs[:7]])


def test_cli_memory(tmp_path, capsys):
    """--memory measures one long call: the output, and a workspace beside it that
    does not grow with the sequence (the projection runs in bounded chunks)."""
    path = tmp_path / "m.json"
    assert main(["bench", "--memory", "30000,2,8", "--cell", "gru", "--json", str(path)]) == 0
    assert "gru T30000 B2 H8: peak" in capsys.readouterr().out
    (row,) = json.loads(path.read_text())["memory"]
    assert row["output_bytes"] == 30000 * 2 * 8 * 4
    assert row["peak_bytes"] == row["output_bytes"] + row["workspace_bytes"]
    longer = bench.peak_memory("gru", T=90000, B=2, H=8)  # beyond one projection chunk
    assert longer["output_bytes"] == 3 * row["output_bytes"]
    assert longer["workspace_bytes"] <= row["workspace_bytes"] + 4096
