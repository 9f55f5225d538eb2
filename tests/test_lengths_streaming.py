"""Padded batches (lengths=) against PyTorch's packed path; chunked streaming."""

import itertools

import numpy as np
import pytest
from helpers import T, assert_close, states, to_torch_state, torch, twin
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

L, N_BATCH, H_IN, H = 9, 4, 3, 5
LENGTHS = np.array([5, 9, 1, 7])  # unsorted, one full, one of length 1


def _packed_torch(module, x, lengths, hx, batch_first):
    packed = pack_padded_sequence(T(x), torch.tensor(lengths), batch_first=batch_first,
                                  enforce_sorted=False)
    out, state = module(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=L)
    return out, state


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind,nl,bi,bf,with_hx,proj", [
    (k, nl, bi, bf, hx, proj)
    for k, nl, bi, bf, hx, proj in itertools.product(
        ("lstm", "gru", "rnn", "rnn_relu"), (1, 2), (False, True), (False, True),
        (False, True), (0, 2))
    if proj == 0 or k == "lstm"])
def test_lengths_match_packed_sequence(kind, nl, bi, bf, with_hx, proj, dtype):
    kwargs = {"num_layers": nl, "bidirectional": bi, "batch_first": bf}
    if proj:
        kwargs["proj_size"] = proj
    if kind == "rnn_relu":
        kind, kwargs["nonlinearity"] = "rnn", "relu"
    ours, theirs = twin(kind, H_IN, H, dtype=dtype, seed=3, **kwargs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N_BATCH, L, H_IN) if bf else (L, N_BATCH, H_IN)).astype(dtype)
    hx = None
    if with_hx:
        lead = (2 if bi else 1) * nl
        hx = states(kind, rng, (lead, N_BATCH, proj or H), (lead, N_BATCH, H), dtype)
    got = ours(x, hx, lengths=LENGTHS)
    want = _packed_torch(theirs, x, LENGTHS, None if hx is None else to_torch_state(hx), bf)
    assert_close(got[0], want[0], dtype, "output")
    assert_close(got[1], want[1], dtype, "state")
    # past each sequence's end the output is exactly zero
    out = got[0] if bf else got[0].transpose(1, 0, 2)
    for n, length in enumerate(LENGTHS):
        assert not out[n, length:].any()


def test_full_lengths_equal_no_lengths():
    ours, _ = twin("lstm", H_IN, H, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((L, N_BATCH, H_IN))
    a, b = ours(x), ours(x, lengths=[L] * N_BATCH)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1][0], b[1][0])


def test_lengths_accepts_torch_tensor():
    ours, theirs = twin("gru", H_IN, H)
    x = np.random.default_rng(0).standard_normal((L, N_BATCH, H_IN))
    got = ours(x, lengths=torch.tensor(LENGTHS))
    want = _packed_torch(theirs, x, LENGTHS, None, False)
    assert_close(got[0], want[0], np.float64)


@pytest.mark.parametrize("bad,match", [
    ([5, 0, 3, 2], r"between 1 and the sequence length 9, got \[0\]"),
    ([5, 10, 3, 2], r"between 1 and the sequence length 9, got \[10\]"),
    ([5, 3, 2], r"shape \(4,\).*got shape \(3,\)"),
    ([5.0, 3.0, 2.0, 1.0], "lengths must be integers, got dtype float64"),
    ("abcd", "lengths must hold real numbers"),
])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_lengths_errors(kind, bad, match):
    ours, _ = twin(kind, H_IN, H)
    x = np.zeros((L, N_BATCH, H_IN))
    with pytest.raises((ValueError, TypeError), match=match):
        ours(x, lengths=bad)


def test_lengths_with_unbatched_input_is_an_error():
    ours, _ = twin("rnn", H_IN, H)
    with pytest.raises(ValueError, match="lengths= needs batched 3-D input"):
        ours(np.zeros((L, H_IN)), lengths=[3])


# --------------------------------------------------------------- streaming --


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk", [1, 2, 5, 13])
@pytest.mark.parametrize("kind,nl,bf,unbatched,proj", [
    ("lstm", 1, False, False, 0), ("lstm", 3, True, False, 2), ("lstm", 2, False, True, 0),
    ("gru", 1, False, False, 0), ("gru", 2, True, False, 0), ("gru", 2, False, True, 0),
    ("rnn", 1, False, False, 0), ("rnn", 3, True, False, 0), ("rnn", 2, False, True, 0)])
def test_chunked_stream_equals_whole_sequence(kind, nl, bf, unbatched, proj, chunk, dtype):
    kwargs = dict(num_layers=nl, batch_first=bf, **({"proj_size": proj} if proj else {}))
    ours, theirs = twin(kind, H_IN, H, dtype=dtype, seed=9, **kwargs)
    total = 13
    rng = np.random.default_rng(1)
    shape = (total, H_IN) if unbatched else ((2, total, H_IN) if bf else (total, 2, H_IN))
    x = rng.standard_normal(shape).astype(dtype)
    whole_out, whole_state = ours(x)
    time_axis = 1 if (bf and not unbatched) else 0
    state, outs = None, []
    for start in range(0, total, chunk):
        piece = np.take(x, np.arange(start, min(start + chunk, total)), axis=time_axis)
        out, state = ours(piece, state)
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs, axis=time_axis), whole_out,
                               rtol=0, atol=1e-12 if dtype == np.float64 else 1e-6)
    for a, b in zip(state if kind == "lstm" else (state,),
                    whole_state if kind == "lstm" else (whole_state,)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 if dtype == np.float64 else 1e-6)
    # and the whole sequence is PyTorch's
    assert_close(whole_out, theirs(T(x))[0], dtype)


def test_stream_one_step_with_cell_equals_layer():
    """LSTMCell stepping == LSTM over the sequence (Flax's layer == loop of cells)."""
    import nplstm

    layer = nplstm.LSTM(H_IN, H, dtype=np.float64, seed=0)
    cell = nplstm.LSTMCell(H_IN, H, dtype=np.float64)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((L, 2, H_IN))
    out, (_h_n, c_n) = layer(x)
    h = c = np.zeros((2, H))
    # the NumPy engine's step and sequence take the same BLAS products; the
    # compiled engine's step projects in the call: equal to the last bits
    tol = 0 if layer.engine == "numpy" else 2e-15
    for t in range(L):
        h, c = cell(x[t], (h, c))
        np.testing.assert_allclose(h, out[t], rtol=0, atol=tol)
    np.testing.assert_allclose(c, c_n[0], rtol=0, atol=tol)


def test_bidirectional_accepts_state_but_chunks_differ():
    """Documented: a bidirectional layer takes h_0 like PyTorch, but its reverse
    direction needs the whole sequence, so chunked calls differ from one pass."""
    ours, theirs = twin("gru", H_IN, H, bidirectional=True)
    x = np.random.default_rng(0).standard_normal((6, 1, H_IN))
    h0 = np.random.default_rng(1).standard_normal((2, 1, H))
    assert_close(ours(x, h0)[0], theirs(T(x), T(h0))[0], np.float64)
    first, state = ours(x[:3], h0)
    second, _ = ours(x[3:], state)
    assert not np.allclose(np.concatenate([first, second]), ours(x, h0)[0])
