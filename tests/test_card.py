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


def _trace(cell, **kw):
    layer = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[cell](
        3, 7, dtype=np.float64, seed=0, **kw)
    return layer.trace(np.random.default_rng(1).normal(size=(6, 2, 3)))


def _texts(fig):
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    texts = [t for ax in fig.axes for t in ax.texts if t.get_text()]
    return texts, [t.get_window_extent(r) for t in texts], fig.bbox


VARIANTS = [(cell, None, {}) for cell in CELLS] + [(cell, {}, {}) for cell in CELLS] + [
    ("lstm", {"proj_size": 3}, {}), ("rnn", {"nonlinearity": "relu"}, {}),
    ("lstm", {"proj_size": 3}, {"units": [1, 4, 6]}),
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
    assert "weight_ih[7:14], weight_hh[7:14]" in strings and "(2, 7)" in strings
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
    assert [card.article(c) for c in CELLS] == ["an LSTM", "a GRU", "an RNN"]
    with pytest.raises(ValueError, match="the trace is of an LSTM, not a GRU"):
        card.draw("gru", _trace("lstm"))
