"""Committed Keras files (tests/fixtures/keras, made by make_fixtures.py there) against
the outputs Keras gave when it made them: the formats are tested where Keras is absent."""

from __future__ import annotations

import os

import numpy as np
import pytest

import nplstm

pytest.importorskip("h5py")

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras")


def _expected():
    with np.load(os.path.join(HERE, "expected.npz")) as f:
        return dict(f)


EXPECTED = _expected()
FILES = sorted({k.split("/")[0] for k in EXPECTED})


def run_file(filename):
    """nplstm's outputs for the file's calls: ``{"y{k}_{j}": array}``."""
    model = nplstm.from_keras(os.path.join(HERE, filename))
    out, k = {}, 0
    for call in EXPECTED[f"{filename}/calls"]:
        if call == "reset":
            model.reset_states()
            continue
        y = model(EXPECTED[f"{filename}/x{k}"])
        for j, a in enumerate(y if isinstance(y, list) else [y]):
            out[f"y{k}_{j}"] = a
        k += 1
    return out


@pytest.mark.parametrize("filename", FILES)
def test_fixture_matches_keras(filename):
    got = run_file(filename)
    want = {k.split("/")[1]: v for k, v in EXPECTED.items()
            if k.startswith(filename + "/y")}
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].dtype == np.float32
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-5,
                                   err_msg=f"{filename} {key}")


def test_keras2_hard_sigmoid_differs_from_keras3():
    """The two fixtures hold the same weights; Keras 2's hard_sigmoid (0.2x + 0.5)
    and Keras 3's (x/6 + 0.5) must give visibly different outputs, so the
    matching test above tells them apart."""
    a = EXPECTED["hard_sigmoid.keras/y0_0"]
    b = EXPECTED["hard_sigmoid_keras2.h5/y0_0"]
    assert np.abs(a - b).max() > 1e-2


def test_name_trap_file_stores_weights_out_of_name_order():
    """The trap the importer avoids: in the .keras file the layer named "lstm_1"
    lies under layers/lstm. Loading by name would swap the two LSTMs' weights
    (same shapes, so nothing would complain); test_fixture_matches_keras shows the
    importer does not."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(os.path.join(HERE, "name_trap.keras")) as z:
        blob = z.read("model.weights.h5")
    with h5py.File(io.BytesIO(blob), "r") as f:
        assert f["layers/lstm/vars"].attrs["name"] == "lstm_1"
        assert f["layers/lstm_1/vars"].attrs["name"] == "lstm"
        assert f["layers/lstm/cell/vars/0"].shape == f["layers/lstm_1/cell/vars/0"].shape


def test_name_order_loading_would_be_caught():
    """Load the two LSTMs' weights the way name matching would (swapped): the
    outputs then miss Keras's by far more than the tolerance."""
    model = nplstm.from_keras(os.path.join(HERE, "name_trap.keras"))
    sd = model.state_dict()
    swapped = {k.replace("1.", "#.", 1).replace("2.", "1.", 1).replace("#.", "2.", 1)
               if k[0] in "12" else k: v for k, v in sd.items()}
    model.load_state_dict(swapped)
    y = model(EXPECTED["name_trap.keras/x0"])
    assert np.abs(y - EXPECTED["name_trap.keras/y0_0"]).max() > 1e-2


def _as_keras2_config(config):
    """A Keras 3 functional config in Keras 2's layout: inbound nodes as
    ``[[name, node, tensor, kwargs]]``, no mask ops (Keras 2 propagated masks
    implicitly), ``dtype`` as a string, ``batch_input_shape``."""
    layers = []
    for item in config["config"]["layers"]:
        if item["class_name"] in ("NotEqual", "Any"):
            continue
        item = dict(item)
        nodes = []
        for node in item["inbound_nodes"]:
            history = node["args"][0]["config"]["keras_history"]
            nodes.append([[history[0], history[1], history[2], {}]])
        item["inbound_nodes"] = nodes
        cfg = dict(item["config"])
        if isinstance(cfg.get("dtype"), dict):
            cfg["dtype"] = cfg["dtype"]["config"]["name"]
        if "batch_shape" in cfg:
            cfg["batch_input_shape"] = cfg.pop("batch_shape")
        item["config"] = cfg
        layers.append(item)
    inner = dict(config["config"], layers=layers, input_layers=[config["config"]
                 ["input_layers"]], output_layers=[config["config"]["output_layers"]])
    return dict(config, class_name="Functional", config=inner)


def test_keras2_layout_of_a_functional_masked_model(tmp_path):
    """Keras 2 files: no mask ops in the graph; masks follow Keras's compute_mask."""
    import json
    import shutil

    import h5py

    path = tmp_path / "keras2.h5"
    shutil.copy(os.path.join(HERE, "masked_stack.h5"), path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        f.attrs["model_config"] = json.dumps(_as_keras2_config(config))
        f.attrs["keras_version"] = "2.15.0"
    model = nplstm.from_keras(path)
    x = EXPECTED["masked_stack.h5/x0"]
    np.testing.assert_allclose(model(x), EXPECTED["masked_stack.h5/y0_0"], rtol=0, atol=1e-5)


def test_trace_through_the_recurrent_layers():
    """``model.trace(x)``: one Trace per recurrent layer, on the input it received."""
    model = nplstm.from_keras(os.path.join(HERE, "name_trap.keras"))
    x = EXPECTED["name_trap.keras/x0"]
    traces = model.trace(x)
    assert sorted(traces) == [1, 2]
    hidden = model[0](x)  # Dense(4): the first LSTM's input
    np.testing.assert_array_equal(traces[1].input, hidden)
    np.testing.assert_array_equal(traces[1].output, model[1](hidden))
    np.testing.assert_array_equal(traces[2].h_n[0], model(x))  # the last LSTM's h_n
    assert traces[2].names == ("i", "f", "g", "o", "h", "c")
    assert [name for name, _ in model.named_parameters()] == list(model.state_dict())


def test_hard_sigmoid_fixtures_reach_both_clip_bounds():
    """The hard_sigmoid fixtures test the clipped parts too: some gates of the loaded
    LSTM are exactly 0 or 1, others strictly between."""
    for filename in ("hard_sigmoid.keras", "hard_sigmoid_keras2.h5"):
        model = nplstm.from_keras(os.path.join(HERE, filename))
        trace = model.trace(EXPECTED[f"{filename}/x0"])[0]
        gates = np.concatenate([trace.gate(g).ravel() for g in ("i", "f", "o")])
        assert np.any(gates == 0) and np.any(gates == 1), filename
        assert np.any((gates > 0) & (gates < 1)), filename


def test_trace_of_a_model_with_end_padding():
    """Padding at the end only: each recurrent layer's Trace records lengths, runs
    the very arithmetic of the call (same states), and the model's output is Keras's."""
    model = nplstm.from_keras(os.path.join(HERE, "masked_stack.keras"))
    x = np.random.default_rng(3).normal(size=(3, 7, 3)).astype(np.float32)
    x[1, 5:] = 0.0  # (N, L, F): sequence 1 has 5 steps
    traces = model.trace(x)
    assert sorted(traces) == [1, 2, 3]
    for trace in traces.values():
        assert trace.lengths.tolist() == [7, 5, 7]
    hidden = model[:2](x)  # after the Masking and the first LSTM (held outputs)
    keep = np.any(x != 0, axis=-1)  # (N, L)
    out, _ = model[2].inner(hidden, mask=keep)
    np.testing.assert_array_equal(traces[2].output, out)  # zero past the length
    final = model[:4](x)
    np.testing.assert_array_equal(traces[3].h_n[0], final)  # the last LSTM's state
