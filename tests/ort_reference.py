"""onnxruntime as the reference for the layer options: one-node ONNX models.

Maps a single-layer nplstm layer onto an ONNX LSTM/GRU/RNN node (opset 14) by
the ONNX spec's layouts (Operators.md): W ``[D, G*H, in]``, R ``[D, G*H, H]``,
B ``[D, 2*G*H] = [Wb, Rb]``, P ``[D, 3H]``; gate orders LSTM i, o, f, c
(PyTorch i, f, g, o), GRU z, r, h (PyTorch r, z, n), peepholes i, o, f (ours
p_i, p_f, p_o). ``activation_alpha``/``_beta`` are flattened as ONNX (and
onnxruntime's rnn_helpers.cc) consume them: in order, one value per function
that takes one, always given explicitly.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper

ONNX_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}  # PyTorch index per slot
PEEP_ORDER = (0, 2, 1)  # ONNX P is i, o, f; ours p_i, p_f, p_o
OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _blocks(a, order, H):
    """Reorder the gate blocks of a stacked array (first axis)."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order])


def node_inputs(layer):
    """``{W, R, B[, P]}`` arrays for the ONNX node twin of a one-layer ``layer``."""
    fam, H = layer.family.name, layer.hidden_size
    order = ONNX_ORDER[fam]
    sd = layer.state_dict()
    W, R, B, P = [], [], [], []
    for d in range(layer.num_directions):
        s = "_l0" + ("_reverse" if d else "")
        W.append(_blocks(sd["weight_ih" + s], order, H))
        R.append(_blocks(sd["weight_hh" + s], order, H))
        B.append(np.concatenate([_blocks(sd["bias_ih" + s], order, H),
                                 _blocks(sd["bias_hh" + s], order, H)]))
        if "weight_ph" + s in sd:
            P.append(_blocks(sd["weight_ph" + s], PEEP_ORDER, H))
    out = {"W": np.stack(W), "R": np.stack(R), "B": np.stack(B)}
    if P:
        out["P"] = np.stack(P)
    return out


def node_attributes(layer):
    """The node's attributes: direction, activations with flat alpha/beta, clip, ..."""
    opts = layer._options
    names, alphas, betas = [], [], []
    for d in range(layer.num_directions):
        for act in opts.direction(d):
            names.append(act.name)
            if act.alpha is not None:
                alphas.append(act.alpha)
            if act.beta is not None:
                betas.append(act.beta)
    attrs = {"hidden_size": layer.hidden_size, "activations": names,
             "direction": "bidirectional" if layer.bidirectional else "forward"}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    if opts.clip is not None:
        attrs["clip"] = opts.clip
    if layer.family.name == "lstm":
        attrs["input_forget"] = int(opts.input_forget)
    if layer.family.name == "gru":
        attrs["linear_before_reset"] = int(opts.linear_before_reset)
    return attrs


def run_onnxruntime(layer, x, h0=None, c0=None, drop=()):
    """``(output (L, N, D*H), h_n (D, N, H)[, c_n])`` from onnxruntime, float32.

    x ``(L, N, H_in)``; h0/c0 ``(D, N, H)`` or None; ``drop``: attribute names
    to leave out of the node (to see onnxruntime's own defaults).
    """
    fam = layer.family.name
    feeds = {"X": np.asarray(x, np.float32)}
    feeds.update({k: v.astype(np.float32) for k, v in node_inputs(layer).items()})
    names = ["X", "W", "R", "B", "", "", ""]  # X W R B sequence_lens initial_h initial_c
    if h0 is not None:
        names[5], feeds["initial_h"] = "initial_h", np.asarray(h0, np.float32)
    if fam == "lstm":
        if c0 is not None:
            names[6], feeds["initial_c"] = "initial_c", np.asarray(c0, np.float32)
        if "P" in feeds:
            names.append("P")
    else:
        names = names[:6]
    while names[-1] == "":
        names.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if fam == "lstm" else [])
    attrs = {k: v for k, v in node_attributes(layer).items() if k not in drop}
    node = helper.make_node(OP[fam], names, outputs, **attrs)
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "options", [helper.make_tensor_value_info(k, f32, None) for k in feeds],
        [helper.make_tensor_value_info(k, f32, None) for k in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)
    Y = got[0]  # (L, D, N, H)
    L, D, N, H = Y.shape
    output = Y.transpose(0, 2, 1, 3).reshape(L, N, D * H)  # (L, N, D*H)
    return (output,) + tuple(got[1:])
