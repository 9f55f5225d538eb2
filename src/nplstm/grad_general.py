"""Backward steps for the layer options beyond PyTorch (ONNX/Keras): every option.

The twins of :mod:`nplstm.general`'s steps: peepholes, cell clip, coupled
input-forget gate, per-role activations with alpha/beta, and the GRU whose
reset gate acts before the recurrent product (``linear_before_reset=False``).
Each step first recomputes its pre-activations from the recorded ``x``,
``h_prev`` and ``c_prev`` (so the clip and every activation's derivative see
exactly what the forward saw), then walks the equations back. Same contract
as :mod:`nplstm.grad`'s steps: ``(da_x, da_h, dprev, extra param grads)``.
Held to central finite differences in float64 (tests/test_grad_options.py),
and to PyTorch autograd when the options reduce to PyTorch's math.
"""

from __future__ import annotations

import numpy as np

from .gates import activate, activate_backward, cell_update_backward, gru_hidden_update_backward


def _pre(v, p, rows=slice(None)):
    """W_ih x + b_ih + W_hh h_prev + b_hh for the given gate rows: ``(N, rows)``."""
    pre = v["x"] @ p["weight_ih"][rows].T + v["h_prev"] @ p["weight_hh"][rows].T
    if "bias_ih" in p:
        pre = pre + p["bias_ih"][rows] + p["bias_hh"][rows]
    return pre


def lstm_step_backward(dstate, v, p, s):
    """Backward through :func:`nplstm.general.lstm_step` (spec ``s``)."""
    dh, dc = dstate
    c_prev = v["c_prev"]
    H = c_prev.shape[1]
    act_f, act_g, act_h = s.acts
    pre = _pre(v, p)  # (N, 4H) rows i | f | g | o
    a_i, a_f, a_g, a_o = (pre[:, k * H:(k + 1) * H] for k in range(4))  # (N, H) each
    P = p.get("weight_ph")
    if P is not None:
        a_i, a_f = a_i + P[:H] * c_prev, a_f + P[H:2 * H] * c_prev
    i = activate(act_f, a_i, s.clip)
    f = 1 - i if s.input_forget else activate(act_f, a_f, s.clip)
    g = activate(act_g, a_g, s.clip)
    c = f * c_prev + i * g  # (N, H)
    if P is not None:
        a_o = a_o + P[2 * H:] * c
    o = activate(act_f, a_o, s.clip)
    hc = activate(act_h, c)  # h(c): no clip on c (as onnxruntime)
    extra = {}
    W_hr = p.get("weight_hr")
    if W_hr is not None:
        extra["weight_hr"] = dh.T @ (o * hc)  # (P, H)
        dh = dh @ W_hr  # (N, H)
    da_o = activate_backward(dh * hc, act_f, a_o, s.clip)
    dc = dc + activate_backward(dh * o, act_h, c)
    if P is not None:
        dc = dc + da_o * P[2 * H:]  # o's peephole reads c
    df, dc_prev, di, dg = cell_update_backward(dc, f, c_prev, i, g)
    if s.input_forget:  # f = 1 − i
        di, da_f = di - df, np.zeros_like(df)
    else:
        da_f = activate_backward(df, act_f, a_f, s.clip)
    da_i = activate_backward(di, act_f, a_i, s.clip)
    da_g = activate_backward(dg, act_g, a_g, s.clip)
    if P is not None:
        dc_prev = dc_prev + da_i * P[:H] + da_f * P[H:2 * H]
        extra["weight_ph"] = np.concatenate([(da_i * c_prev).sum(0), (da_f * c_prev).sum(0),
                                             (da_o * c).sum(0)])  # (3H,): p_i | p_f | p_o
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # (N, 4H)
    return da, da, (None, dc_prev), extra


def gru_step_backward(dstate, v, p, s):
    """Backward through :func:`nplstm.general.gru_step` (spec ``s``)."""
    (dh,) = dstate
    h_prev = v["h_prev"]
    H = h_prev.shape[1]
    act_f, act_g = s.acts
    rz = _pre(v, p, slice(0, 2 * H))  # (N, 2H)
    a_r, a_z = rz[:, :H], rz[:, H:]
    r, z = activate(act_f, a_r, s.clip), activate(act_f, a_z, s.clip)
    W_hn = p["weight_hh"][2 * H:]  # (H, H)
    x_part = v["x"] @ p["weight_ih"][2 * H:].T  # (N, H)
    b_hn = p["bias_hh"][2 * H:] if "bias_hh" in p else 0
    if "bias_ih" in p:
        x_part = x_part + p["bias_ih"][2 * H:]
    if s.linear_before_reset:
        h_part = h_prev @ W_hn.T + b_hn  # (N, H)
        a_n = x_part + r * h_part
    else:
        a_n = x_part + (r * h_prev) @ W_hn.T + b_hn
    n = activate(act_g, a_n, s.clip)
    dz, dn, dh_prev = gru_hidden_update_backward(dh, z, n, h_prev)
    da_n = activate_backward(dn, act_g, a_n, s.clip)
    extra = {}
    if s.linear_before_reset:
        dr, dh_part = da_n * h_part, da_n * r
    else:  # n reads W_hn (r ⊙ h_prev): its h-side gradient is not "da_h h_prev"
        d_rh = da_n @ W_hn  # (N, H)
        dr, dh_part = d_rh * h_prev, np.zeros_like(da_n)
        dh_prev = dh_prev + d_rh * r
        dW = np.zeros_like(p["weight_hh"])
        dW[2 * H:] = da_n.T @ (r * h_prev)  # (H, H)
        extra["weight_hh"] = dW
        if "bias_hh" in p:
            db = np.zeros_like(p["bias_hh"])
            db[2 * H:] = da_n.sum(axis=0)
            extra["bias_hh"] = db
    da_r = activate_backward(dr, act_f, a_r, s.clip)
    da_z = activate_backward(dz, act_f, a_z, s.clip)
    da_x = np.concatenate([da_r, da_z, da_n], axis=1)  # (N, 3H)
    da_h = np.concatenate([da_r, da_z, dh_part], axis=1)  # (N, 3H)
    return da_x, da_h, (dh_prev,), extra


def rnn_step_backward(dstate, v, p, s):
    """Backward through h = f(clip(W_ih x + b_ih + W_hh h_prev + b_hh))."""
    da = activate_backward(dstate[0], s.acts[0], _pre(v, p), s.clip)  # (N, H)
    return da, da, (None,), {}


STEP_BACKWARD = {"lstm": lstm_step_backward, "gru": gru_step_backward,
                 "rnn": rnn_step_backward}
