"""Cells and Linear: backward == PyTorch autograd (float64); errors named."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import T, torch, twin
from test_grad import close

import nplstm


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_backward_matches_autograd(kind, unbatched, bias):
    kw = {"nonlinearity": "relu"} if kind == "rnn" and bias else {}
    ours, t = twin(kind, 3, 5, cell=True, bias=bias, **kw)
    rng = np.random.default_rng(2)
    lead = () if unbatched else (4,)
    x = rng.standard_normal(lead + (3,))
    h0, c0 = rng.standard_normal(lead + (5,)), rng.standard_normal(lead + (5,))
    hx = (h0, c0) if kind == "lstm" else h0
    trace = ours.trace(x, hx)
    dh, dc = rng.standard_normal(lead + (5,)), rng.standard_normal(lead + (5,))
    grads = ours.backward(trace, (dh, dc) if kind == "lstm" else dh)
    xt, ht, ct = (T(a).requires_grad_() for a in (x, h0, c0))
    if kind == "lstm":
        h, c = t(xt, (ht, ct))
        loss = (h * T(dh)).sum() + (c * T(dc)).sum()
    else:
        loss = (t(xt, ht) * T(dh)).sum()
    loss.backward()
    assert list(grads.params) == list(ours.state_dict())
    for name, p in t.named_parameters():
        close(grads.params[name], p.grad, name)
    close(grads.input, xt.grad, "input")
    if kind == "lstm":
        close(grads.hx[0], ht.grad, "dh")
        close(grads.hx[1], ct.grad, "dc")
    else:
        close(grads.hx, ht.grad, "dh")


def test_lstm_cell_dc_may_be_none():
    cell = nplstm.LSTMCell(3, 5, dtype=np.float64, seed=0)
    trace = cell.trace(np.ones((2, 3)))
    g = cell.backward(trace, (np.ones((2, 5)), None))
    assert g.hx[1].shape == (2, 5)


@pytest.mark.parametrize("shape", [(4, 3), (3,), (2, 6, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_backward_matches_autograd(shape, bias):
    t = torch.nn.Linear(3, 2, bias=bias).double()
    with torch.no_grad():
        for p in t.parameters():
            p.uniform_(-1, 1)
    fc = nplstm.Linear(3, 2, bias=bias, dtype=np.float64)
    fc.load_state_dict(t.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    gy = rng.standard_normal(shape[:-1] + (2,))
    g = fc.backward(x, gy)
    xt = T(x).requires_grad_()
    (t(xt) * T(gy)).sum().backward()
    assert list(g.params) == list(fc.state_dict())
    close(g.params["weight"], t.weight.grad, "weight")
    if bias:
        close(g.params["bias"], t.bias.grad, "bias")
    close(g.input, xt.grad, "input")
    assert g.hx is None


def test_linear_finite_differences():
    fc = nplstm.Linear(3, 2, dtype=np.float64, seed=1)
    x = np.random.default_rng(0).standard_normal((4, 3))
    gy = np.random.default_rng(1).standard_normal((4, 2))
    g = fc.backward(x, gy)
    eps, W = 1e-6, fc.state_dict()["weight"]
    for idx in [(0, 0), (1, 2)]:
        vals = []
        for s in (eps, -eps):
            w = W.copy()
            w[idx] += s
            fc.weight = w
            vals.append(np.sum(fc(x) * gy))
        assert abs((vals[0] - vals[1]) / (2 * eps) - g.params["weight"][idx]) < 1e-8


def test_backward_errors():
    lstm = nplstm.LSTM(3, 5, dtype=np.float64, seed=0)
    gru = nplstm.GRU(3, 5, dtype=np.float64, seed=0)
    x = np.ones((4, 2, 3))
    trace = lstm.trace(x)
    with pytest.raises(ValueError, match=r"grad_output must have the shape of the output, "
                                         r"\(4, 2, 5\), got \(4, 5\)"):
        lstm.backward(trace, np.ones((4, 5)))
    with pytest.raises(TypeError, match="trace must be the Trace"):
        lstm.backward(object(), np.ones((4, 2, 5)))
    with pytest.raises(ValueError, match="trace does not come from this layer"):
        gru.backward(trace, np.ones((4, 2, 5)))
    peep = nplstm.LSTM(3, 5, dtype=np.float64, seed=0, peepholes=True)
    with pytest.raises(ValueError, match="its options are {}, the layer's {'peepholes': True}"):
        peep.backward(trace, np.ones((4, 2, 5)))
    with pytest.raises(TypeError, match=r"grad_state must be a tuple \(dh_n, dc_n\)"):
        lstm.backward(trace, np.ones((4, 2, 5)), np.ones((1, 2, 5)))
    with pytest.raises(ValueError, match=r"grad_state \(dc_n\) must have the shape"):
        lstm.backward(trace, np.ones((4, 2, 5)), (None, np.ones((2, 5))))
    cell = nplstm.LSTMCell(3, 5, dtype=np.float64)
    ctrace = cell.trace(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"grad_output must be a tuple \(dh, dc\)"):
        cell.backward(ctrace, np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"grad_output \(dh\) must have the shape"):
        cell.backward(ctrace, (np.ones((3, 5)), None))
    fc = nplstm.Linear(3, 2)
    with pytest.raises(ValueError, match=r"grad_output must have shape \(4, 2\)"):
        fc.backward(np.ones((4, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"input must have shape \(\*, 3\)"):
        fc.backward(np.ones((4, 2)), np.ones((4, 2)))


def test_saved_trace_backpropagates_with_its_dropout_masks(tmp_path):
    lstm = nplstm.LSTM(3, 5, num_layers=2, dropout=0.5, dtype=np.float64, seed=0).train()
    trace = lstm.trace(np.random.default_rng(0).standard_normal((4, 2, 3)))
    trace.save(tmp_path / "t.npz")
    loaded = nplstm.Trace.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(loaded.dropout_masks[0], trace.dropout_masks[0])
    gy = np.ones((4, 2, 5))
    a, b = lstm.backward(trace, gy), lstm.backward(loaded, gy)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_backward_refuses_a_trace_recorded_with_other_weights():
    """Activations from one set of weights with the gradient of another would be
    silently wrong (PyTorch's autograd refuses weights changed after the forward)."""
    from nplstm import optim

    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    gy = np.ones((4, 2, 5))
    lstm = nplstm.LSTM(3, 5, dtype=np.float64, seed=0)
    twin = nplstm.LSTM(3, 5, dtype=np.float64, seed=1)  # same shapes, other weights
    trace = lstm.trace(x)
    with pytest.raises(ValueError, match="trace was recorded with other weights than this LSTM"):
        twin.backward(trace, gy)
    lstm.backward(trace, gy)  # still its own
    lstm.load_state_dict(twin.state_dict())
    with pytest.raises(ValueError, match="load_state_dict or an optimizer step"):
        lstm.backward(trace, gy)
    trace = lstm.trace(x)
    opt = optim.SGD(lstm, lr=0.1)
    opt.step(lstm.backward(trace, gy).params)
    with pytest.raises(ValueError, match="trace was recorded with other weights"):
        lstm.backward(trace, gy)
    cell, other = (nplstm.GRUCell(3, 5, dtype=np.float64, seed=s) for s in (0, 1))
    ctrace = cell.trace(x[0])
    with pytest.raises(ValueError, match="trace was recorded with other weights than this GRUCell"):
        other.backward(ctrace, np.ones((2, 5)))
