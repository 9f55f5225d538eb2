"""ONNX recurrent-operator facts, as data, shared by the importer and the exporter.

Sources: ONNX operator spec, ``LSTM``/``GRU``/``RNN`` (opset 14): gate orders,
input names and attributes. onnxruntime's ``rnn_helpers.cc``
(``NameToArgUsageMap``, ``NameToArgDefaultsMap``): which activation functions
consume an entry of ``activation_alpha``/``activation_beta`` (in the order the
functions are listed), and the value it uses when the list has run out.
"""

from __future__ import annotations

import numpy as np

#: PyTorch gate block k is ONNX gate block ``IMPORT_ORDER[family][k]``.
#: LSTM: ONNX i, o, f, c -> PyTorch i, f, g, o; GRU: ONNX z, r, h -> PyTorch r, z, n.
IMPORT_ORDER = {"lstm": (0, 2, 3, 1), "gru": (1, 0, 2), "rnn": (0,)}
#: ONNX gate block j is PyTorch gate block ``EXPORT_ORDER[family][j]``.
EXPORT_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}
#: Peepholes: ONNX ``P`` is (i, o, f); nplstm's ``weight_ph`` is (i, f, o). Self-inverse.
PEEPHOLE_ORDER = (0, 2, 1)

#: Inputs of each operator, in the spec's order.
INPUTS = {
    "LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
    "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
    "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
}
#: Attributes of each operator (opset 14).
_COMMON = {"activation_alpha", "activation_beta", "activations", "clip", "direction",
           "hidden_size", "layout"}
ATTRIBUTES = {"LSTM": _COMMON | {"input_forget"}, "GRU": _COMMON | {"linear_before_reset"},
              "RNN": set(_COMMON)}
#: Each attribute's type in the spec (names of ``onnx.AttributeProto.AttributeType``).
ATTRIBUTE_TYPES = {"activation_alpha": "FLOATS", "activation_beta": "FLOATS",
                   "activations": "STRINGS", "clip": "FLOAT", "direction": "STRING",
                   "hidden_size": "INT", "layout": "INT", "input_forget": "INT",
                   "linear_before_reset": "INT"}
#: Integer attributes that are flags: the spec allows 0 or 1 only.
FLAGS = ("layout", "input_forget", "linear_before_reset")
FAMILY = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}
DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}

#: Functions that consume an alpha (beta) entry, and onnxruntime's value when none is left.
TAKES_ALPHA = {"HardSigmoid": 0.2, "Affine": 0.0, "LeakyRelu": 0.01,
               "ThresholdedRelu": 0.0, "ScaledTanh": 0.0, "Elu": 1.0}
TAKES_BETA = {"HardSigmoid": 0.5, "Affine": 0.0, "ScaledTanh": 0.0}

ONNX_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 11}  # TensorProto FLOAT, DOUBLE


def aligned(functions, alpha, beta, where):
    """ONNX's in-order ``activation_alpha``/``activation_beta`` -> lists aligned with
    ``functions`` (an entry per function: its value, or None if it takes none).

    Each function that takes an alpha (beta) consumes the next entry; when the
    list has run out it gets onnxruntime's value (as float32, like the entries).
    Entries left over are an error: no function would read them.
    """
    out = []
    for values, takes, attr in ((alpha, TAKES_ALPHA, "activation_alpha"),
                                (beta, TAKES_BETA, "activation_beta")):
        values = list(values)
        used = [_float32(values.pop(0) if values else takes[f]) if f in takes else None
                for f in functions]
        if values:
            raise ValueError(f"{where}: attribute {attr} has {len(values)} value(s) more "
                             f"than the activations {list(functions)} consume")
        out.append(used)
    return out


def _float32(value):
    """An attribute's value as ONNX holds it (FLOAT is float32), as a Python float."""
    return float(np.float32(value))


def in_order(functions, values, takes):
    """Aligned values -> ONNX's in-order list: one entry per function that takes one."""
    return [float(takes[f] if v is None else v) for f, v in zip(functions, values)
            if f in takes]
