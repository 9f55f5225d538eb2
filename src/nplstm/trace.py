"""What a traced run recorded: every gate and state, every layer, direction and step.

``trace = lstm.trace(x)`` runs the same step functions as ``lstm(x)`` and keeps
what each step computed, so ``trace.output`` and ``trace.h_n`` are the very
arrays the forward returns. Recorded arrays are time-major,
``(num_layers, D, L, N, H)``, whatever ``batch_first`` said; for unbatched
input ``N`` is 1 there (``trace.gate`` and friends drop it again). Positions
past a sequence's ``lengths`` are zero, like PyTorch's padded output.

>>> trace = lstm.trace(x)                         # doctest: +SKIP
>>> trace["f"].shape                              # (num_layers, D, L, N, H)
>>> trace.gate("f", layer=0, direction=0)         # (L, N, H)
>>> trace.prev("c")                               # c_{t-1} for every step t
>>> trace.step(3)                                 # {"x": .., "h_prev": .., "i": .., ...}
>>> trace.saturation()                            # {"i": (near 0, near 1), ...}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._atomic import atomic_write
from .module import to_numpy

_META = ("mode", "num_layers", "num_directions", "batch_first", "unbatched")
_OPTIONAL = ("c_n", "input", "h_0", "c_0", "lengths")

#: The range each gate's activation lives in with PyTorch's math: σ gives (0, 1),
#: tanh (−1, 1). A layer with other activations: :meth:`Trace.gate_range`.
GATE_RANGE = {"i": (0.0, 1.0), "f": (0.0, 1.0), "o": (0.0, 1.0), "g": (-1.0, 1.0),
              "r": (0.0, 1.0), "z": (0.0, 1.0), "n": (-1.0, 1.0)}

#: The gate activations of each family (for the RNN the new state is the activation).
GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": ("h",)}



def projection_units(units: np.ndarray, P: int) -> np.ndarray:
    """Which of a projected ``h``'s P entries to show for the unit selection ``units``.

    The selected indices below P; if there are none, the first ones, as many
    as ``units`` selects (at most P). ``nplstm trace``, :mod:`nplstm.plot` and
    :mod:`nplstm.card` all show a projected ``h`` by this rule.
    """
    inside = units[units < P]
    return inside if inside.size else np.arange(min(P, units.size))

def range_ends(lo, hi):
    """Labels of a gate range's two ends, as :meth:`Trace.saturation` counts them:
    ``("0", "1")``, ``("-1", "+1")``, ``("0 (dead)", "")`` (bounded below only),
    ``("", "")`` (unbounded)."""
    if math.isinf(lo):
        return "", ""
    if math.isinf(hi):
        return (f"{lo:g} (dead)" if lo == 0 else f"{lo:g}"), ""
    return f"{lo:g}", (f"{hi:+g}" if lo < 0 else f"{hi:g}")


class Trace:
    """Gate activations and states of one forward run.

    Attributes:
        mode: ``"lstm"``, ``"gru"`` or ``"rnn"``; ``nonlinearity`` (RNN) ``"tanh"|"relu"``.
        data: ``{name: (num_layers, D, L, N, H)}``: LSTM i, f, g, o, h, c; GRU r, z,
            n, h; RNN h. ``trace[name]`` is ``trace.data[name]``.
        output, h_n, c_n: exactly what the forward returned (c_n None but LSTM).
        input: the input as the layer saw it (its dtype, the user's layout).
        h_0, c_0: the initial states, shaped like ``h_n``/``c_n`` (zeros if no hx).
        layer_inputs: the input of each layer, time-major ``(L, N, in)`` each.
        dropout_masks: per layer, the bool mask ``(L, N, D*H_out)`` dropout kept of
            its output in training mode, or None; ``dropout`` the probability p.
        lengths: the ``lengths=`` given, ``(N,)``, or None.
        options: the layer's options beyond PyTorch's, as keyword arguments
            (``{"peepholes": True, "activations": (...), ...}``; ``{}`` for
            PyTorch's math). They decide each gate's range (:meth:`gate_range`).
    """

    def __init__(self, mode: str, data: dict[str, np.ndarray], *, output: np.ndarray,
                 h_n: np.ndarray, c_n: np.ndarray | None = None,
                 input: np.ndarray | None = None, h_0: np.ndarray | None = None,
                 c_0: np.ndarray | None = None, layer_inputs: Sequence[np.ndarray] = (),
                 lengths: np.ndarray | None = None, num_layers: int = 1,
                 num_directions: int = 1, batch_first: bool = False, unbatched: bool = False,
                 nonlinearity: str = "tanh", options: Mapping[str, Any] | None = None,
                 dropout_masks: Sequence[np.ndarray | None] | None = None,
                 dropout: float = 0.0) -> None:
        self.mode = mode
        self.data = dict(data)  # name -> (num_layers, D, L, N, H)
        self.output, self.h_n, self.c_n = output, h_n, c_n
        self.input, self.h_0, self.c_0 = input, h_0, c_0
        self.layer_inputs = list(layer_inputs)
        self.lengths = lengths
        self.num_layers, self.num_directions = num_layers, num_directions
        self.batch_first, self.unbatched = batch_first, unbatched
        self.nonlinearity = nonlinearity
        self.options = dict(options or {})
        # The layer's parameter arrays the run used (read-only, replaced, never
        # changed, by load_state_dict): backward checks the layer still has them.
        self._weights: dict[str, np.ndarray] | None = None
        # per layer: the bool mask dropout applied to its output (training), or None
        self.dropout_masks = list(dropout_masks or [None] * num_layers)
        self.dropout = dropout

    @classmethod
    def from_forward(cls, layer, run, lengths, output, state):
        """Assemble a trace from a layer's recorded run (see ``_RNNBase._forward``)."""
        recs = run["layers"]
        names = layer.family.gates + layer.family.states
        data = {name: np.stack([np.stack([d[name] for d in r["directions"]])  # (D, L, N, H)
                                for r in recs]) for name in names}  # (layers, D, L, N, H)
        h_n, c_n = state if layer.family.name == "lstm" else (state, None)
        # internal (D*num_layers, N, H); unbatched drops N, like h_n
        state0 = [s[:, 0] if run["unbatched"] else s for s in run["state0"]]
        return cls(layer.family.name, data, output=output, h_n=h_n, c_n=c_n,
                   input=run["input"], h_0=state0[0],
                   c_0=state0[1] if len(state0) > 1 else None,
                   layer_inputs=[r["input"] for r in recs],
                   lengths=None if lengths is None else to_numpy(lengths, "lengths"),
                   num_layers=len(recs), num_directions=len(recs[0]["directions"]),
                   batch_first=getattr(layer, "batch_first", False),
                   unbatched=run["unbatched"],
                   nonlinearity=getattr(layer, "nonlinearity", "tanh"),
                   options=layer_options(layer),
                   dropout_masks=[r.get("dropout") for r in recs],
                   dropout=getattr(layer, "dropout", 0.0))

    # -------------------------------------------------------------- sizes --

    @property
    def names(self) -> tuple[str, ...]:
        """Recorded names, gates first: e.g. ``("i", "f", "g", "o", "h", "c")``."""
        return tuple(self.data)

    @property
    def gates(self) -> tuple[str, ...]:
        """The gate activations of this family (RNN: ``("h",)``, its only activation)."""
        return GATES[self.mode]

    @property
    def steps(self) -> int:
        """L, the number of time steps."""
        return self._first.shape[2]

    @property
    def batch_size(self) -> int:
        """N (1 for unbatched input)."""
        return self._first.shape[3]

    @property
    def hidden_size(self) -> int:
        """H, the size of each gate (``hidden_size`` of the layer)."""
        return self._first.shape[4]

    @property
    def proj_size(self) -> int:
        """P of an LSTM with ``proj_size`` (its ``h`` narrower than the gates), else 0."""
        if self.mode != "lstm" or self["h"].shape[-1] == self.hidden_size:
            return 0
        return self["h"].shape[-1]

    @property
    def _first(self):
        return next(iter(self.data.values()))

    # ----------------------------------------------------------- indexing --

    def __getitem__(self, name: str) -> np.ndarray:
        """The whole record of one gate or state, ``(num_layers, D, L, N, H)``."""
        if name not in self.data:
            raise KeyError(f"{name!r} is not in this {self.mode} trace; it has "
                           f"{', '.join(self.data)}")
        return self.data[name]

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def _check(self, layer, direction):
        for arg, value, limit in (("layer", layer, self.num_layers),
                                  ("direction", direction, self.num_directions)):
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                    or not -limit <= value < limit):
                raise IndexError(f"{arg} must be an int in [0, {limit}), got {value!r}")
        return layer % self.num_layers, direction % self.num_directions

    def _drop_n(self, a):
        return a[:, 0] if self.unbatched else a

    def gate(self, name: str, layer: int = 0, direction: int = 0) -> np.ndarray:
        """One gate or state over time: ``(L, N, H)``, or ``(L, H)`` if unbatched."""
        layer, direction = self._check(layer, direction)
        return self._drop_n(self[name][layer, direction])  # (L, N, H)

    def mask(self) -> np.ndarray:
        """``(L, N)`` bool: True where step t is inside sequence n (all True without lengths)."""
        L, N = self.steps, self.batch_size
        if self.lengths is None:
            return np.ones((L, N), dtype=bool)
        return np.arange(L)[:, None] < np.asarray(self.lengths)[None, :]  # (L, N)

    def prev(self, name: str, layer: int = 0, direction: int = 0) -> np.ndarray:
        """The state each step started from: ``h_{t−1}`` (``c_{t−1}``) for every t.

        Shaped like :meth:`gate`. The first step of a sequence starts from
        ``h_0``/``c_0``; the reverse direction's first step is the last valid
        one (``t = lengths[n] − 1``) and its previous state is ``h_{t+1}``.
        Zero past ``lengths``.
        """
        if name not in ("h", "c") or name not in self.data:
            raise KeyError(f"prev() takes a state of this {self.mode} trace: "
                           f"{', '.join(n for n in ('h', 'c') if n in self.data)}; got {name!r}")
        layer, direction = self._check(layer, direction)
        init = self.h_0 if name == "h" else self.c_0
        if init is None:
            raise ValueError(f"this trace has no {name}_0, so no previous state for step 0")
        s = self[name][layer, direction]  # (L, N, H)
        s0 = np.asarray(init)[layer * self.num_directions + direction]  # (N, H) or (H,)
        s0 = s0.reshape(s.shape[1:])  # (N, H)
        valid = self.mask()[:, :, None]  # (L, N, 1)
        no = np.zeros_like(valid[:1])
        if direction == 0:
            shifted = np.concatenate([s0[None], s[:-1]])  # (L, N, H): s[t-1]
            has = np.concatenate([no, valid[:-1]])
        else:
            shifted = np.concatenate([s[1:], s0[None]])  # (L, N, H): s[t+1]
            has = np.concatenate([valid[1:], no])
        out = np.where(has, shifted, s0[None]) * valid  # (L, N, H)
        return self._drop_n(out.astype(s.dtype, copy=False))

    def step(self, t: int, layer: int = 0, direction: int = 0,
             batch: int = 0) -> dict[str, np.ndarray]:
        """Everything about one step of one sequence, each ``(H,)`` (x: ``(in,)``).

        Keys: ``x`` (this layer's input at t), ``h_prev`` (and ``c_prev``), then
        every recorded gate and state (the new ``h`` and ``c``).
        """
        layer, direction = self._check(layer, direction)
        L, N = self.steps, self.batch_size
        for arg, value, limit in (("t", t, L), ("batch", batch, N)):
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                    or not -limit <= value < limit):
                raise IndexError(f"{arg} must be an int in [0, {limit}), got {value!r}")
        out = {}
        if self.layer_inputs:
            out["x"] = self.layer_inputs[layer][t, batch]  # (in,)
        for name in ("h", "c"):
            if name in self.data and (self.h_0 if name == "h" else self.c_0) is not None:
                prev = self.prev(name, layer, direction)
                out[f"{name}_prev"] = prev[t] if self.unbatched else prev[t, batch]
        for name, record in self.data.items():
            out[name] = record[layer, direction, t, batch]  # (H,)
        return out

    # ------------------------------------------------------------ analysis --

    def gate_range(self, name: str, direction: int = 0) -> tuple[float, float]:
        """``(lo, hi)``: the values gate ``name`` can take in ``direction``, from
        its activation function (±inf where unbounded): σ (0, 1), tanh (−1, 1),
        ReLU (0, inf), HardSigmoid (0, 1), ... (:func:`nplstm.options.activation_range`)."""
        from .options import gate_range, make_options

        if name not in self.gates:
            raise KeyError(f"{name!r} is not a gate of this {self.mode} trace; its gates: "
                           f"{', '.join(self.gates)}")
        _, direction = self._check(0, direction)
        opts = make_options(self.mode, "Trace", self.num_directions,
                            nonlinearity=self.nonlinearity, **self.options)
        return gate_range(opts, name, direction)

    def saturation(self, layer: int = 0, direction: int = 0, low: float = 0.05,
                   high: float = 0.95) -> dict[str, tuple[float, float]]:
        """How often each gate sits at the ends of its range: ``{gate: (near_lo, near_hi)}``.

        Values are rescaled to [0, 1] by the gate's range (σ: (0, 1); tanh:
        (−1, 1)), then counted below ``low`` and above ``high``, over every
        valid step, sequence and unit. A forget gate at 0 most of the time
        forgets everything; gates pinned at 0 or 1 pass no gradient. Ranges
        come from each gate's activation (:meth:`gate_range`): for one bounded
        below only (ReLU RNN, a Relu or Softplus role), ``near_lo`` is the
        fraction at that bound (dead units) and ``near_hi`` is NaN; for one
        unbounded both ways (Affine, LeakyRelu) both are NaN.
        """
        if not 0 <= low < high <= 1:
            raise ValueError(f"need 0 <= low < high <= 1, got low={low}, high={high}")
        layer, direction = self._check(layer, direction)
        valid = self.mask()  # (L, N)
        out = {}
        for name in self.gates:
            v = self[name][layer, direction][valid]  # (valid steps, H)
            lo, hi = self.gate_range(name, direction)
            if math.isinf(lo):
                out[name] = (float("nan"), float("nan"))
                continue
            if math.isinf(hi):
                out[name] = (float(np.mean(v <= lo)), float("nan"))
                continue
            u = (v - lo) / (hi - lo)
            out[name] = (float(np.mean(u < low)), float(np.mean(u > high)))
        return out

    # ------------------------------------------------------------- export --

    def to_dict(self) -> dict[str, Any]:
        """Every array by name: the records (``i``, ``f``, ... ``h``, ``c``) and
        ``output``, ``h_n``, ``c_n``, ``h_0``, ``c_0``, ``input``, ``lengths``
        where present. The arrays are the trace's own (not copies)."""
        out = dict(self.data)
        for name in ("output", "h_n") + _OPTIONAL:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def __repr__(self) -> str:
        head = (f"Trace({self.mode}, num_layers={self.num_layers}, "
                f"num_directions={self.num_directions}, steps={self.steps}, "
                + ("unbatched" if self.unbatched else f"batch={self.batch_size}")
                + f", hidden_size={self.hidden_size}"
                + (f", nonlinearity={self.nonlinearity!r}" if self.mode == "rnn" else "")
                + "".join(f", {k}={v!r}" for k, v in self.options.items()) + ")")
        lines = [head, f"  {'name':<8}shape (num_layers, D, L, N, H)   dtype"]
        for name, value in self.data.items():
            lines.append(f"  {name:<8}{value.shape!s:<31} {value.dtype}")
        for name in ("output", "h_n", "c_n"):
            if getattr(self, name) is not None:
                lines.append(f"  {name:<8}{getattr(self, name).shape}")
        if self.lengths is not None:
            lines.append(f"  lengths {np.asarray(self.lengths).tolist()}")
        return "\n".join(lines)

    # ------------------------------------------------------------ save/load --

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the trace to an ``.npz`` file (arrays only, no pickles)."""
        arrays: dict[str, Any] = {f"data/{k}": v for k, v in self.data.items()}
        for name in ("output", "h_n") + _OPTIONAL:
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for k, x in enumerate(self.layer_inputs):
            arrays[f"layer_inputs/{k}"] = x
        for k, keep in enumerate(self.dropout_masks):
            if keep is not None:
                arrays[f"dropout_masks/{k}"] = keep
        arrays["meta/dropout"] = np.asarray(self.dropout)
        for name in _META + ("nonlinearity",):
            arrays[f"meta/{name}"] = np.asarray(getattr(self, name))
        arrays["meta/options"] = np.asarray(json.dumps(self.options))  # a str, no pickle
        with atomic_write(path) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Trace:
        """Read a trace written by :meth:`save`."""
        try:
            z = np.load(path, allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise ValueError(f"{path}: not an nplstm trace file (.npz): {exc}") from None
        if not hasattr(z, "files"):  # a plain .npy array
            raise ValueError(f"{path}: not an nplstm trace file (.npz), got one array")
        with z:
            files = set(z.files)
            missing = [k for k in ("output", "h_n") + tuple(f"meta/{m}" for m in _META)
                       if k not in files]
            if missing:
                raise ValueError(f"{path}: not an nplstm trace file, missing {missing}")
            meta = {m: z[f"meta/{m}"].item() for m in _META}
            data = {k[5:]: z[k] for k in z.files if k.startswith("data/")}
            inputs = sorted((int(k.split("/")[1]), z[k]) for k in files
                            if k.startswith("layer_inputs/"))
            opt: dict[str, Any] = {k: (z[k] if k in files else None) for k in _OPTIONAL}
            masks = [z[f"dropout_masks/{k}"] if f"dropout_masks/{k}" in files else None
                     for k in range(int(meta["num_layers"]))]
            p = float(z["meta/dropout"]) if "meta/dropout" in files else 0.0
            mode = str(meta.pop("mode"))
            sizes: dict[str, Any] = {k: (bool(v) if k in ("batch_first", "unbatched")
                                         else int(v)) for k, v in meta.items()}
            nonlin = str(z["meta/nonlinearity"].item()) if "meta/nonlinearity" in files \
                else "tanh"
            options = _load_options(path, z) if "meta/options" in files else {}
            return cls(mode, data, output=z["output"], h_n=z["h_n"],
                       layer_inputs=[x for _, x in inputs], nonlinearity=nonlin,
                       options=options, **opt, dropout_masks=masks, dropout=p, **sizes)


def layer_options(layer):
    """The non-default options of a layer or cell, as keyword arguments."""
    from .options import option_kwargs

    opts = getattr(layer, "_options", None)
    return {} if opts is None else option_kwargs(opts, getattr(layer, "nonlinearity", "tanh"))


def _load_options(path, z):
    """``meta/options`` of a saved trace: JSON of keyword arguments; lists back to tuples."""
    try:
        options = json.loads(str(z["meta/options"].item()))
    except ValueError as exc:
        options = exc
    if not isinstance(options, dict):  # a bad file, as every other Trace.load error
        why = f"{path}: meta/options is not a JSON object of options: {options!r}"
        raise ValueError(why)  # noqa: TRY004
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
