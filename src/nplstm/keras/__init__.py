"""Keras models without Keras: ``.keras`` and ``.h5`` files as an :class:`nplstm.Sequential`.

>>> model = nplstm.from_keras("model.keras")   # needs h5py: pip install nplstm[keras]
>>> y = model(x)                               # what model.predict(x) returns

The importer maps; nplstm's layers compute (see :mod:`nplstm.keras.build` for the
weight mapping, :mod:`nplstm.keras.layers` for Keras's output and mask rules).
"""

from __future__ import annotations

import os
import tempfile

from ..sequential import Sequential
from . import build, graph
from . import layers as kl
from .files import KerasArchive, open_model_file

__all__ = ["from_keras"]


def from_keras(source):
    """Load a Keras model as an :class:`nplstm.Sequential` that computes ``model.predict``.

    Args:
        source: a path (str or ``os.PathLike``) to a Keras 3 ``.keras`` archive or a
            legacy ``.h5`` model file (Keras 2 or 3), read with h5py alone; or an
            in-memory ``keras.Model`` (needs keras; it is saved to a temporary
            ``.keras`` file and read back).

    Returns:
        :class:`nplstm.Sequential` of nplstm layers in eval mode: input ``(N, L, features)``
        (Keras's batch-first layout) as float32 (float64 for a float64 model);
        the output is what ``model.predict`` returns (a list for several outputs).

    Raises:
        FileNotFoundError: no such file. ValueError: not a Keras model file, a
        malformed one (invalid JSON, wrong JSON types, non-boolean flags), one whose
        HDF5 links or datasets point outside it, a zip bomb, or weights that do not
        fit the layers (non-float, wrong shape, wrong width). Nothing from the file
        is run or imported. NotImplementedError: a layer, option, dtype, custom
        object or model structure that is not supported (named). ImportError: h5py
        missing.
    """
    if hasattr(source, "get_config") and hasattr(source, "save"):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            source.save(path)
            return _load(path)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path to a .keras/.h5 file or a keras.Model, got "
                        f"{type(source).__name__}")
    return _load(source)


def _load(path):
    f = open_model_file(path)
    try:
        return _build(f, path)
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        # a config of the wrong JSON types (a list for an object, a missing key, ...)
        raise ValueError(f"{path}: malformed Keras model config: {type(exc).__name__}: "
                         f"{str(exc)[:200]}") from None
    finally:
        f.close()


def _build(f, path):
    """Each layer of the chain built, its weights taken in Keras's order; all used."""
    entries = graph.chain(f.config)
    modules, names, mask_from, dtype = [], [], None, None
    width = _input_width(entries)
    for entry in entries:
        if entry.class_name == "InputLayer":
            continue
        own = build.dtype_of(entry.config)
        if dtype is not None and own != dtype:
            raise NotImplementedError(f"layer {entry.name!r}: dtype {own} in a {dtype} "
                                      "model: mixed dtypes are not supported")
        builder = build.BUILDERS.get(entry.class_name)
        if builder is None:
            raise NotImplementedError(f"layer {entry.name!r}: Keras layer class "
                                      f"{entry.class_name!r} is not supported")
        if not _mask_agrees(entry, mask_from):
            raise NotImplementedError(f"layer {entry.name!r} receives the mask of "
                                      f"{entry.mask_from!r} in the graph, not that of "
                                      f"{mask_from!r}: not supported")
        dtype = own
        parts = build.PARTS.get(entry.class_name, ())
        path_in_file = f.path_of(entry.class_name) if isinstance(f, KerasArchive) else None
        weights = f.weights(path_in_file, entry.name, parts) if parts else []
        module = builder(entry, weights, f.major, dtype, entry.outputs)
        if entry.outputs not in (None, [0]) and not hasattr(module, "select"):
            raise NotImplementedError(f"output {entry.outputs} of layer {entry.name!r}, "
                                      "which has one output")
        mask_from = _mask_after(entry, module, mask_from)
        width = _check_width(entry, module, width)
        modules.append(module)
        names.append((entry.name, module))
    for name, module in names[:-1]:
        if getattr(module, "outputs", None) is None and getattr(module, "num_outputs", 1) > 1:
            raise NotImplementedError(f"layer {name!r} returns {module.num_outputs} arrays "
                                      "(return_state or merge_mode=None) to the next layer: "
                                      "only the last layer may")
    unused = f.unused()
    if unused:
        raise ValueError(f"{path}: weights no layer took: {unused[:6]}: the file does not "
                         "match its config")
    return Sequential(modules).eval()  # an inference model: eval mode


def _input_width(entries):
    """The model's feature count from its input shape (Keras 3 ``batch_shape`` of the
    InputLayer, Keras 2 ``batch_input_shape`` of the first layer), or None."""
    for key in ("batch_shape", "batch_input_shape"):
        shape = entries[0].config.get(key) if entries else None
        if isinstance(shape, list) and shape and isinstance(shape[-1], int):
            return shape[-1]
    return None


def _check_width(entry, module, width):
    """The feature count after this layer, checked against what its weights take, so
    weights from another model fail here, naming the layer, not at the first call.

    Raises:
        ValueError: the layer's weights take another number of features.
    """
    inner = getattr(module, "inner", None)
    if isinstance(module, kl.Reshape):
        return None
    if inner is None:  # Masking, Activation, Identity: features unchanged
        return width
    takes = inner.in_features if isinstance(module, kl.Dense) else inner.input_size
    if width is not None and takes != width:
        raise ValueError(f"layer {entry.name!r} ({entry.class_name}): its weights take "
                         f"{takes} features, but the layer before gives {width}: the "
                         "weights do not fit the model")
    if isinstance(module, kl.Dense):
        return inner.out_features
    both = inner.bidirectional and module.merge_mode == "concat"
    return inner.hidden_size * (2 if both else 1) if module.merge_mode else None


#: Layers whose call takes Keras's mask: a graph gives it to them whenever one exists.
_MASK_TAKERS = ("LSTM", "GRU", "SimpleRNN", "Bidirectional")


def _mask_agrees(entry, mask_from):
    """The mask the graph gives this layer is the one Sequential will (layers whose
    call has no mask argument, such as Dense, get none in the graph and need none)."""
    if entry.mask_from == "?":  # Sequential and Keras 2 configs: compute_mask rules only
        return True
    if entry.mask_from is None and entry.class_name not in _MASK_TAKERS:
        return True
    return entry.mask_from == mask_from


def _mask_after(entry, module, mask_from):
    """The Masking layer whose mask leaves this layer (Keras's compute_mask), or None."""
    if entry.class_name == "Masking":
        return entry.name
    if entry.class_name in ("Flatten", "Reshape"):
        return None
    if hasattr(module, "return_sequences") and not module.return_sequences:
        return None
    return mask_from
