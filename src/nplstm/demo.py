"""The seed's walkthrough model: one recurrent layer and a linear head.

Library side of ``nplstm demo`` and ``nplstm trace`` (no printing here): build
the model, with weights drawn by NumPy from the seed (so the same seed gives
the same model whether or not torch is installed), copied into PyTorch twins
when torch is there, and a short time series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cell_modules import Linear
from .layers import GRU, LSTM, RNN

LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


@dataclass
class DemoModel:
    """``layer`` (nplstm LSTM/GRU/RNN) then ``head`` (nplstm Linear).

    ``torch_layer``/``torch_head`` are PyTorch twins holding the same weights,
    or None when torch is not installed (or not asked for).
    """

    cell: str
    layer: Any
    head: Linear
    torch_layer: Any | None = None
    torch_head: Any | None = None

    def __call__(self, x, hx=None):
        """``(prediction, output, state)`` for input ``(L, H_in)`` or ``(L, N, H_in)``."""
        output, state = self.layer(x, hx)
        return self.head(output), output, state


def series(steps=5, input_size=1, dtype=np.float64):
    """A short, smooth multi-feature time series ``(steps, input_size)``.

    Feature k is ``sin(0.5 t + k)``: easy to read in a printed table.
    """
    t = np.arange(steps)[:, None]  # (L, 1)
    k = np.arange(input_size)[None, :]  # (1, H_in)
    return np.sin(0.5 * t + k).astype(dtype)  # (L, H_in)


def build(cell="lstm", input_size=1, hidden_size=3, output_size=1, num_layers=1, seed=0,
          dtype=np.float64, use_torch=True, *, nonlinearity="tanh", proj_size=0):
    """The demo model: every parameter drawn from U(−1, 1) by ``default_rng(seed)``.

    The draw is NumPy's, in ``state_dict`` order (layer, then head), so one
    seed is one model with or without torch. With ``use_torch`` and torch
    installed, the weights are also copied into ``torch_layer``/``torch_head``.
    PyTorch's default init has small biases; U(−1, 1) for every parameter, biases
    included, keeps any gate from hiding behind a zero bias.
    ``nonlinearity`` is for ``cell="rnn"``, ``proj_size`` for ``cell="lstm"``.
    """
    if cell not in LAYERS:
        raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cell!r}")
    extra = {}
    if nonlinearity != "tanh":
        if cell != "rnn":
            raise ValueError(f"nonlinearity is an RNN option, got {nonlinearity!r} for "
                             f"cell={cell!r}")
        extra["nonlinearity"] = nonlinearity
    if proj_size:
        if cell != "lstm":
            raise ValueError(f"proj_size is an LSTM option, got {proj_size} for cell={cell!r}")
        extra["proj_size"] = proj_size
    layer = LAYERS[cell](input_size, hidden_size, num_layers, dtype=dtype, seed=seed,
                         **extra)
    head = Linear(layer.proj_size or hidden_size, output_size, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    for module in (layer, head):
        module.load_state_dict({k: rng.uniform(-1, 1, v.shape)
                                for k, v in module.state_dict().items()})
    model = DemoModel(cell, layer.eval(), head.eval())  # inference: no dropout, as torch's
    torch = _import_torch() if use_torch else None
    if torch is not None:
        model.torch_layer, model.torch_head = _torch_twins(torch, model, extra)
    return model


def _torch_twins(torch, model, extra):
    """PyTorch modules with the same sizes and (copied) weights as the demo model."""
    layer, head = model.layer, model.head
    tdtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    t_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[model.cell]
    t_layer = t_cls(layer.input_size, layer.hidden_size, layer.num_layers, **extra)
    t_head = torch.nn.Linear(head.in_features, head.out_features)
    for t_module, module in ((t_layer, layer), (t_head, head)):
        t_module.to(tdtype).load_state_dict(
            {k: torch.from_numpy(v) for k, v in module.state_dict().items()})
    return t_layer.eval(), t_head.eval()


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch
