"""The compiled engine (``[fast]``, numba) against PyTorch and against the NumPy
path: every family, direction, layer count, projection, nonlinearity, bias,
batch layout, length mask, chunking, both schedules (whole loop compiled for
small batches, BLAS products for large ones), streams and cells; float64 within
1e-12 and float32 within 1e-5. Also the engine switch, lazy import, saturation
and NaN, and memory that does not grow with the sequence."""

import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest
from helpers import T, assert_close, states, to_torch_state, torch, twin
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import nplstm
from nplstm import _numba, cells

pytest.importorskip("numba")

H_IN, H, PROJ = 3, 5, 2
CONFIGS = [("lstm", {}), ("lstm", {"proj_size": PROJ}),
           ("lstm", {"num_layers": 2, "bidirectional": True, "proj_size": PROJ}),
           ("lstm", {"bias": False, "batch_first": True}),
           ("gru", {}), ("gru", {"num_layers": 2, "bidirectional": True}),
           ("gru", {"bias": False, "batch_first": True}),
           ("rnn", {}), ("rnn", {"nonlinearity": "relu", "bidirectional": True}),
           ("rnn", {"num_layers": 3, "bias": False, "batch_first": True})]


@pytest.fixture(params=["small", "gemm", "gemm-python"])
def schedule(request, monkeypatch):
    """Every schedule whatever the batch: whole loop compiled; BLAS per step called
    from the compiled loop; or (no usable BLAS found) from a Python loop."""
    monkeypatch.setattr(_numba, "SMALL_BATCH", 10**6 if request.param == "small" else 0)
    if request.param == "gemm-python":
        monkeypatch.setattr(_numba, "_GEMM", dict.fromkeys(map(np.dtype, (np.float32,
                                                                           np.float64))))
    return request.param


def _twin(kind, dtype, seed, **kwargs):
    """Weights and biases U(-0.5, 0.5), non-zero: a ReLU RNN stays bounded over 30 steps."""
    return twin(kind, H_IN, H, dtype=dtype, seed=seed, scale=0.5, **kwargs)


def _x(ours, L, N, dtype, seed=0):
    shape = (N, L, H_IN) if ours.batch_first else (L, N, H_IN)
    return np.random.default_rng(seed).uniform(-2, 2, shape).astype(dtype)


def _hx(kind, ours, N, rng, dtype):
    lead = ours.num_directions * ours.num_layers
    return states(kind, rng, (lead, N, ours.output_size), (lead, N, H), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", CONFIGS)
def test_matches_torch(kind, kwargs, dtype, schedule):
    ours, theirs = _twin(kind, dtype, 1, **kwargs)
    assert ours.engine == "numba"
    rng = np.random.default_rng(2)
    for L, N, with_hx in ((1, 1, False), (7, 2, True), (30, 3, False)):
        x = _x(ours, L, N, dtype)
        hx = _hx(kind, ours, N, rng, dtype) if with_hx else None
        with torch.no_grad():
            want = theirs(T(x), None if hx is None else to_torch_state(hx))
        assert_close(ours(x, hx), want, dtype, f"L={L} N={N}")
    # unbatched input
    x = np.random.default_rng(3).uniform(-2, 2, (6, H_IN)).astype(dtype)
    with torch.no_grad():
        assert_close(ours(x), theirs(T(x)), dtype, "unbatched")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", CONFIGS)
def test_lengths_match_packed_sequence(kind, kwargs, dtype, schedule):
    ours, theirs = _twin(kind, dtype, 4, **kwargs)
    rng = np.random.default_rng(5)
    L, lengths = 9, np.array([5, 9, 1, 7])
    x, hx = _x(ours, L, 4, dtype, 6), _hx(kind, ours, 4, rng, dtype)
    got = ours(x, hx, lengths=lengths)
    bf = ours.batch_first
    with torch.no_grad():
        packed = pack_padded_sequence(T(x), torch.tensor(lengths), batch_first=bf,
                                      enforce_sorted=False)
        out, state = theirs(packed, to_torch_state(hx))
        out, _ = pad_packed_sequence(out, batch_first=bf, total_length=L)
    assert_close(got, (out, state), dtype)
    y = got[0] if bf else got[0].transpose(1, 0, 2)
    for n, length in enumerate(lengths):
        assert not y[n, length:].any()  # exactly zero past each sequence's end


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", [c for c in CONFIGS if not c[1].get("bidirectional")])
def test_stream_and_chunks_equal_whole_sequence(kind, kwargs, dtype, schedule, monkeypatch):
    """A stream of one-step calls gives the whole sequence's numbers (projected in
    several chunks here) to within the last bits: a step alone projects its input in
    the compiled call, a sequence through one BLAS product per chunk (README,
    "Streaming": the NumPy path's tolerance). One-step calls equal a one-step
    sequence, i.e. ``forward`` on the same arrays, bit for bit."""
    monkeypatch.setattr(cells, "CHUNK_ELEMENTS", 64)  # a few steps per chunk
    ours, theirs = _twin(kind, dtype, 7, **kwargs)
    x = _x(ours, 40, 2, dtype, 8)
    whole, whole_state = ours(x)
    t_axis = 1 if ours.batch_first else 0
    state, outs = None, []
    for t in range(40):
        x_t = np.take(x, [t], axis=t_axis)
        y, new = ours(x_t, state)
        general = ours(x_t.tolist(), state)  # lists take _forward, not the hot path
        for a, b in zip(_flat((y, new)), _flat(general)):
            np.testing.assert_array_equal(a, b)
        state = new
        outs.append(y)
    tol = 2e-15 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(np.concatenate(outs, axis=t_axis), whole, rtol=0, atol=tol)
    for a, b in zip(_flat((whole, state))[1:], _flat((whole, whole_state))[1:]):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    with torch.no_grad():
        assert_close(whole, theirs(T(x))[0], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cells_match_torch_and_the_layer(kind, dtype, schedule):
    cell, theirs = twin(kind, H_IN, H, dtype=dtype, seed=9, cell=True)
    assert cell.engine == "numba"
    layer = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[kind](
        H_IN, H, dtype=dtype)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    x = np.random.default_rng(10).uniform(-2, 2, (6, 2, H_IN)).astype(dtype)
    out, _ = layer(x)
    state, want = None, None
    for t in range(6):
        state = cell(x[t], state)
        with torch.no_grad():
            want = theirs(T(x[t]), want)
        assert_close(state, want, dtype, f"step {t}")
        np.testing.assert_allclose(state[0] if kind == "lstm" else state, out[t], rtol=0,
                                   atol=2e-15 if dtype == np.float64 else 1e-6)
    h1 = cell(x[0, 0])  # unbatched, zero state: a batch of one, as the layer's
    np.testing.assert_array_equal(h1[0] if kind == "lstm" else h1, layer(x[:1, :1])[0][0, 0])
    lists = cell(x[1].tolist(), state)  # the general path (a list) also runs compiled
    with torch.no_grad():
        assert_close(lists, theirs(T(x[1]), want), dtype, "general path")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", CONFIGS)
def test_numba_and_numpy_engines_agree(kind, kwargs, dtype, schedule, monkeypatch):
    ours, _ = _twin(kind, dtype, 11, **kwargs)
    x = _x(ours, 50, 3, dtype, 12)
    fast = ours(x, lengths=[50, 20, 3])
    monkeypatch.setenv("NPLSTM_ENGINE", "numpy")
    assert ours.engine == "numpy"
    ref = ours(x, lengths=[50, 20, 3])
    assert_close(fast, ref, dtype)
    tr = ours.trace(x, lengths=[50, 20, 3])  # the NumPy path's trace
    np.testing.assert_array_equal(tr.output, ref[0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", [("lstm", {}), ("gru", {}), ("rnn", {})])
def test_saturation_and_nan_like_torch(kind, kwargs, dtype, schedule):
    """Huge pre-activations (float32 exp overflowing to inf past 88.72) saturate as
    torch does; a NaN input gives NaN where torch gives NaN."""
    ours, theirs = _twin(kind, dtype, 13, **kwargs)
    x = np.random.default_rng(14).uniform(-1, 1, (8, 2, H_IN)).astype(dtype)
    x[:, :, 0] *= 1e4
    x[3, 1, 1] = 1e30
    with torch.no_grad():
        assert_close(ours(x), theirs(T(x)), dtype, "saturated")
    x[2, 0, 2] = np.nan
    got = ours(x)[0]
    with torch.no_grad():
        want = theirs(T(x))[0].numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_long_sequences_match_torch():
    """1000 steps, default-scale weights: float32 stays within 1e-5 of torch."""
    for kind in ("lstm", "gru", "rnn"):
        for N in (1, 8):
            ours, theirs = twin(kind, 7, 16, dtype=np.float32, seed=15, scale=0.25)
            x = np.random.default_rng(16).uniform(-1, 1, (1000, N, 7)).astype(np.float32)
            with torch.no_grad():
                assert_close(ours(x), theirs(T(x)), np.float32, f"{kind} N={N}")


def test_engine_switch(monkeypatch):
    layer = nplstm.GRU(3, 4)
    for value, engine in (("numpy", "numpy"), ("NumPy", "numpy"), ("numba", "numba"),
                          ("auto", "numba"), ("", "numba")):
        monkeypatch.setenv("NPLSTM_ENGINE", value)
        assert layer.engine == engine
    monkeypatch.setenv("NPLSTM_ENGINE", "fortran")
    with pytest.raises(ValueError, match="NPLSTM_ENGINE must be one of auto, numpy, numba.*"
                                         "'fortran'"):
        layer(np.zeros((2, 1, 3), np.float32))


def test_numba_required_but_absent(monkeypatch):
    monkeypatch.setattr(_numba, "_available", [False])
    monkeypatch.setattr(_numba, "_resolved", {})
    monkeypatch.setenv("NPLSTM_ENGINE", "numba")
    with pytest.raises(ImportError, match=r"pip install 'nplstm\[fast\]'"):
        nplstm.LSTM(3, 4)(np.zeros((2, 1, 3), np.float32))
    monkeypatch.delenv("NPLSTM_ENGINE")
    layer = nplstm.LSTM(3, 4)
    assert layer.engine == "numpy"  # auto: falls back, and says so
    layer(np.zeros((2, 1, 3), np.float32))


def test_import_neither_imports_nor_compiles_numba():
    code = ("import sys, nplstm, numpy as np; assert 'numba' not in sys.modules; "
            "nplstm.LSTM(3, 4).engine; assert 'nplstm._numba_kernels' not in sys.modules; "
            "nplstm.LSTM(3, 4)(np.zeros((2, 1, 3), np.float32)); "
            "assert 'nplstm._numba_kernels' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_memory_does_not_grow_with_sequence_length(monkeypatch):
    """Beyond its output, a call needs the same memory for 500 or 4000 steps."""
    monkeypatch.setattr(cells, "CHUNK_ELEMENTS", 1 << 12)
    for N in (1, 8):  # both schedules
        layer = nplstm.LSTM(H_IN, 16, seed=0)
        extra = []
        for L in (500, 4000):
            x = np.zeros((L, N, H_IN), np.float32)
            layer(x[:2])
            tracemalloc.start()
            out, _ = layer(x)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            extra.append(peak - out.nbytes)
        assert extra[1] <= extra[0] * 1.1 + 4096, extra


def test_threads_share_a_layer():
    layer = nplstm.LSTM(H_IN, H, seed=0)
    xs = [np.random.default_rng(k).uniform(-1, 1, (20, 2, H_IN)).astype(np.float32)
          for k in range(4)]
    want = [layer(x)[0] for x in xs]
    got = [None] * 4

    def work(k):
        for _ in range(20):
            got[k] = layer(xs[k])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls,kwargs", [
    (nplstm.LSTM, {"peepholes": True}), (nplstm.LSTM, {"clip": 2.0}),
    (nplstm.GRU, {"linear_before_reset": False}), (nplstm.RNN, {"activations": ["Relu"]}),
    (nplstm.LSTMCell, {"input_forget": True})])
def test_options_fall_back_to_the_general_numpy_step_and_say_so(cls, kwargs, monkeypatch):
    """Non-default options are not compiled: they run NumPy's general step, say so in
    ``engine``, and give the same numbers whatever NPLSTM_ENGINE says."""
    layer = cls(3, 4, seed=0, **kwargs)
    if "activations" in kwargs:  # Relu given by name is PyTorch's relu RNN: compiled
        assert layer.engine == "numba"
        return
    assert layer.engine == "numpy-general"
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3) if "Cell" in cls.__name__
                                         else (5, 2, 3)).astype(np.float32)
    got = layer(x)
    monkeypatch.setenv("NPLSTM_ENGINE", "numpy")
    assert layer.engine == "numpy-general"
    want = layer(x)
    for a, b in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        np.testing.assert_array_equal(a[0] if isinstance(a, tuple) else a,
                                      b[0] if isinstance(b, tuple) else b)


def _flat(out):
    """A forward pass's arrays: y, h_n (and c_n)."""
    y, hx = out
    return [y, *(hx if isinstance(hx, tuple) else (hx,))]


@pytest.mark.parametrize("N", [1, 2, 40])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_float32_limit_like_torch(kind, N, schedule):
    """x and h_0 near float32's max meet in the pre-activation (test_torchlike's
    case, on this engine): it is 0, −2^126 or −inf, and σ of −2^126 must be 0 as
    torch's (a clamped exp's 1/(1 + e^88) ≈ 6e-39 times a GRU's h ≈ 1.7e38 made
    h' = 2.03 where torch has 1). Powers of two, so every partial sum of
    h_0 @ W_hh.T (32 terms of 2^122) is exact in any order: with 2e38 the
    pre-activation is 0 or −8e31 by the summation order alone (torch's gemv at
    N = 1 against its gemm), which no engine can match for both."""
    Hb = 32
    theirs = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](
        1, Hb, bias=False)
    with torch.no_grad():
        theirs.weight_ih_l0.fill_(1.0)
        theirs.weight_hh_l0.fill_(-1.0 / Hb)
    cls = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[kind]
    ours = cls.from_state_dict(theirs.state_dict(), dtype=np.float32)
    assert ours.engine == "numba"
    h0 = np.full((1, N, Hb), 2.0**127, np.float32)
    hx = (h0, np.zeros_like(h0)) if kind == "lstm" else h0
    for xv in (2.0**127, 2.0**126, -(2.0**127)):
        x = np.full((3, N, 1), xv, np.float32)
        with torch.no_grad():
            want = _flat(theirs(T(x), tuple(map(T, hx)) if kind == "lstm" else T(hx)))
        for g, w in zip(_flat(ours(x, hx)), want):
            assert np.isfinite(w.numpy()).all() and np.isfinite(g).all(), xv
            # values up to 1.7e38: 1e-5 relative to their size
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5, err_msg=str(xv))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_nan_and_inf_inputs_like_torch(kind, dtype, schedule):
    """NaN, +inf and −inf inputs: NaN exactly where torch has NaN, ±inf or
    saturated gates elsewhere as torch's, and no warning (pytest errors on one)."""
    ours, theirs = _twin(kind, dtype, 15)
    x = np.random.default_rng(16).uniform(-2, 2, (6, 3, H_IN)).astype(dtype)
    x[1, 0, 0], x[2, 1, 1], x[3, 2, 2], x[4, 2, :] = np.nan, np.inf, -np.inf, [np.inf, -np.inf, 1]
    with torch.no_grad():
        want = [w.numpy() for w in _flat(theirs(T(x)))]
    got = _flat(ours(x))
    assert any(np.isnan(w).any() for w in want) and not all(np.isnan(w).all() for w in want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)


def _breakdown_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "breakdown.py"
    spec = importlib.util.spec_from_file_location("nplstm_breakdown", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_breakdown_script_replays_the_layers_own_calls(kind):
    """benchmarks/breakdown.py times the GEMM schedule's parts by making the calls
    ``layer(x)`` makes: its output is the layer's bit for bit, its parts add up."""
    med, diff = _breakdown_script().breakdown(kind, 7, _numba.SMALL_BATCH + 2, 5, repeats=2)
    assert diff == 0.0
    parts = ("projection", "recurrent GEMM", "elementwise", "rest")
    assert all(med[k] > 0 for k in parts[:3])
    assert sum(med[k] for k in parts) == pytest.approx(med["total"])


@pytest.mark.parametrize("argv,message", [
    (["--config", f"10,{_numba.SMALL_BATCH},8"], "batch must be > 4, the GEMM schedule"),
    (["--config", "abc"], "'abc': expected T,B,H, three integers"),
    (["--config", "1,2"], "'1,2': expected T,B,H, three integers"),
    (["--config", "0,8,16"], "0,8,16: T, B and H must be at least 1"),
    (["--repeats", "0"], "'0': expected a positive integer"),
])
def test_breakdown_script_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        _breakdown_script().main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_breakdown_script_needs_the_compiled_engine(monkeypatch, capsys):
    monkeypatch.setenv("NPLSTM_ENGINE", "numpy")
    with pytest.raises(SystemExit) as exc:
        _breakdown_script().main(["--config", "3,8,4"])
    assert exc.value.code == 2
    assert "times the compiled engine: needs the [fast] extra" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,kwargs", [
    ("lstm", {"num_layers": 2, "bidirectional": True}), ("lstm", {"proj_size": 3}),
    ("lstm", {"proj_size": 1, "num_layers": 2}), ("gru", {"bidirectional": True}), ("rnn", {"nonlinearity": "relu", "num_layers": 2})])
def test_blas_from_the_compiled_loop_equals_the_python_loop(kind, kwargs, dtype, monkeypatch):
    """The GEMM schedule's compiled loop calls NumPy's own BLAS routine: the same
    numbers, bit for bit, as the Python loop calling np.matmul (its fallback), for
    calls with lengths, both directions, projections and traces. proj_size 1 too:
    there np.matmul's ``h_full @ W_hr.T`` is a matrix times a vector, which NumPy
    hands to BLAS's GEMV, not its GEMM (different rounding)."""
    assert _numba.blas_gemm(dtype) is not None  # NumPy's wheels bundle OpenBLAS
    monkeypatch.setattr(_numba, "SMALL_BATCH", 0)
    monkeypatch.setattr(cells, "CHUNK_ELEMENTS", 200)  # a few chunks
    ours, theirs = _twin(kind, dtype, 3, **kwargs)
    x = _x(ours, 12, 6, dtype, 4)
    lengths = [12, 3, 7, 12, 1, 9]
    runs = {}
    for route in ("compiled", "python"):
        if route == "python":
            monkeypatch.setattr(_numba, "_GEMM", dict.fromkeys(map(np.dtype, (np.float32,
                                                                               np.float64))))
        tr = ours.trace(x, lengths=lengths)
        runs[route] = _flat(ours(x)) + _flat(ours(x, lengths=lengths)) + [
            tr.output, *[tr[name] for name in ours.family.gates]]
    for a, b in zip(runs["compiled"], runs["python"]):
        np.testing.assert_array_equal(a, b)
    with torch.no_grad():
        assert_close(runs["compiled"][0], theirs(T(x))[0], dtype)


def test_blas_gemm_falls_back_without_a_usable_blas(monkeypatch):
    """No threadpoolctl, no OpenBLAS loaded, or a routine that computes something else:
    None (the Python loop with np.matmul), never an error."""
    import builtins
    import ctypes

    import threadpoolctl

    real_import = builtins.__import__

    def no_threadpoolctl(name, *args, **kwargs):
        if name == "threadpoolctl":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    for patch in ("import", "no openblas", "wrong result", "float16"):
        monkeypatch.setattr(_numba, "_GEMM", {})
        with monkeypatch.context() as m:
            dtype = np.float32
            if patch == "import":
                m.setattr(builtins, "__import__", no_threadpoolctl)
            elif patch == "no openblas":
                m.setattr(threadpoolctl, "threadpool_info", lambda: [
                    {"internal_api": "mkl", "filepath": "/nonexistent/libmkl_rt.so"}])
            elif patch == "wrong result":  # every name finds libc's abs, no sgemm
                m.setattr(ctypes.CDLL, "__getattr__", lambda self, name: ctypes.CDLL(None).abs)
            else:
                dtype = np.float16
            assert _numba.blas_gemm(dtype) is None, patch
    monkeypatch.setattr(_numba, "_GEMM", {})
    layer = nplstm.GRU(3, 4, seed=0).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (5, 6, 3)).astype(np.float32)
    monkeypatch.setattr(_numba, "SMALL_BATCH", 0)
    want = layer(x)
    monkeypatch.setattr(_numba, "_GEMM", {np.dtype(np.float32): None})
    got = layer(x)
    for a, b in zip(_flat(got), _flat(want)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["fortran", "strided"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_states_of_any_layout_with_lengths(kind, layout, schedule):
    """Initial states in Fortran order or strided views, through the general path
    (lengths), whose final states take the given states' layout: PyTorch's numbers on
    every schedule (BLAS called from the compiled loop is told C rows; others are
    handed to np.matmul)."""
    ours, theirs = _twin(kind, np.float32, 5, num_layers=2)
    rng = np.random.default_rng(6)
    x = rng.uniform(-1, 1, (6, 8, H_IN)).astype(np.float32)
    big = rng.uniform(-1, 1, (2, 2, 8, 2 * H)).astype(np.float32)
    make = {"fortran": lambda a: np.asfortranarray(a[0, :, :, :H]),
            "strided": lambda a: a[1, :, :, ::2]}[layout]
    hx = (make(big), make(big * 0.5)) if kind == "lstm" else make(big)
    lengths = [6, 5, 4, 3, 6, 2, 1, 6]
    got = ours(x, hx, lengths=lengths)
    with torch.no_grad():
        packed = pack_padded_sequence(T(x), torch.tensor(lengths), enforce_sorted=False)
        out, state = theirs(packed, to_torch_state(hx))
        out, _ = pad_packed_sequence(out, total_length=6)
    assert_close(got, (out, state), np.float32)


def test_blas_gemm_takes_numpys_openblas_before_scipys(monkeypatch, tmp_path):
    """SciPy's wheels bundle an OpenBLAS of their own (32-bit integers), which
    threadpoolctl may list first (SciPy imported before nplstm): the routine found is
    still NumPy's, even when every path contains "numpy" (a venv in a folder so named)."""
    pytest.importorskip("scipy.linalg")
    import os

    import threadpoolctl

    real = threadpoolctl.threadpool_info()
    ours = [lib for lib in real if lib.get("internal_api") == "openblas"
            and os.path.realpath(lib["filepath"]).startswith(
                os.path.dirname(os.path.realpath(np.__file__)))]
    theirs = [lib for lib in real if lib.get("internal_api") == "openblas"
              and "scipy.libs" in lib["filepath"]]
    if len(ours) != 1 or not theirs:
        pytest.skip("needs NumPy's and SciPy's bundled OpenBLAS")
    link = tmp_path / "numpy-env" / os.path.basename(theirs[0]["filepath"])
    link.parent.mkdir()
    link.symlink_to(theirs[0]["filepath"])
    import ctypes

    for listed in (ours, [dict(theirs[0], filepath=str(link))] + ours):
        monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda listed=listed: listed)
        monkeypatch.setattr(_numba, "_GEMM", {})
        fn = _numba.blas_gemm(np.float32)
        address = ctypes.cast(fn, ctypes.c_void_p).value
        if listed is ours:
            want = address  # the routine found when NumPy's library is the only one
        assert address == want
