"""A copied or pickled layer keeps the compiled engine: Dask ships layers to its
workers by pickling them, so a copy must run the very kernels the original runs
(bit for bit), not fall back to NumPy while ``engine`` still says ``"numba"``."""

import copy
import pickle

import numpy as np
import pytest

import nplstm

pytest.importorskip("numba")

MAKERS = {
    "lstm": lambda: nplstm.LSTM(3, 5, num_layers=2, batch_first=True, seed=0),
    "lstm_proj": lambda: nplstm.LSTM(3, 6, proj_size=4, batch_first=True, seed=1),
    "gru": lambda: nplstm.GRU(3, 5, bidirectional=True, batch_first=True, seed=2),
    "rnn_relu": lambda: nplstm.RNN(3, 5, nonlinearity="relu", batch_first=True, seed=3),
}


@pytest.mark.parametrize("copier", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))],
                         ids=["deepcopy", "pickle"])
@pytest.mark.parametrize("N", [2, 16])  # both schedules: whole loop (N <= 4) and BLAS
@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_copy_runs_the_same_kernels(kind, N, copier, monkeypatch):
    monkeypatch.setenv("NPLSTM_ENGINE", "numba")
    layer = MAKERS[kind]().eval()
    twin = copier(layer)
    x = np.random.default_rng(N).standard_normal((N, 7, 3)).astype(np.float32)
    assert layer.engine == twin.engine == "numba"
    assert twin._run_family is layer._run_family  # the family the kernels know
    (want, want_state), (got, got_state) = layer(x), twin(x)
    assert np.array_equal(want, got)
    states = (lambda s: s if isinstance(s, tuple) else (s,))
    for a, b in zip(states(want_state), states(got_state), strict=True):
        assert np.array_equal(a, b)


def test_copy_of_an_options_layer_keeps_the_general_step():
    layer = nplstm.LSTM(3, 5, peepholes=True, clip=2.0, seed=0)
    twin = pickle.loads(pickle.dumps(layer))
    assert twin.engine == "numpy-general" and twin._run_family is layer._run_family
    x = np.random.default_rng(0).standard_normal((7, 2, 3)).astype(np.float32)
    assert np.array_equal(layer(x)[0], twin(x)[0])
