"""The compiled engine (``pip install nplstm[fast]``): when to use it, and its plumbing.

The one place that decides between the NumPy path (:mod:`nplstm.cells`, the
reference and the default install) and numba's kernels
(:mod:`nplstm._numba_kernels`, the same math compiled). Importing nplstm imports
neither numba nor the kernels: the first forward pass that can use them does
(numba's import ≈ 0.2 s; its compiled code comes from its on-disk cache, which
``nplstm compile`` fills ahead of time, else it compiles on first use, ≈ 10 s).

Choose with the environment variable ``NPLSTM_ENGINE`` (read at every call):
``auto`` or unset (numba when installed), ``numpy`` (force the NumPy path, e.g.
to compare the two), ``numba`` (require it: ImportError if absent).

Two schedules, chosen by batch size (:data:`SMALL_BATCH`):

* small batches run the whole time loop in one compiled call per chunk of steps
  (``*_seq``), after one input-projection GEMM per chunk through NumPy's BLAS;
  one-step calls (streams, cells) project inside the compiled call instead;
* large batches are GEMM-bound: each step's ``h @ W_hh.T`` goes through NumPy's
  BLAS, the elementwise work through one compiled call (``*_cells``); the whole
  loop runs compiled, calling NumPy's OpenBLAS directly (:func:`blas_gemm`), or,
  where that BLAS cannot be found, a Python loop calls ``np.matmul`` and the
  kernel step by step.

Both keep the NumPy path's bounded workspace: the projection runs in chunks of
:data:`nplstm.cells.CHUNK_ELEMENTS` gate values, whatever the length.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import cells

#: The environment variable that picks the engine.
ENV = "NPLSTM_ENGINE"
CHOICES = ("auto", "numpy", "numba")
#: Batches up to this size run the whole time loop compiled; larger ones
#: take their products from BLAS (measured with ``nplstm bench``).
SMALL_BATCH = 4

_resolved: dict[Any, Any] = {}  # NPLSTM_ENGINE's raw value (None when unset) -> compiled?
# enabled() runs on every call, a stream's too: os.environ.get costs a raised and
# caught KeyError when the variable is unset (~1-2 µs). CPython's os.environ keeps
# the process environment in a plain dict, ``_data`` (bytes keys on POSIX, str on
# Windows), which setting or deleting os.environ's items keeps current (as it
# keeps os.environ.get's answers); read that when present, else the mapping.
_environ_get = getattr(getattr(os.environ, "_data", None), "get", None)
try:
    _ENV_KEY = os.environ.encodekey(ENV)
except AttributeError:  # not CPython's os.environ
    _environ_get = None
_available: list[Any] = []
_kernels: list[Any] = []
_NO_LENGTHS = np.zeros(0, np.int64)


def available():
    """True when numba can be imported (checked once, numba imported then)."""
    if not _available:
        ok = importlib.util.find_spec("numba") is not None
        if ok:
            try:
                importlib.import_module("numba")
            except ImportError:  # installed but broken (e.g. a NumPy it does not support)
                ok = False
        _available.append(ok)
    return _available[0]


def enabled():
    """Whether forward passes use the compiled engine now (see ``NPLSTM_ENGINE``).

    Raises ValueError for an unknown ``NPLSTM_ENGINE`` and ImportError for
    ``NPLSTM_ENGINE=numba`` without numba installed.
    """
    raw = _environ_get(_ENV_KEY, None) if _environ_get else os.environ.get(ENV)
    use = _resolved.get(raw)
    if use is None:
        value = os.environ.get(ENV, "")  # the decoded str (raw may be bytes)
        choice = value.strip().lower() or "auto"
        if choice not in CHOICES:
            raise ValueError(f"environment variable {ENV} must be one of {', '.join(CHOICES)}"
                             f" (or unset), got {value!r}")
        if choice == "numba" and not available():
            raise ImportError(f"{ENV}=numba needs numba, which is not installed: "
                              "pip install 'nplstm[fast]'")
        use = _resolved[raw] = choice != "numpy" and available()
    return use


def use(family):
    """Whether a run of ``family`` goes compiled: PyTorch's three families (the
    fast path of :mod:`nplstm.cells`; the general step of non-default options
    stays NumPy) when :func:`enabled`."""
    return (family is cells.LSTM or family is cells.GRU or family is cells.RNN) and enabled()


def kernels():
    """The compiled kernels' module (imported on first use)."""
    if not _kernels:
        _kernels.append(importlib.import_module("._numba_kernels", __package__))
    return _kernels[0]


# ------------------------------------------------------------------ weights --


def compiled(w):
    """``w``'s arrays as the kernels take them, made once per :class:`cells.Weights`.

    Transposed to ``(in, G*H)``, C-contiguous, in :mod:`nplstm.cells`' row order
    and unscaled; absent biases are zeros, an absent projection is ``(0, 0)``.
    """
    cw = w.kernels.get("numba")
    if cw is None:
        dtype = w.W_ih.dtype
        GH = w.W_ih.shape[0]

        def own(a):  # always a fresh, writable C array: one numba type, one compile
            return np.array(a, dtype, order="C", copy=True)

        def vec(a, n):
            return np.zeros(n, dtype) if a is None else own(a[:, 0])

        cw = SimpleNamespace(
            W_ihT=own(w.W_ih.T), W_hhT=own(w.W_hh.T),  # (H_in, G*H), (H_out, G*H)
            b=vec(w.b_x, GH), b_hn=vec(w.b_h, w.H),  # (G*H,), (H,)
            W_hrT=np.zeros((0, 0), dtype) if w.W_hr is None else own(w.W_hr.T),  # (H, proj)
            relu=bool(w.relu))
        w.kernels["numba"] = cw
    return cw


def _seq(K, family, cw, x, xp, state0, state, y, reverse, lens, t0, rec=None):
    """One compiled call over a chunk of steps from ``state0`` to ``state`` (may be
    the same arrays; see :mod:`nplstm._numba_kernels`): ``xp (T, N, G*H)`` its input
    projection, or empty ``(0, 0, 0)`` to project ``x (T, N, H_in)`` in the call;
    ``rec (T, N, R*H)`` records the gates when given (the LSTM and GRU; the RNN's
    record is ``y``)."""
    if family is cells.LSTM:
        K.lstm_seq(x, xp, cw.W_ihT, cw.b, cw.W_hhT, cw.W_hrT, state0[0], state0[1], state[0],
                   state[1], y, reverse, lens, t0, rec)
    elif family is cells.GRU:
        K.gru_seq(x, xp, cw.W_ihT, cw.b, cw.W_hhT, cw.b_hn, state0[0], state[0], y, reverse,
                  lens, t0, rec)
    else:
        K.rnn_seq(x, xp, cw.W_ihT, cw.b, cw.W_hhT, cw.relu, state0[0], state[0], y, reverse,
                  lens, t0)


def _project(cw, x, out):
    """``x (T, N, H_in) @ W_ih.T -> (T, N, G*H)``: one GEMM through NumPy's BLAS into
    the rows of ``out (>= T*N, G*H)`` (one buffer for every chunk of a run: no fresh
    pages to fault in). The kernels add the bias as they read it."""
    T, N, H_in = x.shape
    xp = np.matmul(x.reshape(T * N, H_in), cw.W_ihT, out=out[:T * N])  # (T*N, G*H)
    return xp.reshape(T, N, -1)  # (T, N, G*H)


def _empty(dtype, _cache={}):  # noqa: B006 (a cache on purpose)
    """``(0, 0, 0)`` of ``dtype``: the kernels' "not given" for ``x`` or ``xp``."""
    e = _cache.get(dtype)
    if e is None:
        e = _cache[dtype] = np.empty((0, 0, 0), dtype)
    return e


def _state_in(s, f):
    """The state ``s`` as a kernel reads it: ``s`` itself when it is already an ``(N, H)``
    C-contiguous writable array of ``f``'s dtype (one numba type: no second compile),
    else ``s`` copied into ``f`` (an unbatched ``(H,)`` broadcasts to ``(1, H)``)."""
    if s is f:
        return s
    flags = s.flags
    if s.shape == f.shape and s.dtype == f.dtype and flags.c_contiguous and flags.writeable:
        return s
    np.copyto(f, s)
    return f


# ------------------------------------------------------------------- runs --


def run_direction(family, w, x, state, mask, reverse, final=None, y=None, record=False):
    """:func:`nplstm.loop.run_direction` compiled: same arguments, same results
    ``(y (L, N, H_out), final state tuple, rec)``; ``y`` may be given (an array
    to write the output into).

    With ``record``, ``rec`` maps each gate and state name to ``(L, N, H)``
    (zero past a length), as the NumPy path records, else None. A recorded run
    takes the kernels of the unrecorded one, compiled with extra writes only,
    so its outputs and states are bit for bit the call's.

    A one-step call (``L == 1``) projects its input inside the compiled call, as
    cells and streams do, so the three give identical numbers; longer runs take
    the projection of each chunk of steps from one BLAS product, which rounds
    differently in the last bits (as on the NumPy path; see the README's
    "Streaming").
    """
    K, cw = kernels(), compiled(w)
    L, N = x.shape[:2]
    dtype = x.dtype
    if final is None:
        final = tuple(np.empty(s.shape, dtype) for s in state)
    if y is None:
        y = np.empty((L, N, final[0].shape[-1]), dtype)  # (L, N, H_out)
    recorded = K.RECORDED[family.name] if record else ()
    rec = np.empty((L, N, len(recorded) * w.H), dtype) if recorded else None  # (L, N, R*H)
    lens = _NO_LENGTHS if mask is None else mask[:, :, 0].sum(0, dtype=np.int64)  # (N,)
    if N <= SMALL_BATCH:
        state0 = tuple(_state_in(s, f) for s, f in zip(state, final))  # (N, H) each
        if L == 1:  # one step: projected in the call, as a stream's step
            _seq(K, family, cw, _usable(x), _empty(dtype), state0, final, y, reverse, lens, 0,
                 rec)
            return y, final, _records(family, recorded, rec, y, w.H) if record else None
    else:
        for f, s in zip(final, state):  # the GEMM schedule updates the state in place
            np.copyto(f, s)  # (N, H)
        gemm = blas_gemm(dtype)
    GH = cw.W_ihT.shape[1]
    size = min(L, cells.chunk_steps(w, N))
    buf = np.empty((size * N, GH), dtype)  # the chunks' projections, one after another
    starts = range(0, L, size)
    for start in reversed(starts) if reverse else starts:
        stop = min(start + size, L)
        xp = _project(cw, x[start:stop], buf)  # (T, N, G*H): one GEMM
        if N <= SMALL_BATCH:
            _seq(K, family, cw, _empty(dtype), xp, state0, final, y[start:stop], reverse, lens,
                 start, None if rec is None else rec[start:stop])
            state0 = final
        elif gemm is not None:
            _gemm_seq(K, family, cw, gemm, xp, final, y, reverse, lens, start, rec)
        else:
            _gemm_steps(K, family, cw, xp, final, y, reverse, lens, start, rec)
    return y, final, _records(family, recorded, rec, y, w.H) if record else None


def _records(family, recorded, rec, y, H):
    """``{name: (L, N, H)}`` in the NumPy path's order (gates, then states) from a
    recording kernel's ``rec (L, N, R*H)`` and the output ``y``, which is ``h``."""
    out = {name: rec[:, :, j * H:(j + 1) * H] for j, name in enumerate(recorded)}  # views
    out["h"] = y.copy()  # (L, N, H_out): y is zero past a length, as the record
    return {name: out[name] for name in family.gates + family.states}


def blas_gemm(dtype):
    """NumPy's own OpenBLAS ``cblas_sgemm`` (float32) or ``cblas_dgemm`` (float64) as a
    ctypes function the compiled loops call directly (:mod:`nplstm._numba_kernels`'
    ``*_gemm_seq``), or None: then a Python-level loop calls ``np.matmul``, which
    runs the same BLAS routine (same numbers), at ~25 µs more a step.

    Found once per dtype through threadpoolctl (the library NumPy loaded, and the
    symbol names of NumPy's wheels: ``scipy_cblas_sgemm64_``, 64-bit integers, or
    plain ``cblas_sgemm``), then checked on a small product against ``np.matmul``;
    anything else (another BLAS, no threadpoolctl, a failed check) gives None.
    """
    dtype = np.dtype(dtype)
    if dtype in _GEMM:
        return _GEMM[dtype]
    try:
        fn = _find_gemm(dtype)
    except Exception:  # noqa: BLE001 (a BLAS we cannot use is no error: fall back)
        fn = None
    _GEMM[dtype] = fn
    return fn


_GEMM: dict[Any, Any] = {}


def _find_gemm(dtype):
    import ctypes

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    libs = [lib for lib in threadpool_info() if lib.get("internal_api") == "openblas"]
    home = os.path.dirname(os.path.realpath(np.__file__))  # .../numpy (its libs: numpy.libs)

    def rank(lib):  # NumPy's own first: under NumPy's folder, else "numpy" in the path
        path = os.path.realpath(lib.get("filepath", ""))
        return 0 if path.startswith(home) else 1 if "numpy" in path else 2

    libs.sort(key=rank)  # (a venv under a folder named "numpy..." must not make SciPy's first)
    char = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(dtype)
    if char is None:
        return None
    real = ctypes.c_float if char == "s" else ctypes.c_double
    for lib in libs:
        handle = ctypes.CDLL(lib["filepath"])
        for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("scipy_", ""), ("", "")):
            fn = getattr(handle, f"{prefix}cblas_{char}gemm{suffix}", None)
            if fn is None:
                continue
            integer = ctypes.c_int64 if suffix == "64_" else ctypes.c_int
            fn.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [
                real, ctypes.c_void_p, integer, ctypes.c_void_p, integer, real,
                ctypes.c_void_p, integer]
            fn.restype = None
            a = np.arange(1, 7, dtype=dtype).reshape(3, 2) / 7  # (3, 2)
            b = np.arange(1, 9, dtype=dtype).reshape(2, 4) / 3  # (2, 4)
            c = np.full((3, 4), np.nan, dtype)
            fn(101, 111, 111, 3, 4, 2, 1.0, a.ctypes.data, 2, b.ctypes.data, 4, 0.0,
               c.ctypes.data, 4)
            if np.array_equal(c, np.matmul(a, b)):
                return fn
    return None


def _gemm_seq(K, family, cw, gemm, xp, state, y, reverse, lens, start, rec):
    """A large batch's chunk of steps in one compiled call (BLAS called inside)."""
    # BLAS is told h's rows are contiguous. proj_size 1: np.matmul's h_full @ W_hr.T
    # (one column) is BLAS's GEMV, not GEMM, which rounds differently; the Python
    # loop keeps the numbers np.matmul gives.
    if not state[0].flags.c_contiguous or cw.W_hrT.shape[1] == 1:
        _gemm_steps(K, family, cw, xp, state, y, reverse, lens, start, rec)  # (np.matmul)
        return
    if family is cells.LSTM:
        K.lstm_gemm_seq(gemm, xp, cw.b, cw.W_hhT, cw.W_hrT, state[0], state[1], y, start,
                        reverse, lens, rec)
    elif family is cells.GRU:
        K.gru_gemm_seq(gemm, xp, cw.b, cw.W_hhT, cw.b_hn, state[0], y, start, reverse, lens,
                       rec)
    else:
        K.rnn_gemm_seq(gemm, xp, cw.b, cw.W_hhT, cw.relu, state[0], y, start, reverse, lens)


def _gemm_steps(K, family, cw, xp, state, y, reverse, lens, start, rec):
    """A large batch, step by step: ``h @ W_hh.T`` by BLAS, the rest compiled."""
    h = state[0]  # (N, H_out)
    N, GH = h.shape[0], xp.shape[2]
    ah = np.empty((N, GH), y.dtype)  # (N, G*H)
    proj = family is cells.LSTM and cw.W_hrT.shape[0] > 0
    if proj:
        h_full = np.empty(state[1].shape, y.dtype)  # (N, H)
        hp = np.empty(h.shape, y.dtype)  # (N, proj_size)
    steps = range(xp.shape[0])
    for s in reversed(steps) if reverse else steps:
        t = start + s
        np.matmul(h, cw.W_hhT, ah)  # (N, G*H)
        if family is cells.LSTM:
            if proj:
                K.lstm_cells(xp[s], cw.b, ah, state[1], h_full, y, t, lens, False, rec)
                K.commit(np.matmul(h_full, cw.W_hrT, hp), h, y, t, lens)
            else:
                K.lstm_cells(xp[s], cw.b, ah, state[1], h, y, t, lens, True, rec)
        elif family is cells.GRU:
            K.gru_cells(xp[s], cw.b, ah, cw.b_hn, h, y, t, lens, rec)
        else:
            K.rnn_cells(xp[s], cw.b, ah, cw.relu, h, y, t, lens)


def cell_step(family, w, x, state, new, record=None):
    """One step of one layer-direction into ``new``: x ``(N, H_in)``; state: None
    (zeros) or arrays that broadcast to ``(N, H)`` (h, then c); new: the output
    arrays ``(N, H)``, C-contiguous. With ``record`` a dict, it is filled with the
    gate activations, ``(N, H)`` each (as :func:`nplstm.loop.run_cell`). Returns new."""
    if state is None:
        for s in new:
            s.fill(0)
        state = new
    rec = run_direction(family, w, x[None], state, None, False, new, new[0][None],
                        record is not None)[2]
    if record is not None:
        record.update({name: rec[name][0].copy() for name in family.gates})  # (N, H)
    return new


def one_step(family, weights, x, states, h_n, c_n, out):
    """Every layer's single step for :meth:`nplstm.layers._RNNBase._one_step`.

    weights: one :class:`cells.Weights` per layer; x ``(1, N, H_in)``, C-contiguous
    and writable; states: None (zeros) or the caller's ``(h_0,)``/``(h_0, c_0)``,
    each ``(num_layers, N, H)``; h_n, c_n ``(num_layers, N, H)`` (c_n None for
    GRU/RNN) and out ``(1, N, H_out)``, the top layer's output: written.
    A stream's hot path: straight to the kernel a one-step call of this batch
    size runs (so the numbers are a cell's and a one-step sequence's), with
    nothing else on the way; small batches make no NumPy call that could warn.
    """
    N = h_n.shape[1]
    if N > SMALL_BATCH:  # BLAS products: overflow is no warning (as loop.run_layers)
        with cells.quiet():
            for k, w in enumerate(weights):
                new = (h_n[k],) if c_n is None else (h_n[k], c_n[k])  # (N, H) each
                cell_step(family, w, x[0],
                          None if states is None else [s[k] for s in states], new)
                x = h_n[k][None]  # (1, N, H_out): the next layer's input
        np.copyto(out[0], h_n[-1])
        return
    K = _kernels[0] if _kernels else kernels()
    empty = _empty(x.dtype)
    if states is not None:
        states = [s if s.flags.carray else s.copy() for s in states]  # (layers, N, H)
    top = len(weights) - 1
    for k, w in enumerate(weights):
        cw = w.kernels.get("numba") or compiled(w)
        h = h_n[k]  # (N, H_out)
        h0 = _zeros(h) if states is None else states[0][k]
        y = out if k == top else h[None]  # (1, N, H_out)
        if c_n is not None:
            c0 = _zeros(c_n[k]) if states is None else states[1][k]
            K.lstm_seq(x, empty, cw.W_ihT, cw.b, cw.W_hhT, cw.W_hrT, h0, c0, h, c_n[k], y,
                       False, _NO_LENGTHS, 0, None)
        elif family is cells.GRU:
            K.gru_seq(x, empty, cw.W_ihT, cw.b, cw.W_hhT, cw.b_hn, h0, h, y, False,
                      _NO_LENGTHS, 0, None)
        else:
            K.rnn_seq(x, empty, cw.W_ihT, cw.b, cw.W_hhT, cw.relu, h0, h, y, False,
                      _NO_LENGTHS, 0)
        x = y  # (1, N, H_out): the next layer's input


def _usable(a):
    """``a`` itself when C-contiguous and writable (the type the kernels were compiled
    for), else a copy that is."""
    flags = a.flags
    return a if flags.c_contiguous and flags.writeable else a.copy()


def _zeros(like, _cache={}):  # noqa: B006 (a cache on purpose)
    """A zero state shaped like ``like``, read by the kernels, never written."""
    key = (like.shape, like.dtype)
    z = _cache.get(key)
    if z is None:
        if len(_cache) >= 16:
            _cache.clear()
        z = _cache[key] = np.zeros(like.shape, like.dtype)
    return z


def engine():
    """``"numba"`` when forward passes run compiled now, else ``"numpy"``."""
    return "numba" if enabled() else "numpy"


def precompile(dtypes=(np.float32, np.float64)):
    """Compile (or load from numba's cache) every kernel a forward pass or a trace
    can use: each family, dtype and schedule, with and without projection, lengths
    and recording.
    Returns ``{"kernel(dtype)": seconds}`` in the order compiled. Compiled code
    lands in numba's on-disk cache, so later processes start warm.
    """
    import itertools
    import time

    from .layers import GRU, LSTM, RNN

    if not available():
        raise ImportError("compiling needs numba, which is not installed: "
                          "pip install 'nplstm[fast]'")
    K, times = kernels(), {}
    for dtype in map(np.dtype, dtypes):
        # proj_size 1 takes the GEMM schedule's Python loop (see _gemm_seq): its
        # elementwise kernels are entries of their own in numba's cache
        for cls, kwargs in ((LSTM, {}), (LSTM, {"proj_size": 2}), (LSTM, {"proj_size": 1}),
                            (GRU, {}), (RNN, {})):
            layer = cls(3, 3, dtype=dtype, **kwargs)
            for N, record in itertools.product((1, SMALL_BATCH + 1), (False, True)):
                start = time.perf_counter()  # both schedules, called and traced
                x = np.zeros((2, N, 3), dtype)
                run_direction(layer.family, layer._weights()[0][0], x,
                              (np.zeros((N, layer.output_size), dtype),
                               np.zeros((N, 3), dtype))[:len(layer.family.states)],
                              np.ones((2, N, 1), bool), False, record=record)
                proj = kwargs.get("proj_size")
                name = cls.__name__.lower() + {None: " ", 2: "-proj ", 1: "-proj1 "}[proj] + (
                    "small batch" if N == 1 else "GEMM schedule") + (
                    ", traced" if record else "") + f" ({dtype.name})"
                times[name] = time.perf_counter() - start
    entries = ("lstm_seq", "gru_seq", "rnn_seq", "lstm_cells", "commit") + (  # called
        ("lstm_gemm_seq", "gru_gemm_seq", "rnn_gemm_seq")  # from Python
        if all(blas_gemm(d) is not None for d in dtypes) else ("gru_cells", "rnn_cells"))
    names = [np.dtype(d).name for d in dtypes]  # only these dtypes' signatures
    times["(kernels compiled)"] = sum(  # signatures a Python call takes (a compiled
        any(name in str(sig) for name in names) and "Literal" not in str(sig)  # caller
        for f in entries for sig in getattr(K, f).signatures)  # adds literal-typed ones)
    return times
