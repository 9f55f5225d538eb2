"""One time step of each cell family, fused: one matmul per step.

The layers in :mod:`nplstm.layers` do the input projection for every time step
at once (``xp = x @ W_ih.T + b``, shape ``(L, N, G*H)``) and then call a step
function here for each ``t``. A step takes

* ``xp_t``   the projected input of this step, ``(N, G*H)``,
* ``state``  a tuple: ``(h,)`` for GRU/RNN, ``(h, c)`` for LSTM,
* ``w``      the :class:`Weights` prepared once per layer and direction,
* ``record`` ``None``, or a dict the step fills with its gate activations
  (that is how :meth:`LSTM.trace` sees inside without a second code path),

and returns the new state tuple. The per-gate functions of :mod:`nplstm.gates`
compute the same numbers one gate at a time; the tests hold the two together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .gates import NONLINEARITIES


def _sigmoid(x, out=None):
    """σ(x) = ½·tanh(½x) + ½: never overflows, one ufunc chain, in place."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


@dataclass
class Weights:
    """One layer-direction's parameters, laid out once for the time loop.

    ``W_ih_T`` ``(H_in, G*H)`` and ``W_hh_T`` ``(H_out, G*H)`` are contiguous
    copies of the transposes, so each step is a plain row-major matmul.
    ``b_x`` is added to the input projection; ``b_h`` is whatever bias must
    stay inside the step (GRU's ``b_hn``); ``W_hr_T`` is LSTM's projection.
    """

    W_ih_T: np.ndarray
    W_hh_T: np.ndarray
    b_x: Optional[np.ndarray]
    b_h: Optional[np.ndarray] = None
    W_hr_T: Optional[np.ndarray] = None
    act: Optional[Callable] = None  # RNN's nonlinearity

    def project(self, x):
        """Input projection of every step at once: ``(L, N, H_in) -> (L, N, G*H)``."""
        xp = x @ self.W_ih_T  # (L, N, G*H)
        if self.b_x is not None:
            xp += self.b_x
        return xp


def _T(a):
    return np.ascontiguousarray(a.T)


# --------------------------------------------------------------------- LSTM --


def lstm_prepare(p, nonlinearity=None):
    """Fold both biases into the input projection: b = b_ih + b_hh."""
    b = None if p.get("bias_ih") is None else p["bias_ih"] + p["bias_hh"]
    hr = p.get("weight_hr")
    return Weights(_T(p["weight_ih"]), _T(p["weight_hh"]), b,
                   W_hr_T=None if hr is None else _T(hr))


def lstm_step(xp_t, state, w, record=None):
    """i, f, g, o from one matmul; c = f⊙c + i⊙g; h = o⊙tanh(c) (then W_hr)."""
    h_prev, c_prev = state
    H = c_prev.shape[-1]
    gates = xp_t + h_prev @ w.W_hh_T  # (N, 4H), rows i | f | g | o
    i = _sigmoid(gates[:, 0 * H:1 * H])
    f = _sigmoid(gates[:, 1 * H:2 * H])
    g = np.tanh(gates[:, 2 * H:3 * H])
    o = _sigmoid(gates[:, 3 * H:4 * H])
    c = f * c_prev + i * g  # (N, H)
    h = o * np.tanh(c)  # (N, H)
    if w.W_hr_T is not None:
        h = h @ w.W_hr_T  # (N, proj_size)
    if record is not None:
        record.update(i=i, f=f, g=g, o=o)
    return h, c


# ---------------------------------------------------------------------- GRU --


def gru_prepare(p, nonlinearity=None):
    """b_ih goes into the projection; b_hh stays in the step (b_hn sits inside r⊙(...))."""
    return Weights(_T(p["weight_ih"]), _T(p["weight_hh"]), p.get("bias_ih"),
                   b_h=p.get("bias_hh"))


def gru_step(xp_t, state, w, record=None):
    """r, z from x and h; n = tanh(x_n + r⊙(W_hn h + b_hn)); h = (1−z)⊙n + z⊙h."""
    (h_prev,) = state
    H = h_prev.shape[-1]
    gh = h_prev @ w.W_hh_T  # (N, 3H), rows r | z | n
    if w.b_h is not None:
        gh += w.b_h
    r = _sigmoid(xp_t[:, 0 * H:1 * H] + gh[:, 0 * H:1 * H])
    z = _sigmoid(xp_t[:, 1 * H:2 * H] + gh[:, 1 * H:2 * H])
    n = np.tanh(xp_t[:, 2 * H:3 * H] + r * gh[:, 2 * H:3 * H])
    h = (1 - z) * n + z * h_prev  # (N, H)
    if record is not None:
        record.update(r=r, z=z, n=n)
    return (h,)


# ---------------------------------------------------------------------- RNN --


def rnn_prepare(p, nonlinearity="tanh"):
    """Both biases fold into the projection, as for the LSTM."""
    b = None if p.get("bias_ih") is None else p["bias_ih"] + p["bias_hh"]
    return Weights(_T(p["weight_ih"]), _T(p["weight_hh"]), b,
                   act=NONLINEARITIES[nonlinearity])


def rnn_step(xp_t, state, w, record=None):
    """h = act(W_ih x + b_ih + W_hh h + b_hh)."""
    (h_prev,) = state
    h = w.act(xp_t + h_prev @ w.W_hh_T)  # (N, H)
    return (h,)


# ------------------------------------------------------------------ families --


@dataclass(frozen=True)
class Family:
    """What distinguishes LSTM, GRU and RNN: gate count, gate names, step math."""

    name: str
    num_gates: int
    gates: tuple  # names of the recorded gate activations, PyTorch's order
    states: tuple  # names of the state tuple: ("h", "c") or ("h",)
    prepare: Callable
    step: Callable


LSTM = Family("lstm", 4, ("i", "f", "g", "o"), ("h", "c"), lstm_prepare, lstm_step)
GRU = Family("gru", 3, ("r", "z", "n"), ("h",), gru_prepare, gru_step)
RNN = Family("rnn", 1, (), ("h",), rnn_prepare, rnn_step)
FAMILIES = {f.name: f for f in (LSTM, GRU, RNN)}
