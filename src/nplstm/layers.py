"""LSTM, GRU and RNN layers with PyTorch's API, written once for all three.

Shape legend (PyTorch's): ``N`` batch size, ``L`` sequence length, ``D`` 2 if
bidirectional else 1, ``H_in`` input_size, ``H_cell`` hidden_size, ``H_out``
proj_size if > 0 else hidden_size, ``G`` gates per family (LSTM 4, GRU 3, RNN 1).

A family (:mod:`nplstm.cells`) gives its step math and gate count; everything
else here -- parameter names and shapes, initialisation, layouts
(``batch_first``, unbatched input), stacking, directions, dropout between
layers, ``lengths=`` masks, initial states and their checks -- is shared.
"""

from __future__ import annotations

import math
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from . import _numba, cells, general, loop
from .module import (
    InputError,
    Module,
    Nonlinearity,
    article,
    check_bool,
    check_gate_rows,
    check_size,
    to_numpy,
    warn_dropout,
)
from .options import (
    GRUOptionsMixin,
    LSTMOptionsMixin,
    OptionsMixin,
    make_options,
    peephole_config,
    repr_options,
)
from .trace import Trace

if TYPE_CHECKING:
    from .grad import Grads

#: What a layer returns as its state: ``h_n`` (GRU, RNN) or ``(h_n, c_n)`` (LSTM).
S = TypeVar("S")
LSTMState = tuple[np.ndarray, np.ndarray]


class _RNNBase(Module, Generic[S]):
    """Stacked, optionally bidirectional recurrent layer. Use LSTM, GRU or RNN."""

    family: cells.Family
    nonlinearity = Nonlinearity(changeable=False)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, nonlinearity: str = "tanh",
                 *, dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None, **options: Any) -> None:
        super().__init__(dtype=dtype, seed=seed)
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.num_layers = check_size("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        if (isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.number))
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        self.dropout = float(dropout)
        self.proj_size = check_size("proj_size", proj_size, minimum=0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got "
                             f"proj_size={self.proj_size} and hidden_size={self.hidden_size}")
        self._set_options(make_options(self.family.name, type(self).__name__,
                                       self.num_directions, nonlinearity=nonlinearity,
                                       **options))
        if self.family is cells.RNN and set(self._options.activations) == {"Relu"}:
            nonlinearity = "relu"  # activations=("Relu",) is nonlinearity="relu"
        self.nonlinearity = nonlinearity  # checked by the Nonlinearity descriptor
        warn_dropout(self.dropout, self.num_layers)
        self._init_params(1.0 / math.sqrt(self.hidden_size))

    # ------------------------------------------------------------- sizes --

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """H_out: the size of h (and of each direction's output)."""
        return self.proj_size or self.hidden_size

    def _suffixes(self):
        """``(layer, direction, key suffix)`` in PyTorch's parameter order."""
        return [(k, d, f"_l{k}" + ("_reverse" if d else ""))
                for k in range(self.num_layers) for d in range(self.num_directions)]

    def _param_shapes(self):
        GH = self.family.num_gates * self.hidden_size
        shapes = {}
        for k, _, s in self._suffixes():
            in_size = self.input_size if k == 0 else self.num_directions * self.output_size
            shapes["weight_ih" + s] = (GH, in_size)
            shapes["weight_hh" + s] = (GH, self.output_size)
            if self.bias:
                shapes["bias_ih" + s] = (GH,)
                shapes["bias_hh" + s] = (GH,)
            if self._options.peepholes:  # (p_i | p_f | p_o)
                shapes["weight_ph" + s] = (3 * self.hidden_size,)
            if self.proj_size:
                shapes["weight_hr" + s] = (self.proj_size, self.hidden_size)
        return shapes

    @classmethod
    def _config_from_keys(cls, keys, prefix):
        rows, input_size = cls._shape(keys, "weight_ih_l0", prefix, 2)
        hidden_size = cls._shape(keys, "weight_hh_l0", prefix, 2)[1]
        config = {}
        if "weight_hr_l0" in keys:  # LSTM projection: W_hr is (proj_size, hidden_size)
            if cls.family is not cells.LSTM:
                raise ValueError(f"{prefix}weight_hr_l0 is an LSTM projection; these "
                                 f"weights are not {article(cls.__name__)}'s")
            config["proj_size"], hidden_size = cls._shape(keys, "weight_hr_l0", prefix, 2)
        check_gate_rows(cls.__name__, cls.family, prefix + "weight_ih_l0", rows, hidden_size)
        config.update(peephole_config(cls, keys, prefix + "weight_ph_l0"))
        config.update(input_size=input_size, hidden_size=hidden_size,
                      num_layers=sum(f"weight_ih_l{k}" in keys for k in range(len(keys))),
                      bias="bias_ih_l0" in keys, bidirectional="weight_ih_l0_reverse" in keys)
        return config

    def _state_shapes(self, batch):
        """Shapes of the initial/final states: h, then c for the LSTM."""
        lead = (self.num_directions * self.num_layers,) + batch
        sizes = {"h": self.output_size, "c": self.hidden_size}
        return [lead + (sizes[name],) for name in self.family.states]

    def _weights(self):
        """Per layer, per direction :class:`cells.Weights`, built once after a load."""
        if self._prepared is None:
            per = []
            for k, d, s in self._suffixes():
                p = {key: self._params.get(key + s) for key in
                     ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ph")}
                if self._options.default:
                    per.append(self.family.prepare(p, self.nonlinearity))
                else:
                    per.append(general.layer_weights(self._options, self.family, p, d))
            D = self.num_directions
            self._prepared = [per[k * D:(k + 1) * D] for k in range(self.num_layers)]
        return self._prepared

    # ----------------------------------------------------------- forward --

    def __call__(self, input: npt.ArrayLike, hx: Any = None, *,
                 lengths: npt.ArrayLike | None = None, mask: npt.ArrayLike | None = None,
                 masked_output: str = "zero") -> tuple[np.ndarray, S]:
        """Run the whole sequence. See the class docstring for shapes.

        ``mask`` (Keras's masking, any pattern): bool, the input's shape without its
        feature axis; a False step is skipped and the state carried on. The output
        there is zero (``masked_output="zero"``, PyTorch's packed sequences) or the
        last output, zeros before the first taken step (``"hold"``, Keras's RNN
        layers; ``keras.src.backend.*.rnn``). ``lengths`` is the mask of a padded
        batch; give one or the other.
        """
        if lengths is None and mask is None and (masked_output == "zero"
                                                 or masked_output == "hold"):
            fast = self._one_step(input, hx)  # (a bad masked_output: _forward's error)
            if fast is not None:
                return fast
        output, state, _ = self._forward(input, hx, lengths, record=False, mask=mask,
                                         masked_output=masked_output)
        return output, state

    def _one_step(self, input, hx):
        """The streaming hot path: one time step, arrays already of the layer's dtype.

        A sensor loop calls ``y, state = layer(x_t, state)`` thousands of times
        with the state the layer itself returned, so this path checks only what
        it must (type, dtype and shape of each array) against a plan made once
        per input shape (:meth:`_step_plan`), and goes straight to the family's
        step with the prepared weights and pooled workspaces -- no conversion,
        no transposes, no intermediate stacks. It computes the very same
        products as :meth:`_forward` (whose ``loop.run_direction`` has the same
        one-step branch), so results are identical; the tests hold it to that.
        On the compiled engine the same plan also takes whole sequences
        (:meth:`_compiled_run`), which would otherwise pay ``_forward``'s
        conversions (≈ 20 µs a call, a third of a 100-step H=32 LSTM).
        Anything unusual -- other dtypes, lists or tensors, bidirectional
        layers, active dropout, a shape or type that is wrong, lengths or masks --
        returns None and takes the general path, which converts or raises its
        clear errors.
        """
        if type(input) is not np.ndarray or input.dtype != self.dtype or (
                self.training and self.dropout > 0 and self.num_layers > 1):
            return None
        plans = self._step_plans
        if plans is None or plans[0] is not self._prepared:
            plans = self._step_plans = (self._weights(), {})
        key = (input.shape, hx is None, self.batch_first)  # batch_first may be set later
        plan = plans[1].get(key, False)
        if plan is False:
            if len(plans[1]) >= 16:  # a stream uses one or two shapes: keep a few
                plans[1].clear()
            plan = plans[1][key] = self._step_plan(input.shape, hx is None, plans[0])
        if plan is None:
            return None
        N, shapes, dtype = plan.N, plan.shapes, self.dtype
        if hx is None:
            states = None
        else:
            states = (hx,) if len(shapes) == 1 else hx
            if type(states) is not tuple or len(states) != len(shapes):
                return None
            for s, shape in zip(states, shapes):
                if type(s) is not np.ndarray or s.dtype != dtype or s.shape != shape:
                    return None
        family = self._run_family
        if plan.L > 1:
            return self._compiled_run(plan, input, states) if _numba.enabled() else None
        h_n = np.empty(plan.finals[0], dtype)  # (num_layers, N, H_out)
        c_n = np.empty(plan.finals[1], dtype) if len(shapes) == 2 else None
        if plan.compilable and _numba.enabled():  # [fast]: each layer's step in one call
            if plan.unbatched:  # (1, H_in) -> (1, 1, H_in); states (layers, H) -> (layers, 1, H)
                xs = input[None]
                if states is not None:
                    states = [s[:, None] for s in states]
            else:  # (1, N, H_in), or batch_first's (N, 1, H_in) as (1, N, H_in)
                xs = input.transpose(1, 0, 2) if plan.batch_first else input
            flags = xs.flags
            if not (flags.c_contiguous and flags.writeable):
                xs = xs.copy()  # one array type: no second compile
            out = np.empty((1, N, h_n.shape[-1]), dtype)  # (1, N, H_out)
            _numba.one_step(family, plan.weights, xs, states, h_n, c_n, out)
            if plan.unbatched:
                return out[0], self._pack_state((h_n[:, 0],) if c_n is None else (
                    h_n[:, 0], c_n[:, 0]))  # (1, H_out); (layers, H)
            return out[0][:, None] if plan.batch_first else out, self._pack_state(
                (h_n,) if c_n is None else (h_n, c_n))  # (N, 1, H_out) or (1, N, H_out)
        if plan.unbatched:
            x = input  # (1, H_in): a batch of one
        else:
            x = input[:, 0] if plan.batch_first else input[0]  # (N, H_in)
        with cells.quiet():  # as loop.run_layers: overflow is no warning, whatever the size
            for k, w in enumerate(plan.weights):
                if states is None:
                    state = plan.zeros
                elif plan.unbatched:
                    state = (states[0][k][:, None],) if c_n is None else (
                        states[0][k][:, None], states[1][k][:, None])  # (H, 1)
                else:
                    state = (states[0][k].T,) if c_n is None else (
                        states[0][k].T, states[1][k].T)  # (H, N) gate-major views
                ws = cells.take_workspace(family, w, N, dtype)
                ws.out = out = h_n[k].T  # (H_out, N): the step writes h_n[k] in place
                new = family.step(ws.k.project_step(x, ws.xp), state, ws, None)
                if new[0] is not out:
                    np.copyto(out, new[0])
                if c_n is not None:
                    np.copyto(c_n[k].T, new[1])
                ws.out = None
                cells.give_back(w, ws, N, dtype)
                x = h_n[k]  # (N, H_out): the next layer's input
        if plan.unbatched:
            h_n = h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
            output = h_n[-1:].copy()  # (1, H_out)
        elif plan.batch_first:
            output = h_n[-1][:, None].copy()  # (N, 1, H_out)
        else:
            output = h_n[-1:].copy()  # (1, N, H_out)
        return output, self._pack_state((h_n,) if c_n is None else (h_n, c_n))

    def _compiled_run(self, plan, input, states):
        """:meth:`_one_step`'s twin for a whole sequence on the compiled engine: each
        layer straight to :func:`nplstm._numba.run_direction`, which
        :meth:`_forward` would reach through conversions and checks this call's
        plan has already made (so the numbers are identical)."""
        N, L, dtype = plan.N, plan.L, self.dtype
        if plan.unbatched:
            x = input[:, None]  # (L, 1, H_in)
            if states is not None:
                states = [s[:, None] for s in states]  # (layers, 1, H)
        else:
            x = input.transpose(1, 0, 2) if plan.batch_first else input  # (L, N, H_in)
        h_n = np.empty(plan.finals[0], dtype)  # (num_layers, N, H_out)
        c_n = np.empty(plan.finals[1], dtype) if len(plan.shapes) == 2 else None
        family = self._run_family
        with cells.quiet():  # as loop.run_layers: overflow is no warning, whatever the size
            for k, w in enumerate(plan.weights):
                final = (h_n[k],) if c_n is None else (h_n[k], c_n[k])  # (N, H) each
                state = final if states is None else tuple(s[k] for s in states)
                if states is None:
                    for f in final:
                        f.fill(0)
                y = np.empty((L, N, h_n.shape[-1]), dtype)  # (L, N, H_out)
                x = _numba.run_direction(family, w, x, state, None, False, final, y)[0]
        if plan.unbatched:
            return x[:, 0], self._pack_state((h_n[:, 0],) if c_n is None else (
                h_n[:, 0], c_n[:, 0]))  # (L, H_out); (layers, H)
        return x.transpose(1, 0, 2) if plan.batch_first else x, self._pack_state(
            (h_n,) if c_n is None else (h_n, c_n))

    def _step_plan(self, shape, zero_state, weights):
        """What :meth:`_one_step` needs for inputs of this shape, or None when such
        a call is not one it can take (then it never will be): one step, or any
        number of steps for the compiled engine's families."""
        if self.bidirectional or len(shape) not in (2, 3) or shape[-1] != self.input_size:
            return None
        unbatched = len(shape) == 2
        if unbatched:
            L, N = shape[0], 1
        else:
            L, N = (shape[1], shape[0]) if self.batch_first else shape[:2]
        family = self._run_family
        compilable = family is cells.LSTM or family is cells.GRU or family is cells.RNN
        if L == 0 or N == 0 or (L > 1 and not compilable):
            return None
        plan = types.SimpleNamespace(N=N, L=L, unbatched=unbatched, batch_first=self.batch_first,
                                     compilable=compilable)
        plan.finals = [(self.num_layers, N, s[-1]) for s in self._state_shapes((N,))]
        plan.shapes = tuple(self._state_shapes(() if unbatched else (N,)))
        plan.weights = [layer[0] for layer in weights]  # one direction per layer
        plan.zeros = None
        if zero_state and L == 1:  # the NumPy engine's one-step calls
            zeros = np.zeros((self.hidden_size, N), self.dtype)  # read, never written
            zeros.flags.writeable = False
            plan.zeros = (zeros[:self.output_size], zeros)[:len(plan.shapes)]
        return plan

    def trace(self, input: npt.ArrayLike, hx: Any = None,
              lengths: npt.ArrayLike | None = None) -> Trace:
        """Run like ``__call__`` and keep every gate and state: a :class:`Trace`."""
        output, state, run = self._forward(input, hx, lengths, record=True)
        trace = Trace.from_forward(self, run, lengths, output, state)
        trace._weights = dict(self._params)
        return trace

    def backward(self, trace: Trace, grad_output: npt.ArrayLike,
                 grad_state: Any = None) -> Grads:
        """Backpropagation through time for the run ``trace`` recorded.

        ``grad_output`` is dL/d output, shaped like ``trace.output``; ``grad_state``
        dL/d the final state, shaped like it (``(dh_n, dc_n)`` for an LSTM, either
        may be None), or None. Returns :class:`nplstm.grad.Grads` with ``params``
        keyed like :meth:`state_dict`, ``input`` like x, ``hx`` like hx. The
        layer's parameters must be those the trace ran with. See :mod:`nplstm.grad`.
        """
        from . import grad

        return grad.layer_backward(self, trace, grad_output, grad_state)

    def _forward(self, input, hx, lengths, record, mask=None, masked_output="zero"):
        x = given = to_numpy(input, "input")
        if x.ndim not in (2, 3):
            raise InputError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                             f"{x.ndim}D input of shape {x.shape}")
        unbatched = x.ndim == 2
        if x.shape[-1] != self.input_size:
            raise InputError(f"input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {x.shape[-1]}")
        x = np.asarray(x, dtype=self.dtype)
        if unbatched:
            x = x[:, None, :]  # (L, 1, H_in)
        elif self.batch_first:
            x = x.transpose(1, 0, 2)  # (N, L, H_in) -> (L, N, H_in)
        if x.shape[0] == 0:
            raise InputError(f"input must have at least one time step, got shape "
                             f"{given.shape}")
        L, N = x.shape[:2]
        if masked_output not in ("zero", "hold"):
            raise ValueError(f"masked_output must be 'zero' or 'hold', got {masked_output!r}")
        if mask is not None and lengths is not None:
            raise ValueError("give lengths= or mask=, not both (lengths is a mask's "
                             "special case)")
        if mask is not None:
            mask = loop.step_mask(mask, L, N, unbatched, self.batch_first)
        else:
            mask = loop.length_mask(lengths, L, N, unbatched)
        state0 = self._initial_state(hx, N, unbatched)
        if N == 0:  # an empty batch, as PyTorch allows: empty output, states as given
            if record:
                raise InputError("trace needs at least one sequence, got an empty batch")
            D = self.num_directions
            output, state = np.zeros((L, 0, D * self.output_size), self.dtype), state0
        else:
            output, state, recs = loop.run_layers(self._run_family, self._weights(), x, state0,
                                                  mask, self._dropout_fn(), record,
                                                  masked_output == "hold")
        run = None
        if record:
            run = {"layers": recs, "state0": state0, "unbatched": unbatched,
                   "input": np.asarray(given, dtype=self.dtype)}
        if unbatched:
            output = output[:, 0]  # (L, D*H_out)
            state = tuple(s[:, 0] for s in state)
        elif self.batch_first:
            output = output.transpose(1, 0, 2)  # (N, L, D*H_out)
        return output, self._pack_state(state), run

    def to_onnx(self, path, *, initial_states=True):
        """Write this layer as an ONNX model; see :func:`nplstm.onnx.to_onnx`."""
        from .onnx import to_onnx

        to_onnx(self, path, initial_states=initial_states)

    def _dropout_fn(self):
        if not (self.training and self.dropout > 0 and self.num_layers > 1):
            return None
        p, rng = self.dropout, self._dropout_rng

        def dropout(y):
            if p == 1:
                return np.zeros_like(y), np.zeros(y.shape, dtype=bool)
            keep = rng.random(y.shape) >= p  # (L, N, D*H_out)
            return np.where(keep, y / (1 - p), 0).astype(y.dtype), keep

        return dropout

    def _initial_state(self, hx, N, unbatched):
        """The states as a tuple of ``(D*num_layers, N, H)`` arrays; zeros if None."""
        batch = () if unbatched else (N,)
        shapes = self._state_shapes(batch)
        if hx is None:
            return tuple(np.zeros(s, self.dtype) for s in self._state_shapes((N,)))
        parts = self._unpack_state(hx)
        out = []
        for name, part, shape in zip(self.family.states, parts, shapes):
            arr = to_numpy(part, f"hx ({name}_0)")
            if arr.ndim != len(shape):
                kind = "2-D (unbatched input)" if unbatched else "3-D (batched input)"
                raise InputError(f"{name}_0 must be {kind} with shape {shape}, got "
                                 f"{arr.ndim}-D shape {arr.shape}")
            if arr.shape != shape:
                raise InputError(f"Expected {name}_0 of shape {shape}, got {arr.shape}")
            arr = np.asarray(arr, dtype=self.dtype)
            out.append(arr[:, None] if unbatched else arr)
        return tuple(out)

    def _unpack_state(self, hx):
        return (unpack_single(hx, type(self).__name__, "h_0"),)

    def _pack_state(self, state):
        return state[0]

    def flatten_parameters(self) -> None:
        """Nothing to do (PyTorch packs cuDNN weights here); ported code may call it."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0,
                    "bidirectional": False, "proj_size": 0, "nonlinearity": "tanh"}
        for name, default in defaults.items():
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        s += repr_options(self._options, self.nonlinearity)
        if self.dtype != np.float32:
            s += f", dtype={self.dtype.name}"
        return s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class LSTM(LSTMOptionsMixin, _RNNBase[LSTMState]):
    r"""Multi-layer LSTM, identical in behaviour to ``torch.nn.LSTM``.

    For each element of the input sequence each layer computes::

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t−1} + b_hi)
        f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)
        o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)
        c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
        h_t = o_t ⊙ tanh(c_t)            (h_t = W_hr h_t with proj_size > 0)

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout,
        bidirectional, proj_size: exactly as in PyTorch.
        peepholes, clip, input_forget, activations, activation_alpha,
        activation_beta: keyword-only options of the ONNX LSTM operator (opset 14),
            PyTorch's math when left at their defaults; see :mod:`nplstm.options`
            and :mod:`nplstm.general`. ``peepholes`` adds ``weight_ph_l{k}``
            ``(3*H_cell,)`` stacked ``(p_i|p_f|p_o)``; ``clip`` bounds every gate's
            pre-activation; ``input_forget`` sets f = 1 − i; ``activations`` names
            the functions of roles (f, g, h) (ONNX names), alpha/beta aligned.
        dtype: numpy.float32 (default) or numpy.float64, keyword-only.
        seed: int, ``numpy.random.Generator`` or None, keyword-only; drives the
            U(−1/√hidden_size, 1/√hidden_size) initialisation and dropout masks.

    A new layer is in training mode, as a new ``torch.nn.Module`` is: with
    ``dropout > 0`` and ``num_layers > 1`` dropout acts between layers until
    ``.eval()``. ``forward``, ``to``, ``float``, ``double``, ``cpu``,
    ``flatten_parameters``, ``modules`` and ``children`` work as in PyTorch.

    Inputs: ``input, (h_0, c_0)`` and keyword ``lengths``:
        input: ``(L, N, H_in)``, ``(N, L, H_in)`` if batch_first, or ``(L, H_in)``.
        h_0: ``(D*num_layers, N, H_out)`` (or ``(D*num_layers, H_out)`` unbatched);
        c_0: ``(D*num_layers, N, H_cell)``; both zero when omitted.
        lengths: ``(N,)`` ints in ``1..L`` (any order): the padded batch is run as
            PyTorch runs ``pack_padded_sequence(x, lengths, enforce_sorted=False)``.
        mask, masked_output: Keras's masking, any pattern (see ``__call__``): bool
            ``(L, N)`` (``(N, L)`` if batch_first, ``(L,)`` unbatched); masked steps
            output zeros (``"zero"``) or the last output (``"hold"``).

    Outputs: ``output, (h_n, c_n)``:
        output: ``(L, N, D*H_out)`` (batch_first: ``(N, L, D*H_out)``), zero past
        each sequence's length; h_n, c_n shaped like h_0, c_0.

    Raises: :class:`nplstm.InputError` (a ``ValueError`` and a ``RuntimeError``,
    as PyTorch raises either) for input or state of the wrong shape, size or
    lengths; ``TypeError`` for a state that is not the tuple ``(h_0, c_0)``.

    Attributes: ``weight_ih_l{k}`` ``(4*H_cell, in)`` stacked ``(W_ii|W_if|W_ig|W_io)``,
    ``weight_hh_l{k}`` ``(4*H_cell, H_out)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``
    ``(4*H_cell,)``, ``weight_hr_l{k}`` ``(proj_size, H_cell)``; ``_reverse`` suffix
    for the backward direction.
    """

    family = cells.LSTM

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, *, peepholes: bool = False,
                 clip: float | None = None, input_forget: bool = False,
                 activations: Sequence[str] | None = None,
                 activation_alpha: Sequence[float | None] | None = None,
                 activation_beta: Sequence[float | None] | None = None,
                 dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype=dtype, seed=seed,
                         peepholes=peepholes, clip=clip, input_forget=input_forget,
                         activations=activations, activation_alpha=activation_alpha,
                         activation_beta=activation_beta)

    def _unpack_state(self, hx):
        if not isinstance(hx, (tuple, list)):
            raise TypeError("hx must be a tuple (h_0, c_0) of two arrays for LSTM, got "
                            f"{type(hx).__name__}")
        if len(hx) != 2:
            raise TypeError("hx must be a tuple (h_0, c_0) of two arrays for LSTM, got a "
                            f"{type(hx).__name__} of {len(hx)}")
        return hx

    def _pack_state(self, state):
        return state[0], state[1]


class GRU(GRUOptionsMixin, _RNNBase[np.ndarray]):
    r"""Multi-layer GRU, identical in behaviour to ``torch.nn.GRU``::

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

    Args, inputs and shapes as :class:`LSTM` without ``c``:
    ``output, h_n = gru(input, h_0, lengths=None)``, h_0 one array (a tuple is a
    ``TypeError``); ``proj_size`` other than 0 is PyTorch's ``ValueError``. Weights are stacked
    ``(W_ir|W_iz|W_in)``, ``(3*hidden_size, in)``.

    Keyword-only options (ONNX GRU): ``linear_before_reset=False`` computes
    ``n_t = g(W_in x_t + b_in + W_hn (r_t ⊙ h_{t−1}) + b_hn)`` (ONNX's default,
    Keras ``reset_after=False``); ``clip``, ``activations`` (roles f, g) with
    ``activation_alpha``/``activation_beta`` as :class:`LSTM`.
    """

    family = cells.GRU

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, *, proj_size: int = 0,
                 linear_before_reset: bool = True, clip: float | None = None,
                 activations: Sequence[str] | None = None,
                 activation_alpha: Sequence[float | None] | None = None,
                 activation_beta: Sequence[float | None] | None = None,
                 dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        no_projection(proj_size)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype, seed=seed,
                         linear_before_reset=linear_before_reset, clip=clip,
                         activations=activations, activation_alpha=activation_alpha,
                         activation_beta=activation_beta)


class RNN(OptionsMixin, _RNNBase[np.ndarray]):
    r"""Multi-layer Elman RNN, identical in behaviour to ``torch.nn.RNN``::

        h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)     (or relu)

    Args as :class:`GRU` plus ``nonlinearity='tanh'|'relu'`` (PyTorch's order:
    ``input_size, hidden_size, num_layers, nonlinearity, bias, ...``).
    Keyword-only options (ONNX RNN): ``clip``; ``activations`` (role f) with
    alpha/beta as :class:`LSTM`. ``activations=("Relu",)`` is ``nonlinearity="relu"``;
    both given and disagreeing is a ValueError.
    """

    family = cells.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, *, proj_size: int = 0,
                 clip: float | None = None, activations: Sequence[str] | None = None,
                 activation_alpha: Sequence[float | None] | None = None,
                 activation_beta: Sequence[float | None] | None = None,
                 dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        no_projection(proj_size)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, nonlinearity=nonlinearity, dtype=dtype, seed=seed,
                         clip=clip, activations=activations,
                         activation_alpha=activation_alpha, activation_beta=activation_beta)


def no_projection(proj_size: int) -> None:
    """GRU and RNN take ``proj_size=0`` only, with PyTorch's ValueError otherwise."""
    if proj_size != 0:
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU "
                         f"(got proj_size={proj_size!r})")


def unpack_single(hx: Any, name: str, state: str) -> Any:
    """A GRU's or RNN's state is one array: a tuple or list of arrays is refused
    (PyTorch refuses it too; stacking it would misread it as layers)."""
    if isinstance(hx, tuple) or (isinstance(hx, list) and any(
            hasattr(part, "shape") for part in hx)):
        raise TypeError(f"hx must be one array ({state}) for {name}, got a "
                        f"{type(hx).__name__} of {len(hx)}; only an LSTM's state is a "
                        "tuple (h_0, c_0)")
    return hx
