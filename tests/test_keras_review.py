"""Hostile and malformed Keras files (a review of the importer): every one refused
with a documented error naming the layer and option, nothing read from outside the
file, no code run, no config value read by Python truthiness. No Keras needed."""

from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np
import pytest
from test_keras_errors import HERE, MASKED, layer, rewrite

import nplstm

h5py = pytest.importorskip("h5py")

KERNEL = "layers/lstm/cell/vars/0"  # the first LSTM's kernel (3, 20) in masked_stack


def _replace(f, make):
    del f[KERNEL]
    make(f)


@pytest.fixture
def secret(tmp_path):
    """A file beside the model that a hostile model file might point at."""
    path = tmp_path / "secret.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.full((3, 20), 7.0, np.float32)
        f["layers/lstm"] = np.full((3, 20), 7.0, np.float32)
    return path


def _vds(secret):
    layout = h5py.VirtualLayout(shape=(3, 20), dtype="f4")
    layout[:] = h5py.VirtualSource(str(secret), "data", shape=(3, 20))
    return lambda f: f.create_virtual_dataset(KERNEL, layout)


@pytest.mark.parametrize("kind", ["external link", "external group", "soft link", "virtual",
                                  "external storage"])
def test_links_out_of_the_file_are_refused(tmp_path, secret, kind):
    raw = tmp_path / "raw.bin"
    np.full((3, 20), 7.0, np.float32).tofile(raw)
    edits = {
        "external link": lambda f: _replace(
            f, lambda f: f.__setitem__(KERNEL, h5py.ExternalLink(str(secret), "data"))),
        "external group": lambda f: (f.__delitem__("layers/lstm"), f.__setitem__(
            "layers/lstm", h5py.ExternalLink(str(secret), "layers/lstm"))),
        "soft link": lambda f: _replace(
            f, lambda f: f.__setitem__(KERNEL, h5py.SoftLink("/layers/lstm_1/cell/vars/0"))),
        "virtual": lambda f: _replace(f, _vds(secret)),
        "external storage": lambda f: _replace(f, lambda f: f.create_dataset(
            KERNEL, shape=(3, 20), dtype="f4", external=[(str(raw), 0, 240)])),
    }
    with pytest.raises(ValueError, match="refusing links and datasets Keras never writes.*"
                                         "layers/lstm"):
        nplstm.from_keras(rewrite(tmp_path, edit_weights=edits[kind]))


def test_links_in_a_legacy_h5_are_refused(tmp_path, secret):
    path = tmp_path / "m.h5"
    shutil.copy(os.path.join(HERE, "masked_stack.h5"), path)
    with h5py.File(path, "r+") as f:
        group = f["model_weights"]
        name = next(iter(group))
        del group[name]
        group[name] = h5py.ExternalLink(str(secret), "layers")
    with pytest.raises(ValueError, match="refusing links .*ExternalLink"):
        nplstm.from_keras(path)


@pytest.mark.parametrize("dtype", ["int64", "bool", "complex64", "S1"])
def test_weights_that_are_not_floats_are_refused(tmp_path, dtype):
    data = np.ones((3, 20)).astype(dtype)
    path = rewrite(tmp_path, edit_weights=lambda f: _replace(
        f, lambda f: f.__setitem__(KERNEL, data)))
    with pytest.raises(ValueError, match=f"layer 'lstm_3': weight .* must hold floats, got "
                                         f"dtype {np.dtype(dtype)}"):
        nplstm.from_keras(path)


def test_a_huge_declared_weight_is_refused_before_reading(tmp_path):
    path = rewrite(tmp_path, edit_weights=lambda f: _replace(f, lambda f: f.create_dataset(
        KERNEL, shape=(3, 20 * 10**9), dtype="f4", chunks=(1, 1000))))
    with pytest.raises(ValueError, match="layer 'lstm_3': weight .* declares shape "
                                         r"\(3, 20000000000\), more bytes than"):
        nplstm.from_keras(path)


def _archive(tmp_path, replace=None, add=None, compression=zipfile.ZIP_STORED):
    """masked_stack.keras with entries replaced ({name: bytes or None to drop}) or added."""
    out = tmp_path / "x.keras"
    replace = replace or {}
    with zipfile.ZipFile(MASKED) as z, zipfile.ZipFile(out, "w", compression) as o:
        for name in z.namelist():
            data = replace.get(name, z.read(name))
            if data is not None:
                o.writestr(name, data)
        for name, data in (add or {}).items():
            o.writestr(name, data)
    return out


@pytest.mark.parametrize("entry, data, message", [
    ("config.json", b"\xff\xfe{", "config.json is not valid JSON: 'utf-8' codec"),
    ("config.json", b"{", "config.json is not valid JSON: Expecting property name"),
    ("config.json", b"[" * 100000 + b"]" * 100000, "config.json is not valid JSON"),
    ("config.json", b"null", "a Keras model config must be a JSON object"),
    ("config.json", b'{"class_name": "Sequential", "config": [1]}',
     "must be a JSON object holding a 'config' object"),
    ("config.json", b'{"class_name": "Sequential", "config": {"layers": 5}}',
     "the model config's layers must be a list, got 5"),
    ("config.json", b'{"class_name": "Sequential", "config": {"layers": ["x"]}}',
     "layer 0: a layer must be a JSON object"),
    ("metadata.json", b"[1]", "metadata.json must hold a JSON object, got list"),
    ("metadata.json", b'{"keras_version": 3}', "keras_version must look like '3.1.0', got 3"),
    ("model.weights.h5", b"garbage", "model.weights.h5: not an HDF5 file"),
    ("config.json", None, "not a Keras model archive: no config.json"),
    ("model.weights.h5", None, "not a Keras model archive: no model.weights.h5"),
])
def test_malformed_archive_entries(tmp_path, entry, data, message):
    with pytest.raises(ValueError, match=message) as info:
        nplstm.from_keras(_archive(tmp_path, {entry: data}))
    assert "damaged" not in str(info.value)


def test_a_zip_bomb_is_refused(tmp_path):
    path = _archive(tmp_path, add={"junk.bin": b"\0" * (200 << 20)},
                    compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match="refusing a likely zip bomb"):
        nplstm.from_keras(path)


def _lstm(c):
    return layer(c, "lstm")["config"]


@pytest.mark.parametrize("key, value, message", [
    ("return_sequences", "no", "option return_sequences must be true or false, got 'no'"),
    ("go_backwards", "false", "option go_backwards must be true or false, got 'false'"),
    ("use_bias", 1, "option use_bias must be true or false, got 1"),
    ("stateful", "false", "option stateful must be true or false"),
    ("units", 5.5, "units must be a positive integer, got 5.5"),
    ("units", "5", "units must be a positive integer, got '5'"),
    ("units", True, "units must be a positive integer, got True"),
    ("units", -5, "units must be a positive integer, got -5"),
])
def test_option_types_are_keras_own(tmp_path, key, value, message):
    path = rewrite(tmp_path, lambda c: _lstm(c).update({key: value}))
    with pytest.raises(ValueError, match=f"layer 'lstm_3' \\(LSTM\\): {message}"):
        nplstm.from_keras(path)


@pytest.mark.parametrize("dtype, shown", [
    ("float16", "'float16'"),
    ({"module": "keras", "class_name": "DTypePolicy", "config": {"name": "mixed_float16"}},
     "'mixed_float16'"),
    (["float32"], r"\['float32'\]"),
])
def test_every_layer_dtype_is_checked(tmp_path, dtype, shown):
    """Not only the first layer's (here the Masking layer's): a float16 LSTM later."""
    path = rewrite(tmp_path, lambda c: _lstm(c).update(dtype=dtype))
    with pytest.raises(NotImplementedError, match=f"layer 'lstm_3': dtype {shown} is not "
                                                  "supported"):
        nplstm.from_keras(path)


def test_mixed_float32_float64_is_refused(tmp_path):
    path = rewrite(tmp_path, lambda c: _lstm(c).update(dtype="float64"))
    with pytest.raises(NotImplementedError, match="layer 'lstm_3': dtype float64 in a "
                                                  "float32 model"):
        nplstm.from_keras(path)


@pytest.mark.parametrize("key, value", [("stddev", 3), ("rate", 0.5),
                                        ("data_format", "channels_first"),
                                        ("noise_shape", [1, 2])])
def test_another_class_options_are_not_inert(tmp_path, key, value):
    """A noise layer's options on an LSTM are unknown there, not ignored."""
    path = rewrite(tmp_path, lambda c: _lstm(c).update({key: value}))
    with pytest.raises(NotImplementedError, match=f"layer 'lstm_3' \\(LSTM\\): option {key}="):
        nplstm.from_keras(path)


@pytest.mark.parametrize("target, edit, shown", [
    ("lstm", lambda l: l.update(registered_name="my_package>MyLSTM"),
     "'my_package>MyLSTM' \\(module 'keras.layers'\\)"),
    ("lstm", lambda l: l.update(module="os"), "'LSTM' \\(module 'os'\\)"),
    ("bidirectional", lambda l: l["config"]["layer"].update(module="evil"),
     "'GRU' \\(module 'evil'\\)"),
])
def test_custom_objects_are_refused(tmp_path, target, edit, shown):
    path = rewrite(tmp_path, lambda c: edit(layer(c, target)))
    with pytest.raises(NotImplementedError, match=f"custom object {shown} is not supported"):
        nplstm.from_keras(path)


def test_malformed_graph_is_a_value_error(tmp_path):
    def history(c):
        layer(c, "lstm")["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["x"]

    with pytest.raises(ValueError, match="keras_history must be \\[layer name"):
        nplstm.from_keras(rewrite(tmp_path, history))
    with pytest.raises(ValueError, match="malformed Keras model config: KeyError: 'name'"):
        nplstm.from_keras(rewrite(tmp_path, lambda c: layer(c, "lstm").pop("name")))
    with pytest.raises(ValueError, match="malformed Keras model config: AttributeError"):
        nplstm.from_keras(rewrite(tmp_path, lambda c: layer(c, "lstm").update(
            inbound_nodes="x")))


def test_weights_of_another_width_fail_at_load_naming_the_layer(tmp_path):
    """A kernel for 4 features in a model whose input has 3: refused at load, not at
    the first call (consistent in itself, so only the chain's widths show it)."""
    path = rewrite(tmp_path, edit_weights=lambda f: _replace(
        f, lambda f: f.__setitem__(KERNEL, np.ones((4, 20), np.float32))))
    with pytest.raises(ValueError, match="layer 'lstm_3' \\(LSTM\\): its weights take 4 "
                                         "features, but the layer before gives 3"):
        nplstm.from_keras(path)

    def dense(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = np.ones((7, 2), np.float32)

    with pytest.raises(ValueError, match="layer 'dense' \\(Dense\\): its weights take 7 "
                                         "features, but the layer before gives 6"):
        nplstm.from_keras(rewrite(tmp_path, edit_weights=dense))


def _weight_names_missing(f):
    group = f["model_weights"]
    name = next(k for k in group if len(group[k].attrs.get("weight_names", [])))
    group[name].attrs["weight_names"] = [b"missing/w:0"]


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["model_weights"].attrs.__delitem__("layer_names"),
     "must list its layer groups in a layer_names attribute; missing: layer_names"),
    (lambda f: f.__delitem__("model_weights"), "missing: layer_names"),
    (lambda f: f["model_weights"].attrs.__setitem__("layer_names", [b"nope"]),
     r"missing: \['nope'\]"),
    (lambda f: f.attrs.__setitem__("model_config", "{"), "model_config is not valid JSON"),
    (lambda f: f.attrs.__setitem__("model_config", 5), "must be a JSON object"),
    (_weight_names_missing, r"the file lists weights it does not hold: \['missing/w:0'\]"),
])
def test_malformed_legacy_h5(tmp_path, edit, message):
    path = tmp_path / "m.h5"
    shutil.copy(os.path.join(HERE, "masked_stack.h5"), path)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(ValueError, match=message):
        nplstm.from_keras(path)
