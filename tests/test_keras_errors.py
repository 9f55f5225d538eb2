"""from_keras refuses what it cannot run, naming the layer and option (no Keras needed:
the committed fixtures are rewritten into the bad cases)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import nplstm

h5py = pytest.importorskip("h5py")

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "keras")
MASKED = os.path.join(HERE, "masked_stack.keras")  # Masking, LSTM, Bidirectional(GRU), ...


def rewrite(tmp_path, edit_config=None, edit_weights=None, src=MASKED):
    """A copy of a .keras archive with its config and/or weights edited."""
    with zipfile.ZipFile(src) as z:
        parts = {name: z.read(name) for name in z.namelist()}
    if edit_config:
        config = json.loads(parts["config.json"])
        edit_config(config)
        parts["config.json"] = json.dumps(config).encode()
    if edit_weights:
        weights = tmp_path / "w.h5"
        weights.write_bytes(parts["model.weights.h5"])
        with h5py.File(weights, "r+") as f:
            edit_weights(f)
        parts["model.weights.h5"] = weights.read_bytes()
    out = tmp_path / "edited.keras"
    with zipfile.ZipFile(out, "w") as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return out


def layer(config, name):
    """The first layer named ``name`` or ``name_<k>`` (Keras numbers repeated names)."""
    return next(l for l in config["config"]["layers"]
                if l["name"] == name or l["name"].startswith(name + "_"))


def test_unsupported_layer_is_named(tmp_path):
    def edit(c):
        layer(c, "dense")["class_name"] = "Conv1D"
    with pytest.raises(NotImplementedError, match="layer 'dense': Keras layer class 'Conv1D'"):
        nplstm.from_keras(rewrite(tmp_path, edit))


@pytest.mark.parametrize("key,value,message", [
    ("time_major", True, r"layer 'lstm_1' \(LSTM\): time_major=True is not supported"),
    ("foo", 3, r"layer 'lstm_1' \(LSTM\): option foo=3 is not supported"),
    ("activation", "gelu", r"layer 'lstm_1' \(LSTM\): activation 'gelu' is not supported"),
])
def test_unsupported_option_is_named(tmp_path, key, value, message):
    with zipfile.ZipFile(MASKED) as z:
        config = json.loads(z.read("config.json"))
    names = [l["name"] for l in config["config"]["layers"] if l["class_name"] == "LSTM"]

    def edit(c):
        layer(c, names[0])["config"][key] = value
    with pytest.raises(NotImplementedError, match=message.replace("lstm_1", names[0])):
        nplstm.from_keras(rewrite(tmp_path, edit))


def test_dense_activation_and_dtype_errors(tmp_path):
    def gelu(c):
        layer(c, "dense")["config"]["activation"] = "gelu"
    with pytest.raises(NotImplementedError, match="activation 'gelu' is not supported"):
        nplstm.from_keras(rewrite(tmp_path, gelu))

    def half(c):
        for item in c["config"]["layers"]:
            if item["class_name"] == "Masking":
                item["config"]["dtype"] = "float16"
    with pytest.raises(NotImplementedError, match="dtype 'float16' is not supported"):
        nplstm.from_keras(rewrite(tmp_path, half))


def test_not_a_chain_is_refused(tmp_path):
    def branch(c):
        c["config"]["output_layers"] = [["masking", 0, 0], ["dense", 0, 0]]
    with pytest.raises(NotImplementedError, match="outputs come from .*only chains"):
        nplstm.from_keras(rewrite(tmp_path, branch))

    def skip(c):  # the Dense takes the Masking's output, skipping the recurrent layers
        node = layer(c, "dense")["inbound_nodes"][0]
        node["args"][0]["config"]["keras_history"] = [layer(c, "masking")["name"], 0, 0]
    with pytest.raises(NotImplementedError, match="takes \\['masking.*'\\], not the previous"):
        nplstm.from_keras(rewrite(tmp_path, skip))

    def op(c):
        for item in c["config"]["layers"]:
            if item["class_name"] == "Any":
                item["class_name"] = "Sum"
    with pytest.raises(NotImplementedError, match="graph op 'Sum'"):
        nplstm.from_keras(rewrite(tmp_path, op))


def test_mask_from_elsewhere_is_refused(tmp_path):
    def edit(c):  # the mask op reads the Masking layer's output, not its input
        for item in c["config"]["layers"]:
            if item["class_name"] == "NotEqual":
                item["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = [
                    layer(c, "bidirectional")["name"], 0, 0]
    with pytest.raises(NotImplementedError, match="is not one a Masking layer made"):
        nplstm.from_keras(rewrite(tmp_path, edit))


def test_weights_of_the_wrong_layer_are_refused(tmp_path):
    def swap(f):
        names = [k for k in f["layers"] if k.startswith("lstm")]
        f[f"layers/{names[0]}/vars"].attrs["name"] = "somebody_else"
    with pytest.raises(ValueError, match="holds the weights of layer 'somebody_else'"):
        nplstm.from_keras(rewrite(tmp_path, edit_weights=swap))

    def extra(f):
        f["layers/dense/vars/2"] = np.ones(3)
    with pytest.raises(ValueError, match=r"expected kernel .* got \[\(6, 2\), \(2,\), \(3,\)\]"):
        nplstm.from_keras(rewrite(tmp_path, edit_weights=extra))

    def stray(f):
        f["layers/masking/vars/0"] = np.ones(3)
    with pytest.raises(ValueError, match="weights no layer took"):
        nplstm.from_keras(rewrite(tmp_path, edit_weights=stray))

    def shape(f):
        data = np.array(f["layers/dense/vars/0"])
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = data.T
    with pytest.raises(ValueError, match=r"layer 'dense' \(Dense, units=2\)"):
        nplstm.from_keras(rewrite(tmp_path, edit_weights=shape))


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such Keras model file"):
        nplstm.from_keras(tmp_path / "missing.keras")
    text = tmp_path / "model.keras"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="expected a Keras .keras \\(zip\\) or .h5"):
        nplstm.from_keras(text)
    empty = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="not a Keras model archive: no config.json"):
        nplstm.from_keras(empty)
    weights_only = tmp_path / "weights.h5"
    with h5py.File(weights_only, "w") as f:
        f["x"] = np.ones(2)
    with pytest.raises(ValueError, match="no model_config attribute"):
        nplstm.from_keras(weights_only)
    with pytest.raises(ValueError, match="a directory .* is not a Keras model file"):
        nplstm.from_keras(tmp_path)
    with pytest.raises(TypeError, match="source must be a path .* got int"):
        nplstm.from_keras(3)
    with pytest.raises(NotImplementedError, match="Keras model class 'Foo'"):
        nplstm.from_keras(rewrite(tmp_path, lambda c: c.update(class_name="Foo")))


def test_h5_with_too_few_weights(tmp_path):
    path = tmp_path / "m.h5"
    shutil.copy(os.path.join(HERE, "masked_stack.h5"), path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"]
        group.attrs["layer_names"] = [n for n in group.attrs["layer_names"] if n != b"dense"
                                      and n != "dense"]
    with pytest.raises(ValueError, match="has weights but the file has no more layers"):
        nplstm.from_keras(path)


def test_h5py_missing_names_the_extra():
    code = ("import sys; sys.modules['h5py'] = None\nimport nplstm\n"
            f"nplstm.from_keras({MASKED!r})")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env=dict(os.environ, PYTHONPATH=_src()))
    assert "pip install nplstm[keras]" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", ("import sys, nplstm; nplstm.Sequential; "
                           "assert 'h5py' not in sys.modules and 'keras' not in sys.modules")],
                          capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=_src()))
    assert proc.returncode == 0, proc.stderr


def _src():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def test_stateful_batch_and_masked_trace_errors():
    model = nplstm.from_keras(os.path.join(HERE, "stateful.keras"))
    x = np.random.default_rng(0).normal(size=(3, 7, 3)).astype(np.float32)
    model(x)
    with pytest.raises(ValueError, match="keeps its batch size: its states are for 3"):
        model(x[:2])
    model.reset_states()
    assert model(x[:2]).shape == (2, 2 * 4)  # Bidirectional(GRU(4)), concatenated
    masked = nplstm.from_keras(MASKED)
    x[0, 2:4] = 0.0  # padding in the middle: a Trace cannot record it
    with pytest.raises(NotImplementedError, match="needs padding at the end of each "):
        masked.trace(x)


def test_keras_layer_classes_check_their_input():
    from nplstm.keras import layers as kl

    with pytest.raises(ValueError, match="batch_first=True and num_layers=1"):
        kl.Recurrent(nplstm.LSTM(3, 5))
    with pytest.raises(ValueError, match="merge_mode must be"):
        kl.Recurrent(nplstm.LSTM(3, 5, batch_first=True), merge_mode="max")
    with pytest.raises(ValueError, match=r"recurrent layer takes input \(N, L, features\)"):
        kl.Recurrent(nplstm.GRU(3, 5, batch_first=True))(np.ones((7, 3)))
    with pytest.raises(ValueError, match=r"Masking expects input \(N, L, features\)"):
        kl.Masking()(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Reshape: cannot reshape input of shape \(2, 3\)"):
        kl.Reshape((4,))(np.ones((2, 3)))


def _bidirectional(c):
    return layer(c, "bidirectional")["config"]


def _first_lstm(c):
    return next(l for l in c["config"]["layers"] if l["class_name"] == "LSTM")


def _nested(c):
    layer(c, "dense")["class_name"] = "Sequential"


def _shared(c):
    item = layer(c, "dense")
    item["inbound_nodes"] = item["inbound_nodes"] * 2


def _two_inputs(c):
    c["config"]["input_layers"] = [["input_layer", 0, 0], ["other", 0, 0]]


def _output_one(c):
    node = layer(c, "dense")["inbound_nodes"][0]
    node["args"][0]["config"]["keras_history"][2] = 1


def _time_distributed(c):
    item = layer(c, "dense")
    item["class_name"] = "TimeDistributed"
    item["config"] = {"name": item["name"], "layer": {"class_name": "Conv1D", "config": {}}}


def _flatten_first(c):
    item = layer(c, "dense")
    item["class_name"] = "Flatten"
    item["config"] = {"name": item["name"], "data_format": "channels_first"}


@pytest.mark.parametrize("edit,message", [
    (lambda c: _bidirectional(c)["layer"]["config"].update(go_backwards=True),
     "Bidirectional of a go_backwards layer"),
    (lambda c: _bidirectional(c)["backward_layer"]["config"].update(units=9),
     "backward_layer configured unlike the forward layer"),
    (lambda c: _first_lstm(c)["config"].update(recurrent_activation="gelu"),
     "activation 'gelu' is not supported"),
    (_nested, "is a nested Sequential model"),
    (_shared, r"is called 2 times \(a shared layer\)"),
    (_two_inputs, "a model with 2 inputs"),
    (_output_one, "output 1 of a layer with 1 outputs"),
    (lambda c: c["config"].update(output_layers=[[layer(c, "dense")["name"], 0, 1]]),
     r"output \[1\] of layer 'dense', which has one output"),
    (_time_distributed, r"TimeDistributed\(Conv1D\) is not supported"),
    (_flatten_first, "data_format='channels_first' is not supported"),
])
def test_unsupported_structures_are_named(tmp_path, edit, message):
    with pytest.raises(NotImplementedError, match=message):
        nplstm.from_keras(rewrite(tmp_path, edit))


def test_graph_mask_must_be_the_one_sequential_gives(tmp_path):
    def drop(c):  # the first LSTM gets no mask in the graph, though a Masking precedes it
        _first_lstm(c)["inbound_nodes"][0]["kwargs"].pop("mask")
    with pytest.raises(NotImplementedError, match="receives the mask of None in the graph"):
        nplstm.from_keras(rewrite(tmp_path, drop))


def test_several_arrays_into_the_next_layer_are_refused(tmp_path):
    def edit(c):  # a Sequential model: the first LSTM would hand on [output, h, c]
        c["config"]["layers"][1]["config"]["return_state"] = True
    with pytest.raises(NotImplementedError, match="returns 3 arrays .* only the last layer"):
        nplstm.from_keras(rewrite(tmp_path, edit, src=os.path.join(HERE, "stateful.keras")))
