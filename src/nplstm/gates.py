"""The seed's math: one small function per gate, its equation in the docstring.

This is the module a learner reads. Every function works on one time step, on a
batch ``x`` of shape ``(N, H_in)`` or a single sample of shape ``(H_in,)``; the
weights are PyTorch's per-gate slices (``W_ii`` is rows ``0:H`` of
``weight_ih``, see :func:`gate_rows`). Products are written ``x @ W.T``
exactly as ``torch.nn.LSTM`` documents ``W_ii x``.

Symbols (PyTorch's): ``x`` input, ``h_prev``/``c_prev`` previous hidden and cell
state, ``i`` input gate, ``f`` forget gate, ``g`` cell candidate (the seed's
"learn" gate), ``o`` output gate, ``r`` reset gate, ``z`` update gate, ``n`` new
(candidate) state.

The fast path in :mod:`nplstm.cells` fuses these into one matmul per step; the
test suite proves both give the same numbers.
"""

from __future__ import annotations

import functools

import numpy as np

# Which rows of the stacked PyTorch weights each gate owns, per family, in
# PyTorch's order. weight_ih has shape (len(gates) * H, H_in).
GATE_ORDER = {
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
    "rnn": ("h",),
}


def _quiet(step):
    """Run ``step`` as PyTorch runs it: inf and NaN in the data give inf and NaN
    in the result, with no ``RuntimeWarning`` (as :func:`nplstm.cells.quiet`)."""

    @functools.wraps(step)
    def run(*args, **kwargs):
        with np.errstate(over="ignore", invalid="ignore"):
            return step(*args, **kwargs)

    return run


def gate_rows(family: str, gate: str, hidden_size: int) -> slice:
    """Rows of ``weight_ih``/``weight_hh``/biases that belong to ``gate``.

    >>> gate_rows("lstm", "g", 5)
    slice(10, 15, None)
    """
    k = GATE_ORDER[family].index(gate)
    return slice(k * hidden_size, (k + 1) * hidden_size)


def sigmoid(x):
    """σ(x) = 1 / (1 + e^(−x)), computed without overflow for any x.

    For x ≥ 0 uses 1 / (1 + e^(−x)); for x < 0 the equal form e^x / (1 + e^x),
    so ``exp`` only ever sees non-positive numbers (no warning at ±1000).
    """
    x = np.asarray(x)
    e = np.exp(-np.abs(x))  # in (0, 1], never overflows
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _affine(x, h_prev, W_x, W_h, b_x, b_h):
    """W_x x + b_x + W_h h + b_h, the pre-activation every gate shares."""
    out = x @ W_x.T + h_prev @ W_h.T  # (N, H)
    if b_x is not None:
        out = out + b_x + b_h
    return out


# --------------------------------------------------------------------- LSTM --


def input_gate(x, h_prev, W_ii, W_hi, b_ii=None, b_hi=None):
    """Input gate: how much of the candidate enters the cell.

    i = σ(W_ii x + b_ii + W_hi h_prev + b_hi)        shape (N, H)
    """
    return sigmoid(_affine(x, h_prev, W_ii, W_hi, b_ii, b_hi))


def forget_gate(x, h_prev, W_if, W_hf, b_if=None, b_hf=None):
    """Forget gate: how much of the old cell state is kept.

    f = σ(W_if x + b_if + W_hf h_prev + b_hf)        shape (N, H)
    """
    return sigmoid(_affine(x, h_prev, W_if, W_hf, b_if, b_hf))


def cell_candidate(x, h_prev, W_ig, W_hg, b_ig=None, b_hg=None):
    """Cell candidate (the seed's "learn" gate): what could be written.

    g = tanh(W_ig x + b_ig + W_hg h_prev + b_hg)     shape (N, H)
    """
    return np.tanh(_affine(x, h_prev, W_ig, W_hg, b_ig, b_hg))


def output_gate(x, h_prev, W_io, W_ho, b_io=None, b_ho=None):
    """Output gate: how much of the cell state is shown as the hidden state.

    o = σ(W_io x + b_io + W_ho h_prev + b_ho)        shape (N, H)
    """
    return sigmoid(_affine(x, h_prev, W_io, W_ho, b_io, b_ho))


def cell_update(f, c_prev, i, g):
    """New cell state (long-term memory): keep part of the old, add part of the new.

    c = f ⊙ c_prev + i ⊙ g                            shape (N, H)
    """
    return f * c_prev + i * g


def hidden_update(o, c, W_hr=None):
    """New hidden state (short-term memory), projected when ``proj_size > 0``.

    h = o ⊙ tanh(c)                  shape (N, H)
    h = W_hr (o ⊙ tanh(c))           shape (N, proj_size), with a projection
    """
    h = o * np.tanh(c)  # (N, H)
    return h if W_hr is None else h @ W_hr.T  # (N, proj_size)


def _split(family, weight, bias, hidden_size):
    """Per-gate row slices of a stacked weight (and bias, which may be None)."""
    out = {}
    for gate in GATE_ORDER[family]:
        rows = gate_rows(family, gate, hidden_size)
        out[gate] = (weight[rows], None if bias is None else bias[rows])
    return out


@_quiet
def lstm_step(x, h_prev, c_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
              weight_hr=None):
    """One LSTM time step, gate by gate, with PyTorch's stacked weights.

    Returns ``(h, c, gates)`` where ``gates`` is ``{"i", "f", "g", "o"}``.
    """
    H = weight_hh.shape[0] // 4
    wx = _split("lstm", weight_ih, bias_ih, H)
    wh = _split("lstm", weight_hh, bias_hh, H)

    def args(gate):
        return wx[gate][0], wh[gate][0], wx[gate][1], wh[gate][1]

    i = input_gate(x, h_prev, *args("i"))
    f = forget_gate(x, h_prev, *args("f"))
    g = cell_candidate(x, h_prev, *args("g"))
    o = output_gate(x, h_prev, *args("o"))
    c = cell_update(f, c_prev, i, g)
    h = hidden_update(o, c, weight_hr)
    return h, c, {"i": i, "f": f, "g": g, "o": o}


# ---------------------------------------------------------------------- GRU --


def reset_gate(x, h_prev, W_ir, W_hr, b_ir=None, b_hr=None):
    """Reset gate: how much of the old state the candidate may look at.

    r = σ(W_ir x + b_ir + W_hr h_prev + b_hr)        shape (N, H)
    """
    return sigmoid(_affine(x, h_prev, W_ir, W_hr, b_ir, b_hr))


def update_gate(x, h_prev, W_iz, W_hz, b_iz=None, b_hz=None):
    """Update gate: how much of the old state is kept.

    z = σ(W_iz x + b_iz + W_hz h_prev + b_hz)        shape (N, H)
    """
    return sigmoid(_affine(x, h_prev, W_iz, W_hz, b_iz, b_hz))


def new_gate(x, h_prev, r, W_in, W_hn, b_in=None, b_hn=None):
    """Candidate state; PyTorch keeps ``b_hn`` inside the reset product.

    n = tanh(W_in x + b_in + r ⊙ (W_hn h_prev + b_hn))   shape (N, H)
    """
    x_part = x @ W_in.T  # (N, H)
    h_part = h_prev @ W_hn.T  # (N, H)
    if b_in is not None:
        x_part = x_part + b_in
        h_part = h_part + b_hn
    return np.tanh(x_part + r * h_part)


def gru_hidden_update(z, n, h_prev):
    """New GRU hidden state: interpolate between the candidate and the old state.

    h = (1 − z) ⊙ n + z ⊙ h_prev                      shape (N, H)
    """
    return (1 - z) * n + z * h_prev


@_quiet
def gru_step(x, h_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One GRU time step, gate by gate. Returns ``(h, gates)`` with r, z, n."""
    H = weight_hh.shape[0] // 3
    wx = _split("gru", weight_ih, bias_ih, H)
    wh = _split("gru", weight_hh, bias_hh, H)
    r = reset_gate(x, h_prev, wx["r"][0], wh["r"][0], wx["r"][1], wh["r"][1])
    z = update_gate(x, h_prev, wx["z"][0], wh["z"][0], wx["z"][1], wh["z"][1])
    n = new_gate(x, h_prev, r, wx["n"][0], wh["n"][0], wx["n"][1], wh["n"][1])
    h = gru_hidden_update(z, n, h_prev)
    return h, {"r": r, "z": z, "n": n}


# ---------------------------------------------------------------------- RNN --


def relu(x):
    """relu(x) = max(x, 0)."""
    return np.maximum(x, 0)


NONLINEARITIES = {"tanh": np.tanh, "relu": relu}


@_quiet
def rnn_step(x, h_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
             nonlinearity="tanh"):
    """One Elman RNN time step.

    h = tanh(W_ih x + b_ih + W_hh h_prev + b_hh)     (or relu)  shape (N, H)
    """
    return NONLINEARITIES[nonlinearity](_affine(x, h_prev, weight_ih, weight_hh,
                                                bias_ih, bias_hh))


# ------------------------------------------------------------ for readers --

#: The function that computes each recorded gate or state, per family.
GATE_FUNCTIONS = {
    "lstm": {"i": input_gate, "f": forget_gate, "g": cell_candidate, "o": output_gate,
             "c": cell_update, "h": hidden_update},
    "gru": {"r": reset_gate, "z": update_gate, "n": new_gate, "h": gru_hidden_update},
    "rnn": {"h": rnn_step},
}


def equation(func) -> str:
    """The equation line of a gate function's docstring, e.g. ``"i = σ(W_ii x + ...)"``.

    The card, the demo and the trace printout take their equations from here, so
    they cannot drift from the code.
    """
    for line in (func.__doc__ or "").splitlines():
        line = line.strip()
        if " = " in line and not line.startswith(("σ(x)", "relu(x)")):
            return line.split("  ")[0].strip()
    raise ValueError(f"{func.__name__} has no equation in its docstring")
