"""Pictures of a :class:`~nplstm.trace.Trace`: gate heatmaps, state paths, saturation.

Every function returns a :class:`matplotlib.figure.Figure` (never a pyplot
window), so it works headless; save it with ``fig.savefig("gates.png")``.
matplotlib is imported when a function is called: ``pip install 'nplstm[plot]'``.

>>> fig = nplstm.plot.overview(lstm.trace(x))        # doctest: +SKIP
>>> fig.savefig("overview.png", dpi=120)             # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from . import gates as _gates
from .style import GATE_TITLES, color, light

_DIRECTIONS = ("forward", "reverse")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _matplotlib():
    """``(Figure, colors)`` from matplotlib, or an ImportError saying what to install."""
    try:
        from matplotlib import colors
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("nplstm.plot needs matplotlib: pip install 'nplstm[plot]'") from None
    return Figure, colors


def _units(units, H):
    """Unit indices from None (all), a slice, an int or a list; checked against H."""
    idx = np.arange(H)[units] if isinstance(units, slice) else (
        np.arange(H) if units is None else np.atleast_1d(np.asarray(units)))
    if idx.size == 0 or idx.min() < -H or idx.max() >= H:
        raise ValueError(f"units must select units of 0..{H - 1}, got {units!r}")
    return idx % H


def _row_units(trace, units, width):
    """``(indices, projected)`` for a row of ``width`` entries: ``units`` of the hidden
    units, or for a projected LSTM's h (P < H entries) the selected units below P, else
    its first ones (:func:`nplstm.trace.projection_units`, as nplstm trace and the card)."""
    from .trace import projection_units

    idx = _units(units, trace.hidden_size)
    if width == trace.hidden_size:
        return idx, False
    return projection_units(idx, width), True


def _series(trace, name, layer, direction, batch):
    """``(L, H)`` values of one sequence, masked (NaN) past its length."""
    if not isinstance(batch, (int, np.integer)) or not 0 <= batch < trace.batch_size:
        raise IndexError(f"batch must be an int in [0, {trace.batch_size}), got {batch!r}")
    a = trace[name][trace._check(layer, direction)][:, batch].astype(float)  # (L, H)
    a[~trace.mask()[:, batch]] = np.nan
    return a


def _ordered(trace):
    """Recorded names, gates first, then c, then h (the order of the equations)."""
    return [n for n in trace.gates if n in trace] + [n for n in ("c", "h")
                                                      if n in trace and n not in trace.gates]


def _function_name(trace, name):
    return _gates.GATE_FUNCTIONS[trace.mode][name].__name__


def _where(trace, layer, direction, batch=None):
    s = f"{trace.mode.upper()} layer {layer}, {_DIRECTIONS[direction]}"
    return s + ("" if batch is None or trace.unbatched else f", sequence {batch}")


def _style_axes(ax, name):
    """Frame and title in the gate's colour."""
    for spine in ax.spines.values():
        spine.set_edgecolor(color(name))
        spine.set_linewidth(1.5)


def _steps_axis(ax, L):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=min(L, 10)))
    ax.set_xlabel("time step t")


# ------------------------------------------------------------------ drawing --


def _draw_heatmaps(fig, trace, layer, direction, batch, units, names):
    _, colors = _matplotlib()
    names = list(_ordered(trace) if names is None else names)
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        a = _series(trace, name, layer, direction, batch)  # (L, H) or, projected h, (L, P)
        idx, projected = _row_units(trace, units, a.shape[1])
        img = np.ma.masked_invalid(a[:, idx].T)  # (units, L)
        lo, hi = _gates_range(trace, name, a, direction)
        stops = ["white", color(name)] if lo == 0 else ["#4d4d4d", "white", color(name)]
        cmap = colors.LinearSegmentedColormap.from_list(f"nplstm_{name}", stops)
        cmap = cmap.with_extremes(bad="#dddddd")
        im = ax.imshow(img, aspect="auto", cmap=cmap, vmin=lo, vmax=hi, origin="upper",
                       interpolation="nearest")
        rows = range(0, len(idx), max(1, len(idx) // 12))
        ax.set_yticks(list(rows), [str(idx[k]) for k in rows])
        ax.set_ylabel(f"output p (P={a.shape[1]})" if projected else "unit")
        _steps_axis(ax, a.shape[0])
        ax.set_title(f"{name}: {GATE_TITLES[name]}  ({_function_name(trace, name)})",
                     color=color(name), fontsize=10)
        _style_axes(ax, name)
        fig.colorbar(im, ax=ax, fraction=0.08, pad=0.02)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Gates and states over time: {_where(trace, layer, direction, batch)}"
                 + ("   (grey: past the sequence's length)" if trace.lengths is not None
                    else "") + _options_line(trace), fontsize=11)


def _options_line(trace):
    """A second title line naming the layer's options beyond PyTorch's, if any."""
    if not trace.options:
        return ""
    return "\n" + ", ".join(f"{k}={v!r}" for k, v in trace.options.items())


def _gates_range(trace, name, a, direction=0):
    """Colour limits: a gate's range (:meth:`Trace.gate_range`: σ (0, 1), tanh
    (−1, 1), ...), the data's where it is unbounded; states symmetric about 0."""
    bound = max(1.0, float(np.nanmax(np.abs(a))))
    if name not in trace.gates:
        return -bound, bound
    lo, hi = trace.gate_range(name, direction)
    if np.isinf(lo):
        return -bound, bound
    if np.isinf(hi):
        return lo, max(float(np.nanmax(a)), lo + 1e-12)
    return lo, hi


def _draw_trajectories(fig, trace, layer, direction, batch, units):
    states = [s for s in ("c", "h") if s in trace]
    axes = np.atleast_1d(fig.subplots(len(states), 1, sharex=True, squeeze=False)).ravel()
    for ax, name in zip(axes, states):
        a = _series(trace, name, layer, direction, batch)  # (L, H) or, projected h, (L, P)
        idx, projected = _row_units(trace, units, a.shape[1])
        t = np.arange(a.shape[0])
        for k, unit in enumerate(idx):
            shade = light(color(name), 0.5 * k / max(len(idx) - 1, 1))
            ax.plot(t, a[:, unit], marker=_MARKERS[k % len(_MARKERS)], markersize=3.5,
                    color=shade, label=f"p{unit}" if projected else f"unit {unit}",
                    linewidth=1.5)
        ax.axhline(0, color="#999999", linewidth=0.6)
        ax.set_ylabel(name, color=color(name), fontsize=11)
        ax.set_title(f"{name}: {GATE_TITLES[name]} ({_function_name(trace, name)})",
                     color=color(name), fontsize=10)
        _style_axes(ax, name)
        if len(idx) <= 8:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      frameon=False)
    _steps_axis(axes[-1], trace.steps)
    fig.suptitle(f"States per unit: {_where(trace, layer, direction, batch)}", fontsize=11)


def _draw_saturation(fig, trace, layer, direction, low, high):
    frac = trace.saturation(layer, direction, low, high)
    ax = fig.subplots()
    names = list(frac)
    x = np.arange(len(names))
    w = 0.38
    bars, ends = [], []
    for k, name in enumerate(names):
        if np.isnan(frac[name]).all():  # Affine, LeakyRelu: no end to sit at
            ax.annotate("unbounded:\nno ends", (x[k], 0.02), ha="center", va="bottom",
                        fontsize=7, color=color(name))
        for dx, value, end, hatch, fill in zip((-w / 2, w / 2), frac[name],
                                               _range_ends(trace, name, direction),
                                               ("///", None),
                                               (0.7, 0.0)):
            if np.isnan(value):
                continue
            ax.bar(x[k] + dx, value, w, color=light(color(name), fill),
                   edgecolor=color(name), hatch=hatch, linewidth=1.2)
            ax.annotate(f"{value:.0%}", (x[k] + dx, value), ha="center", va="bottom",
                        fontsize=8, xytext=(0, 2), textcoords="offset points")
            bars.append(x[k] + dx)
            ends.append(f"≈{end}")
    ax.set_xticks(bars, ends, minor=True, fontsize=7)
    ax.set_xticks(x, [f"{n}\n{_function_name(trace, n)}" for n in names], fontsize=8)
    ax.tick_params(axis="x", which="major", length=0, pad=13)
    for tick, name in zip(ax.get_xticklabels(), names):
        tick.set_color(color(name))
    ax.set_xlim(-1, len(names))
    ax.set_ylim(0, 1.1)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("fraction of valid steps × units")
    ax.set_title(f"hatched: below {low:g}, solid: above {high:g} of each gate's range",
                 fontsize=9)
    fig.suptitle(f"Gate saturation: {_where(trace, layer, direction)}, all sequences",
                 fontsize=11)


def _range_ends(trace, name, direction=0):
    from .trace import range_ends

    return tuple(e.replace("-", "−") for e in range_ends(*trace.gate_range(name, direction)))


# ------------------------------------------------------------------- public --


def gate_heatmaps(trace, layer=0, direction=0, batch=0, units=None, names=None):
    """One heatmap per recorded gate and state: units (rows) × time (columns).

    σ gates run white (0) to their colour (1); tanh gates and states run grey
    (negative) through white (0) to their colour. ``units`` (slice, int or
    list) picks rows; ``names`` picks panels (default: all recorded). A
    projected LSTM's h (P entries) shows the selected units below P, else its
    first ones.
    """
    Figure, _ = _matplotlib()
    n = len(trace.names if names is None else names)
    ncols = min(3, n)
    fig = Figure(figsize=(4.2 * ncols, 3.0 * -(-n // ncols) + 0.6), layout="constrained")
    _draw_heatmaps(fig, trace, layer, direction, batch, units, names)
    return fig


def state_trajectories(trace, layer=0, direction=0, batch=0, units=None):
    """The cell state c (LSTM) and hidden state h of each unit over time, one line per unit."""
    Figure, _ = _matplotlib()
    fig = Figure(figsize=(8, 2.6 * (1 + ("c" in trace)) + 0.5), layout="constrained")
    _draw_trajectories(fig, trace, layer, direction, batch, units)
    return fig


def saturation(trace, layer=0, direction=0, low=0.05, high=0.95):
    """Bar chart: the fraction of steps each gate is near either end of its range.

    Pinned gates pass no gradient: a forget gate near 0 most of the time
    forgets everything, an input gate near 0 writes nothing. See
    :meth:`nplstm.Trace.saturation` for the numbers.
    """
    Figure, _ = _matplotlib()
    fig = Figure(figsize=(max(4.5, 1.6 + 1.5 * len(trace.gates)), 4.2), layout="constrained")
    _draw_saturation(fig, trace, layer, direction, low, high)
    return fig


def overview(trace, layer=0, direction=0, batch=0, units=None, low=0.05, high=0.95):
    """Heatmaps on top; state trajectories and gate saturation below: one figure."""
    Figure, _ = _matplotlib()
    n = len(trace.names)
    rows = -(-n // 3)
    fig = Figure(figsize=(13, 3.0 * rows + 4.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.0 * rows + 0.4, 4.2])
    _draw_heatmaps(top, trace, layer, direction, batch, units, None)
    left, right = bottom.subfigures(1, 2, width_ratios=[1.5, 1])
    _draw_trajectories(left, trace, layer, direction, batch, units)
    _draw_saturation(right, trace, layer, direction, low, high)
    return fig


# Pictures of learning (nplstm train): defined beside the training code.
from .plot_train import forecast, grad_flow, loss_curves, memory_contrast, saturation_history

__all__ = ["forecast", "gate_heatmaps", "grad_flow", "loss_curves", "memory_contrast",
           "overview", "saturation", "saturation_history", "state_trajectories"]
