"""One-node ONNX models with random weights, and the runtimes that run them.

Weights and biases are random and non-zero (ONNX's own backend cases use ``ones``,
which pass under any gate order). Used by the tests/test_onnx*.py files.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
ELEM = {np.float32: TensorProto.FLOAT, np.float64: TensorProto.DOUBLE}
I, H, N, L = 3, 5, 4, 7  # distinct sizes


def weights(op, D, *, bias=True, peepholes=False, dtype=np.float32, seed=0, scale=0.7):
    """ONNX-layout weights ``{"W", "R", "B"(, "P")}``, every entry ~ U(-scale, scale)."""
    rng = np.random.default_rng(seed)
    G = GATES[op]
    shapes = {"W": (D, G * H, I), "R": (D, G * H, H)}
    if bias:
        shapes["B"] = (D, 2 * G * H)
    if peepholes:
        shapes["P"] = (D, 3 * H)
    return {k: rng.uniform(-scale, scale, s).astype(dtype) for k, s in shapes.items()}


def node_model(op, w, *, dtype=np.float32, layout=0, opset=14, hidden_size=H, **attrs):
    """A model of one ``op`` node with weights ``w`` as initializers.

    Graph inputs ``X``, ``sequence_lens`` (int32), ``initial_h`` (, ``initial_c``);
    outputs ``Y``, ``Y_h`` (, ``Y_c``). ``attrs`` are the node's attributes.
    ``hidden_size=None`` leaves that attribute out.
    """
    lstm = op == "LSTM"
    names = ["X", "W", "R", "B" if "B" in w else "", "sequence_lens", "initial_h"]
    if lstm:
        names += ["initial_c", "P" if "P" in w else ""]
    while not names[-1]:
        names.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if lstm else [])
    if opset >= 14:
        attrs["layout"] = layout
    if hidden_size is not None:  # None: the attribute is left out
        attrs["hidden_size"] = hidden_size
    node = helper.make_node(op, names, outs, name=f"the_{op.lower()}", **attrs)
    elem = ELEM[dtype]
    inputs = [helper.make_tensor_value_info("X", elem, None),
              helper.make_tensor_value_info("sequence_lens", TensorProto.INT32, None),
              helper.make_tensor_value_info("initial_h", elem, None)]
    if lstm:
        inputs.append(helper.make_tensor_value_info("initial_c", elem, None))
    outputs = [helper.make_tensor_value_info(o, elem, None) for o in outs]
    inits = [numpy_helper.from_array(a, k) for k, a in w.items()]
    graph = helper.make_graph([node], "one_node", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def feeds(op, D, *, layout=0, lens=None, states=True, dtype=np.float32, seed=1):
    """Inputs for :func:`node_model`: X, sequence_lens and random initial states."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((L, N, I)).astype(dtype)
    f = {"X": X, "sequence_lens": np.full(N, L, np.int32) if lens is None
         else np.asarray(lens, np.int32)}
    for s in ("initial_h", "initial_c")[:1 + (op == "LSTM")]:
        f[s] = (rng.standard_normal((D, N, H)) if states else np.zeros((D, N, H))).astype(dtype)
    if layout == 1:  # batch-major twin: X [N, L, I], states [N, D, H]
        f = {k: v.transpose(1, 0, 2) if v.ndim == 3 else v for k, v in f.items()}
    return f


def session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # ORT's own error log would go to stderr
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def run_ort(model, f):
    return session(model).run(None, f)


def run_reference(model, f):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, f)


def to_batch_major(outputs):
    """Layout-0 outputs ``Y [L, D, N, H]``, states ``[D, N, H]`` -> layout 1's."""
    Y, *states = outputs
    return [Y.transpose(2, 0, 1, 3)] + [s.transpose(1, 0, 2) for s in states]


def assert_outputs(got, want, tol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=0, atol=tol)
