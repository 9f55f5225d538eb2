"""The time loop and the plumbing around it: layers, directions, lengths.

Written once for every family: the family's ``step`` is the only math here.
All arrays are time-major inside: ``x`` is ``(L, N, H_in)``; the layers
translate ``batch_first`` and unbatched input before and after.
"""

from __future__ import annotations

import numpy as np

from . import _numba, cells
from .module import InputError, to_numpy


def length_mask(lengths, L, N, unbatched):
    """``(L, N, 1)`` bool: True where step t is inside sequence n; None if no lengths."""
    if lengths is None:
        return None
    if unbatched:
        raise InputError("lengths= needs batched 3-D input; got unbatched 2-D input")
    arr = check_lengths(lengths, L, N)
    return (np.arange(L)[:, None] < arr[None, :])[:, :, None]  # (L, N, 1)


def check_lengths(lengths, L, N, *, name="lengths", minimum=1):
    """``lengths`` as an ``(N,)`` integer array, each in ``[minimum, L]``; errors
    (naming ``name``: ONNX's ``sequence_lens`` allows 0) otherwise."""
    arr = to_numpy(lengths, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.shape != (N,):
        raise InputError(f"{name} must have shape ({N},), one length per sequence in the "
                         f"batch, got shape {arr.shape}")
    bad = arr[(arr < minimum) | (arr > L)]
    if bad.size:
        raise InputError(f"{name} must be between {minimum} and the sequence length {L}, "
                         f"got {bad.tolist()}")
    return arr


def step_mask(mask, L, N, unbatched, batch_first):
    """``(L, N, 1)`` bool from a ``mask=`` of any pattern (Keras's masking); None if None.

    mask: True where the step is taken; ``(L, N)``, ``(N, L)`` with batch_first, or
    ``(L,)`` for unbatched input (the input's own layout without the feature axis).
    """
    if mask is None:
        return None
    arr = to_numpy(mask, "mask")
    if arr.dtype.kind != "b":
        raise TypeError(f"mask must be a bool array, got dtype {arr.dtype}")
    shape = (L,) if unbatched else ((N, L) if batch_first else (L, N))
    if arr.shape != shape:
        raise ValueError(f"mask must have the input's shape without its feature axis, "
                         f"{shape}, got {arr.shape}")
    if unbatched:
        arr = arr[:, None]  # (L, 1)
    elif batch_first:
        arr = arr.T  # (N, L) -> (L, N)
    return arr[:, :, None]  # (L, N, 1)


def held(mask, reverse):
    """Keras's output mask for ``masked_output="hold"``: ``(L, N, 1)``, True from a
    sequence's first taken step on (in the direction's order), False before it.

    Where a step is skipped the carried ``h`` -- the last output -- stands as the
    output; before any step was taken Keras outputs zeros
    (``keras.src.backend.*.rnn``: ``prev_output`` starts as ``zeros_like(output)``).
    """
    order = slice(None, None, -1) if reverse else slice(None)
    return np.logical_or.accumulate(mask[order], axis=0)[order]  # (L, N, 1)


def _chunks(L, size, reverse):
    """``(start, stop)`` of consecutive chunks of ``range(L)``, last first if reverse."""
    bounds = [(a, min(a + size, L)) for a in range(0, L, size)]
    return bounds[::-1] if reverse else bounds


def _is_lengths(mask, hold):
    """True when ``mask`` is None or a ``lengths=`` mask (each sequence's steps first)
    with zero outputs past them: what the compiled engine runs. Keras's masks
    (gaps, padding first) and ``hold`` outputs take the NumPy path."""
    if mask is None:
        return True
    steps = mask[:, :, 0]  # (L, N)
    suffix = np.arange(len(steps))[:, None] < steps.sum(0)[None, :]  # (L, N)
    return not hold and bool(steps[0].all()) and bool(np.array_equal(steps, suffix))


def run_direction(family, w, x, state, mask, reverse, record, final=None, hold=False):
    """Run one direction of one layer over time.

    x: ``(L, N, H_in)`` layer input, projected here chunk by chunk (the
    workspace does not grow with L); state: tuple of ``(N, H)``.
    Returns ``(y (L, N, H_out), final state tuple, rec)``; ``rec`` maps gate and
    state names to ``(L, N, H)`` arrays when ``record`` is set, else None.
    Where ``mask`` is False the step is skipped: the state is carried on
    unchanged and the output (and record) is zero, as in PyTorch's packed path;
    with ``hold`` the output there is the last output instead (Keras, see :func:`held`).
    Recording only copies what the step computed, so a traced run and a plain
    run do the same arithmetic and give identical results. ``final``: arrays
    ``(N, H)`` to write the final state into (else new ones).
    """
    if _numba.use(family) and _is_lengths(mask, hold):  # the [fast] extra: the same math,
        return _numba.run_direction(family, w, x, state, mask, reverse, final,  # compiled
                                    record=record)  # (and recorded for a trace)
    L, N = x.shape[:2]
    ws = cells.take_workspace(family, w, N, x.dtype)
    y = np.empty((L, N, state[0].shape[-1]), dtype=x.dtype)  # (L, N, H_out)
    yT = y.transpose(0, 2, 1)  # (L, H_out, N): the steps write h here, gate-major
    state = tuple(s.T for s in state)  # gate-major (H, N) views
    step, rec, step_rec = family.step, None, None
    if record:
        rec, step_rec = {}, {}
    keep = None if mask is None else mask[:, :, 0]  # (L, N)
    if L == 1 and keep is None and not record:  # a stream's one-step call: lean
        ws.out = yT[0]
        state = step(ws.k.project_step(x[0], ws.xp), state, ws, None)
        if state[0] is not ws.out:
            np.copyto(ws.out, state[0])
            state = (ws.out,) + state[1:]
        return _finish(w, ws, y, state, final, None, None)
    chunk = cells.chunk_steps(w, N)
    for start, stop in ((0, L),) if L <= chunk else _chunks(L, chunk, reverse):
        xp = xp_t = None  # free the last chunk (views keep it alive) before the next
        xp = ws.k.project(x[start:stop])  # (T, G*H, N)
        outs = yT[start:stop]
        if reverse:
            xp, outs = xp[::-1], outs[::-1]
        if keep is None and not record:  # the hot loop
            for xp_t, out in zip(xp, outs):
                ws.out = out
                state = step(xp_t, state, ws, None)
                if state[0] is not out:  # a step that did not write in place
                    np.copyto(out, state[0])
                    state = (out,) + state[1:]
            continue
        ts = range(stop - 1, start - 1, -1) if reverse else range(start, stop)
        for t, xp_t, out in zip(ts, xp, outs):
            ws.out = out
            old = None if keep is None else tuple(s.copy() for s in state)
            state = step(xp_t, state, ws, step_rec)
            if state[0] is not out:
                np.copyto(out, state[0])
                state = (out,) + state[1:]
            if old is not None:  # finished sequences carry their state on
                for s_new, s_old in zip(state, old):
                    np.copyto(s_new, s_old, where=~keep[t])
            if record:
                _record(rec, step_rec, family, state, t, L)
    y_mask = held(mask, reverse) if hold and mask is not None else None
    return _finish(w, ws, y, state, final, mask, rec, y_mask)


def _finish(w, ws, y, state, final, mask, rec, y_mask=None):
    """Final states out (before y is masked), workspace back, masks applied."""
    if final is None:
        final = tuple(np.empty(s.T.shape, s.dtype) for s in state)
    for f, s in zip(final, state):  # (N, H)
        np.copyto(f, s.T)
    ws.out = None
    cells.give_back(w, ws, y.shape[1], y.dtype)
    if mask is not None:
        y *= mask if y_mask is None else y_mask
        if rec:
            for value in rec.values():
                value *= mask
    return y, final, rec


def _record(rec, step_rec, family, state, t, L):
    """Copy step t's gates (views into the workspace) and states into ``rec``."""
    step_rec.update(zip(family.states, state))
    for name, value in step_rec.items():  # value: (H, N)
        if name not in rec:
            rec[name] = np.empty((L,) + value.T.shape, dtype=value.dtype)
        rec[name][t] = value.T


def run_cell(family, w, x, state, record=None):
    """One step of a cell: x ``(N, H_in)``, state tuple of ``(N, H)`` -> new state.

    The same projection, workspace and step as the layers, so a cell stepped
    over a sequence gives exactly the layer's numbers. With ``record`` a dict,
    it is filled with the gate activations, ``(N, H)`` each.
    """
    N = x.shape[0]
    if _numba.use(family):  # the [fast] extra
        return _numba.cell_step(family, w, x, state, tuple(np.empty_like(s) for s in state),
                                record)
    ws = cells.take_workspace(family, w, N, x.dtype)
    out = np.empty((state[0].shape[-1], N), dtype=x.dtype)  # (H, N)
    ws.out = out
    step_rec = None if record is None else {}
    with cells.quiet():
        new = family.step(ws.k.project_step(x, ws.xp), tuple(s.T for s in state), ws,
                          step_rec)
    if record is not None:
        record.update({name: v.T.copy() for name, v in step_rec.items()})
    new = tuple(s.T.copy() for s in new)
    ws.out = None
    cells.give_back(w, ws, N, x.dtype)
    return new


def run_layers(family, weights, x, state0, mask, dropout, record, hold=False):
    """Stack of layers, each with one or two directions.

    weights: ``[layer][direction] -> cells.Weights``; x: ``(L, N, H_in)``;
    state0: tuple of ``(D*num_layers, N, H)`` arrays (h, then c).
    Returns ``(output (L, N, D*H_out), final states like state0, rec)`` where
    ``rec`` is ``[layer][direction] -> {name: (L, N, H)}`` plus ``"input"`` per
    layer (and ``"dropout"``, the bool mask applied to its output, when dropout
    acts), or None. ``dropout(y)`` returns ``(dropped y, bool mask kept)``.
    ``hold``: see :func:`run_direction`.
    """
    with cells.quiet():  # exp overflowing to inf is part of the math (see cells)
        return _run_layers(family, weights, x, state0, mask, dropout, record, hold)


def _run_layers(family, weights, x, state0, mask, dropout, record, hold):
    D = len(weights[0])
    finals = tuple(np.empty_like(s) for s in state0)
    recs = [] if record else None
    for k, layer in enumerate(weights):
        ys, layer_rec = [], []
        for d, w in enumerate(layer):
            j = k * D + d
            y, _, rec = run_direction(family, w, x, tuple(s[j] for s in state0), mask,
                                      d == 1, record, tuple(f[j] for f in finals), hold)
            ys.append(y)
            layer_rec.append(rec)
        if record:
            recs.append({"input": x, "directions": layer_rec})
        x = ys[0] if D == 1 else np.concatenate(ys, axis=-1)  # (L, N, D*H_out)
        if dropout is not None and k < len(weights) - 1:
            x, keep = dropout(x)  # keep: (L, N, D*H_out) bool, the mask drawn
            if record:
                recs[-1]["dropout"] = keep  # the backward pass needs it
    return x, finals, recs
