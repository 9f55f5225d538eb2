"""Backpropagation through time: the forward's trace in, every gradient out.

``lstm.backward(trace, grad_output, grad_state)`` walks the recorded run
backwards, layer by layer (last first), direction by direction, step by step
(in the reverse of the order the forward took them). Each family's step
backward below mirrors its forward (:mod:`nplstm.gates`) equation by equation,
using the derivative functions that sit beside the gate functions there; the
plumbing (layers, directions, ``lengths``, dropout, layouts) is written once.

Notation: ``d`` + name is dL/d name. Per step, the gradient of the
pre-activations ``a = W_ih x + b_ih + W_hh h_prev + b_hh`` gives every weight
gradient by the same three lines for every family::

    dW_ih += daᵀ x      db_ih += Σ_N da      dx = da W_ih
    dW_hh += daᵀ h_prev db_hh += Σ_N da      dh_prev += da W_hh

Only ``dh_prev`` is needed inside the time loop; the other sums over steps are
done after it, one matrix product each (:func:`_weight_grads`).

(The GRU's ``n`` gate has different x and h sides, so a step returns both.)
The derivation is the chain rule through the equations of ``torch.nn.LSTM``,
``GRU`` and ``RNN`` (PyTorch docs); the tests hold every gradient to PyTorch
autograd in float64 and to central finite differences.

Layers with options beyond PyTorch's (peepholes, clip, input_forget, other
activations, GRU ``linear_before_reset=False``) take the steps of
:mod:`nplstm.grad_general` instead; everything else here is shared.

Lengths: a step past a sequence's length changed nothing (the state was
carried on, the output was zero), so there the state gradient is carried back
unchanged and no gradient reaches the weights or the input; the gradient of
padded output positions is ignored, as PyTorch's packed sequences do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import general, grad_general
from .gates import (
    NONLINEARITY_BACKWARD,
    cell_update_backward,
    gru_hidden_update_backward,
    hidden_update_backward,
    new_gate_backward,
    sigmoid_backward,
    tanh_backward,
)
from .module import to_numpy


class Grads:
    """What a backward pass returns.

    Attributes:
        params: ``{name: ndarray}`` keyed and shaped exactly like the module's
            ``state_dict()``: dL/d each parameter.
        input: dL/d input, shaped like the input.
        hx: dL/d the initial state, shaped like ``hx``: ``(dh_0, dc_0)`` for an
            LSTM (cell), ``dh_0`` for GRU/RNN; None for ``Linear``.
    """

    def __init__(self, params: dict[str, np.ndarray], input: np.ndarray,
                 hx: Any = None) -> None:
        self.params, self.input, self.hx = params, input, hx

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.params.items())
        return f"Grads(params={{{keys}}}, input{tuple(np.shape(self.input))})"


# ------------------------------------------------------------ step backward --
# Each takes (dstate, v, p): the gradient of the step's new state tuple (dh,
# and dc for the LSTM), the step's recorded values v (x, h_prev, c_prev, the
# gates, the new h and c), the parameters p (PyTorch's cell keys). It returns
# (da_x, da_h, dprev, extra): the gradients of the x-side and h-side
# pre-activations (N, G*H), the gradients of the previous state that do not
# pass through W_hh (None where there is none), and gradients of extra params.


def lstm_step_backward(dstate, v, p):
    """Backward through one LSTM step (equations of :func:`gates.lstm_step`)."""
    dh, dc = dstate
    do, dc_h, dW_hr = hidden_update_backward(dh, v["o"], v["c"], p.get("weight_hr"))
    dc = dc + dc_h  # c feeds h_t and c_{t+1}
    df, dc_prev, di, dg = cell_update_backward(dc, v["f"], v["c_prev"], v["i"], v["g"])
    da = np.concatenate([sigmoid_backward(di, v["i"]), sigmoid_backward(df, v["f"]),
                         tanh_backward(dg, v["g"]), sigmoid_backward(do, v["o"])],
                        axis=1)  # (N, 4H) in PyTorch's order i, f, g, o
    return da, da, (None, dc_prev), {} if dW_hr is None else {"weight_hr": dW_hr}


def gru_step_backward(dstate, v, p):
    """Backward through one GRU step (equations of :func:`gates.gru_step`)."""
    (dh,) = dstate
    r, z, n, h_prev = v["r"], v["z"], v["n"], v["h_prev"]
    H = r.shape[1]
    h_part = h_prev @ p["weight_hh"][2 * H:].T  # (N, H): W_hn h_prev + b_hn, as forward
    if "bias_hh" in p:
        h_part = h_part + p["bias_hh"][2 * H:]
    dz, dn, dh_prev = gru_hidden_update_backward(dh, z, n, h_prev)
    da_n, dr, dh_part = new_gate_backward(dn, n, r, h_part)
    da_r, da_z = sigmoid_backward(dr, r), sigmoid_backward(dz, z)
    da_x = np.concatenate([da_r, da_z, da_n], axis=1)  # (N, 3H): r, z, n
    da_h = np.concatenate([da_r, da_z, dh_part], axis=1)  # (N, 3H)
    return da_x, da_h, (dh_prev,), {}


def rnn_step_backward(dstate, v, p, nonlinearity="tanh"):
    """Backward through h = tanh|relu(W_ih x + b_ih + W_hh h_prev + b_hh)."""
    da = NONLINEARITY_BACKWARD[nonlinearity](dstate[0], v["h"])  # (N, H)
    return da, da, (None,), {}


STEP_BACKWARD = {"lstm": lstm_step_backward, "gru": gru_step_backward,
                 "rnn": rnn_step_backward}


def step_backward(mode, dstate, v, p, grads, nonlinearity="tanh", spec=None):
    """One step back through the family's equations: return ``(da_x, da_h, dprev)``,
    the pre-activation gradients ``(N, G*H)`` and the previous state's gradient
    tuple (through W_hh included: ``dh_prev += da_h W_hh``). Gradients of extra
    parameters (``weight_hr``, peepholes) are added to ``grads`` here; ``W_ih``,
    ``W_hh`` and the biases are summed over all steps at once by the caller.
    ``spec``: a :class:`nplstm.general.Spec` when the layer has options beyond
    PyTorch's (then :mod:`nplstm.grad_general`'s steps), else None."""
    if spec is not None:
        da_x, da_h, dprev, extra = grad_general.STEP_BACKWARD[mode](dstate, v, p, spec)
    elif mode == "rnn":
        da_x, da_h, dprev, extra = rnn_step_backward(dstate, v, p, nonlinearity)
    else:
        da_x, da_h, dprev, extra = STEP_BACKWARD[mode](dstate, v, p)
    for name, value in extra.items():
        grads[name] += value
    dh_prev = da_h @ p["weight_hh"]  # (N, H_out)
    if dprev[0] is not None:
        dh_prev = dh_prev + dprev[0]
    return da_x, da_h, (dh_prev,) + tuple(dprev[1:])


def _weight_grads(grads, p, x, h_prev, DA_x, DA_h):
    """The sums over steps, one GEMM each: dW_ih = Σ_t da_xᵀ x, dW_hh = Σ_t da_hᵀ h_prev,
    the biases; returns dx = da_x W_ih ``(L, N, in)``."""
    GH = DA_x.shape[-1]
    grads["weight_ih"] += DA_x.reshape(-1, GH).T @ x.reshape(-1, x.shape[-1])  # (G*H, in)
    grads["weight_hh"] += DA_h.reshape(-1, GH).T @ h_prev.reshape(-1, h_prev.shape[-1])
    if "bias_ih" in grads:
        grads["bias_ih"] += DA_x.sum(axis=(0, 1))
        grads["bias_hh"] += DA_h.sum(axis=(0, 1))
    return DA_x @ p["weight_ih"]  # (L, N, in)


# ---------------------------------------------------------- time and layers --


def direction_backward(mode, p, x, rec, prev, dy, dstate, keep, reverse, nonlinearity,
                       spec=None):
    """Backward through one direction of one layer over time.

    p: the direction's parameters (cell keys); x: ``(L, N, in)`` its input;
    rec: ``{name: (L, N, H)}`` recorded gates and states; prev: ``{"h_prev":
    (L, N, H_out), "c_prev": ...}`` the state each step started from; dy:
    ``(L, N, H_out)`` gradient of its output; dstate: gradient of its final
    state tuple ``(N, H)``; keep: ``(L, N)`` bool or None (lengths); spec: see
    :func:`step_backward`.
    Returns ``(dx (L, N, in), dstate0 tuple, param grads)``.
    """
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    L, N = x.shape[:2]
    GH = p["weight_hh"].shape[0]
    DA_x = np.zeros((L, N, GH), x.dtype)  # pre-activation gradients of every step
    DA_h = np.zeros((L, N, GH), x.dtype)
    for t in (range(L) if reverse else range(L - 1, -1, -1)):  # the forward's order, reversed
        d = (dstate[0] + dy[t],) + tuple(dstate[1:])  # h_t feeds the output and step t+1
        v = {name: value[t] for name, value in rec.items()}
        v.update({name: value[t] for name, value in prev.items()})
        v["x"] = x[t]
        if keep is None:
            DA_x[t], DA_h[t], dstate = step_backward(mode, d, v, p, grads, nonlinearity, spec)
            continue
        valid = keep[t][:, None]  # (N, 1): padded rows carry their gradient on
        DA_x[t], DA_h[t], dprev = step_backward(mode, tuple(np.where(valid, s, 0) for s in d),
                                                v, p, grads, nonlinearity, spec)
        dstate = tuple(np.where(valid, new, old) for new, old in zip(dprev, d))
    dx = _weight_grads(grads, p, x, prev["h_prev"], DA_x, DA_h)
    return dx, dstate, grads


def _state_parts(module, value, name, pair):
    """A gradient shaped like the module's state, as a tuple of its parts: an LSTM's
    must be the 2-tuple ``pair`` names (else TypeError naming ``name``); a GRU's or
    RNN's is one array."""
    if len(module.family.states) == 1:
        return (value,)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a tuple {pair} for {type(module).__name__}, "
                        f"got {type(value).__name__}")
    return tuple(value)


def _state_grads(layer, grad_state, shapes, unbatched, dtype):
    """grad_state as a tuple of internal ``(D*num_layers, N, H)`` arrays (zeros if None)."""
    states = layer.family.states
    if grad_state is None:
        parts = (None,) * len(states)
    else:
        parts = _state_parts(layer, grad_state, "grad_state", "(dh_n, dc_n)")
    out = []
    for name, part, shape in zip(states, parts, shapes):
        if part is None:
            arr = np.zeros(shape, dtype)
        else:
            arr = to_numpy(part, f"grad_state (d{name}_n)")
            if arr.shape != shape:
                raise ValueError(f"grad_state (d{name}_n) must have the shape of {name}_n, "
                                 f"{shape}, got {arr.shape}")
            arr = np.asarray(arr, dtype)
        out.append(arr[:, None] if unbatched else arr)  # (D*layers, N, H)
    return tuple(out)


def _check_trace(layer, trace):
    from .trace import Trace


    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be the Trace that {type(layer).__name__}.trace() "
                        f"returned, got {type(trace).__name__}")
    want = (layer.family.name, getattr(layer, "num_layers", 1),
            getattr(layer, "num_directions", 1), layer.hidden_size)
    got = (trace.mode, trace.num_layers, trace.num_directions, trace.hidden_size)
    if want != got:
        raise ValueError(f"trace does not come from this layer: (mode, num_layers, "
                         f"num_directions, hidden_size) is {got}, the layer has {want}")
    from .trace import layer_options

    if trace.options != layer_options(layer):
        raise ValueError(f"trace does not come from this layer: its options are "
                         f"{trace.options}, the layer's {layer_options(layer)}")
    weights = trace._weights
    if weights is not None and (weights.keys() != layer._params.keys() or any(
            weights[k] is not layer._params[k] for k in weights)):
        raise ValueError(f"trace was recorded with other weights than this "
                         f"{type(layer).__name__} has now (another layer's trace, or "
                         f"load_state_dict or an optimizer step since the forward); "
                         f"trace the run again")
    if not trace.layer_inputs:
        raise ValueError("trace has no layer inputs (a trace loaded from a file cannot be "
                         "back-propagated); trace the run again")


def layer_backward(layer, trace, grad_output, grad_state=None):
    """Backward through a whole LSTM/GRU/RNN run; see :meth:`LSTM.backward`."""
    _check_trace(layer, trace)
    dtype = layer.dtype
    dy = to_numpy(grad_output, "grad_output")
    if dy.shape != trace.output.shape:
        raise ValueError(f"grad_output must have the shape of the output, "
                         f"{trace.output.shape}, got {dy.shape}")
    dy = np.asarray(dy, dtype)
    if trace.unbatched:
        dy = dy[:, None]  # (L, 1, D*H_out)
    elif trace.batch_first:
        dy = dy.transpose(1, 0, 2)  # (N, L, .) -> (L, N, D*H_out)
    unb = trace.unbatched
    shapes = [s.shape for s in (trace.h_n, trace.c_n) if s is not None]
    dstate = _state_grads(layer, grad_state, shapes, unb, dtype)
    keep = None if trace.lengths is None else trace.mask()  # (L, N)
    if keep is not None:
        dy = dy * keep[:, :, None]  # padded outputs are constant zeros
    D, H_out = trace.num_directions, layer.output_size
    params, dstate0 = {}, [np.zeros_like(s) for s in dstate]
    for k in range(layer.num_layers - 1, -1, -1):
        x = trace.layer_inputs[k]  # (L, N, in)
        dx = np.zeros_like(x)
        for d in range(D):
            s = f"_l{k}" + ("_reverse" if d else "")
            p = {key: layer._params[key + s] for key in _CELL_KEYS if key + s in layer._params}
            rec = {name: trace[name][k, d] for name in trace.names}  # (L, N, H)
            prev = {f"{name}_prev": trace.prev(name, k, d).reshape(rec[name].shape)
                    for name in layer.family.states}
            j = k * D + d
            dx_d, ds0, g = direction_backward(
                layer.family.name, p, x, rec, prev, dy[..., d * H_out:(d + 1) * H_out],
                tuple(st[j] for st in dstate), keep, d == 1, layer.nonlinearity,
                _spec(layer, d))
            dx += dx_d
            for st, value in zip(dstate0, ds0):
                st[j] = value
            params.update({key + s: value for key, value in g.items()})
        if k > 0:
            dy = _dropout_backward(dx, trace.dropout_masks[k - 1], trace.dropout)
        else:
            dy = dx
    grads = {key: params[key] for key in layer._params}  # state_dict order
    if unb:
        dy, dstate0 = dy[:, 0], [s[:, 0] for s in dstate0]
    elif trace.batch_first:
        dy = dy.transpose(1, 0, 2)  # (N, L, H_in)
    hx = tuple(dstate0) if len(dstate0) == 2 else dstate0[0]
    return Grads(grads, dy, hx)


_CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ph", "weight_hr")


def _spec(module, d):
    """The options of direction ``d`` as :class:`nplstm.general.Spec`, or None for
    PyTorch's own math (the fast backward steps)."""
    opts = getattr(module, "_options", None)
    if opts is None or opts.default:
        return None
    return general.Spec(opts.direction(d), opts.clip, opts.input_forget,
                        opts.linear_before_reset)


def _dropout_backward(dx, keep, p):
    """Through y' = keep ⊙ y / (1 − p) (inverted dropout): dy = keep ⊙ dy' / (1 − p)."""
    if keep is None:
        return dx
    if p >= 1:
        return np.zeros_like(dx)
    return np.where(keep, dx / (1 - p), 0).astype(dx.dtype, copy=False)


def cell_backward(cell, trace, grad_output):
    """Backward through one cell step; see :meth:`LSTMCell.backward`."""
    _check_trace(cell, trace)
    dtype = cell.dtype
    states = cell.family.states
    parts = _state_parts(cell, grad_output, "grad_output", "(dh, dc)")
    shape = trace.h_n.shape
    dstate = []
    for name, part in zip(states, parts):
        arr = np.zeros(shape, dtype) if part is None else to_numpy(part, f"grad_output (d{name})")
        if arr.shape != shape:
            raise ValueError(f"grad_output (d{name}) must have the shape of {name}', {shape}, "
                             f"got {arr.shape}")
        dstate.append(np.asarray(arr, dtype).reshape(-1, cell.hidden_size))  # (N, H)
    x = trace.layer_inputs[0]  # (1, N, in)
    rec = {name: trace[name][0, 0] for name in trace.names}  # (1, N, H)
    prev = {f"{name}_prev": trace.prev(name).reshape(rec[name].shape) for name in states}
    dy = np.zeros_like(rec["h"])
    dx, ds0, g = direction_backward(cell.family.name, dict(cell._params), x, rec, prev, dy,
                                    tuple(dstate), None, False, cell.nonlinearity,
                                    _spec(cell, 0))
    dx = dx[0].reshape(np.shape(trace.input))  # like the input
    ds0 = [s.reshape(shape) for s in ds0]
    return Grads({k: g[k] for k in cell._params}, dx, tuple(ds0) if len(ds0) == 2 else ds0[0])


def linear_backward(fc, input, grad_output):
    """Backward through y = x Wᵀ + b: dW = Σ dyᵀ x, db = Σ dy, dx = dy W.

    input ``(*, in_features)``, grad_output ``(*, out_features)``; the sums run
    over every leading axis.
    """
    x = np.asarray(to_numpy(input, "input"), fc.dtype)
    dy = to_numpy(grad_output, "grad_output")
    if x.ndim == 0 or x.shape[-1] != fc.in_features:
        raise ValueError(f"input must have shape (*, {fc.in_features}), got {x.shape}")
    if dy.shape != x.shape[:-1] + (fc.out_features,):
        raise ValueError(f"grad_output must have shape {x.shape[:-1] + (fc.out_features,)} "
                         f"(the output's), got {dy.shape}")
    dy = np.asarray(dy, fc.dtype)
    x2 = x.reshape(-1, fc.in_features)  # (M, in)
    dy2 = dy.reshape(-1, fc.out_features)  # (M, out)
    params = {"weight": dy2.T @ x2}  # (out, in)
    if fc.bias_enabled:
        params["bias"] = dy2.sum(axis=0)
    return Grads(params, dy @ fc._params["weight"])  # (*, in)
