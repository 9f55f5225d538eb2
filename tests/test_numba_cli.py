"""``nplstm compile``: fills numba's cache for every kernel, or says what is missing."""

import re

import numpy as np
import pytest

from nplstm import _numba
from nplstm.cli import main

pytest.importorskip("numba")


def test_compile_reports_every_kernel(capsys):
    assert main(["compile", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert "numba" in out and "cache:" in out
    for name in ("lstm small batch (float64)", "lstm-proj GEMM schedule (float64)",
                 "lstm-proj1 GEMM schedule, traced (float64)",
                 "lstm-proj GEMM schedule, traced (float64)",
                 "gru small batch, traced (float64)", "gru GEMM schedule (float64)",
                 "rnn small batch (float64)"):
        assert name in out
    assert "float32" not in out.split("cache:")[1]
    # float64: 5 whole loops of small batches and 5 of the GEMM schedule (LSTM and GRU
    # called and traced), and the Python loop's LSTM kernels (proj_size 1): 3; other
    # tests in this process may have compiled more
    assert int(re.search(r"(\d+) kernels ready", out).group(1)) >= 13
    K = _numba.kernels()
    for kernel in (K.lstm_seq, K.gru_seq, K.rnn_seq, K.lstm_gemm_seq, K.gru_gemm_seq,
                   K.rnn_gemm_seq):  # what a forward pass calls from Python
        assert any("float64" in str(sig[0])
                   for sig in kernel.signatures), kernel


def test_compile_without_numba(monkeypatch, capsys):
    monkeypatch.setattr(_numba, "_available", [False])
    assert main(["compile"]) == 2
    assert "pip install 'nplstm[fast]'" in capsys.readouterr().err


def test_precompiled_layers_add_no_signature():
    """A real layer's call uses the signatures precompile made: nothing compiles later."""
    from nplstm import LSTM

    _numba.precompile(("float32",))
    K = _numba.kernels()
    before = len(K.lstm_seq.signatures)
    layer = LSTM(4, 6, proj_size=3, num_layers=2, bidirectional=True)
    x = np.zeros((5, 2, 4), np.float32)
    x.flags.writeable = False
    layer(x)
    layer(x, lengths=[5, 2])
    assert len(K.lstm_seq.signatures) == before
