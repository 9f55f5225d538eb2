"""Keras layers onto nplstm layers: options checked, weights mapped, nothing computed.

The mapping (Keras 3 layer docs and sources, keras.src.layers.rnn; PyTorch's
nn.LSTM/GRU/RNN docs for the other side):

- ``kernel (F, G*H)`` -> ``weight_ih = kernel.T (G*H, F)``; ``recurrent_kernel
  (H, G*H)`` -> ``weight_hh``; Keras's one ``bias (G*H,)`` -> ``bias_ih``, with
  ``bias_hh = 0``.
- LSTM gates: Keras i, f, c, o = PyTorch i, f, g, o (no reordering).
- GRU gates: Keras z, r, h -> PyTorch r, z, n (reordered). ``reset_after=True``
  (PyTorch's form) stores ``bias (2, 3H)``: row 0 input bias, row 1 recurrent
  bias; ``reset_after=False`` applies r before the recurrent product: the
  layer option ``linear_before_reset=False`` with ``bias_hh = 0``.
- Dense ``kernel (F, U)`` -> ``Linear.weight = kernel.T``.
"""

from __future__ import annotations

import numpy as np

from ..cell_modules import Linear
from ..layers import GRU, LSTM, RNN
from . import layers as kl
from .activations import RECURRENT, hard_sigmoid_slope

#: Config keys that change nothing at inference (initialisers, regularisers, ...).
_INERT = {"name", "trainable", "dtype", "kernel_initializer", "recurrent_initializer",
          "bias_initializer", "kernel_regularizer", "recurrent_regularizer",
          "bias_regularizer", "activity_regularizer", "kernel_constraint",
          "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout",
          "seed", "unroll", "implementation", "unit_forget_bias", "input_dim",
          "batch_input_shape", "batch_shape", "input_shape", "build_config",
          "lora_rank", "lora_alpha", "quantization_config"}

#: Options of the layers that do nothing at inference (their noise and dropout).
_NOISE = {"rate", "noise_shape", "stddev"}

#: Boolean options, as Keras writes them (JSON true/false); anything else is refused,
#: never read as Python truth ("false" is a non-empty string).
_FLAGS = ("use_bias", "return_sequences", "return_state", "go_backwards", "stateful",
          "zero_output_for_mask", "reset_after", "time_major")

_RNN_KEYS = {"units", "activation", "recurrent_activation", "use_bias", "return_sequences",
             "return_state", "go_backwards", "stateful", "zero_output_for_mask",
             "reset_after", "time_major"}

_IDENTITY = ("Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
             "AlphaDropout")


def check_keys(entry_name, cls, config, handled):
    """Every config key is handled or inert; else NotImplementedError naming it."""
    for key, value in config.items():
        if key in handled or key in _INERT:
            continue
        if value in (None, False, 0, {}, []):  # an option at its "off" value
            continue
        raise NotImplementedError(f"layer {entry_name!r} ({cls}): option {key}={value!r} is "
                                  "not supported")


def check_types(entry_name, cls, config):
    """Keras's own types for the options read: booleans and a positive ``units``."""
    for key in _FLAGS:
        if key in config and not isinstance(config[key], bool):
            raise ValueError(f"layer {entry_name!r} ({cls}): option {key} must be true or "
                             f"false, got {config[key]!r}")
    units = config.get("units")
    if "units" in config and (isinstance(units, bool) or not isinstance(units, int)
                              or units < 1):
        raise ValueError(f"layer {entry_name!r} ({cls}): units must be a positive integer, "
                         f"got {units!r}")


def builtin(layer, where):
    """A layer dict of Keras's own classes; NotImplementedError for custom objects
    (``registered_name`` "package>Name", a ``module`` outside keras): nothing is
    imported or run from a file."""
    if not isinstance(layer, dict) or not isinstance(layer.get("config", {}), dict):
        raise ValueError(f"layer {where!r}: a layer must be a JSON object with a 'config' "  # noqa: TRY004 (file data)
                         f"object, got {str(layer)[:60]}")
    module, registered = layer.get("module"), layer.get("registered_name")
    if ">" in str(registered or "") or (module is not None
                                         and not str(module).startswith("keras")):
        raise NotImplementedError(f"layer {where!r}: custom object "
                                  f"{registered or layer.get('class_name')!r} (module "
                                  f"{module!r}) is not supported: only Keras's own layers "
                                  "are read, no code from a file is run")
    return layer


def dtype_of(config):
    """float32 or float64 from a Keras dtype policy (``"float32"`` or a DTypePolicy dict)."""
    dtype = config.get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    if dtype not in ("float32", "float64", None):
        raise NotImplementedError(f"layer {config.get('name')!r}: dtype {dtype!r} is not "
                                  "supported (float32 or float64)")
    return np.dtype(dtype or "float32")


# ------------------------------------------------------------ recurrent layers --

_FAMILIES = {"LSTM": (LSTM, 4), "GRU": (GRU, 3), "SimpleRNN": (RNN, 1)}


def _roles(cls, config):
    """Keras activation names in ONNX's role order (CONTRACT-options): LSTM (f, g, h) =
    (recurrent_activation, activation, activation); GRU (f, g); SimpleRNN (f,) =
    (activation,)."""
    act = config.get("activation", "tanh")
    rec = config.get("recurrent_activation", "sigmoid")
    return {"LSTM": (rec, act, act), "GRU": (rec, act), "SimpleRNN": (act,)}[cls]


def activation_options(name, cls, config, major):
    """nplstm layer keywords for Keras's ``activation``/``recurrent_activation``."""
    roles = _roles(cls, config)
    if cls == "SimpleRNN" and roles[0] in ("tanh", "relu"):
        return {"nonlinearity": roles[0]}
    if roles == _roles(cls, {}):  # Keras's defaults: PyTorch's functions
        return {}
    spec = []
    for role in roles:
        if role == "hard_sigmoid":
            spec.append(("HardSigmoid", hard_sigmoid_slope(major), 0.5))
        elif isinstance(role, str) and role in RECURRENT:
            spec.append(RECURRENT[role])
        else:
            raise NotImplementedError(f"layer {name!r} ({cls}): activation {role!r} is not "
                                      f"supported; supported: hard_sigmoid, "
                                      + ", ".join(sorted(RECURRENT)))
    return {"activations": tuple(s[0] for s in spec),
            "activation_alpha": tuple(s[1] for s in spec),
            "activation_beta": tuple(s[2] for s in spec)}


def _gate_order(cls, a, axis=-1):
    """Keras's gate blocks to PyTorch's along ``axis``: GRU z, r, h -> r, z, n."""
    if cls != "GRU":
        return a
    z, r, h = np.split(a, 3, axis=axis)
    return np.concatenate([r, z, h], axis=axis)


def rnn_params(name, cls, config, arrays, suffix):
    """PyTorch's keys for one direction from Keras's ``[kernel, recurrent_kernel, bias]``."""
    units, gates = int(config["units"]), _FAMILIES[cls][1]
    use_bias = config.get("use_bias", True)
    if len(arrays) != 2 + bool(use_bias):
        raise ValueError(f"layer {name!r} ({cls}): expected {2 + bool(use_bias)} weight "
                         f"arrays (kernel, recurrent_kernel{', bias' if use_bias else ''}), "
                         f"got {len(arrays)} of shapes {[a.shape for a in arrays]}")
    kernel, recurrent = arrays[:2]
    GH = gates * units
    if kernel.ndim != 2 or kernel.shape[1] != GH or recurrent.shape != (units, GH):
        raise ValueError(f"layer {name!r} ({cls}, units={units}): kernel must be (F, {GH}) "
                         f"and recurrent_kernel ({units}, {GH}), got {kernel.shape} and "
                         f"{recurrent.shape}")
    p = {"weight_ih" + suffix: _gate_order(cls, kernel).T,  # (F, G*H) -> (G*H, F)
         "weight_hh" + suffix: _gate_order(cls, recurrent).T}  # (H, G*H) -> (G*H, H)
    if use_bias:
        bias = arrays[2]
        two = cls == "GRU" and config.get("reset_after", True)
        if bias.shape != ((2, GH) if two else (GH,)):
            raise ValueError(f"layer {name!r} ({cls}): bias must have shape "
                             f"{(2, GH) if two else (GH,)}, got {bias.shape}")
        b_ih, b_hh = (bias[0], bias[1]) if two else (bias, np.zeros_like(bias))
        p["bias_ih" + suffix] = _gate_order(cls, b_ih)  # (G*H,)
        p["bias_hh" + suffix] = _gate_order(cls, b_hh)
    return p


def recurrent(entry, weights, major, dtype, outputs):
    """A Keras LSTM/GRU/SimpleRNN or Bidirectional of one -> :class:`kl.Recurrent`."""
    name, config = entry.name, entry.config
    if entry.class_name == "Bidirectional":
        check_keys(name, "Bidirectional", config, {"layer", "backward_layer", "merge_mode"})
        inner = builtin(config["layer"], name)
        cls, rnn_cfg = inner["class_name"], inner.get("config", {})
        if cls not in _FAMILIES:
            raise NotImplementedError(f"layer {name!r}: Bidirectional({cls}) is not "
                                      "supported, only of LSTM, GRU or SimpleRNN")
        check_types(name, cls, config.get("backward_layer", {}).get("config", {}))
        back = config.get("backward_layer", {}).get("config", dict(rnn_cfg))
        if rnn_cfg.get("go_backwards"):
            raise NotImplementedError(f"layer {name!r}: Bidirectional of a go_backwards "
                                      "layer is not supported")
        same = ("units", "activation", "recurrent_activation", "use_bias", "reset_after")
        if any(back.get(k) != rnn_cfg.get(k) for k in same):
            raise NotImplementedError(f"layer {name!r}: a backward_layer configured unlike "
                                      "the forward layer is not supported")
        merge_mode = config.get("merge_mode", "concat")
    else:
        cls, rnn_cfg, merge_mode = entry.class_name, config, "concat"
    check_keys(name, cls, rnn_cfg, _RNN_KEYS)
    check_types(name, cls, rnn_cfg)
    if rnn_cfg.get("time_major"):
        raise NotImplementedError(f"layer {name!r} ({cls}): time_major=True is not supported")
    D = 2 if entry.class_name == "Bidirectional" else 1
    per = len(weights) // D
    params = {}
    for d in range(D):
        params.update(rnn_params(name, cls, rnn_cfg, weights[d * per:(d + 1) * per],
                                 "_l0" + ("_reverse" if d else "")))
    options = activation_options(name, cls, rnn_cfg, major)
    if cls == "GRU" and not rnn_cfg.get("reset_after", True):
        options["linear_before_reset"] = False
    layer_cls = _FAMILIES[cls][0]
    F = params["weight_ih_l0"].shape[1]
    layer = layer_cls(F, int(rnn_cfg["units"]), bias=bool(rnn_cfg.get("use_bias", True)),
                      batch_first=True, bidirectional=D == 2, dtype=dtype, **options)
    layer.load_state_dict(params)
    module = kl.Recurrent(layer, return_sequences=rnn_cfg.get("return_sequences", False),
                          return_state=bool(rnn_cfg.get("return_state")),
                          go_backwards=rnn_cfg.get("go_backwards", False),
                          stateful=rnn_cfg.get("stateful", False), merge_mode=merge_mode,
                          zero_output_for_mask=rnn_cfg.get("zero_output_for_mask", False))
    module.select(outputs)
    return module


# ---------------------------------------------------------------- the others --

def dense(entry, weights, major, dtype, outputs):
    """Keras ``Dense`` or ``TimeDistributed(Dense)`` -> :class:`kl.Dense`."""
    name, config, label = entry.name, entry.config, entry.class_name
    if entry.class_name == "TimeDistributed":
        check_keys(name, label, config, {"layer"})
        inner = builtin(config["layer"], name)
        if inner["class_name"] != "Dense":
            raise NotImplementedError(f"layer {name!r}: TimeDistributed({inner['class_name']})"
                                      " is not supported, only TimeDistributed(Dense)")
        config = inner.get("config", {})
    check_keys(name, "Dense", config, {"units", "activation", "use_bias"})
    check_types(name, label, config)
    units, use_bias = int(config["units"]), bool(config.get("use_bias", True))
    if len(weights) != 1 + use_bias or weights[0].ndim != 2 or weights[0].shape[1] != units:
        raise ValueError(f"layer {name!r} ({label}, units={units}): expected kernel (F, "
                         f"{units}){' and bias' if use_bias else ''}, got "
                         f"{[w.shape for w in weights]}")
    linear = Linear(weights[0].shape[0], units, bias=use_bias, dtype=dtype)
    params = {"weight": weights[0].T}  # (F, U) -> (U, F)
    if use_bias:
        params["bias"] = weights[1]
    linear.load_state_dict(params)
    return kl.Dense(linear, config.get("activation", "linear"), keras_version=major,
                    name=label)


def other(entry, weights, major, dtype, outputs):
    """Masking, Activation, Flatten, Reshape and the layers that do nothing at inference."""
    name, cls, config = entry.name, entry.class_name, entry.config
    if weights:
        raise ValueError(f"layer {name!r} ({cls}) has no weights, but the file gives "
                         f"{len(weights)}")
    if cls == "Masking":
        check_keys(name, cls, config, {"mask_value"})
        value = config.get("mask_value", 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"layer {name!r} (Masking): mask_value must be a number, got "
                             f"{value!r}")
        return kl.Masking(value)
    if cls == "Activation":
        check_keys(name, cls, config, {"activation"})
        return kl.Activation(config["activation"], keras_version=major)
    if cls == "Flatten":
        check_keys(name, cls, config, {"data_format"})
        if config.get("data_format") not in (None, "channels_last"):
            raise NotImplementedError(f"layer {name!r} (Flatten): data_format="
                                      f"{config['data_format']!r} is not supported")
        return kl.Reshape((-1,), name="Flatten")
    if cls == "Reshape":
        check_keys(name, cls, config, {"target_shape"})
        return kl.Reshape(config["target_shape"])
    check_keys(name, cls, config, _NOISE)
    return kl.Identity(cls)


BUILDERS = {"LSTM": recurrent, "GRU": recurrent, "SimpleRNN": recurrent,
            "Bidirectional": recurrent, "Dense": dense, "TimeDistributed": dense,
            "Masking": other, "Activation": other, "Flatten": other, "Reshape": other,
            **{c: other for c in _IDENTITY}}

#: Where a ``.keras`` file keeps each layer class's variables, in ``layer.weights`` order.
PARTS = {"LSTM": ("cell/vars",), "GRU": ("cell/vars",), "SimpleRNN": ("cell/vars",),
         "Bidirectional": ("forward_layer/cell/vars", "backward_layer/cell/vars"),
         "TimeDistributed": ("layer/vars",), "Dense": ("vars",)}
