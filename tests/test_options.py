"""Layer options (issue 13 part 1) against onnxruntime, one-node ONNX models.

Grid: family x direction x clip x input_forget x peepholes x activations (with
alpha/beta) x linear_before_reset x initial states, random non-zero weights and
biases U(-1, 1), H_in=3, H=5, N=2, L=7, float32 within 1e-5 (onnxruntime runs
its recurrent operators in float32 only: float64 is checked against the
teaching functions in tests/test_options_gates.py).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ort_reference import run_onnxruntime

import nplstm

H_IN, H, N, L = 3, 5, 2, 7
TOL32 = 1e-5
CLASSES = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}

#: (activations, activation_alpha, activation_beta), aligned; several functions each.
ACTS = {
    "lstm": [
        (None, None, None),
        (("HardSigmoid", "Elu", "Softsign"), (0.3, 0.8, None), (0.6, None, None)),
        (("sigmoid", "ScaledTanh", "Affine"), (None, 0.9, 0.5), (None, 1.3, 0.1)),
        (("Sigmoid", "LeakyRelu", "ThresholdedRelu"), (None, 0.1, 0.2), None),
        (("Softsign", "Relu", "SOFTPLUS"), None, None),
    ],
    "gru": [
        (None, None, None),
        (("HardSigmoid", "Softsign"), (1 / 6, None), (0.5, None)),
        (("Sigmoid", "Elu"), (None, 0.7), None),
        (("HardSigmoid", "ScaledTanh"), (None, 1.2), (None, 0.8)),
        (("Sigmoid", "Softplus"), None, None),
    ],
    "rnn": [
        (None, None, None),
        (("Relu",), None, None),
        (("Affine",), (0.6,), (0.2,)),
        (("LeakyRelu",), (0.05,), None),
        (("Softsign",), None, None),
        (("ThresholdedRelu",), (0.1,), None),
    ],
}
#: Per-direction activations for bidirectional layers (forward roles, then reverse).
BIDI_ACTS = {
    "lstm": (("Sigmoid", "Tanh", "Tanh", "HardSigmoid", "Softsign", "Elu"),
             (None, None, None, 0.25, None, 0.5), (None, None, None, 0.4, None, None)),
    "gru": (("Sigmoid", "Tanh", "HardSigmoid", "Softsign"), None, None),
    "rnn": (("Tanh", "Relu"), None, None),
}


def make(family, dtype=np.float32, seed=0, scale=0.7, **kwargs):
    """A layer (or, with ``cell``, not) whose every parameter is ~ U(-scale, scale)."""
    layer = CLASSES[family](H_IN, H, dtype=dtype, seed=seed, **kwargs)
    rng = np.random.default_rng(seed + 100)
    layer.load_state_dict({k: rng.uniform(-scale, scale, v.shape)
                           for k, v in layer.state_dict().items()})
    return layer


def inputs(family, D, states, seed=1, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(L, N, H_IN)).astype(dtype)
    if not states:
        return x, None, None
    h0 = rng.normal(size=(D, N, H)).astype(dtype)
    c0 = rng.normal(size=(D, N, H)).astype(dtype) if family == "lstm" else None
    return x, h0, c0


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def check_against_ort(layer, family, D, states):
    x, h0, c0 = inputs(family, D, states)
    theirs = run_onnxruntime(layer, x, h0, c0)
    hx = None if not states else ((h0, c0) if family == "lstm" else h0)
    out, state = layer(x, hx)
    ours = (out,) + (state if family == "lstm" else (state,))
    for name, a, b in zip(("Y", "Y_h", "Y_c"), ours, theirs):
        assert a.shape == b.shape, name
        assert max_diff(a, b) <= TOL32, f"{name}: {max_diff(a, b):.3g} ({layer!r})"
    return ours


def _acts_kwargs(family, k, bidirectional):
    acts, alpha, beta = BIDI_ACTS[family] if k == "bidi" else ACTS[family][k]
    return {"activations": acts, "activation_alpha": alpha, "activation_beta": beta}


def _act_keys(family):
    return list(range(len(ACTS[family]))) + ["bidi"]


LSTM_GRID = [c for c in itertools.product((False, True), (None, 0.5), (False, True),
                                          (False, True), _act_keys("lstm"), (False, True))
             if c[4] != "bidi" or c[0]]


@pytest.mark.parametrize("bidi,clip,input_forget,peepholes,acts,states", LSTM_GRID)
def test_lstm_grid_vs_onnxruntime(bidi, clip, input_forget, peepholes, acts, states):
    layer = make("lstm", bidirectional=bidi, clip=clip, input_forget=input_forget,
                 peepholes=peepholes, **_acts_kwargs("lstm", acts, bidi))
    check_against_ort(layer, "lstm", 2 if bidi else 1, states)


GRU_GRID = [c for c in itertools.product((False, True), (None, 0.5), (True, False),
                                         _act_keys("gru"), (False, True))
            if c[3] != "bidi" or c[0]]


@pytest.mark.parametrize("bidi,clip,lbr,acts,states", GRU_GRID)
def test_gru_grid_vs_onnxruntime(bidi, clip, lbr, acts, states):
    layer = make("gru", bidirectional=bidi, clip=clip, linear_before_reset=lbr,
                 **_acts_kwargs("gru", acts, bidi))
    check_against_ort(layer, "gru", 2 if bidi else 1, states)


RNN_GRID = [c for c in itertools.product((False, True), (None, 0.5), _act_keys("rnn"),
                                         (False, True)) if c[2] != "bidi" or c[0]]


@pytest.mark.parametrize("bidi,clip,acts,states", RNN_GRID)
def test_rnn_grid_vs_onnxruntime(bidi, clip, acts, states):
    layer = make("rnn", bidirectional=bidi, clip=clip, **_acts_kwargs("rnn", acts, bidi))
    check_against_ort(layer, "rnn", 2 if bidi else 1, states)


def test_every_activation_function_vs_onnxruntime():
    """Each of the 11 functions in each role, alpha/beta explicit and by default.

    Weights U(-0.5, 0.5): an unbounded function as LSTM role f (say Softplus,
    so f > 1) makes c grow geometrically, and float32 itself (ours and
    onnxruntime's, each against float64) then drifts past 1e-5 in absolute terms;
    smaller weights keep every combination well-conditioned.
    """
    for name in nplstm.options.ACTIVATION_NAMES:
        for family, roles in (("lstm", 3), ("gru", 2), ("rnn", 1)):
            for role in range(roles):
                acts = list(nplstm.options.DEFAULT_ACTIVATIONS[family])
                acts[role] = name
                alpha = [None] * roles
                defaults = nplstm.options.PARAMETER_DEFAULTS.get(name, (None, None))
                if defaults[0] is not None:
                    alpha[role] = 0.35  # explicit, not the default
                layer = make(family, activations=tuple(acts), activation_alpha=tuple(alpha),
                             scale=0.5)
                check_against_ort(layer, family, 1, True)
                if name in ("HardSigmoid", "LeakyRelu", "Elu"):  # ORT's defaults are ONNX's
                    check_against_ort(make(family, activations=tuple(acts), scale=0.5),
                                      family, 1, True)


def test_onnxruntime_defaults_differ_for_three_functions():
    """Measured: with no activation_alpha/beta, onnxruntime runs ThresholdedRelu,
    Affine and ScaledTanh with alpha = beta = 0 (rnn_helpers.cc), not the ONNX
    operators' defaults nplstm uses (1; 1, 0; 1, 1): an importer passes them."""
    x = inputs("rnn", 1, False)[0]
    for name, zeros in (("ThresholdedRelu", {"activation_alpha": (0.0,)}),
                        ("Affine", {"activation_alpha": (0.0,), "activation_beta": (0.0,)}),
                        ("ScaledTanh", {"activation_alpha": (0.0,),
                                        "activation_beta": (0.0,)})):
        theirs = run_onnxruntime(make("rnn", activations=(name,)), x,
                                 drop=("activation_alpha", "activation_beta"))
        ours = make("rnn", activations=(name,), **zeros)(x)[0]
        assert max_diff(ours, theirs[0]) <= TOL32
        assert max_diff(make("rnn", activations=(name,))(x)[0], ours) > 1e-3


# ----------------------------------------------------------- where clip acts --


def test_clip_bounds_gate_inputs_not_the_cell_state():
    """Measured: onnxruntime clips every gate's pre-activation (after biases and
    peepholes) and not c before the output activation h(c).

    With Affine(1, 0) as h, h = o ⊙ c exposes c itself: the run below has |c| far
    above the clip, and onnxruntime still agrees with the unclipped-c equations;
    the clip does change the result (it binds on the gates)."""
    kw = {"clip": 0.3, "peepholes": True, "activations": ("Sigmoid", "Affine", "Affine"),
              "activation_alpha": (None, 3.0, 1.0), "activation_beta": (None, 0.0, 0.0), "scale": 1.0}
    layer = make("lstm", **kw)
    ours = check_against_ort(layer, "lstm", 1, True)
    c = ours[2]
    assert np.abs(c).max() > 3 * 0.3  # c is far outside the clip, yet not clipped
    unclipped = make("lstm", **{**kw, "clip": None})
    x, h0, c0 = inputs("lstm", 1, True)
    assert max_diff(unclipped(x, (h0, c0))[0], ours[0]) > 1e-2  # the clip binds


def test_clip_is_applied_after_the_peephole_term():
    """If the clip came before ``+ p ⊙ c``, large peepholes would escape it: with
    peepholes of size 3 onnxruntime still agrees (gate inputs bounded after)."""
    layer = make("lstm", peepholes=True, clip=0.4, activations=("Affine", "Tanh", "Tanh"),
                 activation_alpha=(1.0, None, None), activation_beta=(0.5, None, None))
    sd = layer.state_dict()
    sd["weight_ph_l0"] = np.full(3 * H, 3.0)
    layer.load_state_dict(sd)
    check_against_ort(layer, "lstm", 1, True)


def test_rnn_and_gru_clip_bind():
    for family in ("rnn", "gru"):
        kw = {"activations": ("Affine",) if family == "rnn" else ("Sigmoid", "Affine"),
              "scale": 1.0}
        ours = check_against_ort(make(family, clip=0.2, **kw), family, 1, True)
        free = check_against_ort(make(family, **kw), family, 1, True)
        assert max_diff(ours[0], free[0]) > 1e-2


# ------------------------------------------------------------------ plumbing --

OPTION_SETS = {
    "lstm": {"peepholes": True, "clip": 0.8, "input_forget": True,
                 "activations": ("HardSigmoid", "Tanh", "Softsign"),
                 "activation_alpha": (0.3, None, None)},
    "gru": {"linear_before_reset": False, "clip": 0.8, "activations": ("Sigmoid", "Softsign")},
    "rnn": {"clip": 0.8, "activations": ("Elu",), "activation_alpha": (0.5,)},
}


def _single_layer(layer, k, family):
    """Layer k of a stack as a one-layer layer with the same options."""
    sd = layer.state_dict()
    sub = {key.replace(f"_l{k}", "_l0"): v for key, v in sd.items() if f"_l{k}" in key}
    in_size = sub["weight_ih_l0"].shape[1]
    one = CLASSES[family](in_size, H, bidirectional=layer.bidirectional,
                          **OPTION_SETS[family])
    one.load_state_dict(sub)
    return one


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidi", [False, True])
def test_two_layers_vs_chained_onnxruntime_nodes(family, bidi):
    layer = make(family, num_layers=2, bidirectional=bidi, **OPTION_SETS[family])
    assert layer.engine == "numpy-general"
    x = inputs(family, 1, False)[0]
    out, state = layer(x)
    y0 = run_onnxruntime(_single_layer(layer, 0, family), x)
    y1 = run_onnxruntime(_single_layer(layer, 1, family), y0[0])
    assert max_diff(out, y1[0]) <= TOL32
    h_n = state[0] if family == "lstm" else state
    assert max_diff(h_n, np.concatenate([y0[1], y1[1]])) <= TOL32
    if family == "lstm":
        assert max_diff(state[1], np.concatenate([y0[2], y1[2]])) <= TOL32


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layouts_lengths_and_streaming(family, dtype):
    """batch_first, unbatched, lengths= (each sequence alone, truncated) and
    one-step streaming calls all agree with the plain whole-sequence run."""
    tol = 1e-12 if dtype == np.float64 else TOL32
    kw = OPTION_SETS[family]
    for bidi in (False, True):
        layer = make(family, dtype=dtype, num_layers=2, bidirectional=bidi, **kw)
        x = inputs(family, 1, False, dtype=dtype)[0]
        out, state = layer(x)
        bf = make(family, dtype=dtype, num_layers=2, bidirectional=bidi, batch_first=True,
                  **kw)
        out_bf, _ = bf(x.transpose(1, 0, 2))
        assert max_diff(out_bf.transpose(1, 0, 2), out) == 0
        out_u, _ = layer(x[:, 1])
        assert max_diff(out_u, out[:, 1]) <= tol
        lengths = np.array([4, 7])
        out_l, state_l = layer(x, lengths=lengths)
        for n, length in enumerate(lengths):
            alone, st = layer(x[:length, n:n + 1])
            assert max_diff(out_l[:length, n], alone[:, 0]) <= tol
            assert not out_l[length:, n].any()
            h_alone = st[0] if family == "lstm" else st
            h_l = state_l[0] if family == "lstm" else state_l
            assert max_diff(h_l[:, n], h_alone[:, 0]) <= tol
    layer = make(family, dtype=dtype, num_layers=2, **kw)
    out, final = layer(x)
    state = None
    for t in range(L):
        y, state = layer(x[t:t + 1], state)
        assert max_diff(y[0], out[t]) <= tol
    for a, b in zip(state if family == "lstm" else (state,),
                    final if family == "lstm" else (final,)):
        assert max_diff(a, b) <= tol


CELLS = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
def test_cell_stepped_equals_layer_and_onnxruntime(family):
    layer = make(family, **OPTION_SETS[family])
    cell = CELLS[family](H_IN, H, **OPTION_SETS[family])
    assert cell.engine == "numpy-general"
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x, h0, c0 = inputs(family, 1, True)
    state = (h0[0], c0[0]) if family == "lstm" else h0[0]
    outs = []
    for t in range(L):
        state = cell(x[t], state)
        outs.append(state[0] if family == "lstm" else state)
        if t == 0:  # unbatched sample == row of the batch
            one = cell(x[0, 1], (h0[0, 1], c0[0, 1]) if family == "lstm" else h0[0, 1])
            assert max_diff(one[0] if family == "lstm" else one, outs[0][1]) <= TOL32
    theirs = run_onnxruntime(layer, x, h0, c0)
    assert max_diff(np.stack(outs), theirs[0]) <= TOL32
    if family == "lstm":
        assert max_diff(state[1], theirs[2][0]) <= TOL32
    trace = cell.trace(x[0], (h0[0], c0[0]) if family == "lstm" else h0[0])
    assert set(trace.gates) == set(nplstm.cells.FAMILIES[family].gates or ("h",))


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
def test_trace_reproduces_output_with_options(family):
    layer = make(family, num_layers=2, bidirectional=True, **OPTION_SETS[family])
    x = inputs(family, 1, False)[0]
    out, _ = layer(x)
    trace = layer.trace(x)
    assert max_diff(trace.output, out) == 0
    plain = make(family, num_layers=2, bidirectional=True)
    assert plain.trace(x).names == trace.names  # same gate names for every option


# --------------------------------------------------- state dicts, repr, engine --


def test_peepholes_in_state_dict_order_and_from_state_dict():
    layer = make("lstm", num_layers=2, bidirectional=True, proj_size=2, peepholes=True)
    keys = list(layer.state_dict())
    assert keys[:6] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                        "weight_ph_l0", "weight_hr_l0"]
    assert layer.weight_ph_l1_reverse.shape == (3 * H,)
    again = nplstm.LSTM.from_state_dict(layer.state_dict())
    assert again.peepholes and again.proj_size == 2
    x = inputs("lstm", 1, False)[0]
    assert max_diff(again(x)[0], layer(x)[0]) == 0
    cell = nplstm.LSTMCell(H_IN, H, peepholes=True)
    assert list(cell.state_dict())[-1] == "weight_ph"
    assert nplstm.LSTMCell.from_state_dict(cell.state_dict()).peepholes
    with pytest.raises(ValueError, match="missing keys: weight_ph_l0"):
        nplstm.LSTM(H_IN, H, peepholes=True).load_state_dict(make("lstm").state_dict())
    with pytest.raises(ValueError, match="weight_ph_l0 holds LSTM peepholes"):
        sd = make("gru").state_dict()
        nplstm.GRU.from_state_dict({**sd, "weight_ph_l0": np.zeros(3 * H)})
    with pytest.raises(ValueError, match="weight_ph holds LSTM peepholes"):
        nplstm.RNNCell.from_state_dict({**nplstm.RNNCell(3, 5).state_dict(),
                                        "weight_ph": np.zeros(15)})


def test_peephole_init_is_uniform_like_the_others():
    layer = nplstm.LSTM(H_IN, 400, peepholes=True, seed=3)
    p = layer.weight_ph_l0
    bound = 1 / np.sqrt(400)
    assert np.abs(p).max() <= bound and np.abs(p).max() > 0.9 * bound


def test_repr_engine_and_attributes():
    assert repr(nplstm.LSTM(3, 5)) == "LSTM(3, 5)"
    lstm = nplstm.LSTM(3, 5, peepholes=True, clip=2, input_forget=True,
                       activations=("hardsigmoid", "tanh", "tanh"),
                       activation_alpha=(0.2, None, None))
    assert repr(lstm) == ("LSTM(3, 5, peepholes=True, clip=2.0, input_forget=True, "
                          "activations=('HardSigmoid', 'Tanh', 'Tanh'), "
                          "activation_alpha=(0.2, None, None))")
    assert lstm.activations == ("HardSigmoid", "Tanh", "Tanh")
    assert (lstm.clip, lstm.peepholes, lstm.input_forget) == (2.0, True, True)
    assert nplstm.LSTM(3, 5).activations == ("Sigmoid", "Tanh", "Tanh")
    assert nplstm.LSTM(3, 5).engine == "numpy"
    assert nplstm.LSTM(3, 5, activations=("Sigmoid", "Tanh", "Tanh")).engine == "numpy"
    assert nplstm.GRU(3, 5).engine == "numpy"
    gru = nplstm.GRU(3, 5, linear_before_reset=False)
    assert gru.engine == "numpy-general" and gru.linear_before_reset is False
    assert repr(gru) == "GRU(3, 5, linear_before_reset=False)"
    assert repr(nplstm.GRUCell(3, 5, clip=1.5)) == "GRUCell(3, 5, clip=1.5)"
    rnn = nplstm.RNN(3, 5, activations=("Relu",))
    assert rnn.nonlinearity == "relu" and rnn.engine == "numpy"
    assert repr(rnn) == "RNN(3, 5, nonlinearity='relu')"
    assert nplstm.RNN(3, 5, nonlinearity="relu").activations == ("Relu",)
    bi = nplstm.RNN(3, 5, bidirectional=True, activations=("Tanh", "Relu"))
    assert bi.engine == "numpy-general"
    assert nplstm.RNN(3, 5, bidirectional=True, activations=("Relu", "Relu")).engine == "numpy"
    with pytest.raises(AttributeError):
        lstm.engine = "numpy"


def test_rnncell_nonlinearity_change_keeps_activations_in_step():
    cell = nplstm.RNNCell(3, 5)
    cell.nonlinearity = "relu"
    assert cell.activations == ("Relu",) and cell.engine == "numpy"
    x = np.ones((2, 3), np.float32)
    assert (cell(x) >= 0).all()
    soft = nplstm.RNNCell(3, 5, activations=("Softsign",))
    with pytest.raises(ValueError, match="disagrees"):
        soft.nonlinearity = "relu"


def test_default_options_run_the_fast_path_unchanged():
    """A default layer's weights are the fast kind (no spec), the general twin
    (a clip too large to bind) gives the same numbers."""
    for family in ("lstm", "gru", "rnn"):
        for dtype, tol in ((np.float64, 1e-12), (np.float32, TOL32)):
            fast = make(family, dtype=dtype, num_layers=2, bidirectional=True)
            assert all(w.spec is None for layer in fast._weights() for w in layer)
            slow = make(family, dtype=dtype, num_layers=2, bidirectional=True, clip=1e30)
            assert slow.engine == "numpy-general"
            x, h0, c0 = inputs(family, 4, True, dtype=dtype)
            hx = (h0, c0) if family == "lstm" else h0
            a, b = fast(x, hx), slow(x, hx)
            assert max_diff(a[0], b[0]) <= tol
