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


@pytest.mark.parametrize("with_trace", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_card_text_is_inside_the_page_and_never_overlaps(cell, with_trace):
    fig = card.draw(cell, _trace(cell) if with_trace else None, 4 if with_trace else None)
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
