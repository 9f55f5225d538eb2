"""One ONNX ``LSTM``/``GRU``/``RNN`` node -> one nplstm layer (mapping only, no math).

The node's weights ``W [D, G*H, H_in]``, ``R [D, G*H, H]``, ``B [D, 2*G*H]``
(``[Wb, Rb]``) and LSTM peepholes ``P [D, 3*H]`` (ONNX operator spec) become
PyTorch's ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``
(and ``weight_ph_l0``), gate blocks reordered (:mod:`._spec`), ``_reverse``
for the second direction. Attributes become the layer's options: ``layout=1``
is ``batch_first=True``, ``clip``, ``input_forget``, ``activations`` with
``activation_alpha``/``activation_beta`` (converted to aligned lists),
``linear_before_reset``; a ``reverse`` node is wrapped in :class:`._run.Reversed`.
"""

from __future__ import annotations

import numpy as np

from ..options import DEFAULT_ACTIVATIONS, canonical_activations
from . import _spec
from ._graph import fold


def layer_from_node(name, node, scope, opsets, dtype):
    """Build and load the layer for ``node`` (named ``name`` in errors)."""
    from .. import layers
    from ._run import Reversed

    op = node.op_type
    where = f"ONNX {op} node {name!r}"
    attrs = _attributes(node, where)
    inputs = dict(zip(_spec.INPUTS[op], node.input))
    missing = [k for k in ("X", "W", "R") if not inputs.get(k)]
    if missing:
        raise ValueError(f"{where}: required input {missing[0]} is missing")
    wanted = [inputs[k] for k in ("W", "R", "B", "P") if inputs.get(k)]
    values = fold(wanted, scope, opsets, name)
    arrays = {k: values[inputs[k]] for k in ("W", "R", "B", "P") if inputs.get(k)}
    direction = attrs.get("direction", "forward")
    if direction not in _spec.DIRECTIONS:
        raise ValueError(f"{where}: attribute direction must be forward, reverse or "
                         f"bidirectional, got {direction!r}")
    D = _spec.DIRECTIONS[direction]
    H = _check_shapes(arrays, attrs, op, D, where)
    dtype = _dtype(arrays, dtype, where)
    options = _options(op, attrs, D, "P" in arrays, where)
    cls = getattr(layers, op)
    try:
        layer = cls(arrays["W"].shape[2], H, bias="B" in arrays, bidirectional=D == 2,
                    batch_first=attrs.get("layout", 0) == 1, dtype=dtype, **options)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    layer.load_state_dict(state_dict(arrays, _spec.FAMILY[op], H, D))
    return Reversed(layer) if direction == "reverse" else layer


def _attributes(node, where):
    from onnx import AttributeProto, helper

    attrs = {}
    for a in node.attribute:
        if a.name not in _spec.ATTRIBUTES[node.op_type]:
            raise NotImplementedError(f"{where}: attribute {a.name!r} is not an ONNX "
                                      f"{node.op_type} attribute nplstm knows")
        wanted = _spec.ATTRIBUTE_TYPES[a.name]
        if a.type != getattr(AttributeProto, wanted):
            raise ValueError(f"{where}: attribute {a.name!r} must be of type {wanted} "
                             f"(ONNX spec), got {AttributeProto.AttributeType.Name(a.type)}")
        value = helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list):
            value = [v.decode() if isinstance(v, bytes) else v for v in value]
        attrs[a.name] = value
    for flag in _spec.FLAGS:
        if attrs.get(flag, 0) not in (0, 1):
            raise ValueError(f"{where}: attribute {flag} must be 0 or 1, got {attrs[flag]}")
    return attrs


def _check_shapes(arrays, attrs, op, D, where):
    """The hidden size, after checking every weight's shape against the spec's."""
    G = len(_spec.IMPORT_ORDER[_spec.FAMILY[op]])
    R = arrays["R"]
    if R.ndim != 3:
        raise ValueError(f"{where}: input R must be 3-D [num_directions, {G}*hidden_size, "
                         f"hidden_size], got shape {R.shape}")
    H = int(attrs.get("hidden_size", R.shape[2]))
    if "hidden_size" in attrs and H != R.shape[2]:
        raise ValueError(f"{where}: attribute hidden_size={H} does not match input R of "
                         f"shape {R.shape} (its last axis is hidden_size)")
    W = arrays["W"]
    expected = {"W": (D, G * H, W.shape[-1] if W.ndim == 3 else "input_size"),
                "R": (D, G * H, H), "B": (D, 2 * G * H), "P": (D, 3 * H)}
    for key, arr in arrays.items():
        if arr.shape != expected[key]:
            raise ValueError(f"{where}: input {key} must have shape {expected[key]} "
                             f"(num_directions={D}, hidden_size={H}), got {arr.shape}")
    return H


def _dtype(arrays, dtype, where):
    if dtype is not None:
        return dtype
    W = arrays["W"]
    for key, arr in arrays.items():  # the spec's one type T for X, W, R, B, P
        if arr.dtype != W.dtype:
            raise ValueError(f"{where}: input {key} has dtype {arr.dtype} but W has "
                             f"{W.dtype}; ONNX requires one type (or pass dtype= to "
                             f"from_onnx to convert)")
    if W.dtype in (np.float32, np.float64):
        return W.dtype
    raise ValueError(f"{where}: weights of dtype {W.dtype}; nplstm computes in float32 or "
                     f"float64: pass dtype=numpy.float32 (or float64) to from_onnx")


def _options(op, attrs, D, peepholes, where):
    """The layer's keyword options for the node's attributes (defaults left out)."""
    options = {}
    if attrs.get("clip") is not None:
        options["clip"] = float(attrs["clip"])
    if attrs.get("input_forget", 0):
        options["input_forget"] = True
    if op == "GRU" and attrs.get("linear_before_reset", 0) == 0:
        options["linear_before_reset"] = False
    if peepholes:
        options["peepholes"] = True
    family = _spec.FAMILY[op]
    default = DEFAULT_ACTIVATIONS[family]
    names = attrs.get("activations")
    names = list(default * D) if names is None else list(
        canonical_activations(family, names, D, f"{where}: attribute activations"))
    alpha, beta = _spec.aligned(names, attrs.get("activation_alpha", []),
                                attrs.get("activation_beta", []), where)
    plain = all(v is None for v in alpha + beta)
    if plain and names in (list(default), list(default * D)):
        return options
    if plain and op == "RNN" and set(names) == {"Relu"}:
        options["nonlinearity"] = "relu"
        return options
    options.update(activations=tuple(names), activation_alpha=tuple(alpha),
                   activation_beta=tuple(beta))
    return options


def state_dict(arrays, family, H, D):
    """ONNX ``W, R, B (, P)`` -> PyTorch's keys, gate blocks in PyTorch's order."""
    order = _spec.IMPORT_ORDER[family]
    G = len(order)
    sd = {}
    for d in range(D):
        s = "_l0" + ("_reverse" if d else "")
        sd["weight_ih" + s] = _blocks(arrays["W"][d], order, H)
        sd["weight_hh" + s] = _blocks(arrays["R"][d], order, H)
        if "B" in arrays:
            sd["bias_ih" + s] = _blocks(arrays["B"][d, :G * H], order, H)
            sd["bias_hh" + s] = _blocks(arrays["B"][d, G * H:], order, H)
        if "P" in arrays:
            sd["weight_ph" + s] = _blocks(arrays["P"][d], _spec.PEEPHOLE_ORDER, H)
    return sd


def _blocks(a, order, H):
    """Rows of ``a`` in blocks of ``H``, block k of the result = block ``order[k]``."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order])  # (len(order)*H, ...)
