"""Running a layer as an ONNX node: ONNX's shapes, layouts, ``sequence_lens``.

Plumbing only: transposes, index reversal, and the rows of zeros onnxruntime
returns for a sequence of length 0. The layer does every step of the math.
"""

from __future__ import annotations

import numpy as np

from ..layers import _RNNBase
from ..loop import check_lengths
from ..module import to_numpy

#: A single-direction layer running backwards cannot trace honestly: not delegated.
_NOT_DELEGATED = {"trace", "_forward", "_one_step", "backward"}


class Reversed:
    """A layer run backwards in time: ONNX's ``direction="reverse"``.

    ``Reversed(layer)(x, hx, lengths=...)`` is the layer run on each sequence
    reversed within its length, its output reversed back: exactly the
    ``_reverse`` direction of a bidirectional layer (the ONNX spec's
    "reverse" direction; PyTorch runs it only inside ``bidirectional=True``).
    Shapes, states and errors are the wrapped layer's; its parameters,
    ``state_dict`` and sizes are read through (``.layer`` is the layer itself).
    """

    def __init__(self, layer):
        self.__dict__["layer"] = layer

    def __getattr__(self, name):
        if name in _NOT_DELEGATED or name.startswith("__"):
            raise AttributeError(f"Reversed has no attribute {name!r} (read "
                                 f".layer.{name} for the layer run forwards)")
        return getattr(self.__dict__["layer"], name)

    def __setattr__(self, name, value):
        setattr(self.__dict__["layer"], name, value)

    def __call__(self, input, hx=None, *, lengths=None):
        layer = self.layer
        x = to_numpy(input, "input")
        axis = 1 if x.ndim == 3 and layer.batch_first else 0  # the time axis
        index = _reverse_index(x, axis, lengths)
        output, state = layer(_take(x, index, axis), hx, lengths=lengths)
        return _take(output, index, axis), state

    def to_onnx(self, path, **kwargs):
        from ._export import export

        return export(self, path, **kwargs)

    def __repr__(self):
        return f"Reversed({self.layer!r})"


def _reverse_index(x, axis, lengths):
    """``(L, N)`` (or ``(N, L)``) time indices that reverse each sequence in its length."""
    L = x.shape[axis] if x.ndim else 0
    if lengths is None or x.ndim != 3:
        return None if L == 0 else np.arange(L - 1, -1, -1)
    n = to_numpy(lengths, "lengths")
    if n.ndim != 1 or n.shape[0] != x.shape[1 - axis] or n.dtype.kind not in "iu":
        return None  # the layer itself reports the bad lengths
    t = np.arange(L)[:, None]  # (L, 1)
    index = np.where(t < n[None, :], n[None, :] - 1 - t, t)  # (L, N): padding stays put
    index = np.clip(index, 0, L - 1)
    return index if axis == 0 else index.T  # (N, L) batch-first


def _take(a, index, axis):
    if index is None:
        return a
    if index.ndim == 1:
        return np.take(a, index, axis=axis)
    return np.take_along_axis(a, np.expand_dims(index, -1), axis=axis)


def run_node(layer, X, sequence_lens=None, initial_h=None, initial_c=None):
    """Run ``layer`` as the ONNX node it maps: ``(Y, Y_h)`` or ``(Y, Y_h, Y_c)``.

    Shapes are ONNX's (operator spec, LSTM/GRU/RNN): with ``layout=0``
    (``batch_first=False``) ``X [L, N, H_in]``, ``initial_h``/``initial_c``
    and ``Y_h``/``Y_c [D, N, H]``, ``Y [L, D, N, H]``; with ``layout=1``
    (``batch_first=True``) ``X [N, L, H_in]``, states ``[N, D, H]``,
    ``Y [N, L, D, H]``. ``sequence_lens [N]`` (ints in ``0..L``) runs the
    padded batch as the layer's ``lengths``; a sequence of length 0 gives zeros
    in ``Y``, ``Y_h`` and ``Y_c``, as onnxruntime does. Y is zero past each length.

    ``layer``: a single-layer LSTM, GRU or RNN without ``proj_size`` (what one
    ONNX node holds), or a :class:`Reversed` one, e.g. a value of
    :func:`nplstm.from_onnx`. Raises ValueError/TypeError naming the argument.
    """
    inner = layer.layer if type(layer) is Reversed else layer
    _check_node_layer(inner)
    lstm = inner.family.name == "lstm"
    if initial_c is not None and not lstm:
        raise ValueError(f"initial_c is an LSTM input; {type(inner).__name__} has no c")
    first = inner.batch_first
    X = to_numpy(X, "X")
    if X.ndim != 3:
        raise ValueError(f"X must be 3-D ({'[N, L, H_in]' if first else '[L, N, H_in]'}), "
                         f"got shape {X.shape}")
    N, D, H = X.shape[0 if first else 1], inner.num_directions, inner.hidden_size
    states = [_state_in(s, n, first, (D, N, H)) for s, n in
              ((initial_h, "initial_h"), (initial_c, "initial_c"))[:1 + lstm]]
    lens = _lengths(sequence_lens, N, X.shape[1 if first else 0])
    keep = None if lens is None or lens.all() else np.flatnonzero(lens)
    if keep is not None:  # length-0 sequences are left out and come back as zeros
        X = X[keep] if first else X[:, keep]
        states = [None if s is None else s[:, keep] for s in states]
    hx = None
    if any(s is not None for s in states):
        hx = [np.zeros((D, X.shape[0 if first else 1], H), inner.dtype) if s is None else s
              for s in states]
        hx = tuple(hx) if lstm else hx[0]
    lengths = None if lens is None else lens if keep is None else lens[keep]
    if X.shape[0 if first else 1]:
        output, state = layer(X, hx, lengths=lengths)
    else:  # every sequence has length 0
        output = np.zeros(X.shape[:2] + (D * H,), inner.dtype)
        state = tuple(np.zeros((D, 0, H), inner.dtype) for _ in range(1 + lstm))
        state = state if lstm else state[0]
    state = state if lstm else (state,)
    return _outputs(output, state, keep, N, D, H, first)


def _check_node_layer(layer):
    if not isinstance(layer, _RNNBase):
        raise TypeError(f"layer must be an nplstm LSTM, GRU or RNN (or Reversed one), got "
                        f"{type(layer).__name__}")
    if layer.num_layers != 1 or layer.proj_size:
        raise ValueError(f"layer must be what one ONNX node holds: num_layers=1 and no "
                         f"proj_size, got num_layers={layer.num_layers}, "
                         f"proj_size={layer.proj_size}")


def _state_in(s, name, batch_first, shape):
    """``initial_h``/``initial_c`` as ``(D, N, H)``, checked against ``shape`` (D, N, H)."""
    if s is None:
        return None
    s = to_numpy(s, name)
    D, N, H = shape
    want = (N, D, H) if batch_first else shape
    if s.shape != want:
        raise ValueError(f"{name} must have shape "
                         f"{'[N, D, H]' if batch_first else '[D, N, H]'} = {list(want)}, "
                         f"got shape {s.shape}")
    return s.transpose(1, 0, 2) if batch_first else s  # (D, N, H)


def _lengths(sequence_lens, N, L):
    if sequence_lens is None:
        return None
    lens = check_lengths(sequence_lens, L, N, name="sequence_lens", minimum=0)
    return lens.astype(np.int64)


def _outputs(output, state, keep, N, D, H, batch_first):
    """PyTorch-shaped results -> ONNX's ``Y, Y_h (, Y_c)``, zeros for length 0."""
    if batch_first:
        Y = output.reshape(output.shape[:2] + (D, H))  # (N, L, D, H)
    else:
        Y = output.reshape(output.shape[:2] + (D, H)).transpose(0, 2, 1, 3)  # (L, D, N, H)
    finals = list(state)  # (D, N, H) each
    if keep is not None:
        full = np.zeros(Y.shape[:2] + (N, H) if not batch_first else (N,) + Y.shape[1:],
                        Y.dtype)
        if batch_first:
            full[keep] = Y
        else:
            full[:, :, keep] = Y
        Y = full
        for k, s in enumerate(finals):
            finals[k] = np.zeros((D, N, H), s.dtype)
            finals[k][:, keep] = s
    if batch_first:
        finals = [s.transpose(1, 0, 2) for s in finals]  # (N, D, H)
    return (np.ascontiguousarray(Y),) + tuple(np.ascontiguousarray(s) for s in finals)
