"""Hypothesis draws configurations, shapes and inputs; nplstm must equal PyTorch."""

import numpy as np
from helpers import T, assert_close, randomize, to_torch_state, torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nplstm

PAIRS = {"lstm": (nplstm.LSTM, torch.nn.LSTM), "gru": (nplstm.GRU, torch.nn.GRU),
         "rnn": (nplstm.RNN, torch.nn.RNN)}


@st.composite
def configs(draw):
    kind = draw(st.sampled_from(sorted(PAIRS)))
    hidden = draw(st.integers(1, 8))
    cfg = {"num_layers": draw(st.integers(1, 3)), "bias": draw(st.booleans()),
               "batch_first": draw(st.booleans()), "bidirectional": draw(st.booleans())}
    if kind == "lstm" and hidden > 1:
        cfg["proj_size"] = draw(st.integers(0, hidden - 1))
    if kind == "rnn":
        cfg["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    sizes = (draw(st.integers(1, 6)), hidden)
    shape = {"L": draw(st.integers(1, 12)), "N": draw(st.integers(1, 4)),
                 "unbatched": draw(st.booleans()), "with_hx": draw(st.booleans()),
                 "with_lengths": draw(st.booleans())}
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    return kind, sizes, cfg, shape, dtype, draw(st.integers(0, 2**31 - 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_random_configurations_match_torch(params):
    kind, (h_in, hidden), cfg, shape, dtype, seed = params
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    # ReLU is unbounded: with U(-1, 1) weights three ReLU layers reach |h| ~ 40, where one
    # float32 ulp is 4e-6 and PyTorch's own float32 result is 2.6e-5 from float64. Use
    # PyTorch's init bound 1/sqrt(H) there, so the comparison measures code, not growth.
    scale = 1 / np.sqrt(hidden) if cfg.get("nonlinearity") == "relu" else 1.0
    theirs = randomize(PAIRS[kind][1](h_in, hidden, **cfg).to(tdtype), seed, scale)
    ours = PAIRS[kind][0](h_in, hidden, **cfg, dtype=dtype)
    ours.load_state_dict(theirs.state_dict())
    rng = np.random.default_rng(seed)
    L, N = shape["L"], shape["N"]
    unbatched = shape["unbatched"] and not shape["with_lengths"]
    if unbatched:
        x = rng.uniform(-2, 2, (L, h_in))
    else:
        x = rng.uniform(-2, 2, (N, L, h_in) if cfg["batch_first"] else (L, N, h_in))
    x = x.astype(dtype)
    lead = (2 if cfg["bidirectional"] else 1) * cfg["num_layers"]
    batch = () if unbatched else (N,)
    hx = None
    if shape["with_hx"]:
        h = rng.uniform(-1, 1, (lead,) + batch + (cfg.get("proj_size") or hidden,)).astype(dtype)
        hx = (h, rng.uniform(-1, 1, (lead,) + batch + (hidden,)).astype(dtype)) \
            if kind == "lstm" else h
    t_hx = None if hx is None else to_torch_state(hx)
    if shape["with_lengths"]:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        lengths = rng.integers(1, L + 1, N)
        got = ours(x, hx, lengths=lengths)
        packed = pack_padded_sequence(T(x), torch.tensor(lengths), cfg["batch_first"],
                                      enforce_sorted=False)
        out, state = theirs(packed, t_hx)
        want = (pad_packed_sequence(out, cfg["batch_first"], total_length=L)[0], state)
    else:
        got, want = ours(x, hx), theirs(T(x), t_hx)
    assert_close(got[0], want[0], dtype, "output")
    assert_close(got[1], want[1], dtype, "state")
