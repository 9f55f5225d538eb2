"""Every ONNX recurrent attribute through from_onnx/run_node and to_onnx, against
onnxruntime: direction x layout x clip x input_forget x peepholes x activations
(with alpha/beta, lists short or full) x linear_before_reset x sequence_lens (with
0) x initial states, random weights, float32 to 1e-5. layout=1 is checked against
the layout-0 twin on transposed tensors (onnxruntime refuses layout=1).

The grid is sampled (a fixed seed, every value of every axis drawn many times)
rather than enumerated: the full product is ~10^6 nodes.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_cases import (
    L,
    assert_outputs,
    feeds,
    node_model,
    onnx,
    run_ort,
    to_batch_major,
    weights,
)

import nplstm
from nplstm.onnx import run_node
from nplstm.onnx._spec import TAKES_ALPHA, TAKES_BETA

FUNCTIONS = ("Sigmoid", "Tanh", "Relu", "HardSigmoid", "Affine", "LeakyRelu",
             "ThresholdedRelu", "ScaledTanh", "Elu", "Softsign", "Softplus")
ROLES = {"LSTM": 3, "GRU": 2, "RNN": 1}
#: Gate functions (LSTM/GRU role f) that stay bounded: an unbounded gate makes the
#: state grow exponentially over the steps, into inf in both runtimes. With
#: input_forget (f = 1 - i) only the first two, whose range is [0, 1], keep c bounded;
#: else c can reach ~100, where onnxruntime's Softplus overflows (see below).
GATES = ("Sigmoid", "HardSigmoid", "Tanh", "Softsign", "ScaledTanh")
CASES = 400  # per family


def draw(rng, op):
    """One random node: (attributes, weight options, feed options)."""
    direction = str(rng.choice(["forward", "reverse", "bidirectional"]))
    D = 2 if direction == "bidirectional" else 1
    attrs = {"direction": direction}
    if rng.random() < 0.5:
        attrs["clip"] = float(rng.choice([0.3, 1.0, 2.5]))
    if op == "LSTM" and rng.random() < 0.4:
        attrs["input_forget"] = 1
    if op == "GRU":
        attrs["linear_before_reset"] = int(rng.integers(2))
    if op == "RNN" or rng.random() < 0.7:
        n = ROLES[op]
        gates = GATES[:2] if attrs.get("input_forget") else GATES  # f = 1 - i stays in [0, 1]
        names = [str(rng.choice(gates if k % n == 0 and op != "RNN" else FUNCTIONS))
                 for k in range(n * D)]
        attrs["activations"] = names
        for key, takes in (("activation_alpha", TAKES_ALPHA), ("activation_beta", TAKES_BETA)):
            values = [round(float(rng.uniform(0.1, 1.2)), 3) for f in names if f in takes]
            values = values[:int(rng.integers(len(values) + 1))]  # short lists: defaults
            if values:
                attrs[key] = values
    lens = [None, [L, 3, 1, 6], [L, 0, 2, 0], [0, 0, 0, 0]][int(rng.integers(4))]
    wkw = {"bias": bool(rng.random() < 0.8), "peepholes": op == "LSTM" and rng.random() < 0.5}
    fkw = {"lens": lens, "states": bool(rng.random() < 0.6)}
    return attrs, wkw, fkw, D, int(rng.integers(2))


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_sampled_attribute_grid_against_onnxruntime(op):
    rng = np.random.default_rng({"LSTM": 1, "GRU": 2, "RNN": 3}[op])
    seen = set()
    for case in range(CASES):
        attrs, wkw, fkw, D, layout = draw(rng, op)
        w = weights(op, D, seed=case, scale=0.5, **wkw)
        want = run_ort(node_model(op, w, **attrs), feeds(op, D, **fkw))
        if layout:
            want = to_batch_major(want)
        layer = next(iter(nplstm.from_onnx(node_model(op, w, layout=layout, **attrs))
                          .values()))
        f = feeds(op, D, layout=layout, **fkw)
        got = run_node(layer, f["X"], f["sequence_lens"], f["initial_h"], f.get("initial_c"))
        assert_outputs(got, want, 1e-5)
        seen.update(attrs.get("activations", []))
        seen.update(k for k in attrs if k != "activations")
    assert seen >= set(FUNCTIONS) | {"clip", "direction", "activation_alpha"}


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_options_export_round_trip(op, tmp_path):
    """A layer with options -> to_onnx -> onnxruntime gives the layer's numbers, and
    from_onnx gives the options back."""
    rng = np.random.default_rng(5)
    path = tmp_path / "m.onnx"
    for case in range(12):
        attrs, wkw, _, D, layout = draw(rng, op)
        attrs.pop("direction")
        model = node_model(op, weights(op, D, seed=case, **wkw), **attrs,
                           direction="bidirectional" if D == 2 else "forward")
        layer = next(iter(nplstm.from_onnx(model).values()))
        layer.batch_first = bool(layout)
        layer.to_onnx(path)
        x = np.random.default_rng(case).standard_normal(
            (4, L, 3) if layout else (L, 4, 3)).astype(np.float32)
        want = layer(x)
        got = run_ort(onnx.load(path), {"input": x, **{
            f"{s}_0": np.zeros((D, 4, 5), np.float32)
            for s in ("h", "c")[:1 + (op == "LSTM")]}})
        for g, w_ in zip(got, [want[0], *(want[1] if op == "LSTM" else (want[1],))]):
            np.testing.assert_allclose(g, w_, rtol=0, atol=1e-5)
        back = next(iter(nplstm.from_onnx(path).values()))
        for name in ("activations", "clip", "bias", "bidirectional", "peepholes",
                     "input_forget", "linear_before_reset", "nonlinearity"):
            assert getattr(back, name, None) == getattr(layer, name, None), name
        for name in ("activation_alpha", "activation_beta"):  # explicit, float32 in ONNX
            assert [_f32(v) for v in getattr(back, name) or ()] == [
                _f32(v) for v in getattr(layer, name) or ()]


def _f32(v):
    return None if v is None else np.float32(v)


def test_alpha_lists_are_consumed_in_order_by_the_functions_that_take_them():
    """ONNX's activation_alpha [0.3, 1.5] over (HardSigmoid, Tanh, LeakyRelu): 0.3 is
    HardSigmoid's, 1.5 LeakyRelu's; beta [0.4] HardSigmoid's. The layer holds them
    aligned, and a list that runs out gives onnxruntime's default explicitly."""
    w = weights("LSTM", 1)
    model = node_model("LSTM", w, activations=["HardSigmoid", "Tanh", "LeakyRelu"],
                       activation_alpha=[0.3, 1.5], activation_beta=[0.4])
    layer = nplstm.from_onnx(model)["the_lstm"]
    f32 = float(np.float32(0.3)), float(np.float32(0.4))  # ONNX FLOATs are float32
    assert layer.activation_alpha == (f32[0], None, 1.5)
    assert layer.activation_beta == (f32[1], None, None)
    model = node_model("GRU", weights("GRU", 1), activations=["ThresholdedRelu", "Affine"])
    layer = nplstm.from_onnx(model)["the_gru"]
    assert layer.activation_alpha == (0.0, 0.0) and layer.activation_beta == (None, 0.0)
    assert layer.linear_before_reset is False  # ONNX's default is 0


def test_onnxruntime_softplus_overflows_where_nplstm_does_not():
    """A measured difference: onnxruntime computes Softplus as log(1 + exp(x)) in
    float32, which is inf for x > 88.7; nplstm's is finite (softplus(x) = x there)."""
    w = {"W": np.full((1, 5, 3), 40.0, np.float32), "R": np.zeros((1, 5, 5), np.float32)}
    model = node_model("RNN", w, activations=["Softplus"])
    f = feeds("RNN", 1, states=False)
    f["X"] = np.abs(f["X"]) + 1  # W x >= 120 everywhere
    ours = run_node(nplstm.from_onnx(model)["the_rnn"], f["X"])
    theirs = run_ort(model, f)
    assert np.isinf(theirs[0][0]).all()  # then nan: R (zeros) times inf
    np.testing.assert_allclose(ours[0], np.broadcast_to(
        (f["X"] @ w["W"][0].T)[:, None], ours[0].shape), rtol=1e-6)
