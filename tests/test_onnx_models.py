"""A real model: silero-vad's ONNX files, whose LSTMs sit inside If subgraphs with
weights computed from constants. Each node is checked against onnxruntime on the
inputs it really gets while the model runs on a signal."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
from onnx_cases import onnx, ort, session

import nplstm
from nplstm.onnx import run_node

SPEC = importlib.util.find_spec("silero_vad")  # its data files only: no import, no torch
if SPEC is None:
    pytest.skip("silero-vad is not installed (CI installs it: .ci/run)",
                allow_module_level=True)
DATA = pathlib.Path(SPEC.submodule_search_locations[0]) / "data"
#: file -> the (sampling rate, samples per call) it takes; 576 = 64 context + 512 new.
FILES = {"silero_vad.onnx": ((16000, 512), (8000, 256)),
         "silero_vad_16k_op15.onnx": ((16000, 512), (8000, 256)),
         "silero_vad_half.onnx": ((16000, 512), (8000, 256)),
         "silero_vad_openvino_16k.onnx": ((16000, 576),),
         "silero_vad_16k_sequence.onnx": ((16000, 576),)}
helper = onnx.helper


def signal(n, sr=16000, seed=0):
    """A voiced-like test signal: a 180 Hz tone with harmonics, amplitude-modulated,
    plus noise (float32 in [-1, 1])."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    tone = sum(np.sin(2 * np.pi * 180 * k * t) / k for k in range(1, 5))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * envelope * tone + 0.05 * rng.standard_normal(n)).astype(np.float32)


def _contains(graph, name):
    return any((n.op_type == "LSTM" and n.name == name) or
               any(_contains(a.g, name) for a in n.attribute if a.type == a.GRAPH)
               for n in graph.node)


def inline_to(model, name):
    """Replace every ``If`` on the way to LSTM node ``name`` by the branch holding it,
    so the node sits in the main graph; its inputs and outputs become graph outputs."""
    graph = model.graph
    while not any(n.op_type == "LSTM" and n.name == name for n in graph.node):
        for k, node in enumerate(graph.node):
            branch = [a.g for a in node.attribute if a.type == a.GRAPH and _contains(a.g, name)]
            if node.op_type == "If" and branch:
                g = branch[0]
                new = list(g.node) + [helper.make_node("Identity", [o.name], [out]) for o, out
                                      in zip(g.output, node.output)]
                del graph.node[k]
                for j, n in enumerate(new):
                    graph.node.insert(k + j, n)
                graph.initializer.extend(g.initializer)
                break
        else:
            raise AssertionError(f"no If leads to {name}")
    node = next(n for n in graph.node if n.op_type == "LSTM" and n.name == name)
    wanted = [node.input[0], node.input[5], node.input[6]] + list(node.output)
    graph.output.extend(helper.make_tensor_value_info(v, onnx.TensorProto.FLOAT, None)
                        for v in wanted)
    return len(wanted)


def feeds_for(model, chunk, state, sr):
    names = {i.name for i in model.graph.input}
    f = {"input": chunk}
    if "state" in names:
        f["state"] = state
    else:  # the sequence model takes h and c
        f["h"], f["c"] = state[:1], state[1:]
    if "sr" in names:
        f["sr"] = np.array(sr, np.int64)
    return f


def warm_state(model, chunks, sr):
    """The model run over the signal's chunks, its state carried: a state it really reaches."""
    sess = session(model)
    state = np.zeros((2, 1, 128), np.float32)
    for chunk in chunks:
        out = sess.run(None, feeds_for(model, chunk, state, sr))
        state = out[1] if len(out) == 2 else np.concatenate(out[1:3])
    return state


def chunks(x, size, seq):
    """Nine calls' inputs ``(1, size)``; the sequence model takes all windows of a
    call at once, ``(T, 576)``, windows overlapping by their 64 samples of context."""
    if not seq:
        return [x[None, k * size:(k + 1) * size] for k in range(9)]
    starts = np.arange(0, len(x) - size + 1, size - 64)  # (T,) window starts
    windows = np.stack([x[a:a + size] for a in starts])  # (T, 576)
    half = len(windows) // 2
    return [windows[:half], windows[half:2 * half]]


@pytest.mark.parametrize("file", list(FILES))
def test_silero_vad_lstm_nodes_match_onnxruntime(file):
    model = onnx.load(DATA / file)
    layers = nplstm.from_onnx(model)
    assert layers and all(type(v).__name__ == "LSTM" and v.hidden_size == 128
                          for v in layers.values())
    seq = "sequence" in file
    worst = 0.0
    for path, layer in layers.items():
        node_name = next(n for n in _lstm_names(model.graph) if path.endswith(n))
        done = False
        for sr, size in FILES[file]:
            calls = chunks(signal(size * 9, sr), size, seq)
            state = warm_state(model, calls[:-1], sr)
            flat = onnx.load(DATA / file)
            n_out = inline_to(flat, node_name)
            got = run_or_none(flat, feeds_for(flat, calls[-1], state, sr))
            if got is None:  # this branch is not the one for this rate
                continue
            X, h0, c0, *want = got[-n_out:]
            ours = run_node(layer, X, initial_h=h0, initial_c=c0)
            for g, w in zip(ours, want):
                scale = max(1.0, float(np.abs(w).max()))
                err = float(np.abs(g - w).max()) / scale
                worst = max(worst, err)
                assert err <= 1e-5, (path, err)
            done = True
            break
        assert done, path
    assert worst < 1e-5


def run_or_none(model, feeds):
    """onnxruntime's outputs, or None where it refuses the input's size."""
    try:
        return session(model).run(None, feeds)
    except ort.capi.onnxruntime_pybind11_state.InvalidArgument:
        return None


def _lstm_names(graph):
    for n in graph.node:
        if n.op_type == "LSTM":
            yield n.name
        for a in n.attribute:
            if a.type == a.GRAPH:
                yield from _lstm_names(a.g)


def test_silero_weights_are_the_pytorch_initializers():
    """In the op15 file the LSTM's W, R, B are Slice/Concat/Unsqueeze chains over the
    PyTorch-order initializers ``model.decoder.rnn.*``: folding and reordering back
    must give exactly those arrays."""
    model = onnx.load(DATA / "silero_vad_16k_op15.onnx")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    layer = nplstm.from_onnx(model)["/model/decoder/If_1/then_branch//model/decoder/rnn/LSTM"]
    for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(getattr(layer, key + "_l0"),
                                      inits[f"model.decoder.rnn.{key}"])
