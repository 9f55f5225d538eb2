"""nplstm layers -> ONNX models that onnxruntime runs with the same numbers.

A recurrent layer becomes one ONNX ``LSTM``/``GRU``/``RNN`` node per layer of
the stack (operator spec, opset 14), chained as PyTorch's exporter chains them:
``Y [L, D, N, H]`` -> ``Transpose`` -> ``Reshape [L, N, D*H]`` -> next node's
``X``; the initial states are sliced per layer and the final ones concatenated.
``batch_first`` layers get a ``Transpose`` at each end (onnxruntime refuses
``layout=1``). ``Linear`` becomes ``MatMul`` (+ ``Add``).

The model's inputs and outputs carry PyTorch's names and shapes: ``input``,
``h_0`` (, ``c_0``) -> ``output``, ``h_n`` (, ``c_n``).
"""

from __future__ import annotations

import numpy as np

from .. import _atomic
from ..module import check_size
from ..options import PARAMETER_DEFAULTS, ROLES
from . import _spec
from ._nodes import _blocks

OPSET = 14  # the first opset with the recurrent operators' `layout` attribute


def export(layer, path, **options):
    """Write ``layer`` (LSTM, GRU, RNN, a :class:`Reversed` one, or Linear) to ``path``."""
    onnx = _import_onnx()
    model = build(layer, **options)
    onnx.checker.check_model(model)
    with _atomic.atomic_write(path) as f:
        f.write(model.SerializeToString())


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("to_onnx needs the onnx package: pip install nplstm[onnx]") from None
    return onnx


def build(layer, *, initial_states=True, ndim=2):
    """The ``onnx.ModelProto`` for ``layer`` (see the module docstring)."""
    from onnx import helper

    from ..cell_modules import Linear
    from ..layers import _RNNBase
    from ._run import Reversed

    inner = layer.layer if isinstance(layer, Reversed) else layer
    if isinstance(inner, Linear):
        graph = _linear_graph(inner, check_size("ndim", ndim))
    elif isinstance(inner, _RNNBase):
        if not isinstance(initial_states, bool):
            raise TypeError(f"initial_states must be a bool, got {initial_states!r}")
        graph = _recurrent_graph(inner, isinstance(layer, Reversed), initial_states)
    else:
        raise TypeError(f"to_onnx exports LSTM, GRU, RNN and Linear layers, got "
                        f"{type(layer).__name__}")
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="nplstm")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


def _value(name, dtype, shape):
    from onnx import helper

    return helper.make_tensor_value_info(name, _spec.ONNX_DTYPES[np.dtype(dtype)], shape)


def _linear_graph(linear, ndim):
    """``y = x W^T + b`` (torch.nn.Linear) as ``MatMul(x, W^T) + b``; input ``ndim``-D."""
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.ascontiguousarray(linear.weight.T), "weight_T")]
    nodes = [helper.make_node("MatMul", ["input", "weight_T"],
                              ["output" if linear.bias is None else "xW"])]
    if linear.bias is not None:
        inits.append(numpy_helper.from_array(linear.bias, "bias"))
        nodes.append(helper.make_node("Add", ["xW", "bias"], ["output"]))
    lead = [f"d{k}" for k in range(ndim - 1)]  # named leading axes: any size
    return helper.make_graph(nodes, "nplstm_linear",
                             [_value("input", linear.dtype, lead + [linear.in_features])],
                             [_value("output", linear.dtype, lead + [linear.out_features])],
                             inits)


def _refuse(layer):
    name = type(layer).__name__
    if layer.proj_size:
        raise NotImplementedError(f"{name} with proj_size={layer.proj_size}: ONNX's LSTM "
                                  f"has no projection (proj_size), so it cannot be exported")
    if layer.training and layer.dropout > 0 and layer.num_layers > 1:
        raise ValueError(f"{name} is in training mode with dropout={layer.dropout}: an "
                         f"exported model runs without dropout; call .eval() first")


def _recurrent_graph(layer, reverse, initial_states):
    from onnx import helper

    _refuse(layer)
    op, dtype = type(layer).__name__, layer.dtype
    D, K, H = layer.num_directions, layer.num_layers, layer.hidden_size
    states = ("h", "c")[:len(layer.family.states)]
    nodes, inits = [], []
    x = "input"
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", ["input"], ["x_tm"], perm=[1, 0, 2]))
        x = "x_tm"  # (L, N, H_in)
    finals = {s: [] for s in states}
    for k in range(K):
        names = {key: f"{key}_l{k}" for key in ("W", "R", "B", "P")}
        arrays = _node_weights(layer, k)
        inits += _initializers(arrays, names)
        ins = [x, names["W"], names["R"], names["B"] if "B" in arrays else "", ""]
        for s in states:
            ins.append(_state_slice(nodes, inits, f"{s}_0", k, D) if initial_states else "")
        if "P" in arrays:
            ins.append(names["P"])
        outs = [f"Y_l{k}"] + [f"{s}_n_l{k}" for s in states]
        attrs = _attributes(layer, op, D, reverse)
        nodes.append(helper.make_node(op, _trim(ins), outs, name=f"{op.lower()}_l{k}",
                                      **attrs))
        for s in states:
            finals[s].append(f"{s}_n_l{k}")
        x = _flatten_directions(nodes, inits, f"Y_l{k}", k)  # (L, N, D*H)
    if layer.batch_first:
        nodes.append(helper.make_node("Transpose", [x], ["output"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["output"]))
    for s in states:
        nodes.append(helper.make_node("Concat", finals[s], [f"{s}_n"], axis=0))
    seq = ["N", "L"] if layer.batch_first else ["L", "N"]
    inputs = [_value("input", dtype, seq + [layer.input_size])]
    if initial_states:
        inputs += [_value(f"{s}_0", dtype, [D * K, "N", H]) for s in states]
    outputs = [_value("output", dtype, seq + [D * H])]
    outputs += [_value(f"{s}_n", dtype, [D * K, "N", H]) for s in states]
    return helper.make_graph(nodes, f"nplstm_{op.lower()}", inputs, outputs, inits)


def _trim(inputs):
    while inputs and not inputs[-1]:
        inputs.pop()
    return inputs


def _node_weights(layer, k):
    """Layer k's parameters as ONNX's ``W, R, B (, P)``, gate blocks in ONNX's order."""
    order = _spec.EXPORT_ORDER[layer.family.name]
    H, D = layer.hidden_size, layer.num_directions
    sd = layer.state_dict()
    arrays = {"W": [], "R": [], "B": [], "P": []}
    for d in range(D):
        s = f"_l{k}" + ("_reverse" if d else "")
        arrays["W"].append(_blocks(sd["weight_ih" + s], order, H))
        arrays["R"].append(_blocks(sd["weight_hh" + s], order, H))
        if "bias_ih" + s in sd:
            arrays["B"].append(np.concatenate([_blocks(sd["bias_ih" + s], order, H),
                                               _blocks(sd["bias_hh" + s], order, H)]))
        if "weight_ph" + s in sd:
            arrays["P"].append(_blocks(sd["weight_ph" + s], _spec.PEEPHOLE_ORDER, H))
    return {key: np.stack(v) for key, v in arrays.items() if v}  # (D, ...)


def _initializers(arrays, names):
    from onnx import numpy_helper

    return [numpy_helper.from_array(a, names[key]) for key, a in arrays.items()]


def _const(inits, name, values):
    from onnx import numpy_helper

    inits.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
    return name


def _state_slice(nodes, inits, state, k, D):
    """``state[k*D:(k+1)*D]``: layer k's initial states ``(D, N, H)``."""
    from onnx import helper

    out = f"{state}_l{k}"
    starts = _const(inits, f"{out}_start", [k * D])
    ends = _const(inits, f"{out}_end", [(k + 1) * D])
    axes = _const(inits, f"{out}_axes", [0])
    nodes.append(helper.make_node("Slice", [state, starts, ends, axes], [out]))
    return out


def _flatten_directions(nodes, inits, y, k):
    """``Y [L, D, N, H]`` -> ``[L, N, D*H]``, PyTorch's output (directions concatenated)."""
    from onnx import helper

    nodes.append(helper.make_node("Transpose", [y], [f"{y}_t"], perm=[0, 2, 1, 3]))
    shape = _const(inits, f"shape_l{k}", [0, 0, -1])
    nodes.append(helper.make_node("Reshape", [f"{y}_t", shape], [f"out_l{k}"]))
    return f"out_l{k}"


def _attributes(layer, op, D, reverse):
    """The node's attributes for the layer's options (ONNX's defaults left out)."""
    attrs = {"hidden_size": layer.hidden_size}
    attrs["direction"] = "bidirectional" if D == 2 else "reverse" if reverse else "forward"
    if op == "GRU":
        attrs["linear_before_reset"] = int(layer.linear_before_reset)
    if layer.clip is not None:
        attrs["clip"] = float(layer.clip)
    if op == "LSTM" and layer.input_forget:
        attrs["input_forget"] = 1
    attrs.update(_activations(layer, D))
    return attrs


def _activations(layer, D):
    """``activations`` for every direction, with ONNX's in-order alpha/beta lists.

    The layer's aligned values (None: the function's default in nplstm's options)
    are written out explicitly: onnxruntime's defaults differ for some functions.
    """
    functions = layer.activations
    n = len(ROLES[layer.family.name])
    repeat = D if len(functions) == n else 1  # one set for all directions, or one each
    functions = list(functions) * repeat
    out = {"activations": functions}
    for key, index, takes in (("activation_alpha", 0, _spec.TAKES_ALPHA),
                              ("activation_beta", 1, _spec.TAKES_BETA)):
        given = getattr(layer, key) or (None,) * (len(functions) // repeat)
        values = [PARAMETER_DEFAULTS.get(f, (None, None))[index] if v is None else v
                  for f, v in zip(functions, list(given) * repeat)]
        listed = _spec.in_order(functions, values, takes)
        if listed:
            out[key] = listed
    return out
