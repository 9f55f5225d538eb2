"""The general NumPy step of each family: every option, plain arithmetic.

A layer or cell whose options are all PyTorch's runs the fast steps of
:mod:`nplstm.cells` (``engine == "numpy"``); any other option -- peepholes,
clip, input_forget, other activations, ``linear_before_reset=False`` -- runs
these steps (``engine == "numpy-general"``). They share everything else with
the fast path: the time loop, the chunked input projection (:class:`cells.Kernel`,
unscaled here), workspaces, masks and recording, so only the step differs.

Layout as in :mod:`nplstm.cells`: gate-major ``(G*H, N)`` arrays, but rows in
PyTorch's order (LSTM ``i, f, g, o``; GRU ``r, z, n``) and no load-time
scaling. The activation functions are the teaching ones of :mod:`nplstm.gates`
(one definition of each, equation in its docstring). Equations: ONNX
Operators.md, LSTM/GRU/RNN (opset 14); clip placement as onnxruntime computes
it (see :func:`nplstm.gates.activate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cells
from .gates import activate


@dataclass(frozen=True)
class Spec:
    """One layer-direction's options, resolved: ``acts`` one
    :class:`nplstm.options.Activation` per role; ``P`` the peepholes
    ``(3H, 1)`` stacked ``p_i | p_f | p_o`` or None."""

    acts: tuple
    clip: float | None = None
    input_forget: bool = False
    linear_before_reset: bool = True
    P: np.ndarray | None = None


def prepare(family, p, spec):
    """PyTorch-keyed params -> :class:`cells.Weights` for the general step.

    Biases fold into the input projection, except the GRU's ``b_hn`` with
    ``linear_before_reset`` (it sits inside ``r ⊙ (W_hn h + b_hn)``).
    """
    order = tuple(range(family.num_gates))  # PyTorch's own order
    H, W_ih, W_hh, b_ih, b_hh = cells._prepare(p, order)
    b_x = b_h = None
    if b_ih is not None:
        b_x = (b_ih + b_hh)[:, None]  # (G*H, 1)
        if family.name == "gru" and spec.linear_before_reset:
            b_x = np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])[:, None]
            b_h = b_hh[2 * H:, None]  # (H, 1)
    hr = p.get("weight_hr")
    return cells.Weights(W_ih, W_hh, b_x, b_h=b_h,
                         W_hr=None if hr is None else np.ascontiguousarray(hr),
                         G=family.num_gates, H=H, spec=spec)


def workspace(w, N, dtype):
    ws = cells.Workspace(w, N, dtype)  # mode "plain": the unscaled kernel
    ws.spec, ws.H, ws.W_hr, ws.b_h = w.spec, w.H, w.W_hr, ws.k.b_h
    return ws


def _finish_h(h, ws):
    """Write the new h into the loop's output row (``ws.out``) and return it."""
    np.copyto(ws.out, h)
    return ws.out


def lstm_step(xp_t, state, ws, record=None):
    """ONNX LSTM with PyTorch's names (f, g, h: the roles' activations)::

        i = f(clip(W_ii x + b_ii + W_hi h + b_hi + p_i ⊙ c_prev))
        f = f(clip(W_if x + ... + p_f ⊙ c_prev))     (or 1 − i with input_forget)
        g = g(clip(W_ig x + ...))
        c = f ⊙ c_prev + i ⊙ g
        o = f(clip(W_io x + ... + p_o ⊙ c))
        h = o ⊙ h(c)                                  (then W_hr with proj_size)
    """
    h_prev, c_prev = state  # (H_out, N), (H, N)
    s, H = ws.spec, ws.H
    pre = ws.W_hh @ h_prev + xp_t  # (4H, N) rows i | f | g | o
    i_, f_, g_, o_ = pre[:H], pre[H:2 * H], pre[2 * H:3 * H], pre[3 * H:]  # (H, N)
    if s.P is not None:
        i_ += s.P[:H] * c_prev
        f_ += s.P[H:2 * H] * c_prev
    act_f, act_g, act_h = s.acts
    i = activate(act_f, i_, s.clip)
    f = 1 - i if s.input_forget else activate(act_f, f_, s.clip)
    g = activate(act_g, g_, s.clip)
    c = f * c_prev + i * g  # (H, N)
    if s.P is not None:
        o_ += s.P[2 * H:] * c
    o = activate(act_f, o_, s.clip)
    h = o * activate(act_h, c)  # (H, N)
    if ws.W_hr is not None:
        h = ws.W_hr @ h  # (proj_size, N)
    if record is not None:
        record.update(i=i, f=f, g=g, o=o)
    return _finish_h(h, ws), c


def gru_step(xp_t, state, ws, record=None):
    """ONNX GRU with PyTorch's names (f, g: the roles' activations)::

        r = f(clip(W_ir x + b_ir + W_hr h + b_hr)),  z likewise
        n = g(clip(W_in x + b_in + r ⊙ (W_hn h + b_hn)))   linear_before_reset
        n = g(clip(W_in x + b_in + W_hn (r ⊙ h) + b_hn))   otherwise
        h' = (1 − z) ⊙ n + z ⊙ h
    """
    (h_prev,) = state  # (H, N)
    s, H = ws.spec, ws.H
    act_f, act_g = s.acts
    W_hh = ws.W_hh
    rz = W_hh[:2 * H] @ h_prev + xp_t[:2 * H]  # (2H, N)
    r = activate(act_f, rz[:H], s.clip)
    z = activate(act_f, rz[H:], s.clip)
    if s.linear_before_reset:
        hn = W_hh[2 * H:] @ h_prev  # (H, N)
        if ws.b_h is not None:
            hn += ws.b_h
        n_ = xp_t[2 * H:] + r * hn
    else:
        n_ = xp_t[2 * H:] + W_hh[2 * H:] @ (r * h_prev)  # b_hn is in the projection
    n = activate(act_g, n_, s.clip)
    h = n + z * (h_prev - n)  # PyTorch's form of (1 − z)⊙n + z⊙h
    if record is not None:
        record.update(r=r, z=z, n=n)
    return (_finish_h(h, ws),)


def rnn_step(xp_t, state, ws, record=None):
    """ONNX RNN: ``h' = f(clip(W_ih x + b_ih + W_hh h + b_hh))``."""
    (h_prev,) = state
    pre = ws.W_hh @ h_prev + xp_t  # (H, N)
    return (_finish_h(activate(ws.spec.acts[0], pre, ws.spec.clip), ws),)


def _family(fast, step):
    return cells.Family(fast.name, fast.num_gates, fast.gates, fast.states, None, workspace,
                        step)


#: The general twin of each fast family: same names and gates, the general step.
FAMILIES = {"lstm": _family(cells.LSTM, lstm_step), "gru": _family(cells.GRU, gru_step),
            "rnn": _family(cells.RNN, rnn_step)}


def layer_weights(opts, family, p, d):
    """Weights of one layer-direction (``p`` PyTorch-keyed, ``weight_ph`` too) for
    direction ``d`` of a layer whose :class:`nplstm.options.Options` are ``opts``."""
    ph = p.get("weight_ph")
    spec = Spec(opts.direction(d), opts.clip, opts.input_forget, opts.linear_before_reset,
                None if ph is None else np.ascontiguousarray(ph)[:, None])  # (3H, 1)
    return prepare(family, p, spec)
