"""Losses with their gradients: each returns ``(loss, dloss/dinput)``.

The values are ``torch.nn.functional.mse_loss`` and ``cross_entropy`` (PyTorch
docs, same ``reduction`` names); the gradient is what autograd gives for the
input, so it can be fed straight to ``Linear.backward`` / ``LSTM.backward``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .module import to_numpy

_REDUCTIONS = ("mean", "sum")


def _reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return reduction


def _check_not_empty(n, reduction, what):
    if n == 0 and reduction == "mean":
        raise ValueError(f"{what} is empty: the mean over no elements is undefined "
                         f"(torch returns nan); use reduction='sum' or pass data")


def mse_loss(input: npt.ArrayLike, target: npt.ArrayLike,
             reduction: str = "mean") -> tuple[float, np.ndarray]:
    """Mean squared error: L = mean((input − target)²) (or the sum).

    input, target: arrays of the same shape, float. Returns ``(L, dL/dinput)``
    with dL/dinput = 2 (input − target) / numel (``"sum"``: without / numel).

    Raises:
        ValueError: shapes differ, or ``reduction`` is not "mean"/"sum".
    """
    _reduction(reduction)
    x = to_numpy(input, "input")
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    y = to_numpy(target, "target")
    if x.shape != y.shape:
        raise ValueError(f"target must have the shape of input, {x.shape}, got {y.shape}")
    _check_not_empty(x.size, reduction, "input")
    diff = x - y.astype(x.dtype, copy=False)
    scale = 1.0 / diff.size if reduction == "mean" else 1.0
    return float(np.sum(diff * diff) * scale), (2 * scale) * diff


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """log softmax(a)_k = a_k − max(a) − log Σ_j exp(a_j − max(a)), without overflow."""
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def cross_entropy(logits: npt.ArrayLike, target: npt.ArrayLike,
                  reduction: str = "mean") -> tuple[float, np.ndarray]:
    """Cross-entropy over logits with class-index targets, as ``F.cross_entropy``.

    logits ``(M, C)`` (or ``(C,)`` for one sample), target ``(M,)`` ints in
    ``[0, C)`` (or a scalar). L = −mean_m log softmax(logits_m)[target_m] (or the
    sum); dL/dlogits = (softmax(logits) − onehot(target)) / M (``"sum"``: no / M).

    Raises:
        ValueError: shapes do not fit, a target outside ``[0, C)``, bad reduction.
        TypeError: target is not integer.
    """
    _reduction(reduction)
    a = to_numpy(logits, "logits")
    t = to_numpy(target, "target")
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must hold class indices (integers), got dtype {t.dtype}")
    single = a.ndim == 1
    if single:
        a, t = a[None], t.reshape(1)
    if a.ndim != 2 or t.shape != a.shape[:1]:
        raise ValueError(f"logits must be (M, C) with target (M,), got logits {a.shape} "
                         f"and target {t.shape}")
    C = a.shape[1]
    if t.size and (t.min() < 0 or t.max() >= C):
        raise ValueError(f"target must be class indices in [0, {C}), got values from "
                         f"{t.min()} to {t.max()}")
    _check_not_empty(a.shape[0], reduction, "logits")
    logp = log_softmax(a)  # (M, C)
    rows = np.arange(a.shape[0])
    scale = 1.0 / a.shape[0] if reduction == "mean" else 1.0
    loss = -float(np.sum(logp[rows, t])) * scale
    grad = np.exp(logp)  # softmax, (M, C)
    grad[rows, t] -= 1
    grad *= scale
    return loss, grad[0] if single else grad
