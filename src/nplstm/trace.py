"""What a traced run recorded: every gate and state, every layer, direction and step.

``trace = lstm.trace(x)`` runs the same step functions as ``lstm(x)`` and keeps
what each step computed, so ``trace.output`` and ``trace.h_n`` are the very
arrays the forward returns. Recorded arrays are time-major,
``(num_layers, D, L, N, H)``, whatever ``batch_first`` said; for unbatched
input ``N`` is 1 (``trace.gate`` drops it again). Positions past a sequence's
``lengths`` are zero, like PyTorch's padded output.
"""

from __future__ import annotations

import numpy as np

from ._atomic import atomic_write

_META = ("mode", "num_layers", "num_directions", "batch_first", "unbatched")


class Trace:
    """Gate activations and states of one forward run.

    Attributes:
        mode: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        names: recorded names: LSTM i, f, g, o, c, h; GRU r, z, n, h; RNN h.
        output, h_n, c_n: exactly what the forward returned (c_n None but LSTM).
        input: the input as the layer saw it (its dtype, the user's layout).
        h_0, c_0: the initial states, ``(D*num_layers, N, H)``.
        layer_inputs: the input of each layer, ``(L, N, in)`` each.
        lengths: the ``lengths=`` given, or None.
    """

    def __init__(self, mode, data, *, output, h_n, c_n=None, input=None, h_0=None, c_0=None,
                 layer_inputs=(), lengths=None, num_layers=1, num_directions=1,
                 batch_first=False, unbatched=False):
        self.mode = mode
        self.data = dict(data)  # name -> (num_layers, D, L, N, H)
        self.output, self.h_n, self.c_n = output, h_n, c_n
        self.input, self.h_0, self.c_0 = input, h_0, c_0
        self.layer_inputs = list(layer_inputs)
        self.lengths = lengths
        self.num_layers, self.num_directions = num_layers, num_directions
        self.batch_first, self.unbatched = batch_first, unbatched

    @classmethod
    def from_forward(cls, layer, run, lengths, output, state):
        """Assemble a trace from a layer's recorded run (see ``_RNNBase._forward``)."""
        recs = run["layers"]
        names = layer.family.gates + layer.family.states
        data = {name: np.stack([np.stack([d[name] for d in r["directions"]])  # (D, L, N, H)
                                for r in recs]) for name in names}  # (layers, D, L, N, H)
        h_n, c_n = state if layer.family.name == "lstm" else (state, None)
        state0 = run["state0"]  # internal (D*num_layers, N, H) each
        return cls(layer.family.name, data, output=output, h_n=h_n, c_n=c_n,
                   input=run["input"], h_0=state0[0],
                   c_0=state0[1] if len(state0) > 1 else None,
                   layer_inputs=[r["input"] for r in recs],
                   lengths=None if lengths is None else np.asarray(lengths),
                   num_layers=len(recs), num_directions=len(recs[0]["directions"]),
                   batch_first=getattr(layer, "batch_first", False),
                   unbatched=run["unbatched"])

    @property
    def names(self):
        return tuple(self.data)

    @property
    def steps(self):
        """L, the number of time steps."""
        return next(iter(self.data.values())).shape[2]

    def __getitem__(self, name):
        """The whole record of one gate or state, ``(num_layers, D, L, N, H)``."""
        if name not in self.data:
            raise KeyError(f"{name!r} is not in this {self.mode} trace; it has "
                           f"{', '.join(self.data)}")
        return self.data[name]

    def __contains__(self, name):
        return name in self.data

    def gate(self, name, layer=0, direction=0):
        """One gate or state over time: ``(L, N, H)``, or ``(L, H)`` if unbatched."""
        for arg, value, limit in (("layer", layer, self.num_layers),
                                  ("direction", direction, self.num_directions)):
            if not isinstance(value, (int, np.integer)) or not -limit <= value < limit:
                raise IndexError(f"{arg} must be an int in [0, {limit}), got {value!r}")
        a = self[name][layer, direction]  # (L, N, H)
        return a[:, 0] if self.unbatched else a

    def __repr__(self):
        lines = [f"Trace({self.mode}, num_layers={self.num_layers}, "
                 f"directions={self.num_directions}, steps={self.steps}"
                 + (", unbatched" if self.unbatched else "") + ")"]
        for name, value in self.data.items():
            lines.append(f"  {name:<7} {value.shape}  (layer, direction, L, N, H)")
        lines.append(f"  output  {self.output.shape}")
        lines.append(f"  h_n     {self.h_n.shape}")
        if self.c_n is not None:
            lines.append(f"  c_n     {self.c_n.shape}")
        return "\n".join(lines)

    # ------------------------------------------------------------ save/load --

    def save(self, path):
        """Write the trace to an ``.npz`` file (arrays only, no pickles)."""
        arrays = {f"data/{k}": v for k, v in self.data.items()}
        for name in ("output", "h_n", "c_n", "input", "h_0", "c_0", "lengths"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        for k, x in enumerate(self.layer_inputs):
            arrays[f"layer_inputs/{k}"] = x
        for name in _META:
            arrays[f"meta/{name}"] = np.asarray(getattr(self, name))
        with atomic_write(path) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path):
        """Read a trace written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = [k for k in ("output", "h_n") + tuple(f"meta/{m}" for m in _META)
                       if k not in files]
            if missing:
                raise ValueError(f"{path}: not an nplstm trace file, missing {missing}")
            meta = {m: z[f"meta/{m}"].item() for m in _META}
            data = {k[5:]: z[k] for k in z.files if k.startswith("data/")}
            inputs = sorted((int(k.split("/")[1]), z[k]) for k in files
                            if k.startswith("layer_inputs/"))
            opt = {k: (z[k] if k in files else None)
                   for k in ("c_n", "input", "h_0", "c_0", "lengths")}
            return cls(str(meta.pop("mode")), data, output=z["output"], h_n=z["h_n"],
                       layer_inputs=[x for _, x in inputs], **opt,
                       **{k: (bool(v) if k in ("batch_first", "unbatched") else int(v))
                          for k, v in meta.items()})
