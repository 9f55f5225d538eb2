"""Layer options: the teaching functions (gates.py) against their equations, the
general step against the teaching step (float64 within 1e-12, every gate), and
every error path of the options."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import nplstm
from nplstm import gates
from nplstm.options import ACTIVATION_NAMES, Activation

H_IN, H, N, L = 3, 5, 2, 7


# ------------------------------------------------- the eleven activations --

#: Each function written from the ONNX operator text, one Python float at a time.
EQUATIONS = {
    "Sigmoid": lambda x, a, b: 1 / (1 + math.exp(-x)),
    "Tanh": lambda x, a, b: math.tanh(x),
    "Relu": lambda x, a, b: max(0.0, x),
    "HardSigmoid": lambda x, a, b: min(max(a * x + b, 0.0), 1.0),
    "Affine": lambda x, a, b: a * x + b,
    "LeakyRelu": lambda x, a, b: x if x >= 0 else a * x,
    "ThresholdedRelu": lambda x, a, b: x if x >= a else 0.0,
    "ScaledTanh": lambda x, a, b: a * math.tanh(b * x),
    "Elu": lambda x, a, b: x if x >= 0 else a * (math.exp(x) - 1),
    "Softsign": lambda x, a, b: x / (1 + abs(x)),
    "Softplus": lambda x, a, b: math.log(1 + math.exp(x)),
}


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-6)])
def test_activation_functions_match_their_equations(name, dtype, tol):
    x = np.random.default_rng(0).normal(scale=3, size=(4, 6)).astype(dtype)
    alpha, beta = 0.3, 0.7
    got = gates.ACTIVATIONS[name](x, alpha, beta)
    want = np.vectorize(lambda v: EQUATIONS[name](float(v), alpha, beta))(x)
    assert got.dtype == dtype and got.shape == x.shape
    assert np.max(np.abs(got - want)) <= tol


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_activation_functions_at_extremes_warn_nothing(name):
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    y = gates.activate(Activation(name, 0.5, 0.5), x)
    assert np.isfinite(y).all()


def test_activation_docstrings_hold_their_equation():
    for name, func in gates.ACTIVATIONS.items():
        if func.__doc__:  # the lambdas wrap sigmoid and relu, which have theirs
            assert name in func.__doc__ or "tanh" in func.__doc__


def test_clip_then_activate():
    x = np.array([-3.0, -0.2, 0.0, 0.4, 9.0])
    got = gates.activate(Activation("Affine", 1.0, 0.0), x, clip=0.5)
    assert np.array_equal(got, [-0.5, -0.2, 0.0, 0.4, 0.5])


# ------------------------------------------- teaching step == general step --

CLASSES = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}


def _make(family, **kwargs):
    layer = CLASSES[family](H_IN, H, dtype=np.float64, seed=0, **kwargs)
    rng = np.random.default_rng(7)
    layer.load_state_dict({k: rng.uniform(-0.7, 0.7, v.shape)
                           for k, v in layer.state_dict().items()})
    return layer


def _teach(layer, x, h0, c0):
    """Run the teaching step over time for each direction of a one-layer layer.

    Returns ``(output (L, N, D*H), {gate: (D, L, N, H)}, h_n, c_n)``.
    """
    fam, opts, sd = layer.family.name, layer._options, layer.state_dict()
    outs, recs, hs, cs = [], {}, [], []
    for d in range(layer.num_directions):
        s = "_l0" + ("_reverse" if d else "")
        w = [sd[k + s] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        acts = opts.direction(d)
        h, c = h0[d], None if c0 is None else c0[d]
        ys, per = [None] * L, {}
        for t in (range(L - 1, -1, -1) if d else range(L)):
            if fam == "lstm":
                h, c, g = gates.lstm_step(x[t], h, c, *w, weight_ph=sd.get("weight_ph" + s),
                                          clip=opts.clip, input_forget=opts.input_forget,
                                          activations=acts)
            elif fam == "gru":
                h, g = gates.gru_step(x[t], h, *w, clip=opts.clip, activations=acts,
                                      linear_before_reset=opts.linear_before_reset)
            else:
                h = gates.rnn_step(x[t], h, *w, clip=opts.clip, activations=acts)
                g = {"h": h}
            ys[t] = h
            for k, v in g.items():
                per.setdefault(k, [None] * L)[t] = v
        outs.append(np.stack(ys))
        for k, v in per.items():
            recs.setdefault(k, []).append(np.stack(v))
        hs.append(h)
        cs.append(c)
    rec = {k: np.stack(v) for k, v in recs.items()}
    return np.concatenate(outs, -1), rec, np.stack(hs), None if c0 is None else np.stack(cs)


def _grid():
    acts = {"lstm": [None, ("HardSigmoid", "Elu", "Softsign"),
                     ("Sigmoid", "Tanh", "Tanh", "ScaledTanh", "LeakyRelu", "Softplus")],
            "gru": [None, ("HardSigmoid", "Softsign"),
                    ("Sigmoid", "Tanh", "HardSigmoid", "ThresholdedRelu")],
            "rnn": [None, ("Relu",), ("Softsign", "Elu")]}
    for bidi, clip in itertools.product((False, True), (None, 0.6)):
        for a in acts["lstm"]:
            for pe, inf in itertools.product((False, True), (False, True)):
                yield "lstm", bidi, a, {"clip": clip, "peepholes": pe, "input_forget": inf}
        for a in acts["gru"]:
            for lbr in (True, False):
                yield "gru", bidi, a, {"clip": clip, "linear_before_reset": lbr}
        for a in acts["rnn"]:
            yield "rnn", bidi, a, {"clip": clip}


ROLES = {"lstm": 3, "gru": 2, "rnn": 1}
GRID = [g for g in _grid() if g[2] is None or len(g[2]) == ROLES[g[0]] or g[1]]


@pytest.mark.parametrize("family,bidi,acts,kwargs", GRID)
def test_general_step_equals_teaching_step_float64(family, bidi, acts, kwargs):
    layer = _make(family, bidirectional=bidi, activations=acts, **kwargs)
    D = 2 if bidi else 1
    rng = np.random.default_rng(3)
    x = rng.normal(size=(L, N, H_IN))
    h0 = rng.normal(size=(D, N, H))
    c0 = rng.normal(size=(D, N, H)) if family == "lstm" else None
    out, rec, h_n, c_n = _teach(layer, x, h0, c0)
    trace = layer.trace(x, (h0, c0) if family == "lstm" else h0)
    assert np.max(np.abs(trace.output - out)) <= 1e-12
    assert np.max(np.abs(trace.h_n - h_n)) <= 1e-12
    if family == "lstm":
        assert np.max(np.abs(trace.c_n - c_n)) <= 1e-12
    for name, value in rec.items():
        assert np.max(np.abs(trace[name][0] - value)) <= 1e-12, name


def test_teaching_defaults_are_pytorchs_math():
    """Options at their defaults, given explicitly, change nothing in the teaching path."""
    rng = np.random.default_rng(0)
    x, h, c = rng.normal(size=(N, H_IN)), rng.normal(size=(N, H)), rng.normal(size=(N, H))
    w = [rng.normal(size=s) for s in ((4 * H, H_IN), (4 * H, H), (4 * H,), (4 * H,))]
    plain = gates.lstm_step(x, h, c, *w)
    acts = tuple(Activation(n) for n in ("Sigmoid", "Tanh", "Tanh"))
    explicit = gates.lstm_step(x, h, c, *w, activations=acts, clip=1e9)
    assert np.max(np.abs(plain[0] - explicit[0])) <= 1e-15
    zero_ph = gates.lstm_step(x, h, c, *w, weight_ph=np.zeros(3 * H))
    assert np.array_equal(plain[1], zero_ph[1])


# ------------------------------------------------------------- error paths --

ALL = [nplstm.LSTM, nplstm.GRU, nplstm.RNN, nplstm.LSTMCell, nplstm.GRUCell, nplstm.RNNCell]


@pytest.mark.parametrize("cls", ALL)
def test_option_errors(cls):
    name = cls.__name__
    n = {"LSTM": 3, "GRU": 2, "RNN": 1}[name.replace("Cell", "")]
    with pytest.raises(ValueError, match=f"{name}: unknown activation 'Swish'"):
        cls(3, 5, activations=("Swish",) * n)
    with pytest.raises(ValueError, match=f"activations must have {n} entries"):
        cls(3, 5, activations=("Tanh",) * (n + 1))
    with pytest.raises(TypeError, match="activations must be a sequence"):
        cls(3, 5, activations="Tanh")
    with pytest.raises(ValueError, match="unknown activation 3"):
        cls(3, 5, activations=(3,) * n)
    with pytest.raises(ValueError, match="activation_alpha must have one entry per"):
        cls(3, 5, activation_alpha=(0.1,) * (n + 1))
    with pytest.raises(ValueError, match="activation_beta must have one entry per"):
        cls(3, 5, activation_beta=())
    with pytest.raises(TypeError, match="activation_alpha must be a sequence"):
        cls(3, 5, activation_alpha=0.1)
    with pytest.raises(TypeError, match="entries must be numbers or None, got str"):
        cls(3, 5, activations=("LeakyRelu",) * n, activation_alpha=("a",) * n)
    with pytest.raises(ValueError, match="Tanh takes no beta"):
        cls(3, 5, activations=("Tanh",) * n, activation_beta=(0.5,) * n)
    with pytest.raises(ValueError, match="LeakyRelu takes no beta"):
        cls(3, 5, activations=("LeakyRelu",) * n, activation_beta=(0.5,) * n)
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"clip must be a finite number > 0, got {bad}"):
            cls(3, 5, clip=bad)
    for bad in ("1", True, [1.0]):
        with pytest.raises(TypeError, match="clip must be None or a number > 0"):
            cls(3, 5, clip=bad)


@pytest.mark.parametrize("cls", [nplstm.GRU, nplstm.RNN, nplstm.GRUCell, nplstm.RNNCell])
def test_lstm_options_are_unexpected_elsewhere(cls):
    for kw in ("peepholes", "input_forget"):
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{kw}'"):
            cls(3, 5, **{kw: True})


@pytest.mark.parametrize("cls", [nplstm.LSTM, nplstm.RNN, nplstm.LSTMCell, nplstm.RNNCell])
def test_linear_before_reset_is_gru_only(cls):
    with pytest.raises(TypeError, match="unexpected keyword argument 'linear_before_reset'"):
        cls(3, 5, linear_before_reset=False)


@pytest.mark.parametrize("cls", [nplstm.LSTM, nplstm.GRU, nplstm.LSTMCell])
def test_flags_must_be_bools(cls):
    flag = "linear_before_reset" if "GRU" in cls.__name__ else "peepholes"
    with pytest.raises(TypeError, match=f"{flag} must be a bool, got int 1"):
        cls(3, 5, **{flag: 1})


def test_bidirectional_activation_lengths():
    nplstm.LSTM(3, 5, bidirectional=True, activations=("Sigmoid", "Tanh", "Tanh") * 2)
    with pytest.raises(ValueError, match="3 or 6 entries"):
        nplstm.LSTM(3, 5, bidirectional=True, activations=("Sigmoid",) * 4)
    with pytest.raises(ValueError, match="must have 3 entries"):
        nplstm.LSTM(3, 5, activations=("Sigmoid", "Tanh", "Tanh") * 2)  # not bidirectional


@pytest.mark.parametrize("cls", [nplstm.RNN, nplstm.RNNCell])
def test_nonlinearity_and_activations_must_agree(cls):
    with pytest.raises(ValueError, match="nonlinearity='relu' disagrees with activations"):
        cls(3, 5, nonlinearity="relu", activations=("Tanh",))
    assert cls(3, 5, nonlinearity="relu", activations=("relu",)).nonlinearity == "relu"
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        cls(3, 5, nonlinearity="sigmoid")
