"""A Keras model config as a chain of layers, each with the mask that reaches it.

Keras 3 writes a ``Masking`` layer's mask into a functional model's graph as
ops (``NotEqual`` then ``Any`` on the Masking layer's input), passed to later
layers as a ``mask=`` keyword of their call; a Sequential config is a plain
list whose masks follow ``compute_mask``. This module reads either into
``[Entry]`` and checks, for functional graphs, that the mask each layer
receives is the one :class:`nplstm.Sequential` will hand it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .build import builtin

#: Keras 3 graph ops a Masking layer's mask is written as (keras.src.ops.numpy).
MASK_OPS = ("NotEqual", "Any")


@dataclass
class Entry:
    """One Keras layer: ``class_name``, ``config``, the Masking layer its mask comes
    from in the graph (``mask_from``, a name, None for no mask, or ``"?"`` when the
    config does not say: Sequential and Keras 2 configs), and ``outputs``: the
    indices of its output tensors the next layer or the model uses (None: all)."""

    class_name: str
    config: dict
    mask_from: object = "?"
    outputs: list | None = None

    @property
    def name(self):
        return self.config.get("name", self.class_name)


def chain(model_config):
    """``[Entry]`` in model.layers order (InputLayer included where written).

    Raises:
        NotImplementedError: a model that is not a chain of layers (branches,
            shared layers, several inputs, nested models, unknown graph ops).
    """
    if not isinstance(model_config, dict) or not isinstance(model_config.get("config", {}),
                                                             dict):
        raise ValueError(f"a Keras model config must be a JSON object holding a 'config' "  # noqa: TRY004
                         f"object, got {str(model_config)[:60]}")
    kind = model_config.get("class_name")
    cfg = model_config.get("config", {})
    layers = cfg.get("layers", [])
    if not isinstance(layers, list):
        raise ValueError(f"the model config's layers must be a list, got {str(layers)[:60]}")  # noqa: TRY004
    for i, layer in enumerate(layers):
        builtin(layer, layer.get("name", i) if isinstance(layer, dict) else i)
    if kind == "Sequential":
        return [Entry(l["class_name"], l.get("config", {})) for l in layers]
    if kind in ("Functional", "Model"):
        return _functional(cfg)
    raise NotImplementedError(f"Keras model class {kind!r}: only Sequential and functional "
                              "models (a chain of layers) are supported")


def _history(tensor):
    """``(layer name, tensor index)`` a Keras 3 ``__keras_tensor__`` arg comes from."""
    if isinstance(tensor, dict) and tensor.get("class_name") == "__keras_tensor__":
        history = tensor.get("config", {}).get("keras_history")
        if not (isinstance(history, list) and len(history) == 3
                and isinstance(history[0], str) and isinstance(history[2], int)):
            raise ValueError(f"a tensor's keras_history must be [layer name, node index, "
                             f"tensor index], got {str(history)[:60]}")
        name, _, index = history
        return name, index
    return None


def _node_inputs(layer):
    """``(inputs [(name, index)], mask (name, index) or None, other args)`` of its one call."""
    nodes = layer.get("inbound_nodes", [])
    if len(nodes) > 1:
        raise NotImplementedError(f"layer {layer.get('name')!r} is called {len(nodes)} times "
                                  "(a shared layer): only chains are supported")
    if not nodes:
        return [], None, []
    node = nodes[0]
    if isinstance(node, list):  # Keras 2: [[name, node index, tensor index, kwargs], ...]
        return [(n[0], n[2]) for n in node], None, []
    args = node.get("args", [])
    inputs = [h for h in map(_history, args) if h is not None]
    if args and isinstance(args[0], list):  # a list of tensors as the first arg
        inputs = [h for h in map(_history, args[0]) if h is not None]
    others = [a for a in args if _history(a) is None and not isinstance(a, list)]
    return inputs, _history(node.get("kwargs", {}).get("mask")), others


def _functional(cfg):
    layers = cfg.get("layers", [])
    ins = cfg.get("input_layers", [])
    if ins and isinstance(ins[0], list) and len(ins) > 1:
        raise NotImplementedError(f"a model with {len(ins)} inputs: only chains with one "
                                  "input are supported")
    by_name = {l["name"]: l for l in layers}
    entries, ops, previous = [], {}, None
    for layer in layers:
        inputs, mask, others = _node_inputs(layer)
        cls = layer["class_name"]
        if cls in MASK_OPS or str(layer.get("module", "")).startswith("keras.src.ops"):
            if cls not in MASK_OPS:
                raise NotImplementedError(f"graph op {cls!r} ({layer['name']!r}) is not "
                                          f"supported: only the {MASK_OPS} a Masking layer "
                                          "writes")
            ops[layer["name"]] = (cls, inputs, others)
            continue
        if cls in ("Sequential", "Functional", "Model"):
            raise NotImplementedError(f"layer {layer['name']!r} is a nested {cls} model: "
                                      "not supported")
        if previous is not None:
            if len(inputs) != 1 or inputs[0][0] != previous.name:
                raise NotImplementedError(
                    f"layer {layer['name']!r} takes {[i[0] for i in inputs]}, not the "
                    f"previous layer {previous.name!r}: only chains of layers are supported")
            previous.outputs = [inputs[0][1]]  # the one output the next layer takes
        entry = Entry(cls, layer.get("config", {}))
        is_keras3 = bool(layer.get("inbound_nodes")) and isinstance(
            layer["inbound_nodes"][0], dict)
        if is_keras3:
            entry.mask_from = _mask_source(mask, ops, by_name, layer["name"])
        entries.append(entry)
        previous = entry
    if previous is not None:
        _outputs(cfg, previous)
    return entries


def _mask_source(mask, ops, by_name, where):
    """The Masking layer whose ``Any(NotEqual(x, value))`` the ``mask`` tensor is."""
    if mask is None:
        return None
    any_op = ops.get(mask[0])
    if any_op and any_op[0] == "Any" and any_op[1]:
        ne = ops.get(any_op[1][0][0])
        if ne and ne[0] == "NotEqual" and ne[1]:
            source = ne[1][0][0]
            for name, layer in by_name.items():
                if layer["class_name"] == "Masking" and _node_inputs(layer)[0][:1] == [
                        (source, ne[1][0][1])]:
                    value = layer.get("config", {}).get("mask_value", 0.0)
                    if ne[2] and ne[2][0] != value:
                        break
                    return name
    raise NotImplementedError(f"the mask given to layer {where!r} is not one a Masking "
                              "layer made: not supported")


def _outputs(cfg, last):
    outs = cfg.get("output_layers", [])
    if outs and not isinstance(outs[0], list):
        outs = [outs]
    names = {o[0] for o in outs}
    if names - {last.name}:
        raise NotImplementedError(f"the model's outputs come from {sorted(names)}, not only "
                                  f"the last layer {last.name!r}: only chains are supported")
    last.outputs = [o[2] for o in outs]
