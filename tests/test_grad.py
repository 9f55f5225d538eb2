"""Backward through time == PyTorch autograd (float64), over a broad grid of options."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import T, torch, twin

import nplstm

REL = 1e-10  # relative to the gradient's scale (its largest magnitude)


def close(ours, theirs, what):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    assert ours.dtype == np.float64, what
    scale = max(float(np.max(np.abs(theirs), initial=0.0)), 1e-300)
    diff = float(np.max(np.abs(ours - theirs), initial=0.0))
    assert diff <= REL * max(scale, 1.0) and diff <= REL * scale + 1e-14, \
        f"{what}: max |diff| {diff:.3g}, scale {scale:.3g}"
    return diff


def torch_run(t, x, hx, lengths, batch_first):
    """torch forward; lengths -> packed sequence (enforce_sorted=False)."""
    if lengths is None:
        return t(x, hx)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths),
                                                     batch_first=batch_first,
                                                     enforce_sorted=False)
    out, state = t(packed, hx)
    L = x.shape[1 if batch_first else 0]
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first,
                                                    total_length=L)
    return out, state


def compare(kind, *, layers=1, bidir=False, batch_first=False, unbatched=False, hx=False,
            lengths=None, proj=0, bias=True, nonlinearity="tanh", grad_state=True, seed=0):
    H_in, H, N, L = 3, 5, 4, 6
    kw = {"num_layers": layers, "bidirectional": bidir, "batch_first": batch_first, "bias": bias}
    if proj:
        kw["proj_size"] = proj
    if kind == "rnn":
        kw["nonlinearity"] = nonlinearity
    ours, t = twin(kind, H_in, H, seed=seed, **kw)
    rng = np.random.default_rng(seed)
    shape = (L, H_in) if unbatched else ((N, L, H_in) if batch_first else (L, N, H_in))
    x = rng.standard_normal(shape)
    D = 2 if bidir else 1
    lead = (D * layers,) if unbatched else (D * layers, N)
    h0 = c0 = None
    if hx:
        h0 = rng.standard_normal(lead + (proj or H,))
        c0 = rng.standard_normal(lead + (H,))
    ours_hx = None if not hx else ((h0, c0) if kind == "lstm" else h0)
    trace = ours.trace(x, ours_hx, lengths=lengths)
    gy = rng.standard_normal(trace.output.shape)
    if lengths is not None:  # padding gets a gradient too: it must be ignored
        pad = ~trace.mask()  # (L, N)
        gy += 100.0 * (pad.T if batch_first else pad)[..., None]
    dh = rng.standard_normal(trace.h_n.shape) if grad_state else None
    dc = rng.standard_normal(trace.c_n.shape) if grad_state and kind == "lstm" else None
    gstate = (dh, dc) if kind == "lstm" else dh
    grads = ours.backward(trace, gy, gstate if grad_state else None)

    xt = T(x).requires_grad_()
    hts = None
    if hx:
        hts = (T(h0).requires_grad_(), T(c0).requires_grad_()) if kind == "lstm" \
            else T(h0).requires_grad_()
    out, st = torch_run(t, xt, hts, lengths, batch_first)
    loss = (out * T(gy)).sum()
    if grad_state:
        if kind == "lstm":
            loss = loss + (st[0] * T(dh)).sum() + (st[1] * T(dc)).sum()
        else:
            loss = loss + (st * T(dh)).sum()
    loss.backward()
    assert list(grads.params) == list(ours.state_dict())
    worst = 0.0
    for name, p in t.named_parameters():
        worst = max(worst, close(grads.params[name], p.grad, name))
    worst = max(worst, close(grads.input, xt.grad, "input"))
    if hx:
        if kind == "lstm":
            worst = max(worst, close(grads.hx[0], hts[0].grad, "dh_0"),
                        close(grads.hx[1], hts[1].grad, "dc_0"))
        else:
            worst = max(worst, close(grads.hx, hts.grad, "dh_0"))
    else:
        shapes = [s.shape for s in ((trace.h_n, trace.c_n) if kind == "lstm" else
                                    (trace.h_n,))]
        got = grads.hx if kind == "lstm" else (grads.hx,)
        assert [g.shape for g in got] == shapes
    return worst


def _grid():
    """A broad grid, thinned deterministically to keep the run short."""
    cases = []
    rng = np.random.default_rng(1)
    for kind, layers, bidir, layout, hx, lens, bias in itertools.product(
            ("lstm", "gru", "rnn"), (1, 2), (False, True),
            ("seq", "batch_first", "unbatched"), (False, True), (False, True), (True, False)):
        if layout == "unbatched" and lens:
            continue
        if not bias and rng.random() < 0.7:
            continue
        extra = {}
        if kind == "lstm" and rng.random() < 0.5:
            extra["proj"] = 2
        if kind == "rnn":
            extra["nonlinearity"] = "relu" if rng.random() < 0.5 else "tanh"
        cases.append(dict(kind=kind, layers=layers, bidir=bidir,
                          batch_first=layout == "batch_first", unbatched=layout == "unbatched",
                          hx=hx, lengths=[6, 2, 5, 1] if lens else None, bias=bias, **extra))
    return cases


GRID = _grid()


@pytest.mark.parametrize("case", GRID, ids=[
    "-".join(f"{k}={v}" for k, v in c.items() if v not in (False, None)) for c in GRID])
def test_backward_matches_autograd(case):
    compare(**case)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_no_grad_state_and_all_options(kind):
    compare(kind, layers=3, bidir=True, batch_first=True, hx=True, lengths=[3, 6, 1, 4],
            grad_state=False, proj=2 if kind == "lstm" else 0)


def test_padding_gradient_is_ignored():
    """dL/d output at padded positions changes nothing (the output there is constant)."""
    lstm = nplstm.LSTM(3, 5, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    trace = lstm.trace(x, lengths=[6, 3])
    gy = np.random.default_rng(1).standard_normal(trace.output.shape)
    a = lstm.backward(trace, gy)
    gy[3:, 1] = 1e6
    b = lstm.backward(trace, gy)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    np.testing.assert_array_equal(a.input, b.input)
    assert np.all(a.input[3:, 1] == 0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_dropout_masks_recorded_and_backpropagated(kind):
    """Training-mode dropout: the trace keeps the masks; autograd through torch layers run
    one by one with the same masks gives the same gradients."""
    H_in, H, L, N, p = 3, 5, 6, 2, 0.4
    ours = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[kind](
        H_in, H, num_layers=3, dropout=p, bidirectional=True, dtype=np.float64, seed=3)
    ours.train()
    sd = ours.state_dict()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((L, N, H_in))
    trace = ours.trace(x)
    assert trace.dropout == p and trace.dropout_masks[2] is None
    masks = trace.dropout_masks[:2]
    assert all(m.shape == (L, N, 2 * H) and m.dtype == bool for m in masks)
    assert 0 < np.mean(masks[0]) < 1
    gy = rng.standard_normal(trace.output.shape)
    grads = ours.backward(trace, gy)

    tcls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    xt = T(x).requires_grad_()
    y, tparams = xt, {}
    for k in range(3):
        m = tcls(H_in if k == 0 else 2 * H, H, bidirectional=True).double()
        with torch.no_grad():
            for name, prm in m.named_parameters():
                prm.copy_(T(sd[name.replace("_l0", f"_l{k}")]))
                tparams[name.replace("_l0", f"_l{k}")] = prm
        y, _ = m(y)
        if k < 2:
            y = y * T(masks[k]) / (1 - p)
    (y * T(gy)).sum().backward()
    for name, prm in tparams.items():
        close(grads.params[name], prm.grad, name)
    close(grads.input, xt.grad, "input")


def _fd_loss(layer, x, hx, gy, gs, lengths):
    out, st = layer(x, hx, lengths=lengths)
    st = st if isinstance(st, tuple) else (st,)
    return float(np.sum(out * gy) + sum(np.sum(s * g) for s, g in zip(st, gs)))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_central_finite_differences(kind):
    """dL/dθ ≈ (L(θ + ε) − L(θ − ε)) / 2ε on a small bidirectional two-layer case."""
    kw = {"proj_size": 2} if kind == "lstm" else {}
    cls = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[kind]
    layer = cls(2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=4, **kw)
    rng = np.random.default_rng(5)
    layer.load_state_dict({k: rng.uniform(-1, 1, v.shape) for k, v in
                           layer.state_dict().items()})
    x = rng.standard_normal((4, 2, 2))
    lengths = [4, 3]
    H_out = 2 if kind == "lstm" else 3
    h0 = rng.standard_normal((4, 2, H_out))
    c0 = rng.standard_normal((4, 2, 3))
    hx = (h0, c0) if kind == "lstm" else h0
    trace = layer.trace(x, hx, lengths=lengths)
    gy = rng.standard_normal(trace.output.shape)
    gs = [rng.standard_normal(s.shape) for s in (trace.h_n, trace.c_n) if s is not None]
    grads = layer.backward(trace, gy, tuple(gs) if kind == "lstm" else gs[0])
    eps = 1e-6

    def fd(arr, set_back, idx):
        old = arr[idx]
        arr[idx] = old + eps
        up = _fd_loss(*set_back(arr), gy, gs, lengths)
        arr[idx] = old - eps
        down = _fd_loss(*set_back(arr), gy, gs, lengths)
        arr[idx] = old
        return (up - down) / (2 * eps)

    sd = layer.state_dict()
    for name in sd:
        for idx in [tuple(rng.integers(0, n) for n in sd[name].shape) for _ in range(2)]:
            def set_param(a, name=name):
                layer.load_state_dict({**sd, name: a})
                return layer, x, hx
            num = fd(sd[name].copy(), set_param, idx)
            assert abs(num - grads.params[name][idx]) < 1e-7, (name, idx)
    layer.load_state_dict(sd)
    xs = x.copy()
    for idx in [(0, 0, 1), (2, 1, 0), (3, 0, 0)]:
        num = fd(xs, lambda a: (layer, a, hx), idx)
        assert abs(num - grads.input[idx]) < 1e-7, idx
    h = h0.copy()
    for idx in [(0, 0, 1), (3, 1, 0)]:
        num = fd(h, lambda a: (layer, x, (a, c0) if kind == "lstm" else a), idx)
        got = grads.hx[0][idx] if kind == "lstm" else grads.hx[idx]
        assert abs(num - got) < 1e-7, idx


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_float32_backward_matches_autograd(kind):
    """float32: the same gradients as torch's float32 autograd, to float32 rounding."""
    kw = {"proj_size": 2} if kind == "lstm" else {}
    ours, t = twin(kind, 3, 5, num_layers=2, bidirectional=True, dtype=np.float32, **kw)
    x = np.random.default_rng(0).standard_normal((7, 2, 3)).astype(np.float32)
    trace = ours.trace(x)
    gy = np.random.default_rng(1).standard_normal(trace.output.shape).astype(np.float32)
    grads = ours.backward(trace, gy)
    xt = T(x).requires_grad_()
    (t(xt)[0] * T(gy)).sum().backward()
    for name, p in t.named_parameters():
        ref = p.grad.numpy()
        assert grads.params[name].dtype == np.float32
        assert np.max(np.abs(grads.params[name] - ref)) <= 1e-5 * max(1, np.max(np.abs(ref)))
    assert np.max(np.abs(grads.input - xt.grad.numpy())) <= 1e-5
