"""Walking an ONNX graph: recurrent nodes in every subgraph, constant inputs folded.

Names in an ONNX subgraph (the ``then_branch``/``else_branch`` of an ``If``, the
``body`` of a ``Loop`` or ``Scan``) may refer to values of the graphs around it
(ONNX IR spec, "Names Within a Graph": outer-scope names are visible in nested
subgraphs). A :class:`Scope` is one graph with a link to the scope around it;
:func:`fold` finds the nodes a value is computed from, through every enclosing
scope, and -- when they all stem from initializers and ``Constant`` nodes --
evaluates that small constant subgraph with the ``onnx`` package's own
``onnx.reference.ReferenceEvaluator``. No arithmetic is done here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Recurrent operators (ONNX operator spec, ai.onnx domain).
RECURRENT = ("LSTM", "GRU", "RNN")

#: Operators whose output is not a function of their inputs: never folded.
_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
           "Multinomial", "Bernoulli"}


class NotConstant(ValueError):
    """A recurrent node's weight is computed from something that is not constant."""


@dataclass
class Scope:
    """One graph's names: initializers, formal inputs and node outputs."""

    graph: object
    outer: Scope | None = None
    producers: dict = field(default_factory=dict)  # value name -> NodeProto
    initializers: dict = field(default_factory=dict)  # value name -> TensorProto
    inputs: set = field(default_factory=set)

    def __post_init__(self):
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.inputs = {i.name for i in self.graph.input} - set(self.initializers)
        for node in self.graph.node:
            for out in node.output:
                if out:
                    self.producers[out] = node

    def find(self, name):
        """``(kind, item)`` for ``name`` here or in an enclosing scope, else None."""
        scope = self
        while scope is not None:
            if name in scope.initializers:
                return "initializer", scope.initializers[name]
            if name in scope.producers:
                return "node", scope.producers[name]
            if name in scope.inputs:
                return "input", None
            scope = scope.outer
        return None


def subgraphs(node):
    """``(attribute name, GraphProto)`` of every graph attribute of ``node``."""
    from onnx import AttributeProto

    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == AttributeProto.GRAPHS:
            for k, g in enumerate(attr.graphs):
                yield f"{attr.name}[{k}]", g


def recurrent_nodes(graph, path="", outer=None):
    """Yield ``(name, node, scope)`` for every LSTM/GRU/RNN node, subgraphs included.

    A top-level node is named by ``node.name`` (``"<op>_<index>"`` if it has
    none); a node inside a subgraph by its path:
    ``"<If node name>/then_branch/<node name>"``, one such step per level.
    """
    scope = Scope(graph, outer)
    for index, node in enumerate(graph.node):
        name = path + (node.name or f"{node.op_type}_{index}")
        if node.op_type in RECURRENT and node.domain in ("", "ai.onnx"):
            yield name, node, scope
        for attr, sub in subgraphs(node):
            yield from recurrent_nodes(sub, f"{name}/{attr}/", scope)


def fold(names, scope, opsets, node_name):
    """``{name: ndarray}`` for value names computed from constants only.

    Initializers are read directly; anything else is evaluated by
    ``onnx.reference.ReferenceEvaluator`` on a model made of just the nodes it
    needs (with their initializers, from whichever scope holds them).
    Raises :class:`NotConstant` naming ``node_name`` and the value when a
    needed value is a graph input, comes from a node that cannot be folded,
    lies on a cycle, or cannot be evaluated (the evaluator's error quoted).
    """
    from onnx import helper

    nodes, inits, seen = [], {}, set()
    for name in names:
        _collect(name, scope, nodes, inits, seen, node_name)
    where = f"node {node_name!r}"
    try:
        if not nodes:
            return {n: _array(inits[n], where, n) for n in names}
        from onnx.reference import ReferenceEvaluator

        for n, tensor in inits.items():
            _array(tensor, where, n)  # external data refused before the evaluator reads it
        graph = helper.make_graph(nodes, "folded", [], [helper.ValueInfoProto(name=n)
                                                          for n in names],
                                  list(inits.values()))
        model = helper.make_model(graph, opset_imports=opsets)
        values = ReferenceEvaluator(model).run(None, {})
    except NotConstant:
        raise
    except (RuntimeError, ValueError, TypeError, LookupError, ArithmeticError,
            MemoryError) as exc:  # the evaluator's own errors: quoted, one type out
        raise NotConstant(f"{where}: its weights {', '.join(map(repr, names))} could not "
                          f"be computed from the model's constants: "
                          f"{type(exc).__name__}: {exc}") from None
    return dict(zip(names, values))


def _array(tensor, where, name):
    """An initializer as an ndarray; data still in an external file is refused.

    ``onnx.load(path)`` reads external data from the model's folder (refusing
    absolute paths, ``..`` and links); a model given as bytes or a ModelProto
    has no folder, and onnx would read the location relative to the working
    directory, so nplstm does not.
    """
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        raise NotConstant(f"{where}: initializer {name!r} is stored in an external data "
                          f"file; pass the .onnx file's path so that it is read from the "
                          f"model's folder")
    return numpy_helper.to_array(tensor)


def _collect(name, scope, nodes, inits, seen, node_name):
    """Add the producers of ``name`` to ``nodes`` in dependency order.

    Iterative depth-first search (a chain of thousands of nodes needs no
    recursion); a value reached again while its producers are still being
    collected is a cycle, which a valid ONNX graph cannot have.
    """
    stack, open_ = [(name, False)], set()
    while stack:
        value, done = stack.pop()
        if done:  # every input of its producer is collected
            open_.discard(value)
            node = scope.find(value)[1]  # its producer, found on the way down
            if node not in nodes:
                nodes.append(node)
            continue
        if value in open_:
            raise NotConstant(f"node {node_name!r}: input {name!r} depends on itself "
                              f"(a cycle through {value!r}); ONNX graphs are acyclic")
        if value in seen:
            continue
        seen.add(value)
        node = _producer(value, scope, inits, node_name, name)
        if node is None:
            continue
        open_.add(value)
        stack.append((value, True))
        stack.extend((inp, False) for inp in reversed(node.input) if inp)


def _producer(value, scope, inits, node_name, wanted):
    """The foldable node producing ``value``; None for an initializer (recorded)."""
    found = scope.find(value)
    where = f"node {node_name!r}: input {wanted!r}"
    if found is None:
        raise NotConstant(f"{where} needs value {value!r}, which no scope defines")
    kind, item = found
    if kind == "initializer":
        inits[value] = item
        return None
    if kind == "input":
        raise NotConstant(f"{where} is computed from graph input {value!r}, not from "
                          f"constants; nplstm needs the weights in the file")
    node = item
    if (node.domain not in ("", "ai.onnx") or node.op_type in _RANDOM
            or any(True for _ in subgraphs(node))
            or (not any(node.input) and node.op_type != "Constant")):
        raise NotConstant(f"{where} comes from a {node.op_type!r} node "
                          f"({node.name or 'unnamed'}), which is not a constant to fold")
    return node
