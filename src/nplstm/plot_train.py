"""Pictures of learning: loss curves, gate saturation over training, gradient flow.

Re-exported by :mod:`nplstm.plot`; matplotlib is imported when a function is
called (``pip install 'nplstm[plot]'``). Each returns a matplotlib Figure.
"""

from __future__ import annotations

import numpy as np

from .style import GATE_TITLES, color

_SERIES = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")


def _figure(size):
    from .plot import _matplotlib

    Figure, _ = _matplotlib()
    return Figure(figsize=size, layout="constrained")


def loss_curves(logs, baseline=None, baseline_label="baseline", ylabel="loss"):
    """Training (solid) and validation (dashed) loss against optimizer steps.

    logs: ``{label: {"step": [...], "train_loss": [...], "val_loss": [...]}}``
    (the log ``nplstm train`` writes); baseline: a horizontal reference line.
    """
    fig = _figure((6.4, 4.0))
    ax = fig.add_subplot()
    for k, (label, log) in enumerate(logs.items()):
        c = _SERIES[k % len(_SERIES)]
        ax.plot(log["step"], log["train_loss"], "-o", ms=3, color=c, label=f"{label} train")
        if log.get("val_loss"):
            ax.plot(log["step"], log["val_loss"], "--s", ms=3, color=c,
                    label=f"{label} validation")
    if baseline is not None:
        ax.axhline(baseline, color="#666666", lw=1, ls=":", label=baseline_label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title("Loss while training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def saturation_history(steps, history):
    """Fraction of gate values near either end of their range, after each epoch.

    steps: ``(E,)``; history: ``[Trace.saturation() per epoch]``, each
    ``{gate: (near_lo, near_hi)}``. Solid: near the top (σ → 1, tanh → 1);
    dashed: near the bottom. Saturated gates pass almost no gradient.
    """
    fig = _figure((6.4, 4.0))
    ax = fig.add_subplot()
    for gate in history[0]:
        lo = [h[gate][0] for h in history]
        hi = [h[gate][1] for h in history]
        title = GATE_TITLES.get(gate, gate)
        ax.plot(steps, hi, "-o", ms=3, color=color(gate), label=f"{gate} ({title}) near top")
        ax.plot(steps, lo, "--", color=color(gate), label=f"{gate} near bottom")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("fraction of values (validation run)")
    ax.set_ylim(bottom=0)
    ax.set_title("Gate saturation over training (within 5% of either end)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def grad_flow(flows):
    """‖dL/dx_t‖ when the loss reads only the last step, one panel per model.

    flows: ``{panel: {curve: (L,) norms}}`` (or ``{panel: (L,) norms}``), e.g.
    ``{"LSTM": {"at initialisation": a, "trained": b}, "RNN": {...}}``; norms
    from :func:`nplstm.train.grad_per_step`, drawn against "steps before the
    loss" on a log scale, each normalised by its last step's value. A plain
    RNN's gradient vanishes geometrically; an LSTM's cell path carries more of
    it further back (how much depends on what the forget gates learned).
    Exact zeros (the gradient underflowed the dtype) are left out.
    """
    fig = _figure((4.2 * len(flows), 3.8))
    axes = fig.subplots(1, len(flows), sharey=True, squeeze=False)[0]
    for ax, (panel, curves) in zip(axes, flows.items()):
        _flow_panel(ax, panel, curves)
    axes[0].set_ylabel("‖dL/dx_t‖ / ‖dL/dx_last‖")
    fig.suptitle("Gradient reaching each earlier time step")
    return fig


def _flow_panel(ax, panel, curves, mark=None):
    """One model's gradient-flow curves; mark: ``(steps back, label)`` drawn as a line."""
    if not hasattr(curves, "items"):
        curves = {panel: curves}
    for k, (label, norms) in enumerate(curves.items()):
        norms = np.asarray(norms, dtype=np.float64)
        back = np.arange(norms.size)[::-1]  # steps before the loss
        rel = np.where(norms > 0, norms / norms[-1], np.nan)  # 0: underflow, not drawn
        ax.semilogy(back, rel, color=_SERIES[k % len(_SERIES)], label=label)
    if mark is not None:
        ax.axvline(mark[0], color="#666666", lw=1, ls=":", label=mark[1])
    if not ax.xaxis_inverted():
        ax.invert_xaxis()
    ax.set_title(panel)
    ax.set_xlabel("steps before the loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def memory_contrast(logs, flows, delay, chance_loss, chance_acc=0.5):
    """LSTM against a plain RNN on a long-delay memory task, side by side.

    logs: ``{model: {"step", "val_loss", "val_acc"}}`` (validation after each
    epoch); flows: ``{model: {"at initialisation": (L,), "trained": (L,)}}``
    from :func:`nplstm.train.grad_per_step`; delay: steps between the input
    that decides the answer and the loss; chance_loss / chance_acc: what a
    guess scores (e.g. ln 2 and 1/2 for two classes). Top: validation loss
    (log scale) and accuracy; bottom: gradient reaching each earlier step.
    """
    fig = _figure((10.0, 7.6))
    top, bottom = fig.subfigures(2, 1)
    ax_loss, ax_acc = top.subplots(1, 2)
    for k, (label, log) in enumerate(logs.items()):
        c = _SERIES[k % len(_SERIES)]
        ax_loss.semilogy(log["step"], log["val_loss"], "-o", ms=3, color=c, label=label)
        ax_acc.plot(log["step"], log["val_acc"], "-o", ms=3, color=c, label=label)
    ax_loss.axhline(chance_loss, color="#666666", lw=1, ls=":",
                    label=f"chance (guess): {chance_loss:.3f}")
    ax_acc.axhline(chance_acc, color="#666666", lw=1, ls=":",
                   label=f"chance (guess): {chance_acc:.0%}")
    ax_loss.set_ylabel("validation cross-entropy (nats)")
    ax_loss.set_title("Loss (log scale)")
    ax_acc.set_ylabel("validation accuracy")
    ax_acc.set_ylim(0, 1.05)
    ax_acc.set_title("Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    top.suptitle(f"Remember the first input for {delay} steps of noise")
    axes = bottom.subplots(1, len(flows), sharey=True, squeeze=False)[0]
    for ax, (panel, curves) in zip(axes, flows.items()):
        _flow_panel(ax, f"{panel}: gradient reaching each step", curves,
                    mark=(delay, "the input to remember"))
    axes[0].set_ylabel("‖dL/dx_t‖ / ‖dL/dx_last‖")
    return fig


def forecast(t, truth, prediction, naive=None, ylabel="value"):
    """One-step-ahead forecast against the truth (and the naive last-value forecast)."""
    fig = _figure((8.0, 4.0))
    ax = fig.add_subplot()
    ax.plot(t, truth, color="#000000", lw=1.2, label="truth")
    ax.plot(t, prediction, color=_SERIES[0], lw=1, label="model forecast")
    if naive is not None:
        ax.plot(t, naive, color=_SERIES[1], lw=0.8, ls="--", alpha=0.8,
                label="naive (last value)")
    ax.set_xlabel("year")
    ax.set_ylabel(ylabel)
    ax.set_title("One-step-ahead forecast on the validation period")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
