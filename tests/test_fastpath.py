"""The fast path (nplstm.cells + nplstm.loop) against PyTorch over long sequences,
and its invariants: trace == forward bit for bit, chunked projection, streaming,
reused workspaces, threads, memory that does not grow with the sequence."""

import threading
import tracemalloc

import numpy as np
import pytest
from helpers import T, assert_close, states, to_torch_state, torch, twin

import nplstm
from nplstm import cells

H_IN, H, PROJ = 7, 11, 5


def _twin(kind, dtype, **kwargs):
    """Default-initialised weights (a stable recurrence over 1000 steps) plus
    random non-zero biases U(-1, 1): no zero bias hides a bug."""
    ours, theirs = twin(kind, H_IN, H, dtype=dtype, seed=5, scale=1 / np.sqrt(H), **kwargs)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if name.startswith("bias"):
                p.uniform_(-1, 1)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


CONFIGS = [("lstm", {}), ("lstm", {"proj_size": PROJ}), ("lstm", {"bidirectional": True}),
           ("lstm", {"num_layers": 2, "proj_size": PROJ, "bidirectional": True}),
           ("gru", {}), ("gru", {"num_layers": 2, "bidirectional": True}),
           ("rnn", {}), ("rnn", {"nonlinearity": "relu", "bidirectional": True})]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind,kwargs", CONFIGS)
def test_long_sequence_matches_torch(kind, kwargs, batch, dtype):
    ours, theirs = _twin(kind, dtype, **kwargs)
    x = np.random.default_rng(1).uniform(-1, 1, (1000, batch, H_IN)).astype(dtype)
    with torch.no_grad():
        want = theirs(T(x))
    assert_close(ours(x), want, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", CONFIGS[:5] + CONFIGS[6:])
def test_with_state_and_lengths_matches_torch(kind, kwargs, dtype):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    ours, theirs = _twin(kind, dtype, **kwargs)
    rng = np.random.default_rng(2)
    L, lengths = 60, np.array([60, 17, 1, 42])
    x = rng.uniform(-1, 1, (L, 4, H_IN)).astype(dtype)
    lead = (2 if ours.bidirectional else 1) * ours.num_layers
    hx = states(kind, rng, (lead, 4, ours.output_size), (lead, 4, H), dtype)
    got = ours(x, hx, lengths=lengths)
    with torch.no_grad():
        packed = pack_padded_sequence(T(x), torch.tensor(lengths), enforce_sorted=False)
        out, state = theirs(packed, to_torch_state(hx))
        out = pad_packed_sequence(out, total_length=L)[0]
    assert_close(got[0], out, dtype, "output")
    assert_close(got[1], state, dtype, "state")


@pytest.fixture
def small_chunks(monkeypatch):
    """Project a few steps at a time, so sequences cross many chunk boundaries."""
    monkeypatch.setattr(cells, "CHUNK_ELEMENTS", 64)


@pytest.mark.parametrize("kind,kwargs", CONFIGS)
@pytest.mark.parametrize("batch", [1, 2])
def test_chunked_projection(kind, kwargs, batch, small_chunks):
    ours, theirs = _twin(kind, np.float64, **kwargs)
    x = np.random.default_rng(3).uniform(-1, 1, (37, batch, H_IN))
    with torch.no_grad():
        assert_close(ours(x), theirs(T(x)), np.float64)


def _equal(a, b):
    if isinstance(a, tuple):
        return all(_equal(p, q) for p, q in zip(a, b))
    return np.array_equal(a, b)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("batch,lengths", [(1, None), (3, None), (3, [5, 9, 2])])
@pytest.mark.parametrize("kind,kwargs", CONFIGS)
def test_trace_equals_forward_bit_for_bit(kind, kwargs, batch, lengths, chunked, monkeypatch):
    if chunked:
        monkeypatch.setattr(cells, "CHUNK_ELEMENTS", 64)
    for dtype in (np.float32, np.float64):
        ours, _ = _twin(kind, dtype, **kwargs)
        x = np.random.default_rng(4).uniform(-1, 1, (9, batch, H_IN)).astype(dtype)
        out = ours(x, lengths=lengths)
        tr = ours.trace(x, lengths=lengths)
        assert np.array_equal(tr.output, out[0])
        assert _equal((tr.h_n, tr.c_n) if kind == "lstm" else tr.h_n, out[1])
        # the recorded h of the last layer is the output, direction by direction
        D, H_out = ours.num_directions, ours.output_size
        for d in range(D):
            assert np.array_equal(tr["h"][-1, d], out[0][..., d * H_out:(d + 1) * H_out])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("kind,kwargs", [c for c in CONFIGS if not c[1].get("bidirectional")])
def test_one_step_calls_equal_whole_sequence(kind, kwargs, batch, dtype):
    """The streaming user: ``y, state = layer(x_t, state)``, one step per call."""
    ours, theirs = _twin(kind, dtype, **kwargs)
    x = np.random.default_rng(5).uniform(-1, 1, (200, batch, H_IN)).astype(dtype)
    whole = ours(x)
    state, ys = None, []
    for x_t in x:
        y, state = ours(x_t[None], state)
        ys.append(y)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(np.concatenate(ys), whole[0], rtol=0, atol=tol)
    for a, b in zip(state if kind == "lstm" else (state,),
                    whole[1] if kind == "lstm" else (whole[1],)):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)
    with torch.no_grad():
        assert_close(np.concatenate(ys), theirs(T(x))[0], dtype)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_stream_equals_layer_bit_for_bit(kind):
    """A cell stepped over a sequence is the layer: bit for bit for B > 1; for B = 1
    the layer's many-step projection is a GEMM and the cell's one step a GEMV,
    which BLAS sums in another order, so there it is equal to rounding (as on the
    compiled engine, whose sequences take BLAS's product and steps their own)."""
    layer, _ = _twin(kind, np.float32)
    cell = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}[kind](
        H_IN, H)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    for batch in (1, 3):
        x = np.random.default_rng(6).uniform(-1, 1, (20, batch, H_IN)).astype(np.float32)
        out = layer(x)[0]
        state = None
        for t in range(20):
            state = cell(x[t, 0] if batch == 1 else x[t], state)
            h = state[0] if kind == "lstm" else state
            if batch == 1 or layer.engine == "numba":
                np.testing.assert_allclose(h, out[t] if batch > 1 else out[t, 0], rtol=0,
                                           atol=1e-6)
            else:
                assert np.array_equal(h, out[t])


def test_workspaces_are_reused_and_results_repeat():
    ours, _ = _twin("lstm", np.float32, proj_size=PROJ)
    rng = np.random.default_rng(7)
    xs = {n: rng.uniform(-1, 1, (12, n, H_IN)).astype(np.float32) for n in (1, 2, 3, 5, 8, 1)}
    first = {n: ours(x) for n, x in xs.items()}
    for n, x in list(xs.items())[::-1]:  # other batch sizes in between, more than the pool
        assert _equal(ours(x), first[n])
    w = ours._weights()[0][0]
    assert 1 <= len(w.pool) <= 4
    # outputs never alias the workspace: mutating them changes nothing next call
    out, (h, c) = ours(xs[2])
    out[:] = h[:] = c[:] = 7
    assert _equal(ours(xs[2]), first[2])


def test_threads_share_a_layer_safely():
    ours, _ = _twin("gru", np.float64)
    rng = np.random.default_rng(8)
    xs = [rng.uniform(-1, 1, (300, 2, H_IN)) for _ in range(4)]
    want = [ours(x)[0] for x in xs]
    got = [None] * 4

    def work(k):
        for _ in range(3):
            got[k] = ours(xs[k])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


def test_memory_does_not_grow_with_sequence_length(monkeypatch):
    """Workspace (beyond the output itself) is the same for L = 2,000 and 16,000."""
    monkeypatch.setattr(cells, "CHUNK_ELEMENTS", 1 << 14)  # 128 steps per chunk here
    layer = nplstm.LSTM(16, 32, seed=0)
    extra = []
    for L in (2000, 16000):
        x = np.random.default_rng(0).standard_normal((L, 1, 16)).astype(np.float32)
        layer(x[:3])
        tracemalloc.start()
        out, _ = layer(x)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        extra.append(peak - out.nbytes)
        del out
    assert extra[1] < extra[0] + 64 * 1024, extra
    assert extra[1] < 2 * cells.CHUNK_ELEMENTS * 4 + 64 * 1024


def test_prepared_weights_layout():
    """Gate rows reordered once; each mode's kernel scales them exactly, at load time:
    "tanh" halves the sigmoid rows, "exp" negates every row (tanh rows are doubled
    after the sum, so no partial product can overflow where PyTorch's does not)."""
    ours, _ = _twin("lstm", np.float64)
    w = ours._weights()[0][0]
    W = ours.weight_hh_l0  # rows i, f, g, o
    blocks = [W[k * H:(k + 1) * H] for k in range(4)]
    i, f, g, o = blocks
    np.testing.assert_array_equal(w.W_hh, np.concatenate([o, i, f, g]))
    k = w.kernel("tanh")
    np.testing.assert_array_equal(k.W_hh, np.concatenate([o / 2, i / 2, f / 2, g]))
    assert k.W_hh.flags.c_contiguous and k.W_ih.flags.c_contiguous
    np.testing.assert_array_equal(w.kernel("exp").W_hh, np.concatenate([-o, -i, -f, -g]))
    gru, _ = _twin("gru", np.float64)
    wg = gru._weights()[0][0].kernel("tanh")
    np.testing.assert_array_equal(wg.W_hh[2 * H:], gru.weight_hh_l0[2 * H:])
    np.testing.assert_array_equal(wg.b_h[:, 0], gru.bias_hh_l0[2 * H:])
    we = gru._weights()[0][0].kernel("exp")
    np.testing.assert_array_equal(we.b_h[:, 0], -gru.bias_hh_l0[2 * H:])


@pytest.fixture(params=["tanh", "exp"])
def mode(request, monkeypatch):
    """Run in either activation mode, whatever the size (see cells.EXP_MIN)."""
    monkeypatch.setattr(cells, "EXP_MIN", 1 << 60 if request.param == "tanh" else 0)
    return request.param


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,kwargs", CONFIGS)
def test_both_modes_match_torch_and_trace(kind, kwargs, dtype, mode):
    """1000 steps against PyTorch in both modes; trace == forward; one-step calls
    == the whole sequence; huge inputs (exp overflows to inf) warn nothing and
    saturate the gates exactly as PyTorch does."""
    ours, theirs = _twin(kind, dtype, **kwargs)
    x = np.random.default_rng(9).uniform(-1, 1, (1000, 3, H_IN)).astype(dtype)
    x[::7] *= 10  # nearly saturated steps
    with torch.no_grad():
        want = theirs(T(x))
        huge = ours(x[:50] * 1e4)[0], theirs(T(x[:50] * 1e4))[0].numpy()
    got = ours(x)
    assert_close(got, want, dtype)
    # 1e4-sized pre-activations: float32 sums of them are only good to ~1e-3
    np.testing.assert_allclose(*huge, rtol=0, atol=1e-2)
    tr = ours.trace(x[:20])
    assert np.array_equal(tr.output, ours(x[:20])[0])
    if ours.bidirectional:  # one step per call is a stream: forward direction only
        return
    state, ys = None, []
    for x_t in x[:50]:
        y, state = ours(x_t[None], state)
        ys.append(y)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(np.concatenate(ys), got[0][:50], rtol=0, atol=tol)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cells_in_both_modes(kind, mode):
    layer, _ = _twin(kind, np.float64)
    cell = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}[kind](
        H_IN, H, dtype=np.float64)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = np.random.default_rng(10).uniform(-1, 1, (30, 3, H_IN)) * 1e3
    out, state = layer(x)[0], None
    for t in range(30):
        state = cell(x[t], state)
        h = state[0] if kind == "lstm" else state
        if layer.engine == "numpy":  # the same BLAS products: identical
            assert np.array_equal(h, out[t])
        else:  # compiled: a step projects in the call, a sequence through BLAS,
            # rounding inputs ~1e3 differently: the float64 tolerance
            np.testing.assert_allclose(h, out[t], rtol=0, atol=1e-12)


# ------------------------------------------------- the one-step streaming path --

LAYER = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}


def _general(layer, x, hx):
    """The general path, bypassing the one-step shortcut."""
    output, state, _ = layer._forward(x, hx, None, record=False)
    return output, state


def _arrays(result):
    output, state = result
    return [output, *(state if isinstance(state, tuple) else (state,))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout,batch", [("time_first", 1), ("time_first", 3),
                                          ("batch_first", 1), ("batch_first", 3),
                                          ("unbatched", 1)])
@pytest.mark.parametrize("kind,kwargs", [
    ("lstm", {}), ("lstm", {"num_layers": 3, "proj_size": PROJ}), ("gru", {"num_layers": 2}),
    ("rnn", {}), ("rnn", {"num_layers": 2, "nonlinearity": "relu"})])
def test_one_step_shortcut_equals_general_path(kind, kwargs, batch, layout, dtype):
    """A one-step call takes the shortcut, and gives exactly the general path's
    arrays: fresh ones, of the same shapes, with or without a state."""
    ours, _ = _twin(kind, dtype, batch_first=layout == "batch_first", **kwargs)
    rng = np.random.default_rng(11)
    shape = {"time_first": (1, batch, H_IN), "batch_first": (batch, 1, H_IN),
             "unbatched": (1, H_IN)}[layout]
    state = None
    for _ in range(4):
        x = rng.uniform(-1, 1, shape).astype(dtype)
        assert ours._one_step(x, state) is not None  # the shortcut is taken
        fast, slow = ours(x, state), _general(ours, x, state)
        for a, b in zip(_arrays(fast), _arrays(slow)):
            assert a.shape == b.shape and a.dtype == b.dtype
            assert np.array_equal(a, b)
        arrays = _arrays(fast)
        for i, a in enumerate(arrays):  # nothing returned shares memory
            assert a.flags.writeable and a.flags.c_contiguous
            assert not any(np.shares_memory(a, b) for b in arrays[i + 1:])
        state = fast[1]


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_one_step_shortcut_declines_what_it_cannot_take(kind):
    """Other dtypes, lists, tensors, longer inputs (on the NumPy engine; the
    compiled engine takes them, :meth:`_compiled_run`), bidirectional layers and
    active dropout take the general path, which converts them or raises."""
    layer, _ = _twin(kind, np.float32, num_layers=2, dropout=0.5)
    layer.eval()  # new layers train, as in torch; dropout off, the shortcut may run
    x = np.random.default_rng(12).uniform(-1, 1, (1, 2, H_IN)).astype(np.float32)
    state = layer(x)[1]
    assert layer._one_step(x, state) is not None
    assert layer._one_step(x.astype(np.float64), state) is None
    assert layer._one_step(x.tolist(), state) is None
    assert layer._one_step(T(x), state) is None
    longer = layer._one_step(np.concatenate([x, x]), state)
    if layer.engine == "numpy":
        assert longer is None
    else:
        for a, b in zip(_arrays(longer), _arrays(_general(layer, np.concatenate([x, x]), state))):
            assert np.array_equal(a, b)
    assert layer._one_step(x, [state] if kind != "lstm" else list(state)) is None
    bad = (state[0][:, :1], state[1]) if kind == "lstm" else state[:, :1]
    assert layer._one_step(x, bad) is None
    with pytest.raises(ValueError, match=r"Expected h_0 of shape \(2, 2, 11\), got \(2, 1, 11\)"):
        layer(x, bad)
    np.testing.assert_array_equal(layer(x.astype(np.float64), state)[0], layer(x, state)[0])
    layer.train()  # dropout between layers: masks are drawn, so the general path
    assert layer._one_step(x, state) is None
    bi, _ = _twin(kind, np.float32, bidirectional=True)
    assert bi._one_step(x, None) is None


def test_one_step_shortcut_sees_new_weights_and_survives_pickle():
    import pickle

    layer, _ = _twin("lstm", np.float64, num_layers=2)
    x = np.random.default_rng(13).uniform(-1, 1, (1, 2, H_IN))
    before = layer(x)[0]
    other, _ = _twin("lstm", np.float64, num_layers=2)
    other.weight_hh_l1 = other.weight_hh_l1 * 0.5
    layer.load_state_dict(other.state_dict())
    after = layer(x)[0]
    assert not np.array_equal(before, after)
    assert np.array_equal(after, _general(layer, x, None)[0])
    copy = pickle.loads(pickle.dumps(layer))
    assert np.array_equal(copy(x)[0], after)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [None, 1, 3])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_shortcut_equals_general_path(kind, batch, dtype):
    """Cells called with ready arrays take the shortcut and give exactly what the
    general path (loop.run_cell) gives: fresh arrays of the same shapes."""
    cls = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}[kind]
    cell = cls(H_IN, H, dtype=dtype, seed=3)
    rng = np.random.default_rng(14)
    shape = (H_IN,) if batch is None else (batch, H_IN)
    state = None
    for _ in range(4):
        x = rng.uniform(-1, 1, shape).astype(dtype)
        assert cell._fast_step(x, state) is not None
        fast = cell(x, state)
        general, _ = cell._step(x, state, None)
        fast_arrays = fast if kind == "lstm" else (fast,)
        for a, b in zip(fast_arrays, general):
            assert a.shape == b.shape == (shape[:-1] + (H,)) and a.dtype == b.dtype == dtype
            assert np.array_equal(a, b) and a.flags.c_contiguous and a.flags.writeable
        if kind == "lstm":
            assert not np.shares_memory(*fast)
        state = fast
    assert cell._fast_step(x.tolist(), state) is None
    assert cell._fast_step(x.astype(np.float16), state) is None
    assert cell._fast_step(np.zeros((0, H_IN), dtype), None) is None
    bad = np.zeros(shape[:-1] + (H + 1,), dtype)
    assert cell._fast_step(x, (bad, bad) if kind == "lstm" else bad) is None
    with pytest.raises(ValueError, match="expected .* of shape"):
        cell(x, (bad, bad) if kind == "lstm" else bad)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_one_step_shortcut_follows_batch_first_set_after_a_call(kind):
    """batch_first is an attribute, as in PyTorch: set after a call (say on a
    layer from from_state_dict), a (1, 3, H_in) input is then 3 steps of one
    sequence, not one step of 3 -- the cached plan must not remember the old layout."""
    ours, theirs = _twin(kind, np.float64)
    x = np.random.default_rng(15).uniform(-1, 1, (1, 3, H_IN))
    ours(x)  # plans a one-step call for this shape, time-first
    for batch_first in (True, False):
        ours.batch_first = theirs.batch_first = batch_first
        with torch.no_grad():
            want = theirs(T(x))
        assert_close(ours(x), want, np.float64)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_one_step_shortcuts_keep_the_general_paths_overflow_handling(kind):
    """Overflow in a step (here huge states) is no warning and no error in the
    general path, whatever the size; the shortcuts must not add either."""
    layer, _ = _twin(kind, np.float32)
    cell = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}[kind](
        H_IN, H, seed=3)
    for module in (layer, cell):  # positive weights: the huge products add up
        module.load_state_dict({k: np.abs(v) for k, v in module.state_dict().items()})
    x = np.full((1, 1, H_IN), 3e38, np.float32)
    h = np.full((1, 1, H), 3e38, np.float32)
    hx = (h, h) if kind == "lstm" else h
    cx = tuple(s[0] for s in hx) if kind == "lstm" else h[0]
    with np.errstate(over="raise"):
        want = _general(layer, x, hx)
        want_cell, _ = cell._step(x[0], cx, None)
        assert layer._one_step(x, hx) is not None and cell._fast_step(x[0], cx) is not None
        got, got_cell = layer(x, hx), cell(x[0], cx)
    for a, b in zip(_arrays(got), _arrays(want)):
        assert np.array_equal(a, b, equal_nan=True)
    for a, b in zip(got_cell if kind == "lstm" else (got_cell,), want_cell):
        assert np.array_equal(a, b, equal_nan=True)
