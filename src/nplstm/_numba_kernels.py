"""The compiled kernels of the ``[fast]`` extra (numba). Imported only by
:mod:`nplstm._numba`, and only when a forward pass first needs them.

The same math as :mod:`nplstm.cells` (whose per-gate reading is
:mod:`nplstm.gates`), held to the same tests against PyTorch; only the
arithmetic's schedule differs. Layout is batch-major: states ``(N, H)``, the
input projection ``(T, N, G*H)`` (rows in :mod:`nplstm.cells`' kernel order:
LSTM ``o, i, f, g``, GRU ``r, z, n``), weights transposed to ``(in, G*H)`` so
that a product is a sum of rows, ``acc += W_T[j] * h[j]``: the inner loop runs
over contiguous memory with no reduction, so LLVM vectorises it without
reassociating any sum (no ``fastmath``) and without ``np.dot`` (which would make
numba need SciPy).

Three kernels per family:

* ``*_seq``: the whole time loop of a small batch in one call (a Python loop
  calling a compiled step would pay ~1 µs a step). A sequence's input product
  ``x @ W_ih.T`` comes from NumPy's BLAS, one GEMM per chunk of steps (``xp``;
  BLAS's AVX-512 GEMM runs 2-3x faster than LLVM's 256-bit loops here); a
  one-step call (a stream, a cell) projects its input here (:func:`_project`),
  where a GEMV through NumPy would cost more in call overhead than it saves.
  The two round differently in the last bits (as the NumPy path's GEMM and
  GEMV do); a step alone and a cell give identical numbers.
* ``*_cells``: one step's elementwise work for a large batch, whose products
  ``h @ W_hh.T`` run through NumPy's BLAS outside (a GEMM there beats any loop
  written here). The biases join the BLAS products here, as the kernels read
  them (one pass less over the projection).
* ``*_gemm_seq``: a large batch's whole time loop in one call: each step's
  ``h @ W_hh.T`` through NumPy's own BLAS, called from the compiled loop
  (``gemm``: ``cblas_?gemm`` as a ctypes function, see
  :func:`nplstm._numba.blas_gemm`), then the step's ``*_cells``. The very calls
  the Python-level loop of :func:`nplstm._numba._gemm_steps` makes, without
  ~25 µs of Python a step (the fallback when NumPy's BLAS cannot be found).
* :func:`commit`: the projected LSTM's new ``h`` into state and output.

``lens`` (int64 ``(N,)``, empty for none) masks steps ``t >= lens[n]`` as
PyTorch's packed sequences do: state carried, output zero.

Recording (for ``layer.trace``): the LSTM and GRU kernels take an optional
``rec`` array, ``(T, N, R*H)`` (see :data:`RECORDED`), into which each step
also writes its gate activations (and the LSTM's ``c``), zero past a length.
numba compiles ``rec=None`` and ``rec`` given as two specialisations (the
``rec is not None`` branches are pruned from the first): the same arithmetic,
the second with extra writes only, so a trace reproduces the call bit for bit.
The RNN records nothing here: its only activation is ``h``, the output.

Activations: float64 uses libm (``math.exp``, ``math.tanh``). float32 uses a
polynomial ``exp`` (Cephes ``expf``: ``e^x = 2^n e^r``, |r| <= ln2/2, a
degree-7 polynomial, about 1 ulp) that vectorises, where libm's ``expf`` is one
scalar call per element; σ(x) = 1/(1 + e^(−x)) and tanh(x) = 2/(1 + e^(−2x)) − 1
(absolute error ≈ 1e-7, as :mod:`nplstm.cells`' "exp" mode). Like libm's,
``e^x`` overflows to inf above ln(float32's max) ≈ 88.72, so σ(x) is 0 below
−88.72 as PyTorch's and NumPy's 1/(1 + e^(−x)) are, never the 1/(1 + e^88) ≈ 6e-39
of a clamped exponent, which z ⊙ h with h near 1e38 would turn into an O(1)
error (a GRU's z). Arguments below −86 are clamped (there e^x only ever joins
1 + e^x, where it vanishes); NaN passes through.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

#: error_model="numpy": a division by zero gives inf as NumPy does, and no
#: per-division check blocks vectorisation. cache=True: compiled code is kept
#: on disk (``nplstm compile`` fills it ahead of time). fastmath "contract"
#: only: a multiply and an add may fuse into one FMA (one rounding instead of
#: two); nothing is reassociated, NaN and inf keep their meaning.
JIT = {"cache": True, "error_model": "numpy", "nogil": True, "fastmath": {"contract"}}

_F = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
#: _expf's clamps: e^89 overflows float32 (its result is inf from 88.72 up);
#: below −86 (e^−86 ≈ 4e−38) e^x only ever joins 1 + e^x, where it vanishes.
_EXP_HI, _EXP_LO = _F(89.0), _F(-86.0)
_P = tuple(_F(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                           4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
#: 2 e^r = 2 + 2r + 2r^2 P(r) in Horner's form: Cephes's coefficients doubled
#: (exactly), so 2^(n-1) needs no extra multiply.
_P2 = tuple(_F(2) * c for c in _P) + (_F(2.0), _F(2.0))
_ONE32, _TWO32, _HALF32 = _F(1.0), _F(2.0), _F(0.5)

#: What a recording kernel writes into ``rec``'s last axis, H values each, in
#: this order (PyTorch's gate order); ``h`` is the output ``y`` itself.
RECORDED = {"lstm": ("i", "f", "g", "o", "c"), "gru": ("r", "z", "n"), "rnn": ()}


@intrinsic
def _bits_to_f32(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (builds 2^n from its exponent)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (``llvm.fma``), for ``f ⊙ c + i ⊙ g``: with
    ``contract`` alone LLVM may fuse either product of a sum of two, and which one
    depends on the code around it (inlining a step into a loop changed it), so a
    call and its trace could differ in the last bit. Same type in and out."""
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty] * 3))
        return builder.call(fn, args)

    return sig, codegen


@njit(inline="always", **JIT)
def _expf(x):
    """Cephes expf (float32 in, float32 out); see the module docstring."""
    if x > _EXP_HI:  # noqa: PLR1730 (min/max would not let NaN through)
        x = _EXP_HI
    if x < _EXP_LO:  # noqa: PLR1730
        x = _EXP_LO
    n = np.floor(x * _LOG2E + _HALF32)  # -124 <= n <= 128
    r = x - n * _LN2_HI - n * _LN2_LO  # |r| <= ln2/2, ln2 split for exactness
    p = _P2[0]
    for c in _P2[1:]:
        p = p * r + c  # p = 2 e^r
    # e^x = 2 e^r * 2^(n-1): n = 128 has no float32 exponent; e^x overflows to
    # inf (as libm's) in this last product only, for x > ln(float32's max) ≈ 88.72
    return p * _bits_to_f32(np.int32((np.int32(n) + np.int32(126)) << np.int32(23)))


def sigmoid(x):
    """σ(x) = 1/(1 + e^(−x)); typed per dtype below."""


def tanh(x):
    """tanh(x); typed per dtype below."""


@overload(sigmoid, jit_options=JIT)
def _sigmoid(x):
    if x == types.float32:
        return lambda x: _ONE32 / (_ONE32 + _expf(-x))
    return lambda x: 1.0 / (1.0 + math.exp(-x))


@overload(tanh, jit_options=JIT)
def _tanh(x):
    if x == types.float32:
        return lambda x: _TWO32 / (_ONE32 + _expf(-_TWO32 * x)) - _ONE32
    return lambda x: math.tanh(x)


@njit(inline="always", **JIT)
def _relu(v):
    """max(v, 0), with NaN passing through as in PyTorch."""
    return 0 if v < 0 else v  # noqa: FURB136 (max would not let NaN through)


@njit(inline="always", **JIT)
def _axpy_rows(acc, W_T, V):
    """acc += V @ W_T as sums of rows: ``acc (N, G*H)``, ``W_T (in, G*H)``, ``V (N, in)``.

    Eight rows of ``W_T`` per pass, summed in a fixed order (pairs, then pairs
    of pairs) before they join ``acc``: 1/8 of the loads and stores of ``acc``
    that one row per pass costs (measured 1.3–2.4x faster at H = 32..256, and
    faster than OpenBLAS's gemv at H <= 128), without any reassociation. The
    eight rows serve every sample while they sit in L1, two samples per pass
    (a chunk's projection: 1.4x faster than one); the last sample alone runs
    the very same sums, so no element's value depends on the batch.
    """
    n_in, N, j = W_T.shape[0], acc.shape[0], 0
    while j + 8 <= n_in:
        w0, w1, w2, w3 = W_T[j], W_T[j + 1], W_T[j + 2], W_T[j + 3]
        w4, w5, w6, w7 = W_T[j + 4], W_T[j + 5], W_T[j + 6], W_T[j + 7]
        n = 0
        while n + 2 <= N:  # two samples per pass: each row load serves both
            v, a, u, e = V[n], acc[n], V[n + 1], acc[n + 1]
            v0, v1, v2, v3 = v[j], v[j + 1], v[j + 2], v[j + 3]
            v4, v5, v6, v7 = v[j + 4], v[j + 5], v[j + 6], v[j + 7]
            u0, u1, u2, u3 = u[j], u[j + 1], u[j + 2], u[j + 3]
            u4, u5, u6, u7 = u[j + 4], u[j + 5], u[j + 6], u[j + 7]
            for r in range(a.shape[0]):
                a[r] += (((w0[r] * v0 + w1[r] * v1) + (w2[r] * v2 + w3[r] * v3))
                         + ((w4[r] * v4 + w5[r] * v5) + (w6[r] * v6 + w7[r] * v7)))
                e[r] += (((w0[r] * u0 + w1[r] * u1) + (w2[r] * u2 + w3[r] * u3))
                         + ((w4[r] * u4 + w5[r] * u5) + (w6[r] * u6 + w7[r] * u7)))
            n += 2
        if n < N:  # the last sample alone: the same sums, in the same order
            v, a = V[n], acc[n]
            v0, v1, v2, v3 = v[j], v[j + 1], v[j + 2], v[j + 3]
            v4, v5, v6, v7 = v[j + 4], v[j + 5], v[j + 6], v[j + 7]
            for r in range(a.shape[0]):
                a[r] += (((w0[r] * v0 + w1[r] * v1) + (w2[r] * v2 + w3[r] * v3))
                         + ((w4[r] * v4 + w5[r] * v5) + (w6[r] * v6 + w7[r] * v7)))
        j += 8
    while j < n_in:
        row = W_T[j]
        for n in range(acc.shape[0]):
            vj, a = V[n, j], acc[n]
            for r in range(a.shape[0]):
                a[r] += row[r] * vj
        j += 1


@njit(inline="always", **JIT)
def _project(x, W_ihT, b):
    """The input projection of a chunk of steps: ``x (T, N, H_in) -> (T, N, G*H)``.

    Computed here rather than by BLAS so that every step's numbers are the
    same whether the step came alone (a stream) or inside a sequence: each
    element is summed in the same order either way.
    """
    T, N, H_in = x.shape
    xp = np.empty((T, N, W_ihT.shape[1]), x.dtype)
    flat = xp.reshape(T * N, W_ihT.shape[1])  # (T*N, G*H)
    for i in range(T * N):
        flat[i] = b
    _axpy_rows(flat, W_ihT, x.reshape(T * N, H_in))
    return xp


@njit(inline="always", **JIT)
def _add_bias(xp, b):
    """``xp (T, N, G*H) += b (G*H,)``: the bias joins BLAS's input product here, in
    one pass while the steps' data are loaded anyway (NumPy's broadcast add costs
    ~0.1 µs a row)."""
    T, N = xp.shape[0], xp.shape[1]
    for t in range(T):
        for n in range(N):
            row = xp[t, n]
            for r in range(row.shape[0]):
                row[r] += b[r]


@njit(inline="always", **JIT)
def _inputs(x, xp, W_ihT, b):
    """A chunk's input projection with its bias, ``(T, N, G*H)``: BLAS's product ``xp``
    with the bias added in place, or, when ``xp`` is empty, ``x`` projected here."""
    if xp.shape[0] == 0:
        return _project(x, W_ihT, b)
    _add_bias(xp, b)
    return xp


@njit(**JIT)
def lstm_seq(x, xp, W_ihT, b, W_hhT, W_hrT, h0, c0, h, c, y, reverse, lens, t0, rec):
    """Whole LSTM time loop from ``h0 (N, H_out)``, ``c0 (N, H)`` (read only, and
    may be ``h``, ``c`` themselves) to the final ``h``, ``c``; ``y (T, N, H_out)``;
    ``xp (T, N, 4H)`` the input product ``x @ W_ih.T`` (BLAS's, the bias is added
    here, in place), or empty ``(0, 0, 0)`` to project ``x (T, N, H_in)`` here
    (see :func:`_project`);
    ``W_hrT (H, proj)`` or empty; step t is ``t0 + t``; ``rec``: see :data:`RECORDED`."""
    h[:] = h0
    c[:] = c0
    xp = _inputs(x, xp, W_ihT, b)  # (T, N, G*H)
    T, N = xp.shape[0], xp.shape[1]
    G4 = W_hhT.shape[1]
    H = G4 // 4
    ah = np.empty((N, G4), y.dtype)
    hfull = np.empty((N, H), y.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        ax = xp[t]  # (N, G*H)
        ah[:] = 0
        _axpy_rows(ah, W_hhT, h)  # h @ W_hh.T
        for n in range(N):
            if lens.shape[0] and t + t0 >= lens[n]:  # past its length: carry, output 0
                y[t, n, :] = 0
                if rec is not None:
                    rec[t, n, :] = 0
                continue
            a, p, cn, hf = ax[n], ah[n], c[n], hfull[n]
            if rec is not None:
                rn = rec[t, n]
            for k in range(H):  # rows o | i | f | g
                o = sigmoid(a[k] + p[k])
                i = sigmoid(a[H + k] + p[H + k])
                f = sigmoid(a[2 * H + k] + p[2 * H + k])
                g = tanh(a[3 * H + k] + p[3 * H + k])
                ck = _fma(f, cn[k], i * g)
                cn[k] = ck
                hf[k] = o * tanh(ck)
                if rec is not None:  # PyTorch's order i | f | g | o, then c
                    rn[k], rn[H + k], rn[2 * H + k], rn[3 * H + k], rn[4 * H + k] = \
                        i, f, g, o, ck
            if W_hrT.shape[0]:
                h[n] = 0
                _axpy_rows(h[n:n + 1], W_hrT, hfull[n:n + 1])  # h = W_hr (o ⊙ tanh c)
            else:
                h[n] = hf
            y[t, n, :] = h[n]


@njit(**JIT)
def gru_seq(x, xp, W_ihT, b, W_hhT, b_hn, h0, h, y, reverse, lens, t0, rec):
    """Whole GRU time loop (PyTorch's form) from ``h0`` to ``h`` (``x``, ``xp``: as
    :func:`lstm_seq`); ``b_hn (H,)`` stays inside r ⊙ (...)."""
    h[:] = h0
    xp = _inputs(x, xp, W_ihT, b)  # (T, N, G*H)
    T, N = xp.shape[0], xp.shape[1]
    G3 = W_hhT.shape[1]
    H = G3 // 3
    ah = np.empty((N, G3), y.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        ax = xp[t]  # (N, G*H)
        ah[:] = 0
        _axpy_rows(ah, W_hhT, h)  # h @ W_hh.T
        for n in range(N):
            if lens.shape[0] and t + t0 >= lens[n]:  # past its length: carry, output 0
                y[t, n, :] = 0
                if rec is not None:
                    rec[t, n, :] = 0
                continue
            a, p, hn = ax[n], ah[n], h[n]
            if rec is not None:
                rn = rec[t, n]
            for k in range(H):  # rows r | z | n
                r = sigmoid(a[k] + p[k])
                z = sigmoid(a[H + k] + p[H + k])
                nk = tanh(a[2 * H + k] + r * (p[2 * H + k] + b_hn[k]))
                hn[k] = (hn[k] - nk) * z + nk  # PyTorch's form of (1 − z) n + z h
                if rec is not None:
                    rn[k], rn[H + k], rn[2 * H + k] = r, z, nk
            y[t, n, :] = hn


@njit(**JIT)
def rnn_seq(x, xp, W_ihT, b, W_hhT, relu, h0, h, y, reverse, lens, t0):
    """Whole Elman RNN time loop, h = tanh|relu(W_ih x + b + W_hh h), from ``h0`` to ``h``
    (``x``, ``xp``: as :func:`lstm_seq`)."""
    h[:] = h0
    xp = _inputs(x, xp, W_ihT, b)  # (T, N, G*H)
    T, N = xp.shape[0], xp.shape[1]
    H = W_hhT.shape[1]
    ah = np.empty((N, H), y.dtype)
    for s in range(T):
        t = T - 1 - s if reverse else s
        ax = xp[t]  # (N, G*H)
        ah[:] = 0
        _axpy_rows(ah, W_hhT, h)  # h @ W_hh.T
        for n in range(N):
            if lens.shape[0] and t + t0 >= lens[n]:  # past its length: carry, output 0
                y[t, n, :] = 0
                continue
            a, p, hn = ax[n], ah[n], h[n]
            if relu:
                for k in range(H):
                    hn[k] = _relu(a[k] + p[k])
            else:
                for k in range(H):
                    hn[k] = tanh(a[k] + p[k])
            y[t, n, :] = hn


# ------------------------------------------- large batches: elementwise only --


@njit(**JIT)
def lstm_cells(xp, b, ah, c, hout, y, t, lens, write_y, rec):
    """One LSTM step's elementwise work: ``xp``, ``ah`` ``(N, 4H)`` (BLAS's ``x @ W_ih.T``
    and ``h @ W_hh.T``), ``b (4H,)`` the biases (added here: one pass less over the
    projection); ``c`` updated in place; ``hout (N, H)`` gets o ⊙ tanh(c) (the
    state h, or the unprojected h before W_hr); ``y[t]`` too when ``write_y``;
    ``rec[t]`` the gates and c when ``rec`` is given (see :data:`RECORDED`)."""
    N, H = c.shape
    for n in range(N):
        if lens.shape[0] and t >= lens[n]:
            if write_y:
                y[t, n, :] = 0
            if rec is not None:
                rec[t, n, :] = 0
            continue
        a, p, cn, hn = xp[n], ah[n], c[n], hout[n]
        if rec is not None:
            rn = rec[t, n]
        for k in range(H):  # rows o | i | f | g
            o = sigmoid(a[k] + b[k] + p[k])
            i = sigmoid(a[H + k] + b[H + k] + p[H + k])
            f = sigmoid(a[2 * H + k] + b[2 * H + k] + p[2 * H + k])
            g = tanh(a[3 * H + k] + b[3 * H + k] + p[3 * H + k])
            ck = _fma(f, cn[k], i * g)
            cn[k] = ck
            hn[k] = o * tanh(ck)
            if rec is not None:
                rn[k], rn[H + k], rn[2 * H + k], rn[3 * H + k], rn[4 * H + k] = \
                    i, f, g, o, ck
        if write_y:
            y[t, n, :] = hn


@njit(**JIT)
def gru_cells(xp, b, ah, b_hn, h, y, t, lens, rec):
    """One GRU step's elementwise work (see :func:`gru_seq`; ``b``: as
    :func:`lstm_cells`); h in place, y[t] out, ``rec[t]`` the gates when given."""
    N, H = h.shape
    for n in range(N):
        if lens.shape[0] and t >= lens[n]:
            y[t, n, :] = 0
            if rec is not None:
                rec[t, n, :] = 0
            continue
        a, p, hn = xp[n], ah[n], h[n]
        if rec is not None:
            rn = rec[t, n]
        for k in range(H):
            r = sigmoid(a[k] + b[k] + p[k])
            z = sigmoid(a[H + k] + b[H + k] + p[H + k])
            nk = tanh(a[2 * H + k] + b[2 * H + k] + r * (p[2 * H + k] + b_hn[k]))
            hn[k] = (hn[k] - nk) * z + nk
            if rec is not None:
                rn[k], rn[H + k], rn[2 * H + k] = r, z, nk
        y[t, n, :] = hn


@njit(**JIT)
def rnn_cells(xp, b, ah, relu, h, y, t, lens):
    """One RNN step's elementwise work (``b``: as :func:`lstm_cells`); h in place,
    y[t] out."""
    N, H = h.shape
    for n in range(N):
        if lens.shape[0] and t >= lens[n]:
            y[t, n, :] = 0
            continue
        a, p, hn = xp[n], ah[n], h[n]
        if relu:
            for k in range(H):
                hn[k] = _relu(a[k] + b[k] + p[k])
        else:
            for k in range(H):
                hn[k] = tanh(a[k] + b[k] + p[k])
        y[t, n, :] = hn


@njit(**JIT)
def commit(hp, h, y, t, lens):
    """The projected LSTM's new h ``hp (N, proj)`` into the state and ``y[t]``."""
    for n in range(hp.shape[0]):
        if lens.shape[0] and t >= lens[n]:
            y[t, n, :] = 0
        else:
            h[n] = hp[n]
            y[t, n, :] = hp[n]


# ------------------------------- large batches: the whole loop, BLAS inside --

_ROW_MAJOR, _NO_TRANS = 101, 111  # CBLAS_ORDER, CBLAS_TRANSPOSE (cblas.h)


@njit(inline="always", **JIT)
def _gemm(gemm, A, B, C):
    """``C = A @ B`` through ``gemm`` (cblas_?gemm), all three C-contiguous 2-D."""
    M, K = A.shape
    gemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, M, B.shape[1], K, 1.0, A.ctypes.data, K,
         B.ctypes.data, B.shape[1], 0.0, C.ctypes.data, C.shape[1])


@njit(**JIT)
def lstm_gemm_seq(gemm, xp, b, W_hhT, W_hrT, h, c, y, t0, reverse, lens, rec):
    """A chunk of a large batch's LSTM steps: ``xp (T, N, 4H)`` the chunk's input
    products (no bias), state ``h (N, H_out)``, ``c (N, H)`` updated in place, ``y``
    the whole output (step t of the chunk is ``y[t0 + t]``), ``W_hrT (H, proj)`` or
    empty; ``rec``: see :data:`RECORDED`."""
    T, N, G = xp.shape
    ah = np.empty((N, G), y.dtype)  # (N, 4H)
    proj = W_hrT.shape[0] > 0
    h_full = np.empty(c.shape, y.dtype)  # (N, H): o * tanh(c) before W_hr
    hp = np.empty(h.shape, y.dtype)  # (N, proj)
    for s in range(T):
        t = T - 1 - s if reverse else s
        _gemm(gemm, h, W_hhT, ah)  # h @ W_hh.T
        if proj:
            lstm_cells(xp[t], b, ah, c, h_full, y, t0 + t, lens, False, rec)
            _gemm(gemm, h_full, W_hrT, hp)
            commit(hp, h, y, t0 + t, lens)
        else:
            lstm_cells(xp[t], b, ah, c, h, y, t0 + t, lens, True, rec)


@njit(**JIT)
def gru_gemm_seq(gemm, xp, b, W_hhT, b_hn, h, y, t0, reverse, lens, rec):
    """:func:`lstm_gemm_seq` for the GRU."""
    T, N, G = xp.shape
    ah = np.empty((N, G), y.dtype)  # (N, 3H)
    for s in range(T):
        t = T - 1 - s if reverse else s
        _gemm(gemm, h, W_hhT, ah)
        gru_cells(xp[t], b, ah, b_hn, h, y, t0 + t, lens, rec)


@njit(**JIT)
def rnn_gemm_seq(gemm, xp, b, W_hhT, relu, h, y, t0, reverse, lens):
    """:func:`lstm_gemm_seq` for the Elman RNN."""
    T, N, G = xp.shape
    ah = np.empty((N, G), y.dtype)  # (N, H)
    for s in range(T):
        t = T - 1 - s if reverse else s
        _gemm(gemm, h, W_hhT, ah)
        rnn_cells(xp[t], b, ah, relu, h, y, t0 + t, lens)
