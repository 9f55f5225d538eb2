"""Review of the ONNX import: malformed models, hostile files, a whole real model."""

from __future__ import annotations

import os

import numpy as np
import pytest
from onnx_cases import H, I, node_model, onnx, weights

import nplstm

helper, numpy_helper, TensorProto = onnx.helper, onnx.numpy_helper, onnx.TensorProto


def lstm_with(nodes, w_name="W0", **attrs):
    """An LSTM node whose W is computed by ``nodes`` (from initializer ``w_name``)."""
    w = weights("LSTM", 1)
    model = node_model("LSTM", {k: w[k] for k in ("R", "B")}, **attrs)
    model.graph.node[0].input[1] = "W"
    model.graph.initializer.append(numpy_helper.from_array(w["W"], w_name))
    for k, node in enumerate(nodes):
        model.graph.node.insert(k, node)
    return model, w


@pytest.mark.parametrize("attrs, match", [
    ({"input_forget": 2}, "attribute input_forget must be 0 or 1, got 2"),
    ({"input_forget": -1}, "attribute input_forget must be 0 or 1, got -1"),
    ({"hidden_size": 5.0}, "attribute 'hidden_size' must be of type INT .*got FLOAT"),
    ({"direction": 1}, "attribute 'direction' must be of type STRING .*got INT"),
    ({"clip": -1.0}, "clip must be a finite number > 0, got -1.0"),
])
def test_lstm_attribute_values_and_types(attrs, match):
    model = node_model("LSTM", weights("LSTM", 1), **attrs)
    with pytest.raises(ValueError, match="ONNX LSTM node 'the_lstm': .*" + match):
        nplstm.from_onnx(model)


def test_gru_linear_before_reset_must_be_a_flag():
    model = node_model("GRU", weights("GRU", 1), linear_before_reset=2)
    with pytest.raises(ValueError, match="'the_gru': attribute linear_before_reset must be "
                                         "0 or 1, got 2"):
        nplstm.from_onnx(model)


def test_long_constant_chain_folds_without_recursion():
    chain = [helper.make_node("Identity", [f"W{k}"], [f"W{k + 1}"]) for k in range(3000)]
    chain.append(helper.make_node("Identity", ["W3000"], ["W"]))
    model, w = lstm_with(chain)
    layer = nplstm.from_onnx(model)["the_lstm"]
    np.testing.assert_array_equal(layer.weight_ih_l0[:H], w["W"][0, :H])  # i block stays first


def test_cyclic_constants_are_an_error_naming_the_node():
    model, _ = lstm_with([helper.make_node("Identity", ["A"], ["W"]),
                          helper.make_node("Identity", ["W"], ["A"])])
    with pytest.raises(ValueError, match="node 'the_lstm': input 'W' depends on itself"):
        nplstm.from_onnx(model)


def test_constants_that_cannot_be_computed_give_one_error_type():
    shape = numpy_helper.from_array(np.array([1, 4 * H, 10 ** 12], np.int64))
    model, _ = lstm_with([helper.make_node("Constant", [], ["shape"], value=shape),
                          helper.make_node("ConstantOfShape", ["shape"], ["W"])])
    with pytest.raises(ValueError, match="node 'the_lstm': its weights .*'W'.* could not "
                                         "be computed .*MemoryError"):
        nplstm.from_onnx(model)


@pytest.mark.parametrize("data", [b"", b"hello", bytes(range(256)) * 3])
def test_bytes_and_files_that_are_not_models(tmp_path, data):
    with pytest.raises(ValueError, match="from_onnx: .*ONNX model"):
        nplstm.from_onnx(data)
    path = tmp_path / "x.onnx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=f"from_onnx: .*{path.name}.*ONNX model"):
        nplstm.from_onnx(path)


def test_truncated_file(tmp_path):
    data = node_model("LSTM", weights("LSTM", 1)).SerializeToString()
    path = tmp_path / "t.onnx"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="cannot read .*t.onnx.* as an ONNX model"):
        nplstm.from_onnx(path)


def external_model(location, **extra):
    """An LSTM whose W lives in the external data file ``location``."""
    w = weights("LSTM", 1)
    model = node_model("LSTM", {k: w[k] for k in ("R", "B")})
    tensor = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=w["W"].shape,
                         data_location=TensorProto.EXTERNAL)
    for key, value in {"location": location, **extra}.items():
        tensor.external_data.add(key=key, value=str(value))
    model.graph.initializer.append(tensor)
    return model, w["W"]


@pytest.mark.parametrize("location", ["../secret.bin", "sub/../../secret.bin",
                                      "ABSOLUTE", "link.bin", "missing.bin"])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    weights("LSTM", 1)["W"].tofile(secret)
    os.symlink(secret, folder / "link.bin")
    location = str(secret) if location == "ABSOLUTE" else location
    model, _ = external_model(location)
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match="cannot read .*m.onnx.* as an ONNX model: .*W"):
        nplstm.from_onnx(path)


def test_external_data_inside_the_folder_is_read_only_from_a_path(tmp_path, monkeypatch):
    model, W = external_model("w.bin")
    W.tofile(tmp_path / "w.bin")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    layer = nplstm.from_onnx(path)["the_lstm"]
    np.testing.assert_array_equal(layer.weight_ih_l0[:H], W[0, :H])
    monkeypatch.chdir(tmp_path)  # bytes and an unloaded ModelProto have no folder: not cwd
    for given in (model.SerializeToString(), model):
        with pytest.raises(ValueError, match="node 'the_lstm': initializer 'W' is stored in "
                                             "an external data file; pass the .onnx"):
            nplstm.from_onnx(given)
    model, _ = external_model("w.bin", length=8)  # shorter than the tensor
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ValueError, match="'the_lstm': its weights .*could not be computed"):
        nplstm.from_onnx(path)


def test_whole_model_as_the_readme_shows(tmp_path):
    """torch LSTM(batch_first) + Linear: the LSTM node and the head's initializers."""
    torch = pytest.importorskip("torch")
    import warnings

    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(I, H, batch_first=True)
            self.fc = torch.nn.Linear(H, 2)

        def forward(self, x):
            return self.fc(self.rnn(x)[0])

    model = Model().eval()
    path = str(tmp_path / "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the classic exporter's deprecation notices
        torch.onnx.export(model, (torch.zeros(2, 7, I),), path, dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "N", 1: "L"}})
    nodes = nplstm.from_onnx(path)
    assert list(nodes) == ["/rnn/LSTM"]
    lstm = nodes["/rnn/LSTM"]
    assert not lstm.batch_first  # the exporter writes Transposes around a layout-0 node
    graph = onnx.load(path).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    matmul = next(n for n in graph.node if n.op_type == "MatMul").input[1]
    x = np.random.default_rng(0).standard_normal((3, 9, I)).astype(np.float32)  # (N, L, I)
    y, _ = lstm(x.transpose(1, 0, 2))  # (L, N, H)
    out = y.transpose(1, 0, 2) @ init[matmul] + init["fc.bias"]
    want = model(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-5)


def test_if_inside_loop_inside_scan_reads_weights_from_every_scope():
    """W sliced in the Scan body from a top-level initializer, R from the Loop body."""
    w = weights("LSTM", 1)
    wide = np.concatenate([w["W"], np.ones_like(w["W"])], axis=2)  # (1, 4H, 2I)
    vi = helper.make_tensor_value_info
    lstm = helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], name="lstm", hidden_size=H)
    then = helper.make_graph([lstm], "then", [], [vi("y", TensorProto.FLOAT, None)])
    iff = helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=then)
    loop_body = helper.make_graph(
        [iff], "loop_body", [vi("iter", TensorProto.INT64, None), vi("c", TensorProto.BOOL, None)],
        [vi("c", TensorProto.BOOL, None), vi("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w["R"], "R")])
    loop = helper.make_node("Loop", ["", "cond"], ["ys"], name="loop", body=loop_body)
    consts = [numpy_helper.from_array(np.array(v, np.int64), n)
              for n, v in (("s", [0]), ("e", [I]), ("ax", [2]))]
    scan_body = helper.make_graph(
        [helper.make_node("Slice", ["wide", "s", "e", "ax"], ["W"]), loop], "scan_body",
        [vi("xs", TensorProto.FLOAT, None)], [vi("ys", TensorProto.FLOAT, None)], consts)
    scan = helper.make_node("Scan", ["X"], ["Ys"], name="scan", body=scan_body,
                            num_scan_inputs=1)
    graph = helper.make_graph(
        [scan], "g", [vi("X", TensorProto.FLOAT, None), vi("cond", TensorProto.BOOL, None)],
        [vi("Ys", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(wide, "wide"), numpy_helper.from_array(w["B"], "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    layers = nplstm.from_onnx(model)
    assert list(layers) == ["scan/body/loop/body/if/else_branch/lstm",  # attribute order
                            "scan/body/loop/body/if/then_branch/lstm"]
    want = nplstm.from_onnx(node_model("LSTM", w))["the_lstm"].state_dict()
    got = layers["scan/body/loop/body/if/then_branch/lstm"].state_dict()
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_weights_of_mixed_dtypes_are_refused_unless_converted():
    w = weights("LSTM", 1)
    w["R"] = w["R"].astype(np.float64)
    model = node_model("LSTM", w)
    with pytest.raises(ValueError, match="'the_lstm': input R has dtype float64 but W has "
                                         "float32"):
        nplstm.from_onnx(model)
    assert nplstm.from_onnx(model, dtype=np.float64)["the_lstm"].dtype == np.float64
