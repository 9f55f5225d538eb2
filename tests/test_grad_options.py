"""Backward for the ONNX/Keras layer options: every gradient entry against central
finite differences (float64), and the general backward == the PyTorch-exact one."""

from __future__ import annotations

import numpy as np
import pytest

import nplstm

EPS = 1e-6


def _loss(module, x, hx, gy, gs, lengths, cell):
    if cell:
        out = module(x, hx)
        outs = out if isinstance(out, tuple) else (out,)
        return float(sum(np.sum(o * g) for o, g in zip(outs, gs)))
    out, st = module(x, hx, lengths=lengths)
    st = st if isinstance(st, tuple) else (st,)
    return float(np.sum(out * gy) + sum(np.sum(s * g) for s, g in zip(st, gs)))


def fd_check(module, x, hx, lengths=None, seed=0):
    """Every entry of every parameter, the input and the initial states."""
    cell = "Cell" in type(module).__name__
    rng = np.random.default_rng(seed)
    module.load_state_dict({k: rng.uniform(-1, 1, v.shape)
                            for k, v in module.state_dict().items()})
    trace = module.trace(x, hx) if cell else module.trace(x, hx, lengths=lengths)
    states = [s for s in (trace.h_n, trace.c_n) if s is not None]
    gs = [rng.standard_normal(s.shape) for s in states]
    gy = None if cell else rng.standard_normal(trace.output.shape)
    packed = tuple(gs) if len(gs) == 2 else gs[0]
    grads = module.backward(trace, packed) if cell else module.backward(trace, gy, packed)
    sd = module.state_dict()
    hx_list = list(hx) if isinstance(hx, tuple) else [hx]

    def numeric(arr, rebuild):
        out = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            vals = []
            for s in (EPS, -EPS):
                arr[idx] = old + s
                vals.append(_loss(*rebuild(), gy, gs, lengths, cell))
            arr[idx] = old
            out[idx] = (vals[0] - vals[1]) / (2 * EPS)
        return out

    def pack(h):
        return tuple(h) if len(h) == 2 else h[0]

    for name in sd:
        a = sd[name].copy()

        def rebuild(a=a, name=name):
            module.load_state_dict({**sd, name: a})
            return module, x, pack(hx_list)

        num = numeric(a, rebuild)
        np.testing.assert_allclose(grads.params[name], num, rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    module.load_state_dict(sd)
    xs = x.copy()
    num = numeric(xs, lambda: (module, xs, pack(hx_list)))
    np.testing.assert_allclose(grads.input, num, rtol=1e-6, atol=1e-7, err_msg="input")
    got = grads.hx if isinstance(grads.hx, tuple) else (grads.hx,)
    for k in range(len(hx_list)):
        h = [v.copy() for v in hx_list]
        num = numeric(h[k], lambda h=h: (module, x, pack(h)))
        np.testing.assert_allclose(got[k], num, rtol=1e-6, atol=1e-7, err_msg=f"hx[{k}]")


def _layer_case(cls, H_out, **kw):
    m = cls(2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=0, **kw)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 2, 2))
    h0 = rng.standard_normal((4, 2, H_out))
    hx = (h0, rng.standard_normal((4, 2, 3))) if cls is nplstm.LSTM else h0
    return m, x, hx


LAYER_CASES = [
    (nplstm.LSTM, {"peepholes": True, "clip": 1.5, "proj_size": 2,
                   "activations": ("HardSigmoid", "ScaledTanh", "Softsign"),
                   "activation_alpha": (0.3, 1.2, None), "activation_beta": (0.45, 0.8, None)}),
    (nplstm.LSTM, {"input_forget": True, "activations": ("Sigmoid", "Elu", "Softplus")}),
    (nplstm.LSTM, {"peepholes": True, "input_forget": True, "clip": 0.9,
                   "activations": ("Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Affine",
                                   "LeakyRelu")}),
    (nplstm.GRU, {"linear_before_reset": False, "clip": 2.0}),
    (nplstm.GRU, {"linear_before_reset": False, "activations": ("HardSigmoid", "LeakyRelu")}),
    (nplstm.GRU, {"activations": ("Sigmoid", "Softsign"), "clip": 1.0}),
    (nplstm.RNN, {"activations": ("Softplus",), "clip": 1.2}),
    (nplstm.RNN, {"activations": ("Elu", "ThresholdedRelu"),
                  "activation_alpha": (0.7, 0.1)}),
]


@pytest.mark.parametrize("cls,kw", LAYER_CASES,
                         ids=[f"{c.__name__}-{'-'.join(k)}" for c, k in LAYER_CASES])
def test_layer_options_finite_differences(cls, kw):
    m, x, hx = _layer_case(cls, kw.get("proj_size") or 3, **kw)
    assert m.engine == "numpy-general"
    fd_check(m, x, hx, lengths=[4, 3])


@pytest.mark.parametrize("cls,kw", [
    (nplstm.LSTMCell, {"peepholes": True, "clip": 1.1, "activations": ("Sigmoid", "Tanh",
                                                                       "Softsign")}),
    (nplstm.GRUCell, {"linear_before_reset": False, "activations": ("Sigmoid", "Elu")}),
    (nplstm.RNNCell, {"activations": ("LeakyRelu",), "activation_alpha": (0.2,)}),
])
def test_cell_options_finite_differences(cls, kw):
    m = cls(2, 3, dtype=np.float64, seed=0, **kw)
    rng = np.random.default_rng(2)
    x, h = rng.standard_normal((2, 2)), rng.standard_normal((2, 3))
    fd_check(m, x, (h, rng.standard_normal((2, 3))) if cls is nplstm.LSTMCell else h)


@pytest.mark.parametrize("cls,extra", [(nplstm.LSTM, {"proj_size": 2}), (nplstm.GRU, {}),
                                       (nplstm.RNN, {"nonlinearity": "relu"})])
def test_general_backward_equals_the_exact_one(cls, extra):
    """A clip no value reaches sends the layer down the general path; its backward must
    give the numbers of the PyTorch-exact backward (tested against autograd)."""
    fast = cls(3, 5, num_layers=2, bidirectional=True, batch_first=True, dtype=np.float64,
               seed=0, **extra)
    general = cls(3, 5, num_layers=2, bidirectional=True, batch_first=True,
                  dtype=np.float64, seed=0, clip=1e6, **extra)
    general.load_state_dict(fast.state_dict())
    assert fast.engine == "numpy" and general.engine == "numpy-general"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 3))
    a_tr, b_tr = fast.trace(x, lengths=[6, 3]), general.trace(x, lengths=[6, 3])
    gy = rng.standard_normal(a_tr.output.shape)
    a, b = fast.backward(a_tr, gy), general.backward(b_tr, gy)
    for k in a.params:
        scale = max(1.0, float(np.max(np.abs(a.params[k]))))
        assert np.max(np.abs(a.params[k] - b.params[k])) <= 1e-12 * scale, k
    assert np.max(np.abs(a.input - b.input)) <= 1e-12
