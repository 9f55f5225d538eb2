"""One time step of each cell family, fused and laid out for speed.

The per-gate functions of :mod:`nplstm.gates` are the readable version of this
math; the tests hold the two together (and both against PyTorch). Here every
trick is applied once, at load time or in shared plumbing, and explained:

1. **One matmul per step.** The input projection of many steps is one GEMM
   before the time loop (:meth:`Weights.project`, in chunks so the workspace
   does not grow with the sequence); each step does one ``W_hh @ h``.
2. **Gate-major layout.** Inside the loop every array is ``(features, N)``:
   gates ``(G*H, N)``, states ``(H, N)``. Each gate is then a *contiguous* block
   of rows (ufuncs on column slices of ``(N, G*H)`` are several times slower),
   and ``W_hh @ h`` with ``W_hh`` C-contiguous is BLAS's favourite orientation.
   The same code serves N = 1, where ``(H, 1)`` is simply a contiguous vector.
3. **Activations from one transcendental call per block, two ways.** Which
   one a run uses depends on its size (:data:`EXP_MIN`), fixed per workspace:

   * ``"tanh"`` (small blocks, fewest NumPy calls): σ(x) = ½·tanh(½x) + ½. The
     sigmoid rows are multiplied by ½ once, at load time (exact: a power of
     two), so one ``np.tanh`` over the whole gate block serves σ and tanh gates
     alike, followed by ``*½ + ½`` on the sigmoid rows only.
   * ``"exp"`` (large blocks, fewest nanoseconds per element): NumPy's float32
     ``np.tanh`` is not SIMD-vectorised on AVX2 (≈2.6 ns per element here)
     while ``np.exp`` is (≈1.3 ns), and a divide costs ≈0.2 ns. So
     σ(x) = 1/(1 + e^(−x)) and tanh(x) = 2σ(2x) − 1 = 2/(1 + e^(−2x)) − 1, with
     the −1 folded into the weights at load time (exact): the step does
     ``exp, +1, 1/·`` in place (tanh rows: ``z + z`` first, then ``2/·, −1``).
     The ×2 is applied to the finished sum, not folded into the weights: a
     pre-activation that is finite can pass the float limit when doubled (then
     it saturates tanh to ±1, rightly), but doubled *parts* of it (the input
     and recurrent products) could overflow to +inf and −inf separately and
     give NaN where PyTorch's unscaled sum is finite. Very negative pre-activations overflow ``exp`` to
     inf and give exactly 0 (σ) or −1 (tanh), as they should; the overflow
     warning is silenced once per call by :func:`quiet`, never per step.
     ``tanh(c)`` of the LSTM costs one more multiply (c cannot be pre-scaled).
     Cancellation in 2σ − 1 near 0 costs at most an ulp of 1 in absolute
     terms (≈1e-7 in float32, 2e-16 in float64), far inside the tolerances.

   The rows are reordered so the sigmoid rows are adjacent: LSTM ``o, i, f, g``
   (PyTorch stores ``i, f, g, o``), GRU ``r, z, n``. Each mode keeps its own
   scaled copy of the weights, made the first time a run needs it
   (:meth:`Weights.kernel`).
4. **Few, cheap NumPy calls.** Every buffer and every view a step touches is
   made once per run in a :class:`Workspace`; a step is a short list of ufuncs
   with positional ``out`` and 0-d constants of the right dtype (a Python float
   costs a conversion on every call). The LSTM keeps ``c`` right after ``g`` so
   ``[i, f] * [g, c]`` is a single multiply. At N = 1, ``W_hh @ h`` is an
   ``np.dot`` of 1-D views: NumPy then calls BLAS gemv directly, ~10% faster
   than ``np.matmul`` with a ``(H, 1)`` column (2.0 vs 3.0 µs at H = 32).

A step takes ``(xp_t, state, ws, record)``: the projected input ``(G*H, N)``,
the state tuple (``(h, c)`` or ``(h,)``, each ``(H, N)``), the workspace, and
``None`` or a dict it fills with views of its gate activations (that is how
:meth:`LSTM.trace` sees inside without a second code path). It writes the new
``h`` into ``ws.out`` (the loop points it at the output row) and returns the
new state tuple.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: Input-projection workspace per chunk, in elements: ~2 MiB in float32. Long
#: sequences are projected this many gate values at a time (goal: memory that
#: does not grow with L beyond the output itself).
CHUNK_ELEMENTS = 1 << 19

#: A run whose state block ``H*N`` has at least this many elements uses the
#: ``"exp"`` activations (fewer ns per element, ~5 more NumPy calls per step);
#: smaller runs, where a step is dominated by the ~0.5 µs each NumPy call
#: costs, use ``"tanh"``. Measured on AVX2 (nplstm bench): the two cross near
#: H*N = 1,000.
EXP_MIN = 1024

#: Load-time row scales per mode: (sigmoid rows, tanh rows). See trick 3.
SCALES = {"tanh": (0.5, 1.0), "exp": (-1.0, -1.0), "plain": (1.0, 1.0)}


def quiet():
    """Context for one whole run: ``exp`` overflowing to inf is expected in the
    ``"exp"`` mode (it gives exactly σ = 0, tanh = −1). Invalid operations are
    silent too: they only arise from infinite inputs or from states that
    overflowed (unbounded activations of :mod:`nplstm.general`, a ReLU RNN), and
    give NaN, as PyTorch and onnxruntime do, without a warning. Division by zero
    and underflow stay the caller's settings."""
    return np.errstate(over="ignore", invalid="ignore")


@dataclass
class Weights:
    """One layer-direction's parameters, laid out once for the time loop.

    ``W_ih`` ``(G*H, H_in)`` and ``W_hh`` ``(G*H, H_out)`` are C-contiguous, rows
    in kernel order (see the module docstring), not yet scaled. ``b_x``
    ``(G*H, 1)`` goes into the input projection; ``b_h`` ``(H, 1)`` is the bias
    that must stay inside the step (GRU's ``b_hn``); ``W_hr`` ``(proj_size, H)``
    is the LSTM's projection; ``relu`` picks the RNN's nonlinearity;
    ``sigmoid_rows`` counts the leading sigmoid gates. :meth:`kernel` gives the
    scaled copy a mode computes with.
    """

    W_ih: np.ndarray
    W_hh: np.ndarray
    b_x: np.ndarray | None
    b_h: np.ndarray | None = None
    W_hr: np.ndarray | None = None
    relu: bool = False
    G: int = 1  # gates
    H: int = 0  # hidden_size
    sigmoid_rows: int = 0  # gates
    #: The general step's options (:class:`nplstm.general.Spec`); None on the fast path.
    spec: object = None
    #: Idle workspaces by (batch size, dtype), reused by later calls (a stream of
    #: one-step calls would otherwise allocate its buffers every call). A run
    #: takes one out and puts it back when done, so concurrent calls never share one.
    pool: dict = field(default_factory=dict, repr=False, compare=False)
    kernels: dict = field(default_factory=dict, repr=False, compare=False)

    def mode(self, N):
        """``"exp"`` or ``"tanh"`` activations for batch size N (see EXP_MIN);
        ``"plain"`` (unscaled weights) for the general step of :mod:`nplstm.general`."""
        if self.spec is not None:
            return "plain"
        return "exp" if self.H * N >= EXP_MIN and not self.relu else "tanh"

    def kernel(self, mode):
        """The weights scaled for ``mode``, made once (a race makes two equal ones)."""
        k = self.kernels.get(mode)
        if k is None:
            k = self.kernels[mode] = Kernel(self, *SCALES[mode])
        return k


class Kernel:
    """A :class:`Weights` scaled for one mode: sigmoid rows ×s, tanh rows ×t
    (exact: powers of two), and the input projections that use them."""

    def __init__(self, w, s, t):
        S, H = w.sigmoid_rows * w.H, w.H
        scale = np.full((w.W_hh.shape[0], 1), t, w.W_hh.dtype)
        scale[:S] = s
        if w.relu:
            scale[:] = 1  # relu(x): no scaling at all

        def fix(a):
            return None if a is None else np.ascontiguousarray(
                a * (scale if a.shape[0] == len(scale) else scale[-H:]))

        self.W_ih, self.W_hh, self.b_x = fix(w.W_ih), fix(w.W_hh), fix(w.b_x)
        self.b_h = fix(w.b_h)  # GRU's b_hn: a tanh row
        self.b_row = None if self.b_x is None else self.b_x[:, 0]  # (G*H,) view

    def project(self, x):
        """Input projection of a chunk of steps: ``(T, N, H_in) -> (T, G*H, N)``."""
        T, N, H_in = x.shape
        if N == 1:
            xp = np.matmul(x.reshape(T, H_in), self.W_ih.T)  # (T, G*H): contiguous rows
            if self.b_x is not None:
                np.add(xp, self.b_row, xp)
            return xp.reshape(T, -1, 1)  # (T, G*H, 1)
        xp = self.W_ih @ x.reshape(T * N, H_in).T  # (G*H, T*N), one GEMM
        if self.b_x is not None:
            xp += self.b_x
        return xp.reshape(-1, T, N).transpose(1, 0, 2)  # (T, G*H, N) view

    def project_step(self, x_t, out):
        """One step's projection into ``out`` ``(G*H, N)``: the same products as
        :meth:`project` (same orientation), without its allocations."""
        if out.shape[1] == 1:
            np.matmul(x_t, self.W_ih.T, out.T)  # (1, G*H)
        else:
            np.matmul(self.W_ih, x_t.T, out)  # (G*H, N)
        if self.b_x is not None:
            np.add(out, self.b_x, out)
        return out


def _prepare(p, order):
    """Reorder gate blocks (PyTorch index -> kernel position).

    ``order`` lists PyTorch's gate indices in kernel order. Returns
    ``(H, W_ih, W_hh, b_ih, b_hh)``, the arrays reordered and C-contiguous.
    """
    G = len(order)
    H = p["weight_ih"].shape[0] // G
    rows = np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])

    def fix(a):
        return None if a is None else np.ascontiguousarray(a[rows])

    return H, fix(p["weight_ih"]), fix(p["weight_hh"]), fix(p.get("bias_ih")), \
        fix(p.get("bias_hh"))


class Workspace:
    """Per-run buffers and views for one layer-direction and batch size N.

    Kept in ``Weights.pool`` between calls (see :func:`take_workspace`); one
    run uses it at a time, so layers are safe to call from several threads.
    ``out`` is set by the loop before each step. ``k`` is the scaled kernel of
    the run's mode and ``exp`` says which mode that is.
    """

    def __init__(self, w, N, dtype):
        self.w = w
        mode = w.mode(N)
        self.exp = mode == "exp"
        self.k = w.kernel(mode)
        self.W_hh = self.k.W_hh
        self.half = dtype.type(0.5)
        self.zero = dtype.type(0.0)
        self.one = dtype.type(1.0)
        self.two = dtype.type(2.0)
        self.minus_two = dtype.type(-2.0)
        self.out = None
        self.xp = np.empty((w.W_ih.shape[0], N), dtype)  # one step's projection
        self.vec = N == 1  # W_hh @ h as a 1-D np.dot: BLAS gemv, the cheapest call



def take_workspace(family, w, N, dtype):
    """An idle workspace for batch size N from ``w.pool``, or a new one."""
    idle = w.pool.get((N, dtype))
    try:
        return idle.pop()
    except (AttributeError, IndexError):  # no list yet, or it is empty
        return family.workspace(w, N, dtype)


def give_back(w, ws, N, dtype):
    """Return a workspace to the pool (at most a few batch sizes are kept)."""
    if (N, dtype) not in w.pool and len(w.pool) >= 4:
        w.pool.clear()
    w.pool.setdefault((N, dtype), []).append(ws)


def chunk_steps(w, N):
    """Steps per input-projection chunk: ``CHUNK_ELEMENTS`` gate values at most."""
    return max(1, CHUNK_ELEMENTS // (w.W_ih.shape[0] * N))


def _sigmoid(z, ws):
    """In place, z holding the scaled pre-activation: σ in either mode."""
    if ws.exp:  # z = −x
        np.exp(z, z)
        np.add(z, ws.one, z)
        np.divide(ws.one, z, z)  # σ(x) = 1/(1 + e^(−x))
    else:  # z = ½x
        np.tanh(z, z)
        np.multiply(z, ws.half, z)
        np.add(z, ws.half, z)  # σ(x) = ½·tanh(½x) + ½


def _tanh_exp(z, ws):
    """In place, z = −2x: tanh(x) = 2/(1 + e^(−2x)) − 1 (the "exp" mode)."""
    np.exp(z, z)
    np.add(z, ws.one, z)
    np.divide(ws.two, z, z)
    np.subtract(z, ws.one, z)


# --------------------------------------------------------------------- LSTM --

# Kernel order o, i, f, g: sigmoid rows o, i, f first (one contiguous block),
# then g, and the workspace keeps c right after g so that [i, f] * [g, c] is one
# contiguous multiply.
_LSTM_ORDER = (3, 0, 1, 2)


def lstm_prepare(p, nonlinearity=None):
    """Fold both biases into the input projection: b = b_ih + b_hh."""
    H, W_ih, W_hh, b_ih, b_hh = _prepare(p, _LSTM_ORDER)
    b = None if b_ih is None else (b_ih + b_hh)[:, None]  # (4H, 1)
    hr = p.get("weight_hr")
    return Weights(W_ih, W_hh, b, W_hr=None if hr is None else np.ascontiguousarray(hr),
                   G=4, H=H, sigmoid_rows=3)


def lstm_workspace(w, N, dtype):
    ws = Workspace(w, N, dtype)
    H = w.H
    z = np.empty((5 * H, N), dtype)  # rows o | i | f | g | c
    ws.pre = z[:4 * H]  # (4H, N) the gate pre-activations, then activations
    ws.pre_vec = ws.pre[:, 0] if N == 1 else None  # (4H,) when N = 1
    ws.sig = z[:3 * H]  # o, i, f: the sigmoid rows
    ws.o, ws.i, ws.f, ws.g = (z[k * H:(k + 1) * H] for k in range(4))
    ws.i_f, ws.g_c = z[H:3 * H], z[3 * H:5 * H]  # multiplied pairwise: i·g, f·c
    ws.c = z[4 * H:]  # (H, N)
    prod = np.empty((2 * H, N), dtype)
    ws.prod, ws.ig, ws.fc = prod, prod[:H], prod[H:]
    ws.tanh_c = np.empty((H, N), dtype)
    ws.W_hr = w.W_hr
    if w.W_hr is not None:
        ws.h_full = np.empty((H, N), dtype)
        ws.h_proj = np.empty((w.W_hr.shape[0], N), dtype)
    return ws


def lstm_step(xp_t, state, ws, record=None):
    """i, f, g, o from one matmul; c = f⊙c + i⊙g; h = o⊙tanh(c) (then W_hr)."""
    h_prev, c_prev = state
    if c_prev is not ws.c:
        np.copyto(ws.c, c_prev)
    pre, g, tanh_c = ws.pre, ws.g, ws.tanh_c
    if ws.vec:  # N = 1: gemv on 1-D views (trick 4)
        np.dot(ws.W_hh, h_prev[:, 0], ws.pre_vec)
    else:
        np.matmul(ws.W_hh, h_prev, pre)  # (4H, N) rows o|i|f|g, scaled for the mode
    np.add(pre, xp_t, pre)
    if ws.exp:
        _sigmoid(ws.sig, ws)  # o, i, f = σ(·)
        _tanh_exp(np.add(g, g, g), ws)  # g = tanh(·): −x doubled after the sum
    else:
        np.tanh(pre, pre)  # g = tanh(·); o, i, f = tanh(½·) so far
        np.multiply(ws.sig, ws.half, ws.sig)
        np.add(ws.sig, ws.half, ws.sig)  # o, i, f = ½·tanh(½x) + ½ = σ(x)
    np.multiply(ws.i_f, ws.g_c, ws.prod)  # [i⊙g, f⊙c]
    c = np.add(ws.fc, ws.ig, ws.c)  # c = f⊙c + i⊙g  (H, N), in place
    if ws.exp:
        _tanh_exp(np.multiply(c, ws.minus_two, tanh_c), ws)
    else:
        np.tanh(c, tanh_c)
    if ws.W_hr is None:
        h = np.multiply(ws.o, tanh_c, ws.out)  # h = o⊙tanh(c)  (H, N)
    else:
        np.multiply(ws.o, tanh_c, ws.h_full)
        h = np.matmul(ws.W_hr, ws.h_full, ws.h_proj)  # (proj_size, N)
        np.copyto(ws.out, h)
        h = ws.out
    if record is not None:
        record.update(i=ws.i, f=ws.f, g=g, o=ws.o)
    return h, c


# ---------------------------------------------------------------------- GRU --


def gru_prepare(p, nonlinearity=None):
    """b_hr, b_hz join b_ih in the projection; b_hn stays (it sits inside r⊙(...))."""
    H, W_ih, W_hh, b_ih, b_hh = _prepare(p, (0, 1, 2))
    b_x = b_h = None
    if b_ih is not None:
        b_x = b_ih.copy()
        b_x[:2 * H] += b_hh[:2 * H]
        b_x, b_h = b_x[:, None], b_hh[2 * H:, None]  # (3H, 1), (H, 1)
    return Weights(W_ih, W_hh, b_x, b_h=b_h, G=3, H=H, sigmoid_rows=2)


def gru_workspace(w, N, dtype):
    ws = Workspace(w, N, dtype)
    H = w.H
    ws.pre = np.empty((3 * H, N), dtype)  # W_hh @ h, rows r | z | n
    ws.pre_vec = ws.pre[:, 0] if N == 1 else None  # (3H,) when N = 1
    ws.rz, ws.r, ws.z, ws.hn = ws.pre[:2 * H], ws.pre[:H], ws.pre[H:2 * H], ws.pre[2 * H:]
    ws.n = np.empty((H, N), dtype)
    ws.d = np.empty((H, N), dtype)
    ws.b_h = ws.k.b_h
    ws.H = H
    return ws


def gru_step(xp_t, state, ws, record=None):
    """r, z from x and h; n = tanh(x_n + r⊙(W_hn h + b_hn)); h = n + z⊙(h − n)."""
    (h_prev,) = state
    H2, n, d = 2 * ws.H, ws.n, ws.d
    if ws.vec:  # N = 1: gemv on 1-D views (trick 4)
        np.dot(ws.W_hh, h_prev[:, 0], ws.pre_vec)
    else:
        np.matmul(ws.W_hh, h_prev, ws.pre)  # (3H, N) rows r|z|n, scaled for the mode
    rz = np.add(ws.rz, xp_t[:H2], ws.rz)
    _sigmoid(rz, ws)  # r, z = σ(·)
    hn = ws.hn
    if ws.b_h is not None:
        np.add(hn, ws.b_h, hn)  # W_hn h + b_hn
    np.multiply(ws.r, hn, n)
    np.add(n, xp_t[H2:], n)
    if ws.exp:  # n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)): −x doubled, then tanh
        _tanh_exp(np.add(n, n, n), ws)
    else:
        np.tanh(n, n)
    # PyTorch's own form of (1 − z)⊙n + z⊙h, so the rounding matches too
    np.subtract(h_prev, n, d)
    np.multiply(d, ws.z, d)
    h = np.add(d, n, ws.out)
    if record is not None:
        record.update(r=ws.r, z=ws.z, n=n)
    return (h,)


# ---------------------------------------------------------------------- RNN --


def rnn_prepare(p, nonlinearity="tanh"):
    """Both biases fold into the projection, as for the LSTM."""
    H, W_ih, W_hh, b_ih, b_hh = _prepare(p, (0,))
    b = None if b_ih is None else (b_ih + b_hh)[:, None]
    return Weights(W_ih, W_hh, b, relu=nonlinearity == "relu", G=1, H=H)


def rnn_workspace(w, N, dtype):
    ws = Workspace(w, N, dtype)
    ws.pre = np.empty((w.H, N), dtype)
    ws.pre_vec = ws.pre[:, 0] if N == 1 else None  # (H,) when N = 1
    ws.relu = w.relu
    return ws


def rnn_step(xp_t, state, ws, record=None):
    """h = act(W_ih x + b_ih + W_hh h + b_hh)."""
    (h_prev,) = state
    pre = ws.pre  # (H, N)
    if ws.vec:  # N = 1: gemv on 1-D views (trick 4)
        np.dot(ws.W_hh, h_prev[:, 0], ws.pre_vec)
    else:
        np.matmul(ws.W_hh, h_prev, pre)
    np.add(pre, xp_t, pre)
    if ws.relu:
        return (np.maximum(pre, ws.zero, out=ws.out),)
    if ws.exp:  # pre = −x: tanh(x) = 2/(1 + e^(−2x)) − 1, the last op into out
        np.add(pre, pre, pre)  # −2x, doubled after the sum (trick 3)
        np.exp(pre, pre)
        np.add(pre, ws.one, pre)
        np.divide(ws.two, pre, pre)
        return (np.subtract(pre, ws.one, ws.out),)
    return (np.tanh(pre, ws.out),)


# ------------------------------------------------------------------ families --


@dataclass(frozen=True)
class Family:
    """What distinguishes LSTM, GRU and RNN: gate count, gate names, step math."""

    name: str
    num_gates: int
    gates: tuple  # names of the recorded gate activations, PyTorch's order
    states: tuple  # names of the state tuple: ("h", "c") or ("h",)
    prepare: Callable  # PyTorch-keyed params -> Weights, once per load
    workspace: Callable  # (Weights, N, dtype) -> Workspace, once per run
    step: Callable  # (xp_t, state, ws, record) -> new state tuple


LSTM = Family("lstm", 4, ("i", "f", "g", "o"), ("h", "c"), lstm_prepare, lstm_workspace,
              lstm_step)
GRU = Family("gru", 3, ("r", "z", "n"), ("h",), gru_prepare, gru_workspace, gru_step)
RNN = Family("rnn", 1, (), ("h",), rnn_prepare, rnn_workspace, rnn_step)
FAMILIES = {f.name: f for f in (LSTM, GRU, RNN)}
