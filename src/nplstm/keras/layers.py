"""Keras's layer semantics around nplstm's layers: what a Keras model file maps onto.

Each class here is plumbing (layouts, which output is returned, masks passed
on); the math is nplstm's: recurrent layers are :class:`nplstm.LSTM` / ``GRU`` /
``RNN`` with ``batch_first=True``, Dense is :class:`nplstm.Linear` plus an
activation. Every class has ``forward_masked(x, mask) -> (y, mask)`` for
:class:`nplstm.Sequential`, following Keras 3's ``compute_mask``: Masking makes
the mask, a recurrent layer consumes it (and passes it on only with
``return_sequences``), Flatten and Reshape drop it, the others pass it on.
Shapes are Keras's: ``(N, L, features)`` (batch first).
"""

from __future__ import annotations

import numpy as np

from ..module import to_numpy
from .activations import ACTIVATIONS


class _Wrapper:
    """Delegates parameters to ``self.inner`` (an nplstm module)."""

    inner = None

    def state_dict(self, *, prefix=""):
        return self.inner.state_dict(prefix=prefix)

    def load_state_dict(self, state_dict, strict=True, *, prefix=""):
        return self.inner.load_state_dict(state_dict, strict, prefix=prefix)

    def __call__(self, input):
        return self.forward_masked(input, None)[0]


class Recurrent(_Wrapper):
    """A Keras ``LSTM``/``GRU``/``SimpleRNN`` or ``Bidirectional`` of one.

    Args:
        layer: an nplstm LSTM, GRU or RNN with ``batch_first=True`` and one layer;
            ``bidirectional=True`` for Keras's ``Bidirectional``.
        return_sequences, return_state, go_backwards, stateful: Keras's options.
        merge_mode: Bidirectional only: ``"concat"``, ``"sum"``, ``"mul"``, ``"ave"``
            or None (a list ``[forward, backward]``).
        zero_output_for_mask: Keras's RNN option: masked steps output zeros instead
            of the last output. Bidirectional sets it to ``return_sequences``
            (``keras.src.layers.rnn.bidirectional``), and so does this class.

    ``forward_masked(x (N, L, F), mask (N, L) or None)`` returns what Keras's
    layer returns: the output ``(N, L, D*H)`` or ``(N, D*H)`` (merged), then the
    states with ``return_state`` (forward's, then backward's; h then c), and the
    output mask. ``stateful``: the final states start the next call until
    :meth:`reset_states`. :meth:`select` keeps only some of those outputs (a
    functional graph that uses, say, only ``state_h``).
    """

    def __init__(self, layer, *, return_sequences=False, return_state=False,
                 go_backwards=False, stateful=False, merge_mode="concat",
                 zero_output_for_mask=False):
        if not layer.batch_first or layer.num_layers != 1:
            raise ValueError("Recurrent: layer must have batch_first=True and num_layers=1, "
                             f"got {layer!r}")
        if merge_mode not in ("concat", "sum", "mul", "ave", None):
            raise ValueError(f"merge_mode must be 'concat', 'sum', 'mul', 'ave' or None, got "
                             f"{merge_mode!r}")
        self.inner = layer
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.merge_mode = merge_mode
        bidirectional = layer.bidirectional
        self.zero_output_for_mask = (self.return_sequences if bidirectional
                                     else bool(zero_output_for_mask))
        self.states = None
        self.outputs = None

    @property
    def num_outputs(self):
        """How many arrays Keras's layer returns: 1, or a list of this many."""
        n = 2 if self.inner.bidirectional and self.merge_mode is None else 1
        if self.return_state:
            n += self.inner.num_directions * len(self.inner.family.states)
        return n

    def select(self, outputs):
        """Return only Keras's outputs ``outputs`` (indices; None: all), as a model
        whose graph uses only some of them does.

        Raises:
            NotImplementedError: an index the layer does not have.
        """
        if outputs is not None:
            bad = [i for i in outputs if not 0 <= i < self.num_outputs]
            if bad:
                raise NotImplementedError(f"output {bad[0]} of a layer with "
                                          f"{self.num_outputs} outputs")
            outputs = list(outputs)
        self.outputs = outputs

    def reset_states(self):
        """Stateful layers: start the next call from zeros again."""
        self.states = None

    def _run(self, x, mask, trace=False):
        x = to_numpy(x, "input")
        if x.ndim != 3:
            raise ValueError(f"a Keras recurrent layer takes input (N, L, features), got "
                             f"shape {x.shape}")
        if self.go_backwards:  # Keras reverses the time axis and keeps the result so
            x = x[:, ::-1]  # (N, L, F)
            mask = None if mask is None else mask[:, ::-1]
        hx = self.states if self.stateful else None
        if hx is not None and hx[0].shape[1] != x.shape[0]:
            raise ValueError(f"a stateful layer keeps its batch size: its states are for "
                             f"{hx[0].shape[1]} sequences, got input of {x.shape[0]}; call "
                             f"reset_states() to start over")
        if self.inner.family.name != "lstm" and hx is not None:
            hx = hx[0]
        mode = "zero" if self.zero_output_for_mask else "hold"
        record = self.inner.trace(x, hx, lengths=_lengths(mask)) if trace else None
        y, state = self.inner(x, hx, mask=mask, masked_output=mode)  # Keras's outputs
        state = state if isinstance(state, tuple) else (state,)
        if self.stateful:
            self.states = tuple(s.copy() for s in state)
        return y, state, record

    def _outputs(self, y, state, mask):
        H = self.inner.hidden_size
        parts = [y[..., :H], y[..., H:]] if self.inner.bidirectional else [y]  # (N, L, H)
        if not self.return_sequences:  # Keras's last_output: the last step processed
            parts = [parts[0][:, -1]] + [p[:, 0] for p in parts[1:]]  # (N, H)
        if len(parts) == 1 or self.merge_mode == "concat":
            out = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        elif self.merge_mode == "sum":
            out = parts[0] + parts[1]
        elif self.merge_mode == "mul":
            out = parts[0] * parts[1]
        elif self.merge_mode == "ave":
            out = (parts[0] + parts[1]) / 2
        else:  # None: a list, as Keras returns
            out = parts
        if self.return_state:
            D = len(parts)
            states = [s[d] for d in range(D) for s in state]  # per direction: h (, c)
            out = (out if isinstance(out, list) else [out]) + states
        if self.outputs is not None and isinstance(out, list):
            out = [out[i] for i in self.outputs]
            out = out[0] if len(out) == 1 else out
        return out, (mask if self.return_sequences else None)

    def forward_masked(self, x, mask):
        y, state, _ = self._run(x, mask)
        return self._outputs(y, state, mask)

    def trace_masked(self, x, mask):
        y, state, record = self._run(x, mask, trace=True)
        out, mask = self._outputs(y, state, mask)
        return record, out, mask

    def __repr__(self):
        options = [f"{name}=True" for name in ("return_sequences", "return_state",
                                               "go_backwards", "stateful")
                   if getattr(self, name)]
        if self.inner.bidirectional and self.merge_mode != "concat":
            options.append(f"merge_mode={self.merge_mode!r}")
        if self.zero_output_for_mask and not self.inner.bidirectional:
            options.append("zero_output_for_mask=True")
        if self.outputs is not None and len(self.outputs) < self.num_outputs:
            options.append(f"outputs={self.outputs}")
        return f"Recurrent({', '.join([repr(self.inner)] + options)})"


def _lengths(mask):
    """``(N,)`` lengths of a mask that only pads the end of each sequence (what a
    :class:`nplstm.Trace` records), None without a mask.

    Raises:
        NotImplementedError: steps masked elsewhere, or a sequence with none left.
    """
    if mask is None:
        return None
    lengths = mask.sum(axis=1)  # (N,)
    suffix = np.arange(mask.shape[1])[None, :] < lengths[:, None]  # (N, L)
    if np.any(mask != suffix) or np.any(lengths == 0):
        raise NotImplementedError("trace of a masked Keras model needs padding at the end "
                                  "of each sequence only (a Trace records lengths=); this "
                                  "mask skips other steps")
    return lengths


class Dense(_Wrapper):
    """Keras ``Dense`` (and ``TimeDistributed(Dense)``): ``activation(x @ kernel + bias)``.

    ``linear``: an :class:`nplstm.Linear` holding ``weight = kernel.T``; applied to
    the last axis of any input, as Keras's ``Dense`` is. ``activation``: a name
    from :mod:`nplstm.keras.activations`.
    """

    def __init__(self, linear, activation="linear", *, keras_version=3, name="Dense"):
        self.inner = linear
        self.activation = activation
        self._fn = ACTIVATIONS.get(activation, keras_version)
        self.name = name

    def forward_masked(self, x, mask):
        return self._fn(self.inner(x)), mask

    def __repr__(self):
        act = "" if self.activation == "linear" else f", activation={self.activation!r}"
        return f"{self.name}({self.inner!r}{act})"


class Activation:
    """Keras ``Activation``: an elementwise function (softmax: over the last axis)."""

    def __init__(self, activation, *, keras_version=3):
        self.activation = activation
        self._fn = ACTIVATIONS.get(activation, keras_version)

    def forward_masked(self, x, mask):
        return self._fn(np.asarray(x)), mask

    def __call__(self, input):
        return self.forward_masked(input, None)[0]

    def __repr__(self):
        return f"Activation({self.activation!r})"


class Identity:
    """A layer that does nothing at inference: Dropout, SpatialDropout1D, GaussianNoise."""

    def __init__(self, keras_class):
        self.keras_class = keras_class

    def forward_masked(self, x, mask):
        return x, mask

    def __call__(self, input):
        return input

    def __repr__(self):
        return f"Identity({self.keras_class})"


class Masking:
    """Keras ``Masking``: a step is masked where every feature equals ``mask_value``.

    ``mask = any(x != mask_value, axis=-1)`` ``(N, L)``; the output is ``x`` with
    masked steps zeroed (``keras.layers.Masking.call``).
    """

    def __init__(self, mask_value=0.0):
        self.mask_value = float(mask_value)

    def forward_masked(self, x, mask):
        x = to_numpy(x, "input")
        if x.ndim != 3:
            raise ValueError(f"Masking expects input (N, L, features), got shape {x.shape}")
        keep = np.any(x != self.mask_value, axis=-1)  # (N, L)
        return x * keep[..., None].astype(x.dtype), keep

    def __call__(self, input):
        return self.forward_masked(input, None)[0]

    def __repr__(self):
        return f"Masking(mask_value={self.mask_value!r})"


class Reshape:
    """Keras ``Flatten`` (``target_shape=(-1,)``) and ``Reshape``: the batch axis kept.

    They do not support masking: Keras drops the mask there (``Layer.__call__``).
    """

    def __init__(self, target_shape, name="Reshape"):
        self.target_shape = tuple(int(s) for s in target_shape)
        self.name = name

    def forward_masked(self, x, mask):
        x = np.asarray(x)
        try:
            return x.reshape((x.shape[0],) + self.target_shape), None  # (N, *target)
        except ValueError:
            raise ValueError(f"{self.name}: cannot reshape input of shape {x.shape} to "
                             f"(N, *{self.target_shape})") from None

    def __call__(self, input):
        return self.forward_masked(input, None)[0]

    def __repr__(self):
        return "Flatten()" if self.name == "Flatten" else f"Reshape({self.target_shape})"
