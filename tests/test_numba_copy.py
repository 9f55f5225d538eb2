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


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_one_step_near_the_float_limit_warns_nothing(kind, monkeypatch):
    """The compiled one-step path's input product (through NumPy) overflowing to inf
    is part of the math, as on the NumPy path: no RuntimeWarning (pytest: errors).
    Issue 12's case: weight_ih = 1, weight_hh = -1/32, x = h_0 = 2e38."""
    monkeypatch.setenv("NPLSTM_ENGINE", "numba")
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    sd = {"weight_ih": np.ones((G * 32, 32), np.float32),
          "weight_hh": np.full((G * 32, 32), -1 / 32, np.float32)}
    layers = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}
    cells = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}
    layer = layers[kind].from_state_dict({k + "_l0": v for k, v in sd.items()})
    cell = cells[kind].from_state_dict(sd)
    x = np.full((1, 40, 32), 2e38, np.float32)
    h = (x, np.zeros_like(x)) if kind == "lstm" else x
    out = layer(x, h)[0]
    cell(x[0], (x[0], x[0] * 0) if kind == "lstm" else x[0])
    assert out.shape == (1, 40, 32)
