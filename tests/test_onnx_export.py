"""layer.to_onnx: onnxruntime runs the written model with nplstm's numbers; and
torch.onnx.export'ed models import and reproduce torch."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from onnx_cases import H, I, L, N, onnx, run_reference, session

import nplstm
from nplstm.onnx import Reversed, run_node

KINDS = {"lstm": (nplstm.LSTM, {}), "gru": (nplstm.GRU, {}),
         "rnn": (nplstm.RNN, {"nonlinearity": "tanh"}),
         "rnn_relu": (nplstm.RNN, {"nonlinearity": "relu"})}


def randomized(layer, seed=0):
    """Every parameter, biases too, ~ U(-0.7, 0.7) (not the init's narrower range)."""
    rng = np.random.default_rng(seed)
    layer.load_state_dict({k: rng.uniform(-0.7, 0.7, v.shape) for k, v in
                           layer.state_dict().items()})
    return layer


def inputs(layer, states=True, seed=3):
    rng = np.random.default_rng(seed)
    dt = layer.dtype
    x = rng.standard_normal((N, L, I) if layer.batch_first else (L, N, I)).astype(dt)
    n = layer.num_directions * layer.num_layers
    hx = [rng.standard_normal((n, N, H)).astype(dt) for _ in layer.family.states]
    feeds = {"input": x}
    if states:
        feeds.update({f"{s}_0": v for s, v in zip(("h", "c"), hx)})
    hx = (tuple(hx) if len(hx) == 2 else hx[0]) if states else None
    return feeds, x, hx


def flat(result):
    output, state = result
    return [output] + list(state if isinstance(state, tuple) else (state,))


@pytest.mark.parametrize("kind", list(KINDS))
def test_round_trip_through_onnxruntime(kind, tmp_path):
    """num_layers x bidirectional x batch_first x bias x initial states, float32 1e-5."""
    cls, kw = KINDS[kind]
    path = tmp_path / "m.onnx"
    for layers, bi, bf, bias, states in itertools.product([1, 2], [False, True],
                                                          [False, True], [True, False],
                                                          [True, False]):
        layer = randomized(cls(I, H, num_layers=layers, bidirectional=bi, batch_first=bf,
                               bias=bias, seed=1, **kw))
        layer.to_onnx(path, initial_states=states)
        feeds, x, hx = inputs(layer, states)
        got = session(onnx.load(path)).run(None, feeds)
        for g, w in zip(got, flat(layer(x, hx))):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_export_then_import_gives_the_same_layers(kind, tmp_path):
    cls, kw = KINDS[kind]
    layer = randomized(cls(I, H, num_layers=2, bidirectional=True, seed=2, **kw))
    layer.to_onnx(tmp_path / "m.onnx")
    back = nplstm.from_onnx(tmp_path / "m.onnx")
    name = cls.__name__.lower()
    assert list(back) == [f"{name}_l0", f"{name}_l1"]
    for k, single in enumerate(back.values()):
        assert single.nonlinearity == layer.nonlinearity
        for key, value in single.state_dict().items():
            np.testing.assert_array_equal(value, layer.state_dict()[key.replace("l0", f"l{k}")])


def test_reversed_layer_round_trip(tmp_path):
    rev = Reversed(randomized(nplstm.LSTM(I, H, seed=4)))
    rev.to_onnx(tmp_path / "r.onnx")
    node = next(n for n in onnx.load(tmp_path / "r.onnx").graph.node if n.op_type == "LSTM")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["direction"] == b"reverse"
    feeds, x, hx = inputs(rev.layer)
    got = session(onnx.load(tmp_path / "r.onnx")).run(None, feeds)
    for g, w in zip(got, flat(rev(x, hx))):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5)
    again = nplstm.from_onnx(tmp_path / "r.onnx")["lstm_l0"]
    assert isinstance(again, Reversed)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_float64_export_against_onnx_reference(kind, tmp_path):
    """onnxruntime has no float64 recurrent kernels: onnx's reference evaluator, 1e-12."""
    cls, kw = KINDS[kind]
    layer = randomized(cls(I, H, bidirectional=True, dtype=np.float64, seed=5, **kw))
    layer.to_onnx(tmp_path / "d.onnx")
    feeds, x, hx = inputs(layer)
    got = run_reference(onnx.load(tmp_path / "d.onnx"), feeds)
    for g, w in zip(got, flat(layer(x, hx))):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_round_trip(bias, tmp_path):
    fc = randomized(nplstm.Linear(2 * H, 3, bias=bias, seed=6))
    for shape in ((N, 2 * H), (L, N, 2 * H)):
        fc.to_onnx(tmp_path / "fc.onnx", ndim=len(shape))
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        got = session(onnx.load(tmp_path / "fc.onnx")).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, fc(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="ndim must be an integer >= 1, got 0"):
        fc.to_onnx(tmp_path / "fc.onnx", ndim=0)


def test_export_refusals(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(NotImplementedError, match="proj_size=2: ONNX's LSTM has no "
                                                  "projection"):
        nplstm.LSTM(I, H, proj_size=2).to_onnx(path)
    with pytest.raises(ValueError, match=r"training mode with dropout=0.5.*\.eval\(\)"):
        nplstm.GRU(I, H, num_layers=2, dropout=0.5).train().to_onnx(path)
    with pytest.raises(TypeError, match="exports LSTM, GRU, RNN and Linear layers, got "
                                        "LSTMCell"):
        nplstm.onnx.to_onnx(nplstm.LSTMCell(I, H), path)
    with pytest.raises(TypeError, match="initial_states must be a bool"):
        nplstm.RNN(I, H).to_onnx(path, initial_states=1)
    with pytest.raises(OSError, match="missing"):
        nplstm.RNN(I, H).to_onnx(tmp_path / "missing" / "m.onnx")
    assert not path.exists()


# ------------------------------------------------------- torch.onnx.export --

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_torch_export_imports_and_reproduces_torch(kind, tmp_path):
    """torch.onnx.export (the classic exporter, dynamo=False) of 1-2 layer, uni- and
    bidirectional modules: the imported nodes, chained, give torch's numbers."""
    rng = np.random.default_rng(7)
    for layers, bi in itertools.product([1, 2], [False, True]):
        torch.manual_seed(layers + 2 * bi)
        module = getattr(torch.nn, kind)(I, H, num_layers=layers, bidirectional=bi).eval()
        with torch.no_grad():
            for p in module.parameters():
                p.uniform_(-0.7, 0.7)
        x = torch.from_numpy(rng.standard_normal((L, N, I)).astype(np.float32))
        path = tmp_path / f"{kind}{layers}{bi}.onnx"
        with warnings.catch_warnings():  # torch's notices: legacy exporter, tracer
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"])
        nodes = nplstm.from_onnx(path)
        assert len(nodes) == layers
        with torch.no_grad():
            want, state = module(x)
        y, h = x.numpy(), []
        for node in nodes.values():
            Y, *finals = run_node(node, y)
            y = Y.transpose(0, 2, 1, 3).reshape(L, N, -1)  # (L, N, D*H): the next input
            h.append(finals)
        np.testing.assert_allclose(y, want.numpy(), rtol=0, atol=1e-5)
        states = state if kind == "LSTM" else (state,)  # (h_n, c_n) or h_n
        for k, want_state in enumerate(states):
            got_state = np.concatenate([f[k] for f in h])  # (D*num_layers, N, H)
            np.testing.assert_allclose(got_state, want_state.numpy(), rtol=0, atol=1e-5)
