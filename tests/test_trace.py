"""A trace is the forward, kept: identical outputs, gates that satisfy the equations."""

from __future__ import annotations

import numpy as np
import pytest

import nplstm
from nplstm import gates

L, N, H_IN, H = 7, 3, 3, 5
LAYERS = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}

# (family, options); each option set runs for every family that has it.
CONFIGS = [
    (fam, opts)
    for fam in ("lstm", "gru", "rnn")
    for opts in (
        {},
        {"num_layers": 2},
        {"bidirectional": True},
        {"num_layers": 2, "bidirectional": True, "lengths": [7, 3, 5]},
        {"batch_first": True},
        {"unbatched": True},
        {"lengths": [4, 7, 1]},
        {"hx": True, "num_layers": 2},
        {"bidirectional": True, "hx": True, "lengths": [2, 7, 6]},
        {"bias": False},
    )
] + [("lstm", {"proj_size": 2}), ("lstm", {"proj_size": 3, "num_layers": 2,
                                           "bidirectional": True, "lengths": [5, 7, 2]}),
     ("rnn", {"nonlinearity": "relu", "lengths": [7, 2, 6]})]


def _ids(c):
    fam, opts = c
    return fam + "-" + ("-".join(f"{k}={v}" for k, v in opts.items()) or "plain")


def _run(fam, opts, dtype=np.float64, seed=0):
    opts = dict(opts)
    lengths, unbatched, hx = opts.pop("lengths", None), opts.pop("unbatched", False), \
        opts.pop("hx", False)
    layer = LAYERS[fam](H_IN, H, **opts, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    shape = (L, H_IN) if unbatched else ((N, L, H_IN) if opts.get("batch_first")
                                         else (L, N, H_IN))
    x = rng.normal(size=shape).astype(dtype)
    state = None
    if hx:
        shapes = layer._state_shapes((N,))
        parts = tuple(rng.normal(size=s).astype(dtype) for s in shapes)
        state = parts if fam == "lstm" else parts[0]
    return layer, x, state, lengths


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_trace_is_the_forward(config):
    """Output and final states are bitwise the forward's."""
    fam, _opts = config
    layer, x, hx, lengths = _run(*config)
    out, state = layer(x, hx, lengths=lengths)
    trace = layer.trace(x, hx, lengths=lengths)
    assert np.array_equal(trace.output, out) and trace.output.dtype == out.dtype
    if fam == "lstm":
        assert np.array_equal(trace.h_n, state[0]) and np.array_equal(trace.c_n, state[1])
        assert trace.c_0.shape == trace.c_n.shape
    else:
        assert np.array_equal(trace.h_n, state) and trace.c_n is None and trace.c_0 is None
    assert trace.h_0.shape == trace.h_n.shape
    if hx is not None:
        assert np.array_equal(trace.h_0, hx[0] if fam == "lstm" else hx)
    else:
        assert not trace.h_0.any()
    assert trace.mode == fam and trace.names == layer.family.gates + layer.family.states
    # the last layer's recorded h, all directions side by side, is the output
    D = layer.num_directions
    last = np.concatenate([trace.gate("h", -1, d) for d in range(D)], axis=-1)
    want = out.transpose(1, 0, 2) if layer.batch_first else out
    assert np.array_equal(last, want)


def _params(layer, k, d):
    s = f"_l{k}" + ("_reverse" if d else "")
    return {name: getattr(layer, name + s, None) if name + s in layer._params else None
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_traced_gates_satisfy_the_equations(config):
    """State updates and per-gate functions of nplstm.gates hold at every valid step."""
    fam, _ = config
    layer, x, hx, lengths = _run(*config)
    trace = layer.trace(x, hx, lengths=lengths)
    valid = trace.mask()  # (L, N)
    if trace.unbatched:
        valid = valid[:, 0]
    for k in range(trace.num_layers):
        xk = trace.layer_inputs[k]  # (L, N, in)
        xk = xk[:, 0] if trace.unbatched else xk
        for d in range(trace.num_directions):
            p = _params(layer, k, d)
            g = {name: trace.gate(name, k, d) for name in trace.names}
            h_prev = trace.prev("h", k, d)

            def close(a, b, what, k=k, d=d):
                diff = np.max(np.abs(a[valid] - b[valid]), initial=0.0)
                assert diff <= 1e-12, f"{what} layer {k} direction {d}: {diff:.3g}"

            rows = {n: gates.gate_rows(fam, n, layer.hidden_size)
                    for n in gates.GATE_ORDER[fam]}

            def w(n, p=p, rows=rows):
                r = rows[n]
                return (p["weight_ih"][r], p["weight_hh"][r],
                        None if p["bias_ih"] is None else p["bias_ih"][r],
                        None if p["bias_hh"] is None else p["bias_hh"][r])

            if fam == "lstm":
                c_prev = trace.prev("c", k, d)
                close(g["c"], g["f"] * c_prev + g["i"] * g["g"], "c = f*c_prev + i*g")
                close(g["h"], gates.hidden_update(g["o"], g["c"], p["weight_hr"]), "h")
                if p["weight_hr"] is None:
                    close(g["h"], g["o"] * np.tanh(g["c"]), "h = o*tanh(c)")
                for n, fn in (("i", gates.input_gate), ("f", gates.forget_gate),
                              ("g", gates.cell_candidate), ("o", gates.output_gate)):
                    close(g[n], fn(xk, h_prev, *w(n)), fn.__name__)
            elif fam == "gru":
                close(g["h"], (1 - g["z"]) * g["n"] + g["z"] * h_prev, "h = (1-z)n + z h")
                close(g["r"], gates.reset_gate(xk, h_prev, *w("r")), "reset_gate")
                close(g["z"], gates.update_gate(xk, h_prev, *w("z")), "update_gate")
                close(g["n"], gates.new_gate(xk, h_prev, g["r"], *w("n")), "new_gate")
            else:
                want = gates.rnn_step(xk, h_prev, *w("h"), nonlinearity=layer.nonlinearity)
                close(g["h"], want, "rnn_step")
            for name in trace.names:  # padding is zero
                assert not g[name][~valid].any()


def test_prev_starts_from_h0_and_runs_backwards_in_reverse():
    layer, x, hx, _ = _run("lstm", {"bidirectional": True, "hx": True})
    lengths = np.array([7, 3, 5])
    trace = layer.trace(x, hx, lengths=lengths)
    h_prev = trace.prev("h", 0, 1)  # (L, N, H)
    h = trace.gate("h", 0, 1)
    for n, length in enumerate(lengths):
        assert np.array_equal(h_prev[length - 1, n], hx[0][1, n])  # reverse starts at the end
        assert np.array_equal(h_prev[: length - 1, n], h[1:length, n])
        assert not h_prev[length:, n].any()
    assert np.array_equal(trace.prev("c", 0, 0)[0], hx[1][0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", [("lstm", {"num_layers": 2, "bidirectional": True,
                                               "lengths": [7, 2, 4], "hx": True}),
                                    ("gru", {"unbatched": True}),
                                    ("rnn", {"nonlinearity": "relu", "batch_first": True})],
                         ids=_ids)
def test_save_load_round_trip_is_exact(tmp_path, config, dtype):
    layer, x, hx, lengths = _run(*config, dtype=dtype)
    trace = layer.trace(x, hx, lengths=lengths)
    path = tmp_path / "t.npz"
    trace.save(path)
    back = nplstm.Trace.load(path)
    for attr in ("mode", "num_layers", "num_directions", "batch_first", "unbatched",
                 "nonlinearity", "names"):
        assert getattr(back, attr) == getattr(trace, attr), attr
    a, b = trace.to_dict(), back.to_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]) and a[key].dtype == b[key].dtype, key
    assert len(back.layer_inputs) == len(trace.layer_inputs)
    for u, v in zip(trace.layer_inputs, back.layer_inputs):
        assert np.array_equal(u, v)
    assert repr(back) == repr(trace)


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "w.npz", weight=np.ones(3))
    with pytest.raises(ValueError, match="not an nplstm trace"):
        nplstm.Trace.load(tmp_path / "w.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not an nplstm trace"):
        nplstm.Trace.load(tmp_path / "junk.npz")
    np.save(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(ValueError, match="not an nplstm trace"):
        nplstm.Trace.load(tmp_path / "a.npy")


def test_helpers_and_repr():
    layer, x, _hx, lengths = _run("lstm", {"num_layers": 2, "lengths": [7, 3, 5]})
    trace = layer.trace(x, lengths=lengths)
    assert (trace.steps, trace.batch_size, trace.hidden_size) == (L, N, H)
    assert trace.gates == ("i", "f", "g", "o") and "c" in trace and "z" not in trace
    s = trace.step(2, layer=1, batch=1)
    assert set(s) == {"x", "h_prev", "c_prev", "i", "f", "g", "o", "h", "c"}
    assert s["x"].shape == (H,) and s["i"].shape == (H,)
    assert np.array_equal(s["h_prev"], trace.gate("h", 1)[1, 1])
    assert np.array_equal(s["x"], trace.gate("h", 0)[2, 1])  # layer 1's input is layer 0's h
    sat = trace.saturation()
    assert set(sat) == {"i", "f", "g", "o"}
    assert all(0 <= v <= 1 for pair in sat.values() for v in pair)
    everything = trace.saturation(low=0.5, high=0.5 + 1e-12)
    assert all(abs(lo + hi - 1) < 1e-12 for lo, hi in everything.values())
    d = trace.to_dict()
    assert d["output"] is trace.output and d["i"] is trace["i"] and "c_n" in d
    text = repr(trace)
    assert text.startswith("Trace(lstm, num_layers=2") and "lengths [7, 3, 5]" in text
    u = nplstm.GRU(2, 4, seed=0).trace(np.ones((3, 2)))
    assert u.gate("z").shape == (3, 4) and u.prev("h").shape == (3, 4)
    assert u.step(0)["h_prev"].shape == (4,) and "unbatched" in repr(u)


def test_relu_rnn_saturation_counts_dead_units():
    layer = nplstm.RNN(3, 4, nonlinearity="relu", dtype=np.float64, seed=0)
    trace = layer.trace(np.random.default_rng(0).normal(size=(6, 2, 3)))
    lo, hi = trace.saturation()["h"]
    assert lo == np.mean(trace["h"] <= 0) and np.isnan(hi)


def test_errors():
    trace = nplstm.LSTM(3, 5, seed=0).trace(np.ones((4, 2, 3)))
    with pytest.raises(KeyError, match="'z' is not in this lstm trace"):
        trace["z"]
    for kwargs in ({"layer": 1}, {"direction": 1}, {"layer": 0.5}, {"layer": True}):
        with pytest.raises(IndexError):
            trace.gate("i", **kwargs)
    with pytest.raises(IndexError, match="t must be"):
        trace.step(4)
    with pytest.raises(IndexError, match="batch must be"):
        trace.step(0, batch=2)
    with pytest.raises(KeyError, match="prev"):
        trace.prev("i")
    with pytest.raises(ValueError, match="low < high"):
        trace.saturation(low=0.9, high=0.1)


# ------------------------------------------------------------------ cells --

CELLS = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("with_hx", [False, True])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("fam,nonlinearity", [("lstm", "tanh"), ("gru", "tanh"),
                                              ("rnn", "tanh"), ("rnn", "relu")])
def test_cell_trace_is_the_call_and_satisfies_the_equations(fam, nonlinearity, unbatched,
                                                            with_hx, dtype, tmp_path):
    kwargs = {"nonlinearity": nonlinearity} if fam == "rnn" else {}
    cell = CELLS[fam](H_IN, H, dtype=dtype, seed=3, **kwargs)
    rng = np.random.default_rng(4)
    shape = (H,) if unbatched else (N, H)
    x = rng.uniform(-1, 1, shape[:-1] + (H_IN,)).astype(dtype)
    hx = None
    if with_hx:
        h0 = rng.uniform(-1, 1, shape).astype(dtype)
        hx = (h0, rng.uniform(-1, 1, shape).astype(dtype)) if fam == "lstm" else h0
    tr = cell.trace(x, hx)
    got = cell(x, hx)
    states = got if fam == "lstm" else (got,)
    assert np.array_equal(tr.h_n, states[0]) and np.array_equal(tr.output, states[0])
    if fam == "lstm":
        assert np.array_equal(tr.c_n, states[1])
    assert tr.steps == 1 and tr.num_layers == tr.num_directions == 1
    assert tr.unbatched == unbatched and tr.h_n.shape == shape
    # the recorded gates are the cell's own, and satisfy its equations
    gates_now = cell.step_gates(x, hx)[1]
    step = tr.step(0)
    W, U = cell.weight_ih.astype(np.float64), cell.weight_hh.astype(np.float64)
    b = (cell.bias_ih + cell.bias_hh).astype(np.float64)
    xs, h_prev = step["x"].astype(np.float64), step["h_prev"].astype(np.float64)
    z = W @ xs + U @ h_prev + b
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for name, value in gates_now.items():
        assert np.array_equal(tr.gate(name)[0], value)  # (N, H), or (H,) unbatched
    if fam == "lstm":
        sig = 1 / (1 + np.exp(-z))
        np.testing.assert_allclose(step["i"], sig[:H], atol=tol)
        np.testing.assert_allclose(step["c"], step["f"] * step["c_prev"] + step["i"] * step["g"],
                                   atol=tol)
        np.testing.assert_allclose(step["h"], step["o"] * np.tanh(step["c"]), atol=tol)
    elif fam == "gru":
        np.testing.assert_allclose(step["h"], (1 - step["z"]) * step["n"]
                                   + step["z"] * step["h_prev"], atol=tol)
    else:
        act = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0))
        np.testing.assert_allclose(step["h"], act(z), atol=tol)
    if with_hx:
        h0 = hx[0] if fam == "lstm" else hx
        np.testing.assert_array_equal(step["h_prev"], h0 if unbatched else h0[0])
    path = tmp_path / "cell.npz"
    tr.save(path)
    back = nplstm.Trace.load(path)
    assert back.unbatched == unbatched and back.nonlinearity == nonlinearity
    for name, value in tr.to_dict().items():
        assert np.array_equal(back.to_dict()[name], value), name


def test_cell_trace_errors():
    cell = nplstm.GRUCell(H_IN, H)
    with pytest.raises(ValueError, match="trace needs at least one sample"):
        cell.trace(np.zeros((0, H_IN)))
    with pytest.raises(ValueError, match="inconsistent input_size: got 2 expected 3"):
        cell.trace(np.zeros((1, 2)))
