"""Cells and Linear against torch; per-gate teaching path == fast path."""

import numpy as np
import pytest
from helpers import T, assert_close, randomize, to_torch_state, torch, twin

import nplstm
from nplstm import gates


def _state(kind, rng, shape, dtype):
    h = rng.standard_normal(shape).astype(dtype)
    return (h, rng.standard_normal(shape).astype(dtype)) if kind == "lstm" else h


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("kind,extra", [("lstm", {}), ("gru", {}), ("rnn", {}),
                                        ("rnn", {"nonlinearity": "relu"})])
def test_cell_steps_match_torch(kind, extra, unbatched, bias, dtype):
    """Several steps with the state fed back, with and without an initial state."""
    ours, theirs = twin(kind, 3, 5, bias=bias, dtype=dtype, cell=True, **extra)
    rng = np.random.default_rng(0)
    shape = (5,) if unbatched else (2, 5)
    for hx in (None, _state(kind, rng, shape, dtype)):
        s_ours, s_theirs = hx, (None if hx is None else to_torch_state(hx))
        for _ in range(6):
            x = rng.standard_normal((3,) if unbatched else (2, 3)).astype(dtype)
            s_ours, s_theirs = ours(x, s_ours), theirs(T(x), s_theirs)
            assert_close(s_ours, s_theirs, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4,), (2, 4), (3, 2, 4)])
def test_linear_matches_torch(shape, bias, dtype):
    t = randomize(torch.nn.Linear(4, 6, bias=bias).to(
        torch.float64 if dtype == np.float64 else torch.float32))
    ours = nplstm.Linear(4, 6, bias=bias, dtype=dtype)
    ours.load_state_dict(t.state_dict())
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    assert_close(ours(x), t(T(x)), dtype)


def test_linear_init_bound_and_errors():
    lin = nplstm.Linear(9, 2, seed=0)
    assert np.all(np.abs(lin.weight) <= 1 / 3) and np.all(np.abs(lin.bias) <= 1 / 3)
    with pytest.raises(ValueError, match=r"input must have shape \(\*, 9\).*got \(2, 8\)"):
        lin(np.zeros((2, 8)))
    with pytest.raises(ValueError, match="in_features must be an integer >= 1, got 0"):
        nplstm.Linear(0, 2)


# ------------------------------------------------------- per-gate == fused --


@pytest.mark.parametrize("proj", [0, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_gate_functions_equal_fast_path(bias, proj):
    m = nplstm.LSTM(3, 5, bias=bias, proj_size=proj, dtype=np.float64, seed=1)
    x = np.random.default_rng(0).standard_normal((7, 2, 3))
    trace = m.trace(x)
    h = np.zeros((2, proj or 5))
    c = np.zeros((2, 5))
    for t in range(7):
        h, c, g = gates.lstm_step(x[t], h, c, m.weight_ih_l0, m.weight_hh_l0,
                                  m.bias_ih_l0 if bias else None,
                                  m.bias_hh_l0 if bias else None,
                                  m.weight_hr_l0 if proj else None)
        for name in "ifgo":
            np.testing.assert_allclose(g[name], trace.gate(name)[t], rtol=0, atol=1e-14)
        np.testing.assert_allclose(c, trace.gate("c")[t], rtol=0, atol=1e-14)
        np.testing.assert_allclose(h, trace.output[t], rtol=0, atol=1e-14)


def test_lstm_individual_gates_unbatched():
    """The seed's view: one sample, each gate function called on its own rows."""
    cell = nplstm.LSTMCell(2, 3, dtype=np.float64, seed=4)
    x, h, c = np.array([0.5, -1.0]), np.array([0.1, 0.2, -0.3]), np.array([1.0, -1.0, 0.5])
    W, U, b, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    rows = {k: gates.gate_rows("lstm", k, 3) for k in "ifgo"}
    i = gates.input_gate(x, h, W[rows["i"]], U[rows["i"]], b[rows["i"]], bh[rows["i"]])
    f = gates.forget_gate(x, h, W[rows["f"]], U[rows["f"]], b[rows["f"]], bh[rows["f"]])
    g = gates.cell_candidate(x, h, W[rows["g"]], U[rows["g"]], b[rows["g"]], bh[rows["g"]])
    o = gates.output_gate(x, h, W[rows["o"]], U[rows["o"]], b[rows["o"]], bh[rows["o"]])
    c_new = gates.cell_update(f, c, i, g)
    h_new = gates.hidden_update(o, c_new)
    h_fast, c_fast = cell(x, (h, c))
    assert h_new.shape == (3,)
    np.testing.assert_allclose(h_new, h_fast, rtol=0, atol=1e-15)
    np.testing.assert_allclose(c_new, c_fast, rtol=0, atol=1e-15)
    # and against the equations written out by hand
    z = W @ x + b + U @ h + bh
    sig = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(i, sig[0:3], atol=1e-15)
    np.testing.assert_allclose(g, np.tanh(z[6:9]), atol=1e-15)


@pytest.mark.parametrize("bias", [True, False])
def test_gru_gate_functions_equal_fast_path(bias):
    m = nplstm.GRU(3, 5, bias=bias, dtype=np.float64, seed=2)
    x = np.random.default_rng(0).standard_normal((7, 2, 3))
    trace = m.trace(x)
    h = np.zeros((2, 5))
    for t in range(7):
        h, g = gates.gru_step(x[t], h, m.weight_ih_l0, m.weight_hh_l0,
                              m.bias_ih_l0 if bias else None, m.bias_hh_l0 if bias else None)
        for name in "rzn":
            np.testing.assert_allclose(g[name], trace.gate(name)[t], rtol=0, atol=1e-14)
        np.testing.assert_allclose(h, trace.output[t], rtol=0, atol=1e-14)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_step_equals_fast_path(nonlinearity):
    m = nplstm.RNN(3, 5, nonlinearity=nonlinearity, dtype=np.float64, seed=2)
    x = np.random.default_rng(0).standard_normal((7, 2, 3))
    out = m(x)[0]
    h = np.zeros((2, 5))
    for t in range(7):
        h = gates.rnn_step(x[t], h, m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0,
                           m.bias_hh_l0, nonlinearity)
        np.testing.assert_allclose(h, out[t], rtol=0, atol=1e-14)


def test_gru_individual_gates_unbatched():
    """One sample through each GRU gate function, against the cell and the equations."""
    cell = nplstm.GRUCell(2, 3, dtype=np.float64, seed=4)
    x, h = np.array([0.5, -1.0]), np.array([0.1, 0.2, -0.3])
    W, U, b, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    rows = {k: gates.gate_rows("gru", k, 3) for k in "rzn"}
    r = gates.reset_gate(x, h, W[rows["r"]], U[rows["r"]], b[rows["r"]], bh[rows["r"]])
    z = gates.update_gate(x, h, W[rows["z"]], U[rows["z"]], b[rows["z"]], bh[rows["z"]])
    n = gates.new_gate(x, h, r, W[rows["n"]], U[rows["n"]], b[rows["n"]], bh[rows["n"]])
    h_new = gates.gru_hidden_update(z, n, h)
    assert r.shape == z.shape == n.shape == h_new.shape == (3,)
    np.testing.assert_allclose(h_new, cell(x, h), rtol=0, atol=1e-15)
    step_h, step_gates = gates.gru_step(x, h, W, U, b, bh)
    np.testing.assert_array_equal(step_h, h_new)
    np.testing.assert_array_equal(step_gates["n"], n)
    # the equations written out by hand, b_hn inside the reset product
    zx, zh = W @ x + b, U @ h + bh
    sig = 1 / (1 + np.exp(-(zx + zh)))
    np.testing.assert_allclose(r, sig[0:3], atol=1e-15)
    np.testing.assert_allclose(z, sig[3:6], atol=1e-15)
    np.testing.assert_allclose(n, np.tanh(zx[6:9] + r * zh[6:9]), atol=1e-15)
    with torch.no_grad():
        theirs = torch.nn.GRUCell(2, 3, dtype=torch.float64)
        theirs.load_state_dict({k: T(v) for k, v in cell.state_dict().items()})
        assert_close(h_new, theirs(T(x), T(h)), np.float64)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_step_unbatched(nonlinearity):
    cell = nplstm.RNNCell(2, 3, nonlinearity=nonlinearity, dtype=np.float64, seed=4)
    x, h = np.array([0.5, -1.0]), np.array([0.1, 0.2, -0.3])
    W, U, b, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    h_new = gates.rnn_step(x, h, W, U, b, bh, nonlinearity)
    assert h_new.shape == (3,)
    np.testing.assert_allclose(h_new, cell(x, h), rtol=0, atol=1e-15)
    pre = W @ x + b + U @ h + bh
    want = np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)
    np.testing.assert_allclose(h_new, want, atol=1e-15)
    with torch.no_grad():
        theirs = torch.nn.RNNCell(2, 3, nonlinearity=nonlinearity, dtype=torch.float64)
        theirs.load_state_dict({k: T(v) for k, v in cell.state_dict().items()})
        assert_close(h_new, theirs(T(x), T(h)), np.float64)


def test_sigmoid_is_stable_and_exact():
    x = np.array([-1000.0, -40.0, -1.0, 0.0, 1.0, 40.0, 1000.0])
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # underflow to 0 is right
        s = gates.sigmoid(x)
    want = torch.sigmoid(torch.tensor(x)).numpy()
    np.testing.assert_allclose(s, want, rtol=1e-15, atol=0)
    assert gates.sigmoid(np.float32(3.0)).dtype == np.float32
