"""ONNX recurrent nodes as nplstm layers, and nplstm layers as ONNX models.

>>> layers = nplstm.from_onnx("model.onnx")      # {node name: layer}, PyTorch's conventions
>>> Y, Y_h, Y_c = nplstm.onnx.run_node(layers[name], X)   # ONNX's shapes and layout
>>> lstm.to_onnx("lstm.onnx")                    # onnxruntime gives the same numbers

Every ``LSTM``, ``GRU`` and ``RNN`` node (ONNX operator spec, opsets 7-22) is
found, also inside the subgraphs of ``If``, ``Loop`` and ``Scan`` nodes, and
mapped onto a layer whose options carry its attributes; weights that real
exporters compute from constants (``Constant`` -> ``Slice``/``Concat``/
``Unsqueeze`` chains, across subgraph scopes) are evaluated by the ``onnx``
package's own ``onnx.reference.ReferenceEvaluator``. The mapping does no math
of its own: the layers compute.

Needs the ``onnx`` package (``pip install nplstm[onnx]``) to read and write
files; :func:`run_node` and :class:`Reversed` need NumPy only.
"""

from __future__ import annotations

import os

from ._run import Reversed, run_node

__all__ = ["Reversed", "from_onnx", "run_node", "to_onnx"]


def from_onnx(path_or_model, *, dtype=None):
    """Every recurrent node of an ONNX model as an nplstm layer: ``{node name: layer}``.

    Args:
        path_or_model: a path to a ``.onnx`` file (str or os.PathLike), its
            bytes, or an ``onnx.ModelProto``.
        dtype: keyword-only; None (default) keeps the weights' float32/float64,
            numpy.float32 or numpy.float64 converts (needed for float16 weights).

    Returns:
        ``{name: layer}`` in graph order. A top-level node is named by its
        ``name`` (``"<op>_<index>"`` when empty); one inside a subgraph by its
        path, ``"<If node>/then_branch/<node>"`` (one step per level). Each
        value is a single-layer :class:`nplstm.LSTM`, :class:`nplstm.GRU` or
        :class:`nplstm.RNN` with PyTorch's conventions (states ``(D, N, H)``;
        ``batch_first=True`` when the node's ``layout`` is 1), or a
        :class:`Reversed` one for ``direction="reverse"``, in eval mode (ONNX
        files are for inference; nplstm layers, like torch's, start in training mode). Weights are
        reordered into PyTorch's layout (LSTM i,o,f,c -> i,f,g,o; GRU z,r,h ->
        r,z,n; ``B = [Wb, Rb]`` -> ``bias_ih``, ``bias_hh``; ``P`` i,o,f ->
        ``weight_ph`` i,f,o). The node's run-time inputs are the call's:
        ``X`` is the input, ``initial_h``/``initial_c`` the state ``hx``,
        ``sequence_lens`` the ``lengths=`` (:func:`run_node` takes them in
        ONNX's shapes, lengths of 0 included); the layer holds weights and
        attributes only.

    Raises:
        ImportError: without the onnx package. TypeError: for another argument
        type. ValueError / NotImplementedError naming the node and the input or
        attribute it cannot represent (weights fed at run time, unknown
        attributes or activations, shapes that disagree with ``hidden_size``).
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("from_onnx needs the onnx package: pip install nplstm[onnx]") \
            from None
    from ._graph import recurrent_nodes
    from ._nodes import layer_from_node

    model = _load(onnx, path_or_model)
    opsets = list(model.opset_import)
    layers = {}
    for name, node, scope in recurrent_nodes(model.graph):
        unique, k = name, 1
        while unique in layers:  # two nodes of one name: the second gets "#2"
            k += 1
            unique = f"{name}#{k}"
        layers[unique] = layer = layer_from_node(unique, node, scope, opsets, dtype)
        layer.eval()  # an inference format: layers come back in eval mode
    return layers


def _load(onnx, path_or_model):
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    if isinstance(path_or_model, (bytes, bytearray)):
        return onnx.load_model_from_string(bytes(path_or_model))
    if isinstance(path_or_model, (str, os.PathLike)):
        path = os.fspath(path_or_model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"from_onnx: no such file: {path!r}")
        from google.protobuf.message import DecodeError  # onnx's own dependency

        try:
            return onnx.load(path)
        except (DecodeError, ValueError) as exc:
            raise ValueError(f"from_onnx: {path!r} is not a readable ONNX model: "
                             f"{exc}") from None
    raise TypeError(f"path_or_model must be a path, bytes or an onnx.ModelProto, got "
                    f"{type(path_or_model).__name__}")


def to_onnx(layer, path, **options):
    """Write ``layer`` as an ONNX model (what ``layer.to_onnx(path)`` calls).

    Args:
        layer: an nplstm LSTM, GRU, RNN (any num_layers, bidirectional,
            batch_first, bias; in eval mode), a :class:`Reversed` one, or a
            Linear.
        path: the ``.onnx`` file to write (replaced atomically).
        initial_states: keyword-only, recurrent layers; True (default) gives
            the model inputs ``h_0`` (and ``c_0``) of shape
            ``(D*num_layers, N, H)``; False leaves them out (zeros, as ``layer(x)``).
        ndim: keyword-only, Linear; the rank of its input (default 2,
            ``(N, in_features)``; 3 for ``(L, N, in_features)``...). ONNX
            declares a graph input's rank; its sizes stay free.

    The model (opset 14) has PyTorch's shapes: input ``input`` ``(L, N, H_in)``
    (``(N, L, H_in)`` with batch_first) -> ``output`` ``(L, N, D*H)``, ``h_n``
    (, ``c_n``). A Linear maps ``input (*, in_features)`` -> ``output``
    (``MatMul`` and ``Add``).
    A float64 layer writes DOUBLE tensors: valid ONNX that onnx's reference
    evaluator runs, but onnxruntime has no float64 recurrent kernels.
    Raises NotImplementedError naming ``proj_size`` (ONNX's LSTM has no
    projection), ValueError for a layer in training mode with dropout,
    TypeError for anything else, ImportError without the onnx package.
    """
    from ._export import export

    export(layer, path, **options)
