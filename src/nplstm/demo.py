"""The seed's walkthrough model: one recurrent layer and a linear head.

Library side of ``nplstm demo`` and ``nplstm trace`` (no printing here): build
the model, with weights from a seeded PyTorch model when torch is installed,
or nplstm's own seeded weights when it is not, and a short time series.
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

    ``torch_layer``/``torch_head`` are the PyTorch twins the weights came from,
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
          dtype=np.float64, use_torch=True):
    """The demo model; with ``use_torch`` and torch installed, copied from PyTorch.

    PyTorch's default init has zero-mean weights and small biases; the demo
    draws every parameter (biases included) from U(−1, 1) so that no gate hides
    behind a zero bias.
    """
    if cell not in LAYERS:
        raise ValueError(f"cell must be one of {', '.join(LAYERS)}, got {cell!r}")
    layer = LAYERS[cell](input_size, hidden_size, num_layers, dtype=dtype, seed=seed)
    head = Linear(hidden_size, output_size, dtype=dtype, seed=seed + 1)
    model = DemoModel(cell, layer, head)
    torch = _import_torch() if use_torch else None
    if torch is None:
        rng = np.random.default_rng(seed)
        for module in (layer, head):
            module.load_state_dict({k: rng.uniform(-1, 1, v.shape)
                                    for k, v in module.state_dict().items()})
        return model
    torch.manual_seed(seed)
    tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
    t_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    model.torch_layer = t_cls(input_size, hidden_size, num_layers).to(tdtype)
    model.torch_head = torch.nn.Linear(hidden_size, output_size).to(tdtype)
    with torch.no_grad():
        for module in (model.torch_layer, model.torch_head):
            for p in module.parameters():
                p.uniform_(-1, 1)
    layer.load_state_dict(model.torch_layer.state_dict())
    head.load_state_dict(model.torch_head.state_dict())
    return model


def _import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch
