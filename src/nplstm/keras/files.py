"""Reading Keras model files without Keras: the JSON config and the weight arrays.

Two formats (Keras 3 docs, "Save, serialize, and export models"; keras.src.saving):

- ``.keras``: a zip holding ``config.json`` (the architecture), ``metadata.json``
  (``keras_version``) and ``model.weights.h5``, where a layer's variables lie
  under ``layers/<class name in snake case, numbered per class in model.layers
  order>/...`` (``saving_lib._save_container_state``) -- not under the layer's
  own name. Each ``vars`` group records the object's real name in its
  ``name`` attribute (Keras >= 3.x), used here as a cross-check.
- ``.h5`` (legacy HDF5): root attributes ``model_config`` (JSON) and
  ``keras_version``; group ``model_weights`` lists ``layer_names`` and, per
  layer, ``weight_names``; Keras loads them by order of the layers that have
  weights (``legacy_h5_format.load_weights_from_hdf5_group``), and so does this.

h5py is needed for the weights (``pip install nplstm[keras]``); neither keras
nor tensorflow is.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile

import numpy as np

from ..io._common import (
    INFLATE_ALLOWANCE,
    INFLATE_RATIO,
    check_zip_archive,
    open_zip,
    read_zip_entry,
)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading Keras model files needs h5py: pip install "
                          "nplstm[keras]") from None
    return h5py


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def major_version(version):
    """``"3.15.1"`` -> 3; ``"2.15.0"`` -> 2. ValueError naming the text otherwise."""
    match = re.match(r"\s*(\d+)\.", _text(version))
    if not match:
        raise ValueError(f"keras_version must look like '3.1.0', got {version!r}")
    return int(match.group(1))


def snake_case(name):
    """Keras's ``naming.to_snake_case``: ``"SimpleRNN"`` -> ``"simple_rnn"``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _json(data, where):
    """A JSON document as Python data; ValueError naming ``where`` if it is not one
    (bad UTF-8, bad JSON, or nesting too deep for the parser)."""
    try:
        return json.loads(_text(data))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{where} is not valid JSON: {str(exc)[:120]}") from None


def _open_h5(source, where):
    """An HDF5 file opened read-only, refused if any link leaves the file: external
    links, soft links (Keras writes neither), virtual datasets and datasets with
    external storage (HDF5 would read other files for them)."""
    h5py = _h5py()
    try:
        f = h5py.File(source, "r")
    except OSError as exc:
        raise ValueError(f"{where}: not an HDF5 file ({exc})") from None
    bad = []

    def check(name, link):
        if not isinstance(link, h5py.HardLink):
            bad.append(f"{name} ({type(link).__name__})")

    f.visititems_links(check)  # does not follow links
    if not bad:
        f.visititems(lambda name, obj: bad.append(f"{name} (virtual or external data)")
                     if isinstance(obj, h5py.Dataset) and (obj.is_virtual or obj.external)
                     else None)
    if bad:
        f.close()
        raise ValueError(f"{where}: refusing links and datasets Keras never writes, "
                         "through which HDF5 would read other files or objects: "
                         f"{bad[:4]}")
    return f


def _limit(source):
    """Bytes a weight may declare: the io readers' inflation budget for this file."""
    size = (source.getbuffer().nbytes if isinstance(source, io.BytesIO)
            else os.path.getsize(source))
    return INFLATE_RATIO * size + INFLATE_ALLOWANCE


def read_array(dataset, layer_name, limit):
    """A weight dataset as a NumPy array: a real float type, at most ``limit`` bytes
    (a few bytes of HDF5 can declare terabytes of unwritten chunks).

    Raises:
        ValueError: naming the layer, for anything else (a group, int/bool/string data).
    """
    h5py = _h5py()
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"layer {layer_name!r}: weight {dataset.name!r} is not a dataset")  # noqa: TRY004
    if dataset.dtype.kind != "f":
        raise ValueError(f"layer {layer_name!r}: weight {dataset.name!r} must hold floats, "
                         f"got dtype {dataset.dtype}")
    if dataset.size * dataset.dtype.itemsize > limit:
        raise ValueError(f"layer {layer_name!r}: weight {dataset.name!r} declares shape "
                         f"{dataset.shape}, more bytes than the file can hold")
    return np.array(dataset)


class KerasFile:
    """A model file's ``config`` (dict), ``keras_version`` (str) and weights.

    ``weights(i, layer_cfg, parts)``: the arrays of the i-th layer (in
    model.layers order) that has weights, as a list in Keras's ``layer.weights``
    order; ``parts`` names the sub-objects holding them in a ``.keras`` file.
    ``unused()`` lists weights not handed out (a mismatch if not empty).
    """

    def __init__(self, config, keras_version):
        self.config = config
        self.keras_version = keras_version

    @property
    def major(self):
        return major_version(self.keras_version)

    def close(self):
        self._h5.close()


class KerasArchive(KerasFile):
    """A ``.keras`` zip (Keras 3's format)."""

    def __init__(self, path):
        size = os.path.getsize(path)
        with open_zip(path, "Keras model archive") as z:
            check_zip_archive(z, path, size)  # duplicates, zip bombs
            parts = {name: read_zip_entry(z, z.getinfo(name), path)
                     for name in ("config.json", "metadata.json", "model.weights.h5")
                     if name in z.namelist()}
            found = sorted(z.namelist())[:8]
        for need in ("config.json", "model.weights.h5"):
            if need not in parts:
                raise ValueError(f"{path}: not a Keras model archive: no {need} "
                                 f"(found {found})")
        config = _json(parts["config.json"], f"{path}: config.json")
        meta = _json(parts.get("metadata.json", b"{}"), f"{path}: metadata.json")
        blob = parts["model.weights.h5"]
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: metadata.json must hold a JSON object, got "  # noqa: TRY004
                             f"{type(meta).__name__}")
        super().__init__(config, meta.get("keras_version", "3.0.0"))
        self._h5 = _open_h5(io.BytesIO(blob), f"{path}: model.weights.h5")
        self._limit = _limit(io.BytesIO(blob))
        self._used = set()
        self._counts = {}

    def path_of(self, class_name):
        """The next ``layers/<snake>[_k]`` path for a layer of this class, in order."""
        base = snake_case(class_name)
        k = self._counts.get(base, -1) + 1
        self._counts[base] = k
        return "layers/" + (base if k == 0 else f"{base}_{k}")

    def weights(self, path, layer_name, parts):
        own = self._h5.get(f"{path}/vars")
        owner = None if own is None else own.attrs.get("name")
        if owner is not None and _text(owner) != layer_name:
            raise ValueError(f"{path} holds the weights of layer {_text(owner)!r}, not "
                             f"{layer_name!r}: the file does not follow Keras's layer order")
        arrays = []
        for part in parts:
            group = self._h5.get(f"{path}/{part}")
            if group is None:
                continue
            keys = sorted(group, key=lambda k: int(k) if k.isdigit() else -1)
            for key in keys:
                if not isinstance(group[key], _h5py().Dataset):
                    continue
                arrays.append(read_array(group[key], layer_name, self._limit))
                self._used.add(f"{path}/{part}/{key}")
        return arrays

    def unused(self):
        found = []
        self._h5.visititems(lambda name, obj: found.append(name)
                            if isinstance(obj, _h5py().Dataset) else None)
        return [name for name in found if name not in self._used]


class KerasH5(KerasFile):
    """A legacy ``.h5`` model file (Keras 2, or Keras 3's ``model.save("x.h5")``)."""

    def __init__(self, path):
        self._h5 = _open_h5(path, path)
        self._limit = _limit(path)
        if "model_config" not in self._h5.attrs:
            self._h5.close()
            raise ValueError(f"{path}: no model_config attribute: a weights-only file, not "
                             f"a saved Keras model")
        config = _json(self._h5.attrs["model_config"], f"{path}: model_config")
        super().__init__(config, _text(self._h5.attrs.get("keras_version", "2.0.0")))
        group = self._h5.get("model_weights", self._h5)
        self._group = group
        names = [_text(n) for n in group.attrs.get("layer_names", [])]
        missing = [n for n in names if not isinstance(group.get(n), _h5py().Group)]
        if "layer_names" not in group.attrs or missing:
            self._h5.close()
            raise ValueError(f"{path}: the weights group must list its layer groups in a "
                             f"layer_names attribute; missing: "
                             f"{missing[:4] if missing else 'layer_names'}")
        self._layers = [n for n in names if len(group[n].attrs.get("weight_names", []))]
        self._next = 0

    def weights(self, path, layer_name, parts):
        """Keras matches by order of the layers with weights, not by name."""
        if self._next >= len(self._layers):
            raise ValueError(f"layer {layer_name!r} has weights but the file has no more "
                             f"layers with weights (it has {len(self._layers)})")
        group = self._group[self._layers[self._next]]
        self._next += 1
        names = [_text(n) for n in group.attrs["weight_names"]]
        absent = [n for n in names if n not in group]
        if absent:
            raise ValueError(f"layer {layer_name!r}: the file lists weights it does not hold: "
                             f"{absent[:4]}")
        return [read_array(group[n], layer_name, self._limit) for n in names]

    def unused(self):
        return self._layers[self._next:]


def open_model_file(path):
    """A :class:`KerasFile` for ``path`` (``.keras`` or ``.h5``/``.hdf5``)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such Keras model file: {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"{path}: a directory (a TensorFlow SavedModel?) is not a Keras "
                         "model file; save the model with model.save('model.keras')")
    if zipfile.is_zipfile(path):
        return KerasArchive(path)
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        return KerasH5(path)
    raise ValueError(f"{path}: expected a Keras .keras (zip) or .h5 (HDF5) model file; "
                     f"its first bytes are {magic!r}")
