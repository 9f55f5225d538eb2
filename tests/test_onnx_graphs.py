"""from_onnx finds nodes in subgraphs, folds constant-computed weights, names errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from onnx_cases import H, I, L, N, assert_outputs, feeds, node_model, onnx, run_ort, weights

import nplstm
from nplstm.onnx import run_node

helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto
F32 = TensorProto.FLOAT


def const(name, values, dtype=np.int64):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
        np.asarray(values, dtype), name + "_v"))


def folded_branch(prefix, w, X="X"):
    """A branch graph that computes W, R, B as a PyTorch exporter does (Slice of outer
    PyTorch-order initializers, Concat in ONNX order, Unsqueeze) and runs an LSTM."""
    nodes = []

    def reorder(src, out, rows):  # ONNX block j = PyTorch block (0, 3, 1, 2)[j]
        parts = []
        for j, k in enumerate((0, 3, 1, 2)):
            s, e, a = f"{out}_s{j}", f"{out}_e{j}", f"{out}_a{j}"
            nodes.extend([const(s, [k * rows]), const(e, [(k + 1) * rows]), const(a, [0])])
            nodes.append(helper.make_node("Slice", [src, s, e, a], [f"{out}_p{j}"]))
            parts.append(f"{out}_p{j}")
        nodes.append(helper.make_node("Concat", parts, [out + "_cat"], axis=0))
        nodes.append(const(out + "_ax", [0]))
        nodes.append(helper.make_node("Unsqueeze", [out + "_cat", out + "_ax"], [out]))

    reorder("torch_w_ih", prefix + "W", H)
    reorder("torch_w_hh", prefix + "R", H)
    reorder("torch_b", prefix + "B1", H)
    reorder("torch_b2", prefix + "B2", H)
    nodes.append(helper.make_node("Concat", [prefix + "B1", prefix + "B2"], [prefix + "B"],
                                  axis=1))
    nodes.append(helper.make_node("LSTM", [X, prefix + "W", prefix + "R", prefix + "B"],
                                  [prefix + "Y"], name="lstm", hidden_size=H))
    out = helper.make_tensor_value_info(prefix + "Y", F32, None)
    return helper.make_graph(nodes, prefix + "graph", [], [out])


def torch_order(w):
    """ONNX-order LSTM weights -> PyTorch-order initializers the branches slice."""
    pt = [0, 2, 3, 1]
    blocks = lambda a: np.concatenate([np.split(a, 4)[k] for k in pt])
    return {"torch_w_ih": blocks(w["W"][0]), "torch_w_hh": blocks(w["R"][0]),
            "torch_b": blocks(w["B"][0, :4 * H]), "torch_b2": blocks(w["B"][0, 4 * H:])}


def if_model(w_then, w_else):
    """``If(cond)`` whose branches each hold an LSTM with constant-computed weights.

    The two branches share the outer initializers' names, so the else branch adds
    its own offset (``Add`` of a Constant) to make its weights differ.
    """
    then_g = folded_branch("t_", w_then)
    else_g = folded_branch("e_", w_then)
    else_g.node.insert(0, const("e_delta", 0.25, np.float32))
    for node in else_g.node:  # else's LSTM reads X + 0.25
        if node.op_type == "LSTM":
            node.input[0] = "e_X"
    else_g.node.insert(1, helper.make_node("Add", ["X", "e_delta"], ["e_X"]))
    node = helper.make_node("If", ["cond"], ["Y"], name="branch", then_branch=then_g,
                            else_branch=else_g)
    inits = [numpy_helper.from_array(a, k) for k, a in torch_order(w_then).items()]
    graph = helper.make_graph(
        [node], "if_model",
        [helper.make_tensor_value_info("X", F32, None),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("Y", F32, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def test_lstm_in_if_branches_with_folded_weights():
    w = weights("LSTM", 1)
    model = if_model(w, w)
    layers = nplstm.from_onnx(model)
    assert sorted(layers) == ["branch/else_branch/lstm", "branch/then_branch/lstm"]
    X = feeds("LSTM", 1)["X"]
    for branch, cond, x in (("then", True, X), ("else", False, X + np.float32(0.25))):
        layer = layers[f"branch/{branch}_branch/lstm"]
        want = run_ort(model, {"X": X, "cond": np.array(cond)})
        assert_outputs(run_node(layer, x)[:1], want, 1e-5)


def test_nested_subgraphs_loop_and_scan_are_named_by_path():
    inner = if_model(weights("LSTM", 1), weights("LSTM", 1)).graph.node[0]
    outer_else = helper.make_graph([inner], "outer_else", [],
                                   [helper.make_tensor_value_info("Y", F32, None)])
    model = if_model(weights("LSTM", 1), weights("LSTM", 1))
    assert model.graph.node[0].attribute[0].name == "else_branch"
    model.graph.node[0].attribute[0].g.CopyFrom(outer_else)  # If inside an If
    gru = node_model("GRU", weights("GRU", 1), linear_before_reset=1).graph
    body = helper.make_graph(
        [helper.make_node("GRU", ["X", "W", "R", "B"], ["Yg"], name="gru", hidden_size=H,
                          linear_before_reset=1)], "body",
        [helper.make_tensor_value_info(n, t, None) for n, t in
         (("iter", TensorProto.INT64), ("c", TensorProto.BOOL))],
        [helper.make_tensor_value_info("c", TensorProto.BOOL, None),
         helper.make_tensor_value_info("Yg", F32, None)], list(gru.initializer))
    loop = helper.make_node("Loop", ["", "cond"], ["Ys"], name="loop", body=body)
    model.graph.node.append(loop)
    names = list(nplstm.from_onnx(model))
    # graph order; an If's branches in the order of its attributes (else, then)
    assert names == ["branch/else_branch/branch/else_branch/lstm",
                     "branch/else_branch/branch/then_branch/lstm",
                     "branch/then_branch/lstm", "loop/body/gru"]
    layer = nplstm.from_onnx(model)["loop/body/gru"]
    np.testing.assert_array_equal(
        layer.weight_ih_l0, nplstm.from_onnx(node_model(
            "GRU", weights("GRU", 1), linear_before_reset=1))["the_gru"].weight_ih_l0)


def test_scan_body_and_unnamed_and_duplicate_nodes():
    w = weights("RNN", 1)
    rnn = helper.make_node("RNN", ["x3", "W", "R", "B"], ["y"], hidden_size=H)
    unsq = [const("ax", [0]), helper.make_node("Unsqueeze", ["xs", "ax"], ["x2"]),
            helper.make_node("Unsqueeze", ["x2", "ax"], ["x3"])]
    body = helper.make_graph(unsq + [rnn], "scan_body",
                             [helper.make_tensor_value_info("xs", F32, None)],
                             [helper.make_tensor_value_info("y", F32, None)])
    scan = helper.make_node("Scan", ["X"], ["Ys"], body=body, num_scan_inputs=1)
    top = [helper.make_node("RNN", ["X", "W", "R", "B"], [f"y{k}"], hidden_size=H,
                            name="same") for k in range(2)]
    graph = helper.make_graph(
        [scan] + top, "g", [helper.make_tensor_value_info("X", F32, None)],
        [helper.make_tensor_value_info("Ys", F32, None)],
        [numpy_helper.from_array(a, k) for k, a in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    assert list(nplstm.from_onnx(model)) == ["Scan_0/body/RNN_3", "same", "same#2"]


# --------------------------------------------------------------------- errors --


def lstm_model(**attrs):
    return node_model("LSTM", weights("LSTM", 1), **attrs)


def edit(model, **attrs):
    node = model.graph.node[0]
    for name, value in attrs.items():
        for a in list(node.attribute):
            if a.name == name:
                node.attribute.remove(a)
        if value is not None:
            node.attribute.append(helper.make_attribute(name, value))
    return model


@pytest.mark.parametrize("attrs, exc, match", [
    ({"direction": "sideways"}, ValueError, "attribute direction .* 'sideways'"),
    ({"layout": 2}, ValueError, "attribute layout must be 0 or 1, got 2"),
    ({"hidden_size": 6}, ValueError, "attribute hidden_size=6 does not match input R"),
    ({"activations": ["Sigmoid", "Tanh", "Swish"]}, ValueError, "unknown activation 'Swish'"),
    ({"activation_alpha": [0.5]}, ValueError, "activation_alpha has 1 value"),
    ({"output_sequence": 1}, NotImplementedError, "attribute 'output_sequence'"),
])
def test_attribute_errors_name_node_and_attribute(attrs, exc, match):
    with pytest.raises(exc, match="ONNX LSTM node 'the_lstm': .*" + match):
        nplstm.from_onnx(edit(lstm_model(), **attrs))


def test_weight_errors_name_node_and_input():
    model = lstm_model()
    model.graph.initializer.pop(2)  # B
    model.graph.input.append(helper.make_tensor_value_info("B", F32, None))
    with pytest.raises(ValueError, match="'the_lstm': input 'B' is computed from graph "
                                         "input 'B'"):
        nplstm.from_onnx(model)
    model = lstm_model()
    model.graph.initializer.pop(2)
    model.graph.node.insert(0, helper.make_node("RandomNormal", [], ["B"], shape=[1, 40]))
    with pytest.raises(ValueError, match="input 'B' comes from a 'RandomNormal' node"):
        nplstm.from_onnx(model)
    model = lstm_model()
    model.graph.initializer.pop(2)
    with pytest.raises(ValueError, match="needs value 'B', which no scope defines"):
        nplstm.from_onnx(model)
    model = lstm_model()
    model.graph.initializer[2].CopyFrom(numpy_helper.from_array(np.zeros((1, 39), np.float32),
                                                                "B"))
    with pytest.raises(ValueError, match=r"input B must have shape \(1, 40\) .*got \(1, 39\)"):
        nplstm.from_onnx(model)
    model = lstm_model()
    del model.graph.node[0].input[2]
    model.graph.node[0].input.insert(2, "")
    with pytest.raises(ValueError, match="required input R is missing"):
        nplstm.from_onnx(model)


def test_weights_from_nodes_that_are_not_constants_to_fold():
    """A weight made by an If (a subgraph) or by a node of another domain is refused
    by name, not evaluated."""
    model = lstm_model()
    B = model.graph.initializer.pop(2)
    branch = helper.make_graph([helper.make_node("Identity", ["B_const"], ["B_out"])], "b",
                               [], [helper.make_tensor_value_info("B_out", F32, None)])
    model.graph.initializer.append(onnx.numpy_helper.from_array(
        onnx.numpy_helper.to_array(B), "B_const"))
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(True), "yes"))
    model.graph.node.insert(0, helper.make_node("If", ["yes"], ["B"], name="pick",
                                                then_branch=branch, else_branch=branch))
    with pytest.raises(ValueError, match="input 'B' comes from a 'If' node \\(pick\\)"):
        nplstm.from_onnx(model)
    model.graph.node[0].CopyFrom(helper.make_node("Scale", ["B_const"], ["B"],
                                                  domain="com.example"))
    with pytest.raises(ValueError, match="input 'B' comes from a 'Scale' node"):
        nplstm.from_onnx(model)


def test_shape_and_option_errors_name_the_node():
    model = lstm_model()
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(
        np.zeros((20, 5), np.float32), "R"))
    with pytest.raises(ValueError, match=r"'the_lstm': input R must be 3-D .*got shape "
                                         r"\(20, 5\)"):
        nplstm.from_onnx(model)
    with pytest.raises(ValueError, match="ONNX LSTM node 'the_lstm': .*clip"):
        nplstm.from_onnx(edit(lstm_model(), clip=-1.0))
    with pytest.raises(ValueError, match="ONNX GRU node 'the_gru': attribute activations: "
                                         ".*activations must have 2 entries"):
        nplstm.from_onnx(node_model("GRU", weights("GRU", 1), activations=["Tanh"]))


def test_float16_weights_need_a_dtype():
    w = {k: v.astype(np.float16) for k, v in weights("GRU", 1).items()}
    model = node_model("GRU", w, linear_before_reset=1)
    with pytest.raises(ValueError, match="'the_gru': weights of dtype float16.*dtype="):
        nplstm.from_onnx(model)
    layer = nplstm.from_onnx(model, dtype=np.float32)["the_gru"]
    assert layer.dtype == np.float32
    np.testing.assert_array_equal(layer.weight_ih_l0[:H], w["W"][0, H:2 * H])


def test_file_and_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        nplstm.from_onnx(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\x00 not a model")
    with pytest.raises(ValueError, match="cannot read .* as an ONNX model"):
        nplstm.from_onnx(bad)
    with pytest.raises(TypeError, match="path_or_model must be a path, bytes or an "
                                        "onnx.ModelProto, got int"):
        nplstm.from_onnx(3)
    model = lstm_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    for source in (path, str(path), model.SerializeToString()):
        assert list(nplstm.from_onnx(source)) == ["the_lstm"]


def test_run_node_errors():
    layer = nplstm.from_onnx(lstm_model())["the_lstm"]
    gru = nplstm.GRU(I, H)
    X = np.zeros((L, N, I), np.float32)
    with pytest.raises(TypeError, match="layer must be an nplstm LSTM, GRU or RNN"):
        run_node(nplstm.Linear(3, 4), X)
    with pytest.raises(ValueError, match="num_layers=1 and no proj_size, got num_layers=2"):
        run_node(nplstm.LSTM(I, H, num_layers=2), X)
    with pytest.raises(ValueError, match="initial_c is an LSTM input"):
        run_node(gru, X, initial_c=np.zeros((1, N, H)))
    with pytest.raises(ValueError, match=r"X must be 3-D \(\[L, N, H_in\]\)"):
        run_node(layer, X[0])
    with pytest.raises(ValueError, match=r"initial_h must have shape \[D, N, H\] = "
                                         r"\[1, 4, 5\], got shape \(4, 5\)"):
        run_node(layer, X, initial_h=np.zeros((N, H)))
    with pytest.raises(ValueError, match=r"initial_h must have shape \[D, N, H\] = "
                                         r"\[1, 4, 5\], got shape \(1, 3, 5\)"):
        run_node(layer, X, initial_h=np.zeros((1, N - 1, H)))
    first = nplstm.LSTM(I, H, batch_first=True)
    with pytest.raises(ValueError, match=r"initial_c must have shape \[N, D, H\] = "
                                         r"\[4, 1, 5\], got shape \(1, 4, 5\)"):
        run_node(first, X.transpose(1, 0, 2), initial_c=np.zeros((1, N, H)))
    with pytest.raises(TypeError, match="sequence_lens must be integers"):
        run_node(layer, X, sequence_lens=np.full(N, 2.0))
    with pytest.raises(ValueError, match=r"sequence_lens must have shape \(4,\)"):
        run_node(layer, X, sequence_lens=[1, 2])
    with pytest.raises(ValueError, match=r"between 0 and the sequence length 7, got \[8, -1\]"):
        run_node(layer, X, sequence_lens=[8, 1, -1, 2])
    with pytest.raises(ValueError, match=r"initial_h must have shape .*got shape \(1, 5, 5\)"):
        run_node(layer, X, initial_h=np.zeros((1, N + 1, H)))


def test_every_sequence_of_length_zero():
    model = lstm_model()
    f = feeds("LSTM", 1, lens=[0] * N)
    got = run_node(nplstm.from_onnx(model)["the_lstm"], f["X"], f["sequence_lens"],
                   f["initial_h"], f["initial_c"])
    assert_outputs(got, run_ort(model, f), 0)


def test_import_nplstm_needs_no_onnx():
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import nplstm, numpy as np\n"
            "assert 'onnx' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
            "y = nplstm.onnx.run_node(nplstm.GRU(3, 5), np.ones((2, 1, 3), np.float32))\n"
            "assert y[0].shape == (2, 1, 1, 5)\n"
            "try:\n    nplstm.from_onnx('x.onnx')\nexcept ImportError as e:\n"
            "    assert 'pip install nplstm[onnx]' in str(e), e\nelse:\n    raise SystemExit(1)\n"
            "try:\n    nplstm.GRU(3, 5).to_onnx('x.onnx')\nexcept ImportError as e:\n"
            "    assert 'pip install nplstm[onnx]' in str(e), e\nelse:\n    raise SystemExit(1)\n")
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "src")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       check=False)
    assert r.returncode == 0, r.stderr


def test_weights_part_initializer_part_computed():
    """W straight from an initializer, R through an Identity: one fold gives both."""
    w = weights("LSTM", 1)
    model = lstm_model()
    model.graph.initializer[1].name = "R0"
    model.graph.node.insert(0, helper.make_node("Identity", ["R0"], ["R"]))
    got = nplstm.from_onnx(model)["the_lstm"].state_dict()
    want = nplstm.from_onnx(node_model("LSTM", w))["the_lstm"].state_dict()
    assert got.keys() == want.keys()
    for key in got:
        np.testing.assert_array_equal(got[key], want[key])
