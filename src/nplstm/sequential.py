"""``Sequential``: layers run one after another, like ``torch.nn.Sequential``.

What :func:`nplstm.from_keras` returns, and usable by hand::

    model = nplstm.Sequential(nplstm.LSTM(3, 5, batch_first=True), nplstm.Linear(5, 2))
    y = model(x)                       # (N, L, 3) -> (N, L, 2)
    model.state_dict()                 # {"0.weight_ih_l0": ..., "1.weight": ...}

A layer that returns ``output, state`` (nplstm's LSTM/GRU/RNN) hands its
``output`` on. Layers with a ``forward_masked(x, mask) -> (y, mask)`` method
(the Keras layers of :mod:`nplstm.keras`) also receive and pass on a Keras
mask ``(N, L)`` bool; the mask rules are Keras's (``Layer.compute_mask``).
"""

from __future__ import annotations

from .module import IncompatibleKeys


class Sequential:
    """An ordered container of callables; ``model(x)`` runs them in order.

    Args:
        *layers: callables (nplstm layers, :mod:`nplstm.keras` layers, functions),
            or one list of them.

    ``len(model)``, ``model[i]`` (a layer), ``model[i:j]`` (a Sequential),
    iteration, ``state_dict()`` with keys ``"{index}.{key}"`` as in
    ``torch.nn.Sequential``, ``load_state_dict``, ``trace`` and, for stateful
    Keras layers, ``reset_states()``.

    Raises:
        TypeError: a layer that is not callable.
    """

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not callable(layer):
                raise TypeError(f"Sequential: layer {i} must be callable, got "
                                f"{type(layer).__name__}")
        self._layers = list(layers)

    # ------------------------------------------------------------ container --

    def __len__(self):
        return len(self._layers)

    def __iter__(self):
        return iter(self._layers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(self._layers[index])
        if isinstance(index, bool) or not hasattr(index, "__index__"):
            raise TypeError(f"Sequential indices must be integers or slices, got "
                            f"{type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a Sequential of "
                             f"{len(self)} layers")
        return self._layers[index]

    def __repr__(self):
        lines = [f"  ({i}): " + repr(layer).replace("\n", "\n  ")
                 for i, layer in enumerate(self._layers)]
        return "Sequential(" + ("\n" + "\n".join(lines) + "\n" if lines else "") + ")"

    # -------------------------------------------------------------- forward --

    def __call__(self, input):
        """Run every layer in turn; returns the last layer's output."""
        x, mask = input, None
        for layer in self._layers:
            x, mask = _apply(layer, x, mask)
        return x

    def trace(self, input):
        """Run like ``model(input)``, tracing each recurrent layer.

        Returns ``{index: Trace}`` for every layer that has a ``trace`` method
        (the :class:`nplstm.Trace` of its run on the input it received).
        """
        x, mask, traces = input, None, {}
        for i, layer in enumerate(self._layers):
            if hasattr(layer, "trace_masked"):
                traces[i], x, mask = layer.trace_masked(x, mask)
            elif hasattr(layer, "trace"):
                traces[i] = layer.trace(x)
                x = traces[i].output
            else:
                x, mask = _apply(layer, x, mask)
        return traces

    def train(self, mode=True):
        """Training mode for every layer that has one (dropout between an nplstm
        layer's layers). Returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be a bool, got {type(mode).__name__}")
        for layer in self._layers:
            inner = getattr(layer, "inner", layer)
            if hasattr(inner, "train"):
                inner.train(mode)
        return self

    def eval(self):
        """Evaluation mode for every layer (:func:`nplstm.from_keras` returns a model in
        it; layers built by hand start in training mode, as torch's do). Returns self."""
        return self.train(False)

    def named_parameters(self):
        """``("{index}.{key}", array)`` pairs in order, like ``state_dict`` (read-only arrays)."""
        out = []
        for i, layer in self._with_params():
            inner = getattr(layer, "inner", layer)
            out += [(f"{i}.{k}", v) for k, v in inner.named_parameters()]
        return out

    def reset_states(self):
        """Forget the states that stateful layers carry from call to call."""
        for layer in self._layers:
            if hasattr(layer, "reset_states"):
                layer.reset_states()

    # ---------------------------------------------------------- state dicts --

    def _with_params(self):
        return [(i, layer) for i, layer in enumerate(self._layers)
                if hasattr(layer, "state_dict")]

    def state_dict(self, *, prefix=""):
        """Every layer's parameters under ``"{prefix}{index}."`` (fresh copies)."""
        out = {}
        for i, layer in self._with_params():
            out.update(layer.state_dict(prefix=f"{prefix}{i}."))
        return out

    def load_state_dict(self, state_dict, strict=True, *, prefix=""):
        """Load keys ``"{prefix}{index}.{key}"`` into the layers; all or nothing.

        Returns ``IncompatibleKeys(missing_keys, unexpected_keys)``; with ``strict``
        either being non-empty is a ValueError (a wrong shape always is).
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        owned = [f"{prefix}{i}." for i, _ in self._with_params()]
        unexpected = [k for k in state_dict if not isinstance(k, str) or (
            k.startswith(prefix) and not any(k.startswith(p) for p in owned))]
        if strict and unexpected:
            raise ValueError("Error(s) in loading state_dict for Sequential:\n  unexpected "
                             "keys: " + ", ".join(map(str, unexpected)))
        backup = [(layer, layer.state_dict()) for _, layer in self._with_params()]
        missing = []
        try:
            for i, layer in self._with_params():
                result = layer.load_state_dict(state_dict, strict, prefix=f"{prefix}{i}.")
                missing += result.missing_keys
        except (ValueError, TypeError):
            for layer, saved in backup:  # all or nothing: put back what was loaded
                layer.load_state_dict(saved)
            raise
        return IncompatibleKeys(missing, unexpected)


def _apply(layer, x, mask):
    """One layer: ``(x, mask) -> (y, mask)``; a recurrent layer's state is dropped."""
    if hasattr(layer, "forward_masked"):
        return layer.forward_masked(x, mask)
    y = layer(x)
    if isinstance(y, tuple) and len(y) == 2:  # nplstm LSTM/GRU/RNN: (output, state)
        y = y[0]
    return y, mask
