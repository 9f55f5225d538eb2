"""One-step cells (``LSTMCell``, ``GRUCell``, ``RNNCell``) and ``Linear``.

The cells run the same fused step functions as the layers
(:mod:`nplstm.cells`), for one time step, with PyTorch's keys
``weight_ih, weight_hh, bias_ih, bias_hh``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from . import _numba, cells, general, loop
from .layers import unpack_single
from .module import (
    InputError,
    Module,
    Nonlinearity,
    check_bool,
    check_gate_rows,
    check_size,
    to_numpy,
)
from .options import (
    GRUOptionsMixin,
    LSTMOptionsMixin,
    OptionsMixin,
    make_options,
    peephole_config,
    repr_options,
)
from .trace import Trace, layer_options

if TYPE_CHECKING:
    from .grad import Grads

#: What a cell returns: ``h'`` (GRUCell, RNNCell) or ``(h', c')`` (LSTMCell).
S = TypeVar("S")


class _CellBase(Module, Generic[S]):
    family: cells.Family
    nonlinearity = Nonlinearity(changeable=True)

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", *, dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None, **options: Any) -> None:
        super().__init__(dtype=dtype, seed=seed)
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.bias = check_bool("bias", bias)
        self._set_options(make_options(self.family.name, type(self).__name__, 1,
                                       nonlinearity=nonlinearity, **options))
        if self.family is cells.RNN and set(self._options.activations) == {"Relu"}:
            nonlinearity = "relu"  # activations=("Relu",) is nonlinearity="relu"
        self.nonlinearity = nonlinearity  # checked by the Nonlinearity descriptor
        self._init_params(1.0 / math.sqrt(self.hidden_size))

    def _param_shapes(self):
        GH = self.family.num_gates * self.hidden_size
        shapes = {"weight_ih": (GH, self.input_size), "weight_hh": (GH, self.hidden_size)}
        if self.bias:
            shapes.update(bias_ih=(GH,), bias_hh=(GH,))
        if self._options.peepholes:
            shapes["weight_ph"] = (3 * self.hidden_size,)  # (p_i | p_f | p_o)
        return shapes

    _optional_params = ("bias_ih", "bias_hh")
    _first_key = "weight_ih"

    @classmethod
    def _config_from_keys(cls, keys, prefix):
        rows, input_size = cls._shape(keys, "weight_ih", prefix, 2)
        hidden_size = cls._shape(keys, "weight_hh", prefix, 2)[1]
        check_gate_rows(cls.__name__, cls.family, prefix + "weight_ih", rows, hidden_size)
        return {"input_size": input_size, "hidden_size": hidden_size,
                "bias": "bias_ih" in keys, **peephole_config(cls, keys, prefix + "weight_ph")}

    def _weights(self):
        if self._prepared is None:
            if self._options.default:
                self._prepared = self.family.prepare(self._params, self.nonlinearity)
            else:
                self._prepared = general.layer_weights(self._options, self.family,
                                                       self._params, 0)
        return self._prepared

    def __call__(self, input: npt.ArrayLike, hx: Any = None) -> S:
        """One step: input ``(N, H_in)`` or ``(H_in,)``; hx (h, or (h, c) for an
        LSTMCell) ``(N, H)`` or ``(H,)``, zeros if None. Returns the new state."""
        fast = self._fast_step(input, hx)
        if fast is not None:
            return fast
        state, _ = self._step(input, hx, None)
        return self._pack_state(state)

    def _fast_step(self, input, hx):
        """A call with arrays already of the cell's dtype and shapes, as a stream
        makes them: straight to the step (same products as :func:`loop.run_cell`,
        so the same numbers; the tests hold it to that). Anything else returns
        None and takes the general path, which converts or raises its errors."""
        dtype, H = self.dtype, self.hidden_size
        if (type(input) is not np.ndarray or input.dtype != dtype or input.ndim not in (1, 2)
                or input.shape[-1] != self.input_size):
            return None
        unbatched = input.ndim == 1
        N = 1 if unbatched else input.shape[0]
        if N == 0:
            return None
        family = self._run_family
        parts = None
        if hx is not None:
            parts = (hx,) if len(family.states) == 1 else hx
            if type(parts) is not tuple or len(parts) != len(family.states):
                return None
            shape = (H,) if unbatched else (N, H)
            for part in parts:
                if type(part) is not np.ndarray or part.dtype != dtype or part.shape != shape:
                    return None
        w = self._weights()
        new = tuple(np.empty((N, H), dtype) for _ in family.states)
        if _numba.use(family):  # the [fast] extra: the step in one compiled call
            x = input[None] if unbatched else input
            if N <= _numba.SMALL_BATCH:  # a layer's one-step call: the same kernel call
                xs = x[None]  # (1, N, H_in)
                if not xs.flags.carray:  # C-contiguous and writable: one numba type
                    xs = xs.copy()
                states = None if parts is None else [
                    p[None, None] if unbatched else p[None] for p in parts]  # (1, N, H)
                h_n = new[0][None]  # (1, N, H): h' is also the output
                _numba.one_step(family, [w], xs, states, h_n,
                                new[1][None] if len(new) == 2 else None, h_n)
            else:
                with cells.quiet():  # BLAS's products may overflow: no warning
                    _numba.cell_step(family, w, x, parts, new)
        else:
            if parts is None:
                zeros = np.zeros((H, N), dtype)
                state = (zeros, zeros)[:len(family.states)]
            else:  # gate-major (H, N) views
                state = tuple(part[:, None] if unbatched else part.T for part in parts)
            ws = cells.take_workspace(family, w, N, dtype)
            ws.out = new[0].T  # (H, N): the step writes h' in place
            with cells.quiet():  # as loop.run_cell: overflow is no warning, whatever the size
                got = family.step(ws.k.project_step(input[None] if unbatched else input, ws.xp),
                                  state, ws, None)
            if got[0] is not ws.out:
                np.copyto(ws.out, got[0])
            if len(new) == 2:
                np.copyto(new[1].T, got[1])  # c' from the workspace
            ws.out = None
            cells.give_back(w, ws, N, dtype)
        return self._pack_state(tuple(s[0] for s in new) if unbatched else new)

    def step_gates(self, input: npt.ArrayLike,
                   hx: Any = None) -> tuple[S, dict[str, np.ndarray]]:
        """Like ``__call__`` and also return the gate activations as a dict."""
        record: dict[str, np.ndarray] = {}
        state, unbatched = self._step(input, hx, record)
        gates = {k: (v[0] if unbatched else v) for k, v in record.items()}
        return self._pack_state(state), gates

    def trace(self, input: npt.ArrayLike, hx: Any = None) -> Trace:
        """Run one step like ``__call__`` and keep every gate: a :class:`Trace`.

        The trace has one layer, one direction and one step (``L = 1``), so its
        records are ``(1, 1, 1, N, H)``; ``h_n`` (and ``c_n``) are the very
        arrays the cell returns (``output`` is ``h_n``), and ``h_0``/``c_0`` the
        states it started from, ``(1, N, H)`` (``(1, H)`` for one sample).
        """
        record: dict[str, np.ndarray] = {}
        state, unbatched, x, state0 = self._step(input, hx, record, full=True)
        if x.shape[0] == 0:
            raise InputError("trace needs at least one sample, got an empty batch")
        data = {k: v[None, None, None] for k, v in record.items()}  # (1, 1, 1, N, H)
        for name, s in zip(self.family.states, state):
            data[name] = s.reshape(1, 1, 1, *x.shape[:1], -1).copy()
        h_0 = [s[None, 0] if unbatched else s[None] for s in state0]  # (1, [N,] H)
        trace = Trace(self.family.name, data, output=state[0], h_n=state[0],
                     c_n=state[1] if len(state) > 1 else None,
                     input=x[0] if unbatched else x, h_0=h_0[0],
                     c_0=h_0[1] if len(h_0) > 1 else None, layer_inputs=[x[None]],
                     unbatched=unbatched, nonlinearity=self.nonlinearity,
                     options=layer_options(self))
        trace._weights = dict(self._params)
        return trace

    def backward(self, trace: Trace, grad_output: Any) -> Grads:
        """Gradients of one step that :meth:`trace` recorded.

        ``grad_output``: dL/d the returned state, shaped like it (``(dh, dc)`` for
        LSTMCell, either may be None; ``dh`` for GRUCell/RNNCell). Returns
        :class:`nplstm.grad.Grads`: ``params`` keyed like :meth:`state_dict`,
        ``input`` like x, ``hx`` like hx. Uses the cell's current parameters.
        """
        from . import grad

        return grad.cell_backward(self, trace, grad_output)

    def _step(self, input, hx, record, full=False):
        name = type(self).__name__
        x = to_numpy(input, "input")
        if x.ndim not in (1, 2):
            raise InputError(f"{name}: Expected input to be 1D or 2D, got {x.ndim}D input "
                             f"of shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise InputError(f"input has inconsistent input_size: got {x.shape[-1]} "
                             f"expected {self.input_size}")
        unbatched = x.ndim == 1
        x = np.asarray(x, dtype=self.dtype).reshape(-1, self.input_size)  # (N, H_in)
        state0 = state = self._initial_state(hx, x.shape[0], unbatched)
        if x.shape[0]:  # an empty batch (N = 0) keeps its empty state, as in PyTorch
            state = loop.run_cell(self._run_family, self._weights(), x, state, record)
        if unbatched:
            state = tuple(s[0] for s in state)
        return (state, unbatched, x, state0) if full else (state, unbatched)

    def _initial_state(self, hx, N, unbatched):
        if hx is None:
            return tuple(np.zeros((N, self.hidden_size), self.dtype)
                         for _ in self.family.states)
        parts = self._unpack_state(hx)
        shape = (self.hidden_size,) if unbatched else (N, self.hidden_size)
        out = []
        for name, part in zip(self.family.states, parts):
            arr = to_numpy(part, f"hx ({name})")
            if arr.shape != shape:
                raise InputError(f"{type(self).__name__}: expected {name} of shape {shape} "
                                 f"for input of batch size {'(unbatched)' if unbatched else N}"
                                 f", got {arr.shape}")
            out.append(np.asarray(arr, dtype=self.dtype).reshape(N, self.hidden_size))
        return tuple(out)

    def _unpack_state(self, hx):
        return (unpack_single(hx, type(self).__name__, "h"),)

    def _pack_state(self, state):
        return state[0]

    def __repr__(self) -> str:
        s = f"{type(self).__name__}({self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        s += repr_options(self._options, self.nonlinearity)
        return s + ("" if self.dtype == np.float32 else f", dtype={self.dtype.name}") + ")"


class LSTMCell(LSTMOptionsMixin, _CellBase[tuple[np.ndarray, np.ndarray]]):
    """One LSTM step, identical to ``torch.nn.LSTMCell``: ``h', c' = cell(x, (h, c))``.

    input ``(N, H_in)`` or ``(H_in,)``; h, c ``(N, H)`` or ``(H,)``, zeros if omitted.
    Equations as :class:`nplstm.LSTM`; keys ``weight_ih (4H, H_in)``,
    ``weight_hh (4H, H)``, ``bias_ih``, ``bias_hh (4H,)``.
    Keyword-only options as :class:`nplstm.LSTM` (``peepholes`` adds the key
    ``weight_ph (3H,)``, ``p_i|p_f|p_o``).
    """

    family = cells.LSTM

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 peepholes: bool = False, clip: float | None = None,
                 input_forget: bool = False, activations: Sequence[str] | None = None,
                 activation_alpha: Sequence[float | None] | None = None,
                 activation_beta: Sequence[float | None] | None = None,
                 dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed,
                         peepholes=peepholes, clip=clip, input_forget=input_forget,
                         activations=activations, activation_alpha=activation_alpha,
                         activation_beta=activation_beta)

    def _unpack_state(self, hx):
        if not isinstance(hx, (tuple, list)):
            raise TypeError(f"hx must be a tuple (h, c) of two arrays for LSTMCell, got "
                            f"{type(hx).__name__}")
        if len(hx) != 2:
            raise TypeError(f"hx must be a tuple (h, c) of two arrays for LSTMCell, got a "
                            f"{type(hx).__name__} of {len(hx)}")
        return hx

    def _pack_state(self, state):
        return state[0], state[1]


class GRUCell(GRUOptionsMixin, _CellBase[np.ndarray]):
    """One GRU step, identical to ``torch.nn.GRUCell``: ``h' = cell(x, h)``.

    Keyword-only options as :class:`nplstm.GRU` (``linear_before_reset``, ``clip``,
    ``activations`` with alpha/beta).
    """

    family = cells.GRU

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, *,
                 linear_before_reset: bool = True, clip: float | None = None,
                 activations: Sequence[str] | None = None,
                 activation_alpha: Sequence[float | None] | None = None,
                 activation_beta: Sequence[float | None] | None = None,
                 dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(input_size, hidden_size, bias, dtype=dtype, seed=seed,
                         linear_before_reset=linear_before_reset, clip=clip,
                         activations=activations, activation_alpha=activation_alpha,
                         activation_beta=activation_beta)


class RNNCell(OptionsMixin, _CellBase[np.ndarray]):
    """One Elman RNN step, identical to ``torch.nn.RNNCell``: ``h' = cell(x, h)``.

    Keyword-only options as :class:`nplstm.RNN` (``clip``, ``activations``).
    """

    family = cells.RNN

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", *, clip: float | None = None,
                 activations: Sequence[str] | None = None,
                 activation_alpha: Sequence[float | None] | None = None,
                 activation_beta: Sequence[float | None] | None = None,
                 dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(input_size, hidden_size, bias, nonlinearity, dtype=dtype, seed=seed,
                         clip=clip, activations=activations,
                         activation_alpha=activation_alpha, activation_beta=activation_beta)


class Linear(Module):
    """``y = x W^T + b``, identical to ``torch.nn.Linear``; input ``(*, in_features)``.

    Init as PyTorch: weight and bias ~ U(−1/√in_features, 1/√in_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(dtype=dtype, seed=seed)
        self.in_features = check_size("in_features", in_features)
        self.out_features = check_size("out_features", out_features)
        self.bias_enabled = check_bool("bias", bias)
        self._init_params(1.0 / math.sqrt(self.in_features))

    _optional_params = ("bias",)
    _first_key = "weight"

    @classmethod
    def _config_from_keys(cls, keys, prefix):
        out_features, in_features = cls._shape(keys, "weight", prefix, 2)
        return {"in_features": in_features, "out_features": out_features,
                "bias": "bias" in keys}

    def _param_shapes(self):
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias_enabled:
            shapes["bias"] = (self.out_features,)
        return shapes

    def __call__(self, input: npt.ArrayLike) -> np.ndarray:
        """``y (*, out_features)`` from input ``(*, in_features)``, in the layer's dtype."""
        x = to_numpy(input, "input")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise InputError(f"input must have shape (*, {self.in_features}) for Linear("
                             f"in_features={self.in_features}), got {x.shape}")
        with cells.quiet():  # inf and NaN in x give NaN silently, as in PyTorch
            y = np.asarray(x, dtype=self.dtype) @ self._params["weight"].T  # (*, out)
            if self.bias_enabled:
                y = y + self._params["bias"]
        return y

    def backward(self, input: npt.ArrayLike, grad_output: npt.ArrayLike) -> Grads:
        """Gradients of ``y = self(input)`` given dL/dy ``(*, out_features)``.

        Returns :class:`nplstm.grad.Grads` with ``params`` ``{"weight", "bias"}``
        (keyed like :meth:`state_dict`) and ``input`` ``(*, in_features)``.
        """
        from . import grad

        return grad.linear_backward(self, input, grad_output)

    def to_onnx(self, path, *, ndim=2):
        """Write this layer as an ONNX model for ``ndim``-D input (MatMul + Add); see
        :func:`nplstm.onnx.to_onnx`."""
        from .onnx import to_onnx

        to_onnx(self, path, ndim=ndim)

    def __repr__(self) -> str:
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias_enabled})")
