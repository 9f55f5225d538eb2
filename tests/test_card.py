"""The reference card: drawn from nplstm.gates, every variant renders, nothing overlaps."""

from __future__ import annotations

import numpy as np
import pytest

import nplstm
from nplstm import gates

pytest.importorskip("matplotlib")
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from nplstm import card

CELLS = ("lstm", "gru", "rnn")


def _trace(cell, scale=None, **kw):
    """A traced layer; with ``scale``, weights U(0, scale) and inputs in [0, 1): a ReLU
    RNN's values then grow large (10^4 at scale 2, e-notation at scale 20)."""
    layer = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[cell](
        3, 7, dtype=np.float64, seed=0, **kw)
    rng = np.random.default_rng(1)
    if scale is None:
        return layer.trace(rng.normal(size=(6, 2, 3)))
    layer.load_state_dict({k: rng.uniform(0, scale, v.shape)
                           for k, v in layer.state_dict().items()})
    return layer.trace(rng.uniform(0, 1, size=(6, 2, 3)))


def _texts(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts if t.get_text()]
    return texts, [t.get_window_extent(r) for t in texts], fig.bbox


VARIANTS = [(cell, None, {}) for cell in CELLS] + [(cell, {}, {}) for cell in CELLS] + [
    ("lstm", {"proj_size": 3}, {}), ("rnn", {"nonlinearity": "relu"}, {}),
    ("lstm", {"proj_size": 3}, {"units": [1, 4, 6]}),
    ("lstm", {"proj_size": 3}, {"units": [4, 5, 6]}),
    ("rnn", {"nonlinearity": "relu", "scale": 2.0}, {}),
    ("rnn", {"nonlinearity": "relu", "scale": 2.0}, {"units": [3, 5]}),
    ("rnn", {"nonlinearity": "relu", "scale": 20.0}, {"precision": 4}),
    ("rnn", None, {"nonlinearity": "relu"}),
] + [("gru", {}, {"units": card.max_units(p), "precision": p}) for p in range(7)]


@pytest.mark.parametrize("cell, layer_kw, draw_kw", VARIANTS)
def test_card_text_is_inside_the_page_and_never_overlaps(cell, layer_kw, draw_kw):
    with_trace = layer_kw is not None
    fig = card.draw(cell, _trace(cell, **layer_kw) if with_trace else None,
                    4 if with_trace else None, **draw_kw)
    texts, boxes, page = _texts(fig)
    for t, b in zip(texts, boxes):
        assert page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1, \
            f"{t.get_text()!r} leaves the page"
        assert t.get_fontsize() >= 6.5, f"{t.get_text()!r} is too small to print"
    for k in range(len(boxes)):
        for j in range(k + 1, len(boxes)):
            a, b = boxes[k], boxes[j]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert w <= 0.5 or h <= 0.5, \
                f"{texts[k].get_text()!r} overlaps {texts[j].get_text()!r}"


@pytest.mark.parametrize("cell", CELLS)
def test_card_is_read_from_the_code(cell):
    fig = card.draw(cell)
    strings = [t.get_text() for ax in fig.axes for t in ax.texts]
    for name, func in gates.GATE_FUNCTIONS[cell].items():
        assert func.__name__ in strings
        assert gates.equation(func) in strings
    for name in gates.GATE_ORDER[cell]:
        r = card.rows(cell, name)
        assert f"weight_ih[{r}], weight_hh[{r}]" in strings
    assert card.rows("lstm", "g") == "2H:3H" and card.rows("gru", "r") == "0:H"
    assert card.rows("lstm", "o", 5) == "15:20" and card.rows("lstm", "c") is None
    assert card.shape(gates.input_gate) == "(N, H)"


def test_card_shows_the_traced_values():
    trace = _trace("lstm", num_layers=2, bidirectional=True)
    fig = card.draw(trace=trace, step=2, batch=1, layer=1, direction=1, units=2, precision=3)
    strings = [t.get_text() for ax in fig.axes for t in ax.texts]
    f = trace.step(2, 1, 1, 1)["f"]
    want = f"{f[0]:.3f} {f[1]:.3f} …".replace("-", "−")
    assert strings.count(want) == 2  # in the forget gate's box and in the table
    assert "weight_{ih,hh}_l1_reverse[7:14]" in strings  # the traced layer's own keys
    assert "(2, 7)" in strings
    assert any("step t=2, sequence 1, layer 1, reverse" in s for s in strings)


@pytest.mark.parametrize("with_trace", [False, True])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_card_files(tmp_path, cell, with_trace, fmt):
    fig = card.draw(cell, _trace(cell) if with_trace else None, 0 if with_trace else None)
    path = tmp_path / f"card.{fmt}"
    fig.savefig(path, dpi=100)
    data = path.read_bytes()
    if fmt == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(path)
        h, w = img.shape[:2]
        assert abs(w - 1169) <= 1 and abs(h - 827) <= 1  # A4 landscape at 100 dpi
        assert img.std() > 0.05
    elif fmt == "svg":
        assert b"<svg" in data[:500] and b"</svg>" in data[-100:]
    else:
        assert data[:5] == b"%PDF-" and b"%%EOF" in data[-50:]
    assert 10_000 < len(data) < 1_000_000


def test_card_errors():
    with pytest.raises(ValueError, match="cell must be one of"):
        card.draw("lstm2")
    with pytest.raises(ValueError, match="not a GRU"):
        card.draw("gru", _trace("lstm"))
    with pytest.raises(ValueError, match="step= needs a trace"):
        card.draw("lstm", step=1)
    with pytest.raises(IndexError, match="t must be"):
        card.draw(trace=_trace("rnn"), step=6)


def _strings(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_relu_card_says_relu():
    trace = _trace("rnn", nonlinearity="relu")
    strings = _strings(card.draw(trace=trace, step=1))
    tanh_eq = gates.equation(gates.rnn_step)
    assert "tanh(" in tanh_eq and tanh_eq not in strings
    assert tanh_eq.replace("tanh(", "relu(") in strings
    assert "$h$  relu" in strings
    footer = next(s for s in strings if "drawn by" in s)
    assert gates.relu.__doc__.strip().rstrip(".") in footer and "σ" not in footer
    assert card.equation("rnn", "h") == tanh_eq
    # the values are the relu layer's (non-negative): in the box, at h_t and in the table
    h = trace.step(1, 0, 0, 0)["h"]
    assert (h >= 0).all()
    assert strings.count(" ".join(f"{v:.2f}" for v in h[:3]) + " …") == 3


def test_projected_card_shapes():
    H, P = 16, 4
    lstm = nplstm.LSTM(3, H, proj_size=P, dtype=np.float64, seed=0)
    x = np.random.default_rng(1).normal(size=(6, 3))  # unbatched
    trace = lstm.trace(x)
    strings = _strings(card.draw(trace=trace, step=2))
    h_shape = f"{lstm(x)[0][2].shape}"  # the layer's own h: (P,)
    assert h_shape == f"({P},)"
    h_row = strings.index("hidden_update", strings.index("function in nplstm.gates"))
    assert strings[h_row + 1] == "h = W_hr (o ⊙ tanh(c))"
    assert strings[h_row + 2] == f"weight_hr {lstm.weight_hr_l0.shape}"
    assert strings[h_row + 3] == h_shape
    c_row = strings.index("cell_update", strings.index("function in nplstm.gates"))
    assert strings[c_row + 3] == f"{trace.step(2)['c'].shape}" == f"({H},)"
    assert "weight_ih (4H, H_in), weight_hh (4H, P), weight_hr (P, H), bias_ih, bias_hh (4H,)" \
        in strings
    assert lstm.weight_hh_l0.shape == (4 * H, P) and lstm.weight_hr_l0.shape == (P, H)
    assert any(f"H={H}, P={P}" in s for s in strings)
    assert f"projected by W_hr ({P}, {H})" in strings
    # without a projection, no P anywhere
    strings = _strings(card.draw(trace=_trace("lstm"), step=2))
    assert "weight_ih (4H, H_in), weight_hh (4H, H), bias_ih, bias_hh (4H,)" in strings
    assert not any("P=" in s or "W_hr (" in s for s in strings)


def test_card_units_select_values():
    trace = _trace("lstm")
    step = trace.step(4, 0, 0, 0)
    strings = _strings(card.draw(trace=trace, step=4, units=[2, 5], precision=3))
    want = " ".join(f"{v:.3f}" for v in step["i"][[2, 5]]).replace("-", "−") + " …"
    assert strings.count(want) == 2  # in the input gate's box and in the table
    assert any("units 2,5 shown" in s for s in strings)
    strings = _strings(card.draw(trace=trace, step=4, units=2))
    want = " ".join(f"{v:.2f}" for v in step["i"][:2]).replace("-", "−") + " …"
    assert strings.count(want) == 2 and any("first 2 units shown" in s for s in strings)
    with pytest.raises(ValueError, match="room for 3 values at precision=2, got 4"):
        card.draw(trace=trace, units=4)
    with pytest.raises(ValueError, match="units must be an int >= 1"):
        card.draw(trace=trace, units=0)


def test_card_names_the_family_as_it_is_read():
    from nplstm.module import article

    assert [article(c.upper()) for c in CELLS] == ["an LSTM", "a GRU", "an RNN"]
    assert article("LSTMCell") == "an LSTMCell" and article("GRUCell") == "a GRUCell"
    with pytest.raises(ValueError, match="the trace is of an LSTM, not a GRU"):
        card.draw("gru", _trace("lstm"))


def _value_strings(trace, step, name, idx, precision=2):
    v = trace.step(step)[name]
    return " ".join(f"{x:.{precision}f}" for x in v[idx]).replace("-", "−") + (
        " …" if v.size > len(idx) else "")


def test_projected_h_shows_values_whatever_the_units():
    trace = _trace("lstm", proj_size=3)  # H=7, P=3
    # units 4..6 are all past P: h shows its first 3 entries, and the heading says so
    strings = _strings(card.draw(trace=trace, step=2, units=[4, 5, 6]))
    want = _value_strings(trace, 2, "h", [0, 1, 2])
    assert strings.count(want) == 2  # at h_t and in the table
    assert _value_strings(trace, 2, "h_prev", [0, 1, 2]) in strings  # at h_{t−1}
    assert strings.count(_value_strings(trace, 2, "c", [4, 5, 6])) == 2
    assert any("units 4,5,6 shown (of h: p0,p1,p2, as no unit shown is below P=3)" in s
               for s in strings)
    assert "values (units 4,5,6; h p0,p1,p2)" in strings
    # units 1, 4, 6: h shows p1, the only one below P
    strings = _strings(card.draw(trace=trace, step=2, units=[1, 4, 6]))
    assert strings.count(_value_strings(trace, 2, "h", [1])) == 2
    assert any("units 1,4,6 shown (of h: p1)" in s for s in strings)
    assert card.projection_units(np.array([5, 6]), 3).tolist() == [0, 1]


def test_large_values_fit_the_boxes():
    assert card.number(-0.5) == "−0.50" and card.number(1081.98) == "1081.98"
    assert card.number(123456.78) == "1.23e+05" and card.number(-1e-7, 3) == "−0.000"
    assert card.max_units(2) == 3 and card.max_units(2, widest=8) == 2
    trace = _trace("rnn", nonlinearity="relu", scale=2.0)
    h = trace.step(4)["h"]
    assert 10_000 < h.min() and h.max() < 100_000  # "16960.24": 8 characters, not 5
    strings = _strings(card.draw(trace=trace, step=4))
    assert strings.count(_value_strings(trace, 4, "h", [0, 1])) == 3  # box, h_t, table
    assert any("first 2 units shown" in s for s in strings)
    with pytest.raises(ValueError, match="room for 2 values as wide as 1....... at precision=2, "
                                         "got 3"):
        card.draw(trace=trace, step=4, units=3)
    assert card.room(trace.step(4), np.arange(3))[0] == 2
    huge = _trace("rnn", nonlinearity="relu", scale=20.0)
    strings = _strings(card.draw(trace=huge, step=4))
    h = huge.step(4)["h"]
    assert h[0] > 1e7 and card.number(h[0]) == f"{h[0]:.2e}"
    assert strings.count(f"{h[0]:.2e} {h[1]:.2e} …") == 3  # box, h_t, table
    strings = _strings(card.draw(trace=huge, step=4, precision=4))  # "1.5145e+09": 10 wide
    assert strings.count(f"{h[0]:.4e} …") == 3 and any("first unit shown" in s for s in strings)


@pytest.mark.parametrize("cell", CELLS)
def test_footer_explains_only_what_the_equations_use(cell):
    footer = next(s for s in _strings(card.draw(cell)) if "drawn by" in s)
    assert ("σ(x) = 1 / (1 + e^(−x))" in footer) == (cell != "rnn")
    assert ("⊙ elementwise product" in footer) == (cell != "rnn")
    assert "relu" not in footer


def test_relu_card_without_a_trace():
    strings = _strings(card.draw("rnn", nonlinearity="relu"))
    assert "h = relu(W_ih x + b_ih + W_hh h_prev + b_hh)" in strings and "$h$  relu" in strings
    footer = next(s for s in strings if "drawn by" in s)
    assert "relu(x) = max(x, 0)" in footer and "σ" not in footer
    assert "nonlinearity='relu'" in footer
    with pytest.raises(ValueError, match="nonlinearity= is an RNN option; an LSTM has"):
        card.draw("lstm", nonlinearity="relu")
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'elu'"):
        card.draw("rnn", nonlinearity="elu")
    with pytest.raises(ValueError, match="the trace is of an RNN with nonlinearity='tanh'"):
        card.draw(trace=_trace("rnn"), nonlinearity="relu")
    assert "$h$  relu" in _strings(card.draw(trace=_trace("rnn", nonlinearity="relu"),
                                             nonlinearity="relu"))
