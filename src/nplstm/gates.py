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
from typing import Any, Callable

import numpy as np

from .options import Activation

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


def _gate(pre, default, act, clip, p=None, c=None):
    """The options every gate shares (ONNX): pre + p ⊙ c (peephole), then the
    role's activation ``act`` on the clipped value; ``default`` (σ or tanh) when
    neither ``act`` nor ``clip`` is given, so PyTorch's math stays literal."""
    if p is not None:
        pre = pre + p * c  # (N, H)
    if act is None and clip is None:
        return default(pre)
    if act is None:
        act = Activation("Sigmoid" if default is sigmoid else "Tanh")
    return activate(act, pre, clip)


# --------------------------------------------------------------------- LSTM --


def input_gate(x, h_prev, W_ii, W_hi, b_ii=None, b_hi=None, *, p_i=None, c_prev=None,
               act=None, clip=None):
    """Input gate: how much of the candidate enters the cell.

    i = σ(W_ii x + b_ii + W_hi h_prev + b_hi)        shape (N, H)

    Options (ONNX LSTM): peephole ``+ p_i ⊙ c_prev``; role f's activation ``act``
    instead of σ; ``clip`` bounds the activation's input to [−clip, clip].
    """
    return _gate(_affine(x, h_prev, W_ii, W_hi, b_ii, b_hi), sigmoid, act, clip, p_i, c_prev)


def forget_gate(x, h_prev, W_if, W_hf, b_if=None, b_hf=None, *, p_f=None, c_prev=None,
                act=None, clip=None):
    """Forget gate: how much of the old cell state is kept.

    f = σ(W_if x + b_if + W_hf h_prev + b_hf)        shape (N, H)

    Options as :func:`input_gate` (peephole ``+ p_f ⊙ c_prev``). With
    ``input_forget`` the step uses :func:`coupled_forget_gate` instead.
    """
    return _gate(_affine(x, h_prev, W_if, W_hf, b_if, b_hf), sigmoid, act, clip, p_f, c_prev)


def coupled_forget_gate(i):
    """Coupled input-forget gate (ONNX ``input_forget=1``): forget what is written.

    f = 1 − i                                         shape (N, H)

    As onnxruntime computes it (deep_cpu_lstm.cc); the forget rows of the
    weights are then unused.
    """
    return 1 - i


def cell_candidate(x, h_prev, W_ig, W_hg, b_ig=None, b_hg=None, *, act=None, clip=None):
    """Cell candidate (the seed's "learn" gate): what could be written.

    g = tanh(W_ig x + b_ig + W_hg h_prev + b_hg)     shape (N, H)

    Options: role g's activation ``act`` instead of tanh; ``clip`` as :func:`input_gate`.
    """
    return _gate(_affine(x, h_prev, W_ig, W_hg, b_ig, b_hg), np.tanh, act, clip)


def output_gate(x, h_prev, W_io, W_ho, b_io=None, b_ho=None, *, p_o=None, c=None, act=None,
                clip=None):
    """Output gate: how much of the cell state is shown as the hidden state.

    o = σ(W_io x + b_io + W_ho h_prev + b_ho)        shape (N, H)

    Options as :func:`input_gate`; its peephole looks at the NEW cell state:
    ``+ p_o ⊙ c`` (ONNX: ``ot = f(... + Po (.) Ct + ...)``).
    """
    return _gate(_affine(x, h_prev, W_io, W_ho, b_io, b_ho), sigmoid, act, clip, p_o, c)


def cell_update(f, c_prev, i, g):
    """New cell state (long-term memory): keep part of the old, add part of the new.

    c = f ⊙ c_prev + i ⊙ g                            shape (N, H)
    """
    return f * c_prev + i * g


def hidden_update(o, c, W_hr=None, act=None):
    """New hidden state (short-term memory), projected when ``proj_size > 0``.

    h = o ⊙ tanh(c)                  shape (N, H)
    h = W_hr (o ⊙ tanh(c))           shape (N, proj_size), with a projection

    Option: role h's activation ``act`` instead of tanh (never clipped: see
    :func:`activate`).
    """
    h = o * (np.tanh(c) if act is None else activate(act, c))  # (N, H)
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
              weight_hr=None, *, weight_ph=None, clip=None, input_forget=False,
              activations=None):
    """One LSTM time step, gate by gate, with PyTorch's stacked weights.

    Options (ONNX LSTM, opset 14): ``weight_ph`` ``(3H,)`` peepholes stacked
    ``(p_i | p_f | p_o)``; ``clip``; ``input_forget`` (f = 1 − i); ``activations``
    three :class:`nplstm.options.Activation` for the roles (f, g, h), None for
    PyTorch's (σ, tanh, tanh).

    Returns ``(h, c, gates)`` where ``gates`` is ``{"i", "f", "g", "o"}``.
    """
    H = weight_hh.shape[0] // 4
    wx = _split("lstm", weight_ih, bias_ih, H)
    wh = _split("lstm", weight_hh, bias_hh, H)
    act_f, act_g, act_h = (None, None, None) if activations is None else activations
    p_i = p_f = p_o = None
    if weight_ph is not None:
        p_i, p_f, p_o = weight_ph[:H], weight_ph[H:2 * H], weight_ph[2 * H:]  # (H,) each

    def args(gate):
        return wx[gate][0], wh[gate][0], wx[gate][1], wh[gate][1]

    i = input_gate(x, h_prev, *args("i"), p_i=p_i, c_prev=c_prev, act=act_f, clip=clip)
    if input_forget:
        f = coupled_forget_gate(i)
    else:
        f = forget_gate(x, h_prev, *args("f"), p_f=p_f, c_prev=c_prev, act=act_f, clip=clip)
    g = cell_candidate(x, h_prev, *args("g"), act=act_g, clip=clip)
    c = cell_update(f, c_prev, i, g)
    o = output_gate(x, h_prev, *args("o"), p_o=p_o, c=c, act=act_f, clip=clip)
    h = hidden_update(o, c, weight_hr, act_h)
    return h, c, {"i": i, "f": f, "g": g, "o": o}


# ---------------------------------------------------------------------- GRU --


def reset_gate(x, h_prev, W_ir, W_hr, b_ir=None, b_hr=None, *, act=None, clip=None):
    """Reset gate: how much of the old state the candidate may look at.

    r = σ(W_ir x + b_ir + W_hr h_prev + b_hr)        shape (N, H)

    Options (ONNX GRU): role f's activation ``act`` instead of σ; ``clip``.
    """
    return _gate(_affine(x, h_prev, W_ir, W_hr, b_ir, b_hr), sigmoid, act, clip)


def update_gate(x, h_prev, W_iz, W_hz, b_iz=None, b_hz=None, *, act=None, clip=None):
    """Update gate: how much of the old state is kept.

    z = σ(W_iz x + b_iz + W_hz h_prev + b_hz)        shape (N, H)

    Options as :func:`reset_gate`.
    """
    return _gate(_affine(x, h_prev, W_iz, W_hz, b_iz, b_hz), sigmoid, act, clip)


def new_gate(x, h_prev, r, W_in, W_hn, b_in=None, b_hn=None, *, act=None, clip=None):
    """Candidate state; PyTorch keeps ``b_hn`` inside the reset product.

    n = tanh(W_in x + b_in + r ⊙ (W_hn h_prev + b_hn))   shape (N, H)

    PyTorch's form is ONNX's ``linear_before_reset=1``; for the other see
    :func:`new_gate_reset_first`. Options: role g's ``act`` instead of tanh; ``clip``.
    """
    x_part = x @ W_in.T  # (N, H)
    h_part = h_prev @ W_hn.T  # (N, H)
    if b_in is not None:
        x_part = x_part + b_in
        h_part = h_part + b_hn
    return _gate(x_part + r * h_part, np.tanh, act, clip)


def new_gate_reset_first(x, h_prev, r, W_in, W_hn, b_in=None, b_hn=None, *, act=None,
                         clip=None):
    """Candidate state with the reset applied BEFORE the recurrent product.

    n = tanh(W_in x + b_in + W_hn (r ⊙ h_prev) + b_hn)   shape (N, H)

    ONNX GRU ``linear_before_reset=0`` (its default: ``ht = g(Xt*(Wh^T) +
    (rt (.) Ht-1)*(Rh^T) + Rbh + Wbh)``) and Keras ``reset_after=False``.
    Options as :func:`new_gate`.
    """
    pre = x @ W_in.T + (r * h_prev) @ W_hn.T  # (N, H)
    if b_in is not None:
        pre = pre + b_in + b_hn
    return _gate(pre, np.tanh, act, clip)


def gru_hidden_update(z, n, h_prev):
    """New GRU hidden state: interpolate between the candidate and the old state.

    h = (1 − z) ⊙ n + z ⊙ h_prev                      shape (N, H)
    """
    return (1 - z) * n + z * h_prev


@_quiet
def gru_step(x, h_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *,
             linear_before_reset=True, clip=None, activations=None):
    """One GRU time step, gate by gate. Returns ``(h, gates)`` with r, z, n.

    Options (ONNX GRU): ``linear_before_reset`` (True: PyTorch's :func:`new_gate`;
    False: :func:`new_gate_reset_first`), ``clip``, ``activations`` two
    :class:`nplstm.options.Activation` for the roles (f, g), None for (σ, tanh).
    """
    H = weight_hh.shape[0] // 3
    wx = _split("gru", weight_ih, bias_ih, H)
    wh = _split("gru", weight_hh, bias_hh, H)
    act_f, act_g = (None, None) if activations is None else activations
    r = reset_gate(x, h_prev, wx["r"][0], wh["r"][0], wx["r"][1], wh["r"][1], act=act_f,
                   clip=clip)
    z = update_gate(x, h_prev, wx["z"][0], wh["z"][0], wx["z"][1], wh["z"][1], act=act_f,
                    clip=clip)
    candidate = new_gate if linear_before_reset else new_gate_reset_first
    n = candidate(x, h_prev, r, wx["n"][0], wh["n"][0], wx["n"][1], wh["n"][1], act=act_g,
                  clip=clip)
    h = gru_hidden_update(z, n, h_prev)
    return h, {"r": r, "z": z, "n": n}


# ---------------------------------------------------------------------- RNN --


def relu(x):
    """relu(x) = max(x, 0)."""
    return np.maximum(x, 0)


NONLINEARITIES = {"tanh": np.tanh, "relu": relu}


@_quiet
def rnn_step(x, h_prev, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
             nonlinearity="tanh", *, clip=None, activations=None):
    """One Elman RNN time step.

    h = tanh(W_ih x + b_ih + W_hh h_prev + b_hh)     (or relu)  shape (N, H)

    Options (ONNX RNN): ``activations`` one :class:`nplstm.options.Activation`
    (role f) instead of ``nonlinearity``; ``clip``.
    """
    pre = _affine(x, h_prev, weight_ih, weight_hh, bias_ih, bias_hh)  # (N, H)
    if activations is None and clip is None:
        return NONLINEARITIES[nonlinearity](pre)
    act = Activation(nonlinearity.capitalize()) if activations is None else activations[0]
    return activate(act, pre, clip)


# ------------------------------------------------- activation functions --
# The eleven functions ONNX's LSTM/GRU/RNN operators allow ("Operators.md",
# LSTM/GRU/RNN, "Activation functions", opset 14), one per role
# (see :mod:`nplstm.options`). alpha/beta defaults: nplstm.options.PARAMETER_DEFAULTS.


def tanh(x, alpha=None, beta=None):
    """Tanh(x) = (1 − e^(−2x)) / (1 + e^(−2x)), NumPy's ``np.tanh``."""
    return np.tanh(x)


def hard_sigmoid(x, alpha=0.2, beta=0.5):
    """HardSigmoid(x) = min(max(alpha·x + beta, 0), 1).

    Keras 2's hard_sigmoid is (0.2, 0.5) (the ONNX default), Keras 3's (1/6, 0.5).
    """
    return np.clip(alpha * x + beta, 0, 1).astype(np.asarray(x).dtype, copy=False)


def affine(x, alpha=1.0, beta=0.0):
    """Affine(x) = alpha·x + beta."""
    return (alpha * x + beta).astype(np.asarray(x).dtype, copy=False)


def leaky_relu(x, alpha=0.01, beta=None):
    """LeakyRelu(x) = x if x ≥ 0 else alpha·x."""
    return np.where(x >= 0, x, alpha * x).astype(np.asarray(x).dtype, copy=False)


def thresholded_relu(x, alpha=1.0, beta=None):
    """ThresholdedRelu(x) = x if x ≥ alpha else 0 (ONNX's recurrent-operator text)."""
    return np.where(x >= alpha, x, 0).astype(np.asarray(x).dtype, copy=False)


def scaled_tanh(x, alpha=1.0, beta=1.0):
    """ScaledTanh(x) = alpha·tanh(beta·x)."""
    return (alpha * np.tanh(beta * x)).astype(np.asarray(x).dtype, copy=False)


def elu(x, alpha=1.0, beta=None):
    """Elu(x) = x if x ≥ 0 else alpha·(e^x − 1); ``expm1`` of min(x, 0) never overflows."""
    return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(
        np.asarray(x).dtype, copy=False)


def softsign(x, alpha=None, beta=None):
    """Softsign(x) = x / (1 + |x|)."""
    return x / (1 + np.abs(x))


def softplus(x, alpha=None, beta=None):
    """Softplus(x) = log(1 + e^x), as ``max(x, 0) + log1p(e^(−|x|))``: no overflow for
    large x, and NaN passes through quietly (``logaddexp`` warns on NaN)."""
    x = np.asarray(x)
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)


#: ONNX name -> teaching function ``f(x, alpha, beta)`` (unused parameters ignored).
ACTIVATIONS = {
    "Sigmoid": lambda x, alpha=None, beta=None: sigmoid(x),
    "Tanh": tanh, "Relu": lambda x, alpha=None, beta=None: relu(x),
    "HardSigmoid": hard_sigmoid, "Affine": affine, "LeakyRelu": leaky_relu,
    "ThresholdedRelu": thresholded_relu, "ScaledTanh": scaled_tanh, "Elu": elu,
    "Softsign": softsign, "Softplus": softplus,
}


def activate(act, x, clip=None):
    """Apply a resolved :class:`nplstm.options.Activation` to a pre-activation ``x``.

    With ``clip`` (ONNX's cell clip), x is first bounded to [−clip, clip]: the
    spec applies the clip "to the input of activations"; onnxruntime clips the
    pre-activation of every gate (i, f, g, o; r, z, n; the RNN's h) after the
    biases and peepholes are added, and does NOT clip the cell state c before
    the output role h (measured in tests/test_options.py).
    """
    if clip is not None:
        x = np.clip(x, -clip, clip)
    return ACTIVATIONS[act.name](x, act.alpha, act.beta)


# ----------------------------------------------------------- derivatives --
# The backward pass (nplstm.grad) walks these equations in reverse. Each takes
# the gradient of the loss with respect to a function's output (``d`` + name)
# and the values the forward recorded, and returns the gradients with respect
# to that function's inputs. Chain rule, one equation per line.


def sigmoid_backward(ds, s):
    """Through s = σ(a): da = ds ⊙ s ⊙ (1 − s)   (σ' = σ(1 − σ))."""
    return ds * s * (1 - s)


def tanh_backward(dt, t):
    """Through t = tanh(a): da = dt ⊙ (1 − t²)."""
    return dt * (1 - t * t)


def relu_backward(dr, r):
    """Through r = relu(a): da = dr where r > 0, else 0 (PyTorch's choice at 0)."""
    return dr * (r > 0)


NONLINEARITY_BACKWARD = {"tanh": tanh_backward, "relu": relu_backward}


#: d/dx of each ONNX activation ``f(x, alpha, beta)`` above, at the (clipped)
#: pre-activation x; at a kink the right-hand side's value (as PyTorch's ReLU: 0 at 0).
ACTIVATION_DERIVATIVES = {
    "Sigmoid": lambda x, a, b: sigmoid(x) * (1 - sigmoid(x)),
    "Tanh": lambda x, a, b: 1 - np.tanh(x) ** 2,
    "Relu": lambda x, a, b: (x > 0).astype(x.dtype),
    "HardSigmoid": lambda x, a, b: np.where((a * x + b > 0) & (a * x + b < 1), a, 0.0),
    "Affine": lambda x, a, b: np.full_like(x, a),
    "LeakyRelu": lambda x, a, b: np.where(x >= 0, 1.0, a),
    "ThresholdedRelu": lambda x, a, b: (x >= a).astype(x.dtype),
    "ScaledTanh": lambda x, a, b: a * b * (1 - np.tanh(b * x) ** 2),
    "Elu": lambda x, a, b: np.where(x >= 0, 1.0, a * np.exp(np.minimum(x, 0))),
    "Softsign": lambda x, a, b: 1 / (1 + np.abs(x)) ** 2,
    "Softplus": lambda x, a, b: sigmoid(x),
}


def activate_backward(dy, act, x, clip=None):
    """Through y = act(clip(x)) (see :func:`activate`): dx = dy ⊙ act'(clip(x)),
    and 0 where the clip bounded x (|x| > clip)."""
    xc = x if clip is None else np.clip(x, -clip, clip)
    dx = dy * ACTIVATION_DERIVATIVES[act.name](xc, act.alpha, act.beta)
    return dx if clip is None else np.where(np.abs(x) <= clip, dx, 0)


def cell_update_backward(dc, f, c_prev, i, g):
    """Through c = f ⊙ c_prev + i ⊙ g.

    df = dc ⊙ c_prev,  dc_prev = dc ⊙ f,  di = dc ⊙ g,  dg = dc ⊙ i.
    Returns ``(df, dc_prev, di, dg)``.
    """
    return dc * c_prev, dc * f, dc * g, dc * i


def hidden_update_backward(dh, o, c, W_hr=None):
    """Through h = o ⊙ tanh(c) (then h = W_hr h with a projection).

    With W_hr: dm = dh W_hr and dW_hr = dhᵀ m for m = o ⊙ tanh(c) (summed over N).
    do = dm ⊙ tanh(c),  dc = dm ⊙ o ⊙ (1 − tanh²(c)).
    Returns ``(do, dc, dW_hr)`` (dW_hr None without a projection); ``dc`` is
    this step's share only: add the dc flowing back from step t + 1.
    """
    tc = np.tanh(c)  # (N, H)
    dW_hr = None
    if W_hr is not None:
        dW_hr = dh.T @ (o * tc)  # (P, H)
        dh = dh @ W_hr  # (N, H)
    return dh * tc, tanh_backward(dh * o, tc), dW_hr


def gru_hidden_update_backward(dh, z, n, h_prev):
    """Through h = (1 − z) ⊙ n + z ⊙ h_prev.

    dz = dh ⊙ (h_prev − n),  dn = dh ⊙ (1 − z),  dh_prev = dh ⊙ z.
    Returns ``(dz, dn, dh_prev)``.
    """
    return dh * (h_prev - n), dh * (1 - z), dh * z


def new_gate_backward(dn, n, r, h_part):
    """Through n = tanh(a_x + r ⊙ h_part), h_part = W_hn h_prev + b_hn.

    da = dn ⊙ (1 − n²) (the gradient of a_x = W_in x + b_in),
    dr = da ⊙ h_part,  dh_part = da ⊙ r.
    Returns ``(da, dr, dh_part)``.
    """
    da = tanh_backward(dn, n)
    return da, da * h_part, da * r


# ------------------------------------------------------------ for readers --

#: The function that computes each recorded gate or state, per family.
GATE_FUNCTIONS: dict[str, dict[str, Callable[..., Any]]] = {
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
