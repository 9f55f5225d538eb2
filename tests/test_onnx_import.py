"""from_onnx + run_node against onnxruntime: one-node models with PyTorch's options."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from onnx_cases import (
    H,
    I,
    L,
    N,
    assert_outputs,
    feeds,
    node_model,
    run_ort,
    run_reference,
    to_batch_major,
    weights,
)

import nplstm
from nplstm.onnx import Reversed, run_node

DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
FAMILIES = [("LSTM", {}), ("GRU", {"linear_before_reset": 1}),
            ("RNN", {"activations": ["Tanh"]}), ("RNN", {"activations": ["Relu"]})]
LENS = [None, [L, 3, 1, 6], [L, 0, 2, 0]]


def only_layer(model):
    layers = nplstm.from_onnx(model)
    assert len(layers) == 1
    return next(iter(layers.values()))


def args(f):
    return {"sequence_lens": f["sequence_lens"], "initial_h": f["initial_h"],
            "initial_c": f.get("initial_c")}


@pytest.mark.parametrize("op, attrs", FAMILIES, ids=["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_grid_against_onnxruntime(op, attrs, direction):
    """direction x sequence_lens (with 0) x initial states x bias, float32, 1e-5."""
    D = DIRECTIONS[direction]
    if op == "RNN" and D == 2:
        attrs = {"activations": attrs["activations"] * 2}
    for bias, lens, states in itertools.product([True, False], LENS, [True, False]):
        w = weights(op, D, bias=bias, seed=len(str(lens)))
        model = node_model(op, w, direction=direction, **attrs)
        f = feeds(op, D, lens=lens, states=states)
        layer = only_layer(model)
        assert isinstance(layer, Reversed) == (direction == "reverse")
        assert layer.dtype == np.float32 and layer.bias == bias
        got = run_node(layer, f["X"], **args(f))
        assert_outputs(got, run_ort(model, f), 1e-5)


@pytest.mark.parametrize("op, attrs", FAMILIES, ids=["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_layout_1_against_the_layout_0_twin(op, attrs, direction):
    """onnxruntime refuses layout=1: the batch-major node must give layout 0's numbers
    on transposed tensors."""
    D = DIRECTIONS[direction]
    if op == "RNN" and D == 2:
        attrs = {"activations": attrs["activations"] * 2}
    w = weights(op, D)
    lens = [L, 0, 2, 5]
    want = to_batch_major(run_ort(node_model(op, w, direction=direction, **attrs),
                                  feeds(op, D, lens=lens)))
    layer = only_layer(node_model(op, w, direction=direction, layout=1, **attrs))
    assert layer.batch_first
    f = feeds(op, D, layout=1, lens=lens)
    assert_outputs(run_node(layer, f["X"], **args(f)), want, 1e-5)


@pytest.mark.parametrize("op, attrs", FAMILIES[:3], ids=["lstm", "gru", "rnn_tanh"])
def test_float64_against_onnx_reference(op, attrs):
    """onnxruntime has no float64 recurrent kernels; onnx's reference evaluator (NumPy)
    does: the nodes it honours agree to 1e-12 (it refuses an RNN with Relu)."""
    for direction, D in DIRECTIONS.items():
        a = dict(attrs, activations=attrs["activations"] * D) if op == "RNN" else attrs
        w = weights(op, D, dtype=np.float64)
        model = node_model(op, w, direction=direction, dtype=np.float64, **a)
        f = feeds(op, D, dtype=np.float64)
        f.pop("sequence_lens")  # ignored by the reference evaluator
        layer = only_layer(model)
        assert layer.dtype == np.float64
        got = run_node(layer, f["X"], initial_h=f["initial_h"], initial_c=f.get("initial_c"))
        assert_outputs(got, run_reference(model, dict(f, sequence_lens=np.full(N, L))), 1e-12)


def test_layers_follow_pytorch_conventions():
    """The layer itself (not run_node) is PyTorch-shaped: output (L, N, D*H), states
    (D, N, H); a reverse node equals the reverse half of a bidirectional one."""
    w = weights("LSTM", 2)
    bi = only_layer(node_model("LSTM", w, direction="bidirectional"))
    rev = only_layer(node_model("LSTM", {k: v[1:] for k, v in w.items()}, direction="reverse"))
    f = feeds("LSTM", 2, lens=[L, 3, 1, 6])
    hx = (f["initial_h"], f["initial_c"])
    lengths = f["sequence_lens"]
    out, (h, c) = bi(f["X"], hx, lengths=lengths)
    assert out.shape == (L, N, 2 * H) and h.shape == c.shape == (2, N, H)
    out_r, (h_r, c_r) = rev(f["X"], (hx[0][1:], hx[1][1:]), lengths=lengths)
    np.testing.assert_array_equal(out_r, out[:, :, H:])
    np.testing.assert_array_equal(h_r, h[1:])
    np.testing.assert_array_equal(c_r, c[1:])
    # unbatched and batch-first input go through Reversed too
    x0 = f["X"][:, 0]
    np.testing.assert_array_equal(rev(x0)[0], bi(x0)[0][:, H:])


def test_reversed_reads_through_and_refuses_trace():
    rev = only_layer(node_model("GRU", weights("GRU", 1), direction="reverse",
                                linear_before_reset=1))
    assert rev.hidden_size == H and rev.input_size == I and rev.layer.family.name == "gru"
    assert set(rev.state_dict()) == {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                     "bias_hh_l0"}
    assert repr(rev) == "Reversed(GRU(3, 5))"
    with pytest.raises(AttributeError, match="trace"):
        rev.trace(np.zeros((L, N, I)))
    x = np.random.default_rng(0).standard_normal((L, N, I)).astype(np.float32)
    again = pickle.loads(pickle.dumps(rev))
    assert isinstance(again, Reversed)
    np.testing.assert_array_equal(again(x)[0], rev(x)[0])


def test_weights_are_reordered_into_pytorchs_layout():
    """LSTM ONNX i,o,f,c -> PyTorch i,f,g,o; GRU z,r,h -> r,z,n; B -> bias_ih, bias_hh."""
    for op, order in (("LSTM", [0, 2, 3, 1]), ("GRU", [1, 0, 2])):
        w = weights(op, 1)
        layer = only_layer(node_model(op, w, linear_before_reset=1) if op == "GRU"
                           else node_model(op, w))
        G = len(order)
        blocks = np.split(w["W"][0], G)
        np.testing.assert_array_equal(layer.weight_ih_l0, np.concatenate([blocks[k]
                                                                          for k in order]))
        Rb = np.split(w["B"][0, G * H:], G)
        np.testing.assert_array_equal(layer.bias_hh_l0, np.concatenate([Rb[k] for k in order]))


def test_hidden_size_attribute_may_be_absent():
    model = node_model("RNN", weights("RNN", 1), activations=["Tanh"])
    del model.graph.node[0].attribute[:]  # hidden_size and layout gone: read off R
    assert only_layer(model).hidden_size == H


def test_older_opsets_import():
    """Opset 7 (no layout attribute) LSTM, as classic exporters wrote it."""
    w = weights("LSTM", 1)
    model = node_model("LSTM", w, opset=7)
    f = feeds("LSTM", 1, lens=[L, 2, 1, 3])
    assert_outputs(run_node(only_layer(model), f["X"], **args(f)), run_ort(model, f), 1e-5)
