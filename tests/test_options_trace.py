"""Layer options seen from outside (review of issue 13 part 1): odd option values,
extreme inputs, and traces of layers with options (saved with them; gate ranges
from their activations; the card refuses them, plot and ``nplstm trace`` say so).

Expected values come from PyTorch (extreme inputs through the default path), the
activation functions' equations (ranges, softplus) or the recorded gates themselves
(saturation counts), never from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nplstm
from nplstm import gates
from nplstm.options import ACTIVATION_NAMES, Activation

H_IN, H, N, L = 3, 5, 2, 7
CLASSES = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}
CELLS = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}
ROLES = {"lstm": 3, "gru": 2, "rnn": 1}


def _x(dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal((L, N, H_IN)).astype(dtype)


# ------------------------------------------------------------ option values --


@pytest.mark.parametrize("cls", [nplstm.LSTM, nplstm.GRUCell, nplstm.RNN])
def test_unordered_collections_are_refused(cls):
    """A set (or dict) has a length but no order: the roles would be a lottery."""
    n = ROLES[cls.family.name]
    names = ["Sigmoid", "Tanh", "Softsign"][:n]
    with pytest.raises(TypeError, match="activations must be a sequence of names"):
        cls(H_IN, H, activations=set(names))
    with pytest.raises(TypeError, match="activations must be a sequence of names"):
        cls(H_IN, H, activations=dict.fromkeys(names))
    acts = ("HardSigmoid",) * n
    with pytest.raises(TypeError, match="activation_alpha must be a sequence aligned"):
        cls(H_IN, H, activations=acts, activation_alpha={0.2})
    with pytest.raises(TypeError, match="activation_beta must be a sequence aligned"):
        cls(H_IN, H, activations=acts, activation_beta=iter([0.5] * n))
    # ordered ones of any kind are fine: list, tuple, NumPy array of names
    assert cls(H_IN, H, activations=np.array(acts)).activations == acts


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan")])
@pytest.mark.parametrize("kind", ["alpha", "beta"])
def test_alpha_beta_must_be_finite(bad, kind):
    with pytest.raises(ValueError, match=f"activation_{kind} entries must be finite, got "
                                         r".* \(for HardSigmoid\)"):
        nplstm.LSTM(H_IN, H, activations=("HardSigmoid", "Tanh", "Tanh"),
                    **{f"activation_{kind}": (bad, None, None)})


def test_numpy_bools_are_bools_for_the_flags():
    """``batch_first=np.True_`` is accepted (module.check_bool); the option flags alike."""
    a = nplstm.LSTM(H_IN, H, peepholes=np.True_, input_forget=np.True_, seed=1)
    b = nplstm.LSTM(H_IN, H, peepholes=True, input_forget=True, seed=1)
    assert a.peepholes is True and a.input_forget is True and repr(a) == repr(b)
    assert np.array_equal(a(_x(np.float32))[0], b(_x(np.float32))[0])
    g = nplstm.GRUCell(H_IN, H, linear_before_reset=np.False_)
    assert g.linear_before_reset is False and g.engine == "numpy-general"
    with pytest.raises(TypeError, match="peepholes must be a bool, got int 1"):
        nplstm.LSTM(H_IN, H, peepholes=1)


# ---------------------------------------------------------- extreme inputs --

EXTREMES = [np.inf, -np.inf, np.nan, 1e30, -1e30]


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_warn_nothing_through_every_activation(family, dtype):
    """±inf, NaN and huge inputs (and the overflow they cause in unbounded
    activations) give inf/NaN as the arithmetic says, and no warning (pytest
    turns warnings into errors), in the whole-sequence run, the one-step
    stream, the trace and the cell."""
    n = ROLES[family]
    for k, name in enumerate(ACTIVATION_NAMES):
        acts = tuple(ACTIVATION_NAMES[(k + j) % len(ACTIVATION_NAMES)] for j in range(n))
        alpha = tuple(1e30 if a == "Affine" else None for a in acts)  # overflows
        opts = {"activations": acts, "activation_alpha": alpha, "clip": 5.0 if k % 2 else None}
        layer = CLASSES[family](H_IN, H, num_layers=2, dtype=dtype, seed=k, **opts)
        cell = CELLS[family](H_IN, H, dtype=dtype, seed=k, **opts)
        for v in EXTREMES:
            x = np.full((3, N, H_IN), v, dtype)
            x[:, 1] = 0.5  # a finite sequence beside it
            out, _ = layer(x)
            state = None
            for t in range(3):
                _, state = layer(x[t:t + 1], state)
            trace = layer.trace(x)
            assert np.array_equal(trace.output, out, equal_nan=True)
            cell(x[0])
            cell.trace(x[0])
            assert out.shape == (3, N, H)


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
def test_infinite_and_nan_inputs_match_pytorch_quietly(family):
    """The default path too: inf − inf in the recurrent product is NaN, as in
    PyTorch, and no "invalid value" warning leaks."""
    torch = pytest.importorskip("torch")
    ours = CLASSES[family](H_IN, H, dtype=np.float64, seed=2)
    theirs = getattr(torch.nn, family.upper())(H_IN, H, dtype=torch.float64)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = np.full((4, N, H_IN), 0.3)
    x[0, 0, 0], x[1, 0, 1], x[2, 1, 2] = np.inf, -np.inf, np.nan
    with torch.no_grad():
        want = theirs(torch.tensor(x))[0].numpy()
    got = ours(x)[0]
    assert np.array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), rtol=0, atol=1e-12)


def test_softplus_follows_its_equation_and_passes_nan_quietly():
    x = np.array([-700.0, -30.0, -1.5, 0.0, 0.7, 30.0, 700.0])
    want = np.array([math.log1p(math.exp(v)) if v < 700 else v for v in x])
    np.testing.assert_allclose(gates.softplus(x), want, rtol=1e-15, atol=1e-300)
    assert gates.softplus(np.float32(2.0)).dtype == np.float32
    y = gates.activate(Activation("Softplus"), np.array([np.nan, np.inf, -np.inf]))
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == 0


# ------------------------------------------------------------------ traces --

LAYERS = {
    "lstm": {"peepholes": True, "clip": 2.0, "input_forget": True,
             "activations": ("HardSigmoid", "Relu", "Softsign"),
             "activation_alpha": (1 / 6, None, None)},
    "gru": {"linear_before_reset": False, "activations": ("Sigmoid", "LeakyRelu"),
            "activation_alpha": (None, 0.2)},
    "rnn": {"clip": 1.5, "activations": ("ScaledTanh",), "activation_alpha": (2.0,),
            "activation_beta": (0.5,)},
}


@pytest.mark.parametrize("family", ["lstm", "gru", "rnn"])
def test_a_trace_carries_its_layers_options_through_save_and_load(family, tmp_path):
    opts = LAYERS[family]
    layer = CLASSES[family](H_IN, H, dtype=np.float64, seed=4, **opts)
    trace = layer.trace(_x())
    want = dict(opts)  # canonical names and floats: stored as given
    assert trace.options == want
    for k, v in want.items():
        assert f"{k}={v!r}" in repr(trace).splitlines()[0]
    trace.save(tmp_path / "t.npz")
    back = nplstm.Trace.load(tmp_path / "t.npz")
    assert back.options == trace.options
    np.testing.assert_array_equal(list(back.saturation().values()),
                                  list(trace.saturation().values()))
    cell = CELLS[family](H_IN, H, dtype=np.float64, seed=4, **opts)
    assert cell.trace(_x()[0]).options == want
    # PyTorch's math: no options, and the printed trace is unchanged
    plain = CLASSES[family](H_IN, H, seed=4).trace(_x(np.float32))
    assert plain.options == {}
    assert repr(plain).splitlines()[0] == (
        f"Trace({family}, num_layers=1, num_directions=1, steps={L}, batch={N}, "
        f"hidden_size={H}" + (", nonlinearity='tanh'" if family == "rnn" else "") + ")")


def test_old_trace_files_load_without_options_and_bad_options_are_named(tmp_path):
    trace = nplstm.LSTM(H_IN, H, seed=0).trace(_x(np.float32))
    trace.save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "meta/options"}
    np.savez(tmp_path / "old.npz", **arrays)  # as written before options existed
    assert nplstm.Trace.load(tmp_path / "old.npz").options == {}
    arrays["meta/options"] = np.asarray("[1, 2]")
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="meta/options is not a JSON object of options"):
        nplstm.Trace.load(tmp_path / "bad.npz")
    arrays["meta/options"] = np.asarray("{1, 2")
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="meta/options is not a JSON object of options"):
        nplstm.Trace.load(tmp_path / "bad.npz")


#: The range of each function, from its equation (nplstm.gates), at alpha=0.5, beta=0.5.
RANGES = {"Sigmoid": (0, 1), "Tanh": (-1, 1), "Relu": (0, math.inf), "HardSigmoid": (0, 1),
          "Affine": (-math.inf, math.inf), "LeakyRelu": (-math.inf, math.inf),
          "ThresholdedRelu": (0, math.inf), "ScaledTanh": (-0.5, 0.5),
          "Elu": (-0.5, math.inf), "Softsign": (-1, 1), "Softplus": (0, math.inf)}


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_gate_ranges_follow_the_activation_functions(name):
    takes = {"HardSigmoid": 2, "Affine": 2, "ScaledTanh": 2, "LeakyRelu": 1,
             "ThresholdedRelu": 1, "Elu": 1}.get(name, 0)
    both = (0.5, None, None, None, 0.5, None)  # aligned with the activations
    layer = nplstm.LSTM(H_IN, H, bidirectional=True, seed=0, dtype=np.float64,
                        activations=(name, "Tanh", "Tanh", "Sigmoid", name, "Tanh"),
                        activation_alpha=both if takes else None,
                        activation_beta=both if takes == 2 else None)
    trace = layer.trace(_x())
    lo, hi = RANGES[name]
    for g in ("i", "f", "o"):
        assert trace.gate_range(g, direction=0) == (lo, hi)
        assert trace.gate_range(g, direction=1) == (0, 1)
    assert trace.gate_range("g", 0) == (-1, 1) and trace.gate_range("g", 1) == (lo, hi)
    # the recorded values lie inside (clip none: exact ends may be reached)
    v = trace["i"][0, 0]
    assert (v >= lo).all() and (v <= hi).all()
    with pytest.raises(KeyError, match="'c' is not a gate of this lstm trace"):
        trace.gate_range("c")


def test_coupled_forget_gate_range_and_saturation_count_the_recorded_values():
    layer = nplstm.LSTM(H_IN, H, input_forget=True, seed=3, dtype=np.float64,
                        activations=("HardSigmoid", "Relu", "Tanh"))
    w = {k: 4 * v for k, v in layer.state_dict().items()}  # large: HardSigmoid hits 0 and 1
    layer.load_state_dict(w)
    trace = layer.trace(_x())
    assert trace.gate_range("f") == (0, 1) and trace.gate_range("g") == (0, math.inf)
    i, f, g = (trace[k][0, 0] for k in "ifg")
    np.testing.assert_array_equal(f, 1 - i)
    sat = trace.saturation()
    assert sat["i"] == (np.mean(i < 0.05), np.mean(i > 0.95))
    assert sat["f"] == (np.mean(f < 0.05), np.mean(f > 0.95))
    assert sat["g"][0] == np.mean(g <= 0) and math.isnan(sat["g"][1])
    assert 0 < sat["i"][0] < 1 and 0 < sat["g"][0] < 1
    leaky = nplstm.RNN(H_IN, H, activations=("LeakyRelu",)).trace(_x(np.float32))
    assert all(math.isnan(v) for v in leaky.saturation()["h"])


def test_card_refuses_a_trace_with_options_naming_them():
    pytest.importorskip("matplotlib")
    from nplstm import card

    trace = nplstm.LSTM(H_IN, H, peepholes=True, clip=2.0).trace(_x(np.float32))
    with pytest.raises(ValueError, match=r"options beyond it \(peepholes=True, clip=2.0\)"):
        card.draw(trace=trace, step=1)
    card.draw(trace=nplstm.LSTM(H_IN, H).trace(_x(np.float32)), step=1)  # PyTorch's: drawn


def test_plot_uses_each_gates_range_and_names_the_options():
    pytest.importorskip("matplotlib")
    from nplstm import plot

    layer = nplstm.LSTM(H_IN, H, seed=0, activations=("HardSigmoid", "Relu", "Tanh"),
                        clip=3.0)
    trace = layer.trace(_x(np.float32))
    fig = plot.gate_heatmaps(trace)
    limits = {ax.get_title().split(":")[0]: ax.images[0].get_clim() for ax in fig.axes
              if ax.images}
    assert limits["i"] == (0, 1)
    assert limits["g"] == (0, pytest.approx(float(trace.gate("g")[:, 0].max())))  # batch 0
    assert "activations=('HardSigmoid', 'Relu', 'Tanh')" in fig._suptitle.get_text()
    assert "clip=3.0" in fig._suptitle.get_text()
    fig = plot.saturation(nplstm.RNN(H_IN, H, activations=("Affine",)).trace(_x(np.float32)))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "unbounded:\nno ends" in texts
    plot.overview(trace)  # draws, warns nothing


def test_cli_trace_names_peepholes_and_card_refuses_them(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from nplstm.cli import main

    layer = nplstm.LSTM(1, 3, peepholes=True, seed=0)
    np.savez(tmp_path / "w.npz", **layer.state_dict())
    assert main(["trace", "--weights", str(tmp_path / "w.npz"), "--steps", "0",
                 "--save", str(tmp_path / "t.npz")]) == 0
    out = capsys.readouterr().out
    assert "LSTM(1, 3, peepholes=True" in out
    assert "options beyond PyTorch's: peepholes=True; the equations above are PyTorch's" \
        in out
    assert nplstm.Trace.load(tmp_path / "t.npz").options == {"peepholes": True}
    assert main(["card", "--trace", str(tmp_path / "t.npz"), "-o",
                 str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "options beyond it (peepholes=True)" in err and not (tmp_path / "c.png").exists()
