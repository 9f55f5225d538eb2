"""Every plot renders to a real image; matplotlib stays optional."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import nplstm

mpl_image = pytest.importorskip("matplotlib.image")
from nplstm import plot
from nplstm.style import GATE_COLORS

PNG = b"\x89PNG\r\n\x1a\n"


def _trace(cell, **kw):
    layer = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[cell](
        2, 6, dtype=np.float64, seed=0, **kw)
    x = np.random.default_rng(0).normal(size=(9, 2, 2))
    return layer.trace(x, lengths=[9, 5])


def _check_png(path, min_size=(250, 250)):
    assert path.read_bytes()[:8] == PNG
    img = mpl_image.imread(path)
    assert img.shape[0] >= min_size[1] and img.shape[1] >= min_size[0]
    assert img.std() > 0.05  # not blank
    assert path.stat().st_size < 400_000
    return img


@pytest.mark.parametrize("cell, kw", [("lstm", {}), ("gru", {"bidirectional": True}),
                                      ("rnn", {}), ("rnn", {"nonlinearity": "relu"})])
@pytest.mark.parametrize("func", ["gate_heatmaps", "state_trajectories", "saturation",
                                  "overview"])
def test_every_plot_renders(tmp_path, cell, kw, func):
    fig = getattr(plot, func)(_trace(cell, **kw))
    fig.savefig(tmp_path / "p.png", dpi=100)
    _check_png(tmp_path / "p.png")


def test_options_and_formats(tmp_path):
    trace = _trace("gru", bidirectional=True, num_layers=2)
    fig = plot.gate_heatmaps(trace, layer=1, direction=1, batch=1, units=slice(0, 3),
                             names=["z", "h"])
    assert len([ax for ax in fig.axes if ax.get_images()]) == 2
    assert fig.axes[0].get_images()[0].get_array().shape == (3, 9)  # units x time
    fig.savefig(tmp_path / "h.svg")
    assert b"<svg" in (tmp_path / "h.svg").read_bytes()[:400]
    plot.overview(trace, units=[0, 5]).savefig(tmp_path / "o.pdf")
    assert (tmp_path / "o.pdf").read_bytes()[:5] == b"%PDF-"
    fig = plot.saturation(trace, low=0.2, high=0.8)
    assert fig.axes[0].get_xticklabels()[0].get_color() == GATE_COLORS["r"]
    with pytest.raises(ValueError, match="units"):
        plot.gate_heatmaps(trace, units=slice(6, 9))
    with pytest.raises(IndexError, match="batch"):
        plot.state_trajectories(trace, batch=2)
    with pytest.raises(IndexError, match="layer"):
        plot.overview(trace, layer=2)


def test_gate_colours_are_the_shared_ones():
    fig = plot.gate_heatmaps(_trace("lstm"))
    titles = {ax.get_title().split(":")[0]: ax.title.get_color() for ax in fig.axes
              if ax.get_title()}
    assert titles == {n: GATE_COLORS[n] for n in "ifgoch"}


def test_missing_matplotlib_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'nplstm\[plot\]'"):
        plot.overview(_trace("rnn"))
    from nplstm import card

    with pytest.raises(ImportError, match=r"pip install 'nplstm\[plot\]'"):
        card.draw("lstm")


def test_projected_h_rows_follow_the_units():
    trace = _trace("lstm", proj_size=2)  # H=6, P=2: h has 2 entries, the gates 6
    h = trace["h"][0, 0, :, 0]  # (L, P)
    for units, want in (([1, 4], [1]), ([3, 5], [0, 1]), (None, [0, 1]), (slice(0, 3), [0, 1])):
        fig = plot.gate_heatmaps(trace, units=units, names=["o", "h"])
        o_ax, h_ax = [ax for ax in fig.axes if ax.get_images()]
        n = len(range(6)[units] if isinstance(units, slice) else units or range(6))
        assert o_ax.get_images()[0].get_array().shape == (n, 9)
        img = h_ax.get_images()[0].get_array()  # (rows, L), masked past the length
        assert img.shape == (len(want), 9) and np.array_equal(img.data, h[:, want].T)
        assert [t.get_text() for t in h_ax.get_yticklabels()] == [str(k) for k in want]
        assert h_ax.get_ylabel() == "output p (P=2)" and o_ax.get_ylabel() == "unit"
        fig = plot.state_trajectories(trace, units=units)
        h_ax = fig.axes[1]
        assert [line.get_label() for line in h_ax.get_lines()[:-1]] == [f"p{k}" for k in want]
        assert np.array_equal(h_ax.get_lines()[0].get_ydata(), h[:, want[0]])
    plot.overview(trace, units=[1, 2, 3])  # draws: h shows p1
    with pytest.raises(ValueError, match="units must select units of 0..5"):
        plot.overview(trace, units=[6])
