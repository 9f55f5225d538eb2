"""Traces under the compiled engine (``[fast]``): ``layer.trace(x)`` runs the
kernels of ``layer(x)`` with recording switched on, so ``trace.output``,
``h_n`` and ``c_n`` are the call's bit for bit (DESIGN.md: a trace must
reproduce the forward output exactly), for every family and option the engine
takes, both schedules, lengths, initial states, layouts and cells. The recorded
gates are those of the NumPy path's trace within the dtype's tolerance (float64
1e-12, float32 1e-5), and the backward pass fed such traces matches PyTorch's
autograd within the gradient tests' tolerance."""

import numpy as np
import pytest
from helpers import assert_close, twin
from test_grad import GRID, compare
from test_numba import CONFIGS, H_IN, H, _hx, _twin, _x, schedule  # noqa: F401 (a fixture)

import nplstm
from nplstm import cells

pytest.importorskip("numba")


def _flat(result):
    """``output, state`` as a flat tuple of arrays: (output, h_n[, c_n])."""
    output, state = result
    return (output,) + (state if isinstance(state, tuple) else (state,))


def _trace_arrays(trace):
    return (trace.output, trace.h_n) + (() if trace.c_n is None else (trace.c_n,))


def _same_records(fast, ref, dtype):
    assert list(fast.data) == list(ref.data)
    for name in ref.data:
        assert fast[name].shape == ref[name].shape and fast[name].dtype == dtype, name
        assert_close(fast[name], ref[name], dtype, name)


@pytest.mark.usefixtures("schedule")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", CONFIGS)
def test_trace_reproduces_the_call_bit_for_bit(kind, kwargs, dtype, monkeypatch):
    monkeypatch.setattr(cells, "CHUNK_ELEMENTS", 96)  # several projection chunks
    ours, _ = _twin(kind, dtype, 21, **kwargs)
    assert ours.engine == "numba"
    rng = np.random.default_rng(22)
    runs = [(_x(ours, 1, 1, dtype, 23), None, None),
            (_x(ours, 11, 3, dtype, 24), _hx(kind, ours, 3, rng, dtype), None),
            (_x(ours, 11, 4, dtype, 25), _hx(kind, ours, 4, rng, dtype), [11, 3, 1, 8]),
            (_x(ours, 9, 2, dtype, 26), None, [4, 9]),
            (rng.uniform(-2, 2, (6, H_IN)).astype(dtype), None, None)]  # unbatched
    for x, hx, lengths in runs:
        what = f"x{x.shape} hx={hx is not None} lengths={lengths}"
        trace = ours.trace(x, hx, lengths=lengths)
        for got, want in zip(_trace_arrays(trace), _flat(ours(x, hx, lengths=lengths))):
            assert np.array_equal(got, want), what
        monkeypatch.setenv("NPLSTM_ENGINE", "numpy")
        ref = ours.trace(x, hx, lengths=lengths)
        monkeypatch.setenv("NPLSTM_ENGINE", "numba")
        _same_records(trace, ref, dtype)
        for got, want in zip(_trace_arrays(trace), _trace_arrays(ref)):
            assert_close(got, want, dtype, what)


@pytest.mark.usefixtures("schedule")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("size", [(7, 16), (33, 70)])
def test_trace_bit_for_bit_at_vector_widths(kind, dtype, size):
    """Hidden sizes around and across SIMD widths (vector body and scalar tail)."""
    H_in, H_ = size
    ours, _ = twin(kind, H_in, H_, dtype=dtype, seed=27, scale=0.3,
                   **({"proj_size": 5} if kind == "lstm" and H_ > 20 else {}))
    x = np.random.default_rng(28).uniform(-1, 1, (13, 3, H_in)).astype(dtype)
    trace = ours.trace(x, lengths=[13, 6, 1])
    for got, want in zip(_trace_arrays(trace), _flat(ours(x, lengths=[13, 6, 1]))):
        assert np.array_equal(got, want)


@pytest.mark.usefixtures("schedule")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_trace_and_step_gates_reproduce_the_call(kind, dtype, monkeypatch):
    cell, _ = twin(kind, H_IN, H, dtype=dtype, seed=29, cell=True)
    assert cell.engine == "numba"
    rng = np.random.default_rng(30)
    x = rng.uniform(-2, 2, (3, H_IN)).astype(dtype)
    hx = tuple(rng.uniform(-1, 1, (3, H)).astype(dtype) for _ in range(2))
    hx = hx if kind == "lstm" else hx[0]
    for args in ((x, hx), (x, None), (x[0], None)):
        want = cell(*args)
        want = want if isinstance(want, tuple) else (want,)
        trace = cell.trace(*args)
        state, gates = cell.step_gates(*args)
        state = state if isinstance(state, tuple) else (state,)
        for got in (_trace_arrays(trace)[1:], state):
            for a, b in zip(got, want):
                assert np.array_equal(a, b)
        monkeypatch.setenv("NPLSTM_ENGINE", "numpy")
        ref, (_, ref_gates) = cell.trace(*args), cell.step_gates(*args)
        monkeypatch.setenv("NPLSTM_ENGINE", "numba")
        _same_records(trace, ref, dtype)
        assert list(gates) == list(ref_gates)
        for name in gates:
            assert gates[name].flags.c_contiguous
            assert_close(gates[name], ref_gates[name], dtype, name)


def test_records_are_zero_past_each_length_and_own_their_memory():
    lstm = nplstm.LSTM(H_IN, H, seed=31)
    x = np.random.default_rng(32).uniform(-1, 1, (8, 2, H_IN)).astype(np.float32)
    trace = lstm.trace(x, lengths=[3, 8])
    for name in trace.names:
        assert not trace[name][0, 0, 3:, 0].any(), name
        assert trace[name][0, 0, :3, 0].any(), name
    out = lstm(x, lengths=[3, 8])[0]
    trace["h"][...] = 7  # a trace's arrays are its own: the call's output is untouched
    assert np.array_equal(lstm(x, lengths=[3, 8])[0], out)


@pytest.mark.usefixtures("schedule")
@pytest.mark.parametrize("case", GRID[::3], ids=[
    "-".join(f"{k}={v}" for k, v in c.items() if v not in (False, None)) for c in GRID[::3]])
def test_backward_of_compiled_traces_matches_autograd(case):
    """``tests/test_grad.py``'s comparison with torch, on traces the kernels recorded
    (a third of its grid here; ``NPLSTM_TEST_ENGINE=numba`` runs all of it)."""
    assert nplstm.LSTM(1, 1).engine == "numba"
    compare(**case)
