"""Keras's activation functions by name, in NumPy (``keras.activations``, Keras 3 docs).

Only for Dense and Activation layers: a recurrent layer's activations are
nplstm layer options (:data:`RECURRENT`), never computed here.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow: ``exp(-|x|)`` only."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(x):
    """``exp(x) / sum(exp(x))`` over the last axis (Keras's default axis=-1)."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805  # Klambauer et al. 2017


_FUNCTIONS = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),  # Keras 3 negative_slope=0.2
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "softplus": lambda x: np.logaddexp(0, x),  # log(1 + exp(x))
    "softsign": lambda x: x / (1 + np.abs(x)),
    "elu": _elu,
    "selu": lambda x: _SELU_SCALE * _elu(x, _SELU_ALPHA),
    "exponential": np.exp,
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
}


def hard_sigmoid_slope(keras_version):
    """Keras 2's ``hard_sigmoid`` is ``clip(0.2 x + 0.5, 0, 1)``; Keras 3's is
    ``relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)`` (keras.activations.hard_sigmoid)."""
    return 0.2 if keras_version < 3 else 1.0 / 6.0


class _Table:
    def get(self, name, keras_version):
        """The NumPy function for Keras activation ``name``.

        Raises:
            NotImplementedError: a name not in the table (or not a string).
        """
        if name == "hard_sigmoid":
            a = hard_sigmoid_slope(keras_version)
            return lambda x: np.clip(a * x + 0.5, 0, 1)
        if name == "hard_silu" or name == "hard_swish":
            return lambda x: x * np.clip(x / 6 + 0.5, 0, 1)
        if not isinstance(name, str) or name not in _FUNCTIONS:
            raise NotImplementedError(
                f"activation {name!r} is not supported; supported: "
                + ", ".join(sorted(_FUNCTIONS) + ["hard_sigmoid", "hard_silu"]))
        return _FUNCTIONS[name]


ACTIVATIONS = _Table()

#: Keras activation name -> (ONNX name, alpha, beta) for a recurrent layer's
#: ``activations=`` option (CONTRACT: ONNX's names; alpha/beta None = its default).
RECURRENT = {
    "sigmoid": ("Sigmoid", None, None),
    "tanh": ("Tanh", None, None),
    "relu": ("Relu", None, None),
    "linear": ("Affine", 1.0, 0.0),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None),
}
