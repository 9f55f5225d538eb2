"""Which ONNX recurrent attributes nplstm, onnxruntime and onnx's reference evaluator
honour: measured here on one-node models with random weights, and held equal to the
README's table (so the table says what the tests measure, not what docs claim).

A cell reads ``yes`` (matches the truth), ``ignores`` (gives what the node gives
without the attribute), ``refuses`` (raises) or ``differs``. The truth is
onnxruntime's output, or, where onnxruntime refuses the node, its output for the
twin it runs: ``layout=1`` -> the layout-0 node on transposed tensors; no
``hidden_size`` -> the node that states it.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
from onnx_cases import (
    H,
    L,
    feeds,
    node_model,
    run_ort,
    run_reference,
    to_batch_major,
    weights,
)

import nplstm
from nplstm.onnx import run_node

README = pathlib.Path(__file__).parent.parent / "README.md"
GRU1 = {"linear_before_reset": 1}

#: label -> (op, node attributes, extra weights, feeds options, baseline change)
ROWS = {
    "`direction=reverse`": ("LSTM", {"direction": "reverse"}, {}, {}, {"direction": "forward"}),
    "`direction=bidirectional`": ("GRU", dict(GRU1, direction="bidirectional"), {}, {}, None),
    "`layout=1` (batch-major)": ("LSTM", {"layout": 1}, {}, {}, None),
    "`sequence_lens`": ("LSTM", {}, {}, {"lens": [L, 3, 1, 6]}, "lens"),
    "`sequence_lens` with a 0": ("GRU", GRU1, {}, {"lens": [L, 0, 2, 0]}, "lens"),
    "`initial_h`, `initial_c`": ("LSTM", {}, {}, {}, "states"),
    "`hidden_size` omitted (read off `R`)": ("GRU", dict(GRU1, hidden_size=None), {}, {},
                                             None),
    "`B` omitted (zero biases)": ("RNN", {"activations": ["Tanh"]}, {"bias": False}, {}, None),
    "RNN `activations=[Relu]`": ("RNN", {"activations": ["Relu"]}, {}, {},
                                 {"activations": ["Tanh"]}),
    "GRU `linear_before_reset=1`": ("GRU", GRU1, {}, {}, {"linear_before_reset": 0}),
    "GRU `linear_before_reset=0`": ("GRU", {"linear_before_reset": 0}, {}, {},
                                    {"linear_before_reset": 1}),
    "`clip`": ("LSTM", {"clip": 0.4}, {}, {}, {"clip": None}),
    "`input_forget=1`": ("LSTM", {"input_forget": 1}, {}, {}, {"input_forget": None}),
    "`P` (peepholes)": ("LSTM", {}, {"peepholes": True}, {}, "no P"),
    "LSTM `activations`": ("LSTM", {"activations": ["HardSigmoid", "Softsign", "Elu"]}, {},
                           {}, {"activations": None}),
    "GRU `activations`": ("GRU", dict(GRU1, activations=["Softsign", "Softplus"]), {}, {},
                          {"activations": None}),
    "RNN `activations` (others)": ("RNN", {"activations": ["Softsign"]}, {}, {},
                                   {"activations": ["Tanh"]}),
    "`activation_alpha`, `activation_beta`": (
        "LSTM", {"activations": ["HardSigmoid", "ScaledTanh", "LeakyRelu"],
                 "activation_alpha": [0.3, 1.5, 0.2], "activation_beta": [0.4, 0.8]},
        {}, {}, {"activation_alpha": None, "activation_beta": None}),
}


def _try(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a refusal is what is measured
        return None


def _same(a, b, tol=1e-5):
    return a is not None and b is not None and all(
        x.shape == y.shape and float(np.abs(x - y).max(initial=0)) <= tol for x, y in zip(a, b))


def _model(op, attrs, w, layout=0):
    attrs = dict(attrs)
    size = attrs.pop("hidden_size", H)  # None: left out
    attrs = {k: v for k, v in attrs.items() if v is not None}
    return node_model(op, w, layout=layout, hidden_size=size, **attrs)


def measure(label):
    """``(nplstm, onnxruntime, onnx reference)`` verdicts for one row."""
    op, attrs, wkw, fkw, base = ROWS[label]
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    w = weights(op, D, **wkw)
    attrs = dict(attrs)
    layout = attrs.pop("layout", 0)
    model = _model(op, attrs, w, layout)
    f = feeds(op, D, layout=layout, **fkw)
    ours = _try(lambda: run_node(next(iter(nplstm.from_onnx(model).values())), f["X"],
                                 f["sequence_lens"], f["initial_h"], f.get("initial_c")))
    ort = _try(lambda: run_ort(model, f))
    ref = _try(lambda: run_reference(model, f))
    truth = ort
    if layout == 1:
        truth = to_batch_major(run_ort(_model(op, attrs, w), feeds(op, D, **fkw)))
    if "hidden_size" in attrs:  # onnxruntime needs it: the twin that gives it
        truth = run_ort(_model(op, dict(attrs, hidden_size=H), w), f)
    baseline = _baseline(op, attrs, w, D, fkw, base, layout)

    def verdict(got):
        if got is None:
            return "refuses"
        if _same(got, truth):
            return "yes"
        return "ignores" if _same(got, baseline) else "differs"

    if baseline is not None:  # the case must be one where the attribute matters
        assert not _same(truth, baseline, 1e-3), label
    return verdict(ours), "refuses" if ort is None else "yes", verdict(ref)


def _baseline(op, attrs, w, D, fkw, base, layout):
    """onnxruntime's output for the same node without the attribute (None: no such)."""
    if base is None:
        return None
    if base == "no P":
        w = {k: v for k, v in w.items() if k != "P"}
    elif base in ("lens", "states"):
        fkw = {"lens": None} if base == "lens" else {"states": False}
    else:
        attrs = dict(attrs, **base)
    return run_ort(_model(op, attrs, w), feeds(op, D, **fkw))


def readme_table():
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ROWS:
            rows[cells[0]] = tuple(re.sub(r"\*", "", c) for c in cells[1:])
    return rows


@pytest.mark.parametrize("label", list(ROWS))
def test_readme_attribute_table_is_measured(label):
    measured = measure(label)
    assert readme_table().get(label) == measured, (
        f"README row for {label} should read {' | '.join(measured)}")


def test_nplstm_honours_every_attribute():
    assert all(readme_table()[label][0] == "yes" for label in ROWS)
