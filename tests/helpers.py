"""Shared test helpers: a PyTorch twin with random non-zero weights, comparisons."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nplstm

TOL = {np.float64: 1e-12, np.float32: 1e-5}
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}
PAIRS = {"lstm": (nplstm.LSTM, torch.nn.LSTM), "gru": (nplstm.GRU, torch.nn.GRU),
         "rnn": (nplstm.RNN, torch.nn.RNN)}
CELL_PAIRS = {"lstm": (nplstm.LSTMCell, torch.nn.LSTMCell),
              "gru": (nplstm.GRUCell, torch.nn.GRUCell), "rnn": (nplstm.RNNCell, torch.nn.RNNCell)}


def randomize(module, seed=0, scale=1.0):
    """Every parameter (biases too) ~ U(-scale, scale): no zero bias hides a bug."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float64) * 2 - 1) * scale)
    return module


def twin(kind, *args, dtype=np.float64, seed=0, cell=False, scale=1.0, **kwargs):
    """(nplstm module, torch module) with the same random weights in U(-scale, scale)."""
    ours_cls, torch_cls = (CELL_PAIRS if cell else PAIRS)[kind]
    t = randomize(torch_cls(*args, **kwargs).to(TORCH_DTYPE[dtype]), seed, scale)
    ours = ours_cls(*args, **kwargs, dtype=dtype)
    ours.load_state_dict(t.state_dict())
    return ours, t


def T(a, dtype=None):
    """NumPy -> torch (as a copy)."""
    return torch.tensor(np.asarray(a))


def N(t):
    return t.detach().numpy()


def assert_close(ours, theirs, dtype, what=""):
    """Max abs difference within the dtype's tolerance; works on nested tuples."""
    if isinstance(ours, tuple):
        assert isinstance(theirs, tuple) and len(ours) == len(theirs), what
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_close(a, b, dtype, f"{what}[{k}]")
        return
    theirs = N(theirs) if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != {theirs.shape}"
    assert ours.dtype == np.dtype(dtype), f"{what}: dtype {ours.dtype} != {dtype}"
    diff = np.max(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)), initial=0.0)
    assert diff <= TOL[dtype], f"{what}: max |diff| {diff:.3g} > {TOL[dtype]:g}"


def states(kind, rng, shape_h, shape_c, dtype):
    h = rng.standard_normal(shape_h).astype(dtype)
    if kind == "lstm":
        return h, rng.standard_normal(shape_c).astype(dtype)
    return h


def to_torch_state(s):
    return tuple(T(a) for a in s) if isinstance(s, tuple) else T(s)
