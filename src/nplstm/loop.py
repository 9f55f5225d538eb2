"""The time loop and the plumbing around it: layers, directions, lengths.

Written once for every family: the family's ``step`` is the only math here.
All arrays are time-major inside: ``x`` is ``(L, N, H_in)``; the layers
translate ``batch_first`` and unbatched input before and after.
"""

from __future__ import annotations

import numpy as np

from .module import to_numpy


def length_mask(lengths, L, N, unbatched):
    """``(L, N, 1)`` bool: True where step t is inside sequence n; None if no lengths."""
    if lengths is None:
        return None
    if unbatched:
        raise ValueError("lengths= needs batched 3-D input; got unbatched 2-D input")
    arr = to_numpy(lengths, "lengths")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    if arr.shape != (N,):
        raise ValueError(f"lengths must have shape ({N},), one length per sequence in the "
                         f"batch, got shape {arr.shape}")
    bad = arr[(arr < 1) | (arr > L)]
    if bad.size:
        raise ValueError(f"lengths must be between 1 and the sequence length {L}, got "
                         f"{bad.tolist()}")
    return (np.arange(L)[:, None] < arr[None, :])[:, :, None]  # (L, N, 1)


def run_direction(family, w, xp, state, mask, reverse, record):
    """Run one direction of one layer over time.

    xp: ``(L, N, G*H)`` projected input; state: tuple of ``(N, H)``.
    Returns ``(y (L, N, H_out), final state tuple, rec)``; ``rec`` maps gate and
    state names to ``(L, N, H)`` arrays when ``record`` is set, else None.
    Where ``mask`` is False the step is skipped: the state is carried on
    unchanged and the output (and record) is zero, as in PyTorch's packed path.
    """
    L, N = xp.shape[:2]
    H_out = state[0].shape[-1]
    y = np.empty((L, N, H_out), dtype=xp.dtype)  # (L, N, H_out)
    rec = {} if record else None
    step_rec = {} if record else None
    steps = range(L - 1, -1, -1) if reverse else range(L)
    for t in steps:
        new = family.step(xp[t], state, w, step_rec)
        if mask is not None:
            m = mask[t]  # (N, 1)
            new = tuple(np.where(m, s_new, s_old) for s_new, s_old in zip(new, state))
        state = new
        y[t] = state[0]
        if record:
            step_rec.update(zip(family.states, state))
            for name, value in step_rec.items():
                if name not in rec:
                    rec[name] = np.empty((L,) + value.shape, dtype=value.dtype)
                rec[name][t] = value
    if mask is not None:
        y *= mask
        if record:
            for value in rec.values():
                value *= mask
    return y, state, rec


def run_layers(family, weights, x, state0, mask, dropout, record):
    """Stack of layers, each with one or two directions.

    weights: ``[layer][direction] -> cells.Weights``; x: ``(L, N, H_in)``;
    state0: tuple of ``(D*num_layers, N, H)`` arrays (h, then c).
    Returns ``(output (L, N, D*H_out), final states like state0, rec)`` where
    ``rec`` is ``[layer][direction] -> {name: (L, N, H)}`` plus ``"input"`` per
    layer, or None.
    """
    D = len(weights[0])
    finals = [np.empty_like(s) for s in state0]
    recs = [] if record else None
    for k, layer in enumerate(weights):
        ys, layer_rec = [], []
        for d, w in enumerate(layer):
            j = k * D + d
            xp = w.project(x)  # (L, N, G*H)
            y, state, rec = run_direction(family, w, xp, tuple(s[j] for s in state0),
                                          mask, d == 1, record)
            for final, s in zip(finals, state):
                final[j] = s
            ys.append(y)
            layer_rec.append(rec)
        if record:
            recs.append({"input": x, "directions": layer_rec})
        x = ys[0] if D == 1 else np.concatenate(ys, axis=-1)  # (L, N, D*H_out)
        if dropout is not None and k < len(weights) - 1:
            x = dropout(x)
    return x, tuple(finals), recs
