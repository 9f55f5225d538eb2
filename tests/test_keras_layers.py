"""The pieces under the Keras importer, without Keras: the layers' ``mask=`` keyword
(Keras's masking) and :class:`nplstm.Sequential`."""

from __future__ import annotations

import numpy as np
import pytest

import nplstm

H_IN, H, N, L = 3, 5, 3, 7
LAYERS = [(nplstm.LSTM, {}), (nplstm.GRU, {}), (nplstm.RNN, {"nonlinearity": "relu"})]


def _mask():
    m = np.ones((N, L), dtype=bool)  # (N, L)
    m[0, 2:4] = False  # a gap in the middle
    m[1, 5:] = False  # padding at the end
    m[2, :2] = False  # padding at the start
    return m


def _x(seed=0):
    return np.random.default_rng(seed).normal(size=(N, L, H_IN))  # (N, L, H_in)


def _compact_reference(layer, x, mask):
    """Each sequence run alone on its taken steps only: outputs at those steps
    and the final state. Independent of the masking code."""
    outs, finals = [], []
    for n in range(N):
        y, state = layer(x[n:n + 1, mask[n]])  # (1, L_n, D*H)
        outs.append(y[0])
        finals.append(state)
    return outs, finals


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cls,kw", LAYERS)
def test_mask_takes_only_unmasked_steps(cls, kw, bidirectional):
    layer = cls(H_IN, H, batch_first=True, bidirectional=bidirectional, dtype=np.float64,
                seed=1, **kw)
    x, mask = _x(), _mask()
    outs, finals = _compact_reference(layer, x, mask)
    for mode in ("zero", "hold"):
        y, state = layer(x, mask=mask, masked_output=mode)
        h_n = state[0] if isinstance(state, tuple) else state
        for n in range(N):
            np.testing.assert_allclose(y[n, mask[n]], outs[n], rtol=0, atol=1e-12)
            ref = finals[n][0] if isinstance(finals[n], tuple) else finals[n]
            np.testing.assert_allclose(h_n[:, n], ref[:, 0], rtol=0, atol=1e-12)
        if mode == "zero":
            assert np.all(y[~mask] == 0)


@pytest.mark.parametrize("cls,kw", LAYERS)
def test_hold_repeats_the_last_output_in_each_direction(cls, kw):
    """Keras: a masked step outputs the direction's last output, zeros before any."""
    layer = cls(H_IN, H, batch_first=True, bidirectional=True, dtype=np.float64, seed=2,
                **kw)
    mask = _mask()
    y, _ = layer(_x(1), mask=mask, masked_output="hold")
    for n in range(N):
        for d, order in ((0, range(L)), (1, range(L - 1, -1, -1))):
            last = np.zeros(H)
            for t in order:
                part = y[n, t, d * H:(d + 1) * H]
                if mask[n, t]:
                    last = part
                else:
                    np.testing.assert_array_equal(part, last)


@pytest.mark.parametrize("cls,kw", LAYERS)
def test_masks_on_the_default_engine(cls, kw, monkeypatch):
    """The compiled engine ([fast], when installed) runs lengths= masks; Keras's masks
    (gaps, padding first, "hold") must give the NumPy path's numbers there too."""
    layer = cls(H_IN, H, batch_first=True, bidirectional=True, seed=4, **kw)
    x = _x(5).astype(np.float32)
    for mask in (_mask(), np.arange(L)[None, :] < np.array([7, 4, 2])[:, None]):
        for mode in ("zero", "hold"):
            monkeypatch.setenv("NPLSTM_ENGINE", "numpy")
            want = layer(x, mask=mask, masked_output=mode)
            monkeypatch.setenv("NPLSTM_ENGINE", "auto")
            got = layer(x, mask=mask, masked_output=mode)
            np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-6)


def test_suffix_mask_equals_lengths_and_layouts_agree():
    lstm = nplstm.LSTM(H_IN, H, bidirectional=True, dtype=np.float64, seed=3)
    x = _x(2).transpose(1, 0, 2)  # (L, N, H_in)
    lengths = np.array([7, 4, 2])
    mask = np.arange(L)[:, None] < lengths[None, :]  # (L, N)
    a, (h_a, c_a) = lstm(x, mask=mask)
    b, (h_b, c_b) = lstm(x, lengths=lengths)
    for p, q in ((a, b), (h_a, h_b), (c_a, c_b)):
        np.testing.assert_array_equal(p, q)
    full, _ = lstm(x, mask=np.ones((L, N), bool))
    np.testing.assert_array_equal(full, lstm(x)[0])
    one, _ = lstm(x[:, 1], mask=mask[:, 1])  # unbatched: mask (L,)
    np.testing.assert_allclose(one, a[:, 1], rtol=0, atol=1e-12)


def test_mask_errors():
    gru = nplstm.GRU(H_IN, H, batch_first=True)
    x = _x().astype(np.float32)
    with pytest.raises(TypeError, match="mask must be a bool array"):
        gru(x, mask=np.ones((N, L)))
    with pytest.raises(ValueError, match=r"mask must have .*\(3, 7\), got \(7, 3\)"):
        gru(x, mask=np.ones((L, N), bool))
    with pytest.raises(ValueError, match="give lengths= or mask=, not both"):
        gru(x, mask=_mask(), lengths=np.array([7, 7, 7]))
    with pytest.raises(ValueError, match="masked_output must be 'zero' or 'hold', got 'keep'"):
        gru(x, mask=_mask(), masked_output="keep")


@pytest.mark.parametrize("engine", ["numpy", "numba"])
@pytest.mark.parametrize("steps", [1, L])
def test_masked_output_is_checked_without_a_mask_too(engine, steps, monkeypatch):
    """A bad ``masked_output`` is an error whatever the call: without mask or lengths,
    on either engine, one step or many, with arrays of the layer's dtype (the calls
    the hot paths take), as with a list (the general path)."""
    if engine == "numba":
        pytest.importorskip("numba")
    monkeypatch.setenv("NPLSTM_ENGINE", engine)
    gru = nplstm.GRU(H_IN, H, batch_first=True)
    x = _x().astype(np.float32)[:, :steps]
    for given in (x, x.tolist()):
        with pytest.raises(ValueError, match="masked_output must be 'zero' or 'hold', got 'keep'"):
            gru(given, masked_output="keep")
        with pytest.raises(ValueError, match="masked_output must be 'zero' or 'hold', got 'keep'"):
            gru(given, gru(x)[1], masked_output="keep")
    for mode in ("zero", "hold"):  # no mask: both modes are the plain call
        np.testing.assert_array_equal(gru(x, masked_output=mode)[0], gru(x)[0])


# ------------------------------------------------------------------ Sequential --

def _model():
    return nplstm.Sequential(nplstm.LSTM(H_IN, H, batch_first=True, seed=0),
                             nplstm.Linear(H, 2, seed=1))


def test_sequential_runs_in_order():
    model, x = _model(), _x().astype(np.float32)
    y = model(x)
    np.testing.assert_array_equal(y, model[1](model[0](x)[0]))
    assert len(model) == 2 and model[-1] is model[1] and list(model) == [model[0], model[1]]
    part = model[:1]
    assert isinstance(part, nplstm.Sequential) and len(part) == 1
    assert nplstm.Sequential([model[0]])[0] is model[0]
    assert repr(model) == ("Sequential(\n  (0): LSTM(3, 5, batch_first=True)\n  (1): "
                           "Linear(in_features=5, out_features=2, bias=True)\n)")
    assert repr(nplstm.Sequential()) == "Sequential()"


def test_sequential_state_dict_like_torch():
    torch = pytest.importorskip("torch")
    ref = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    ours = nplstm.Sequential(nplstm.Linear(3, 4), np.tanh, nplstm.Linear(4, 2))
    assert list(ours.state_dict()) == list(ref.state_dict())  # "0.weight", ..., "2.bias"
    ours.load_state_dict(ref.state_dict())
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(x), want, rtol=0, atol=1e-6)


def test_sequential_load_state_dict_round_trip_and_errors():
    a, b = _model(), nplstm.Sequential(nplstm.LSTM(H_IN, H, batch_first=True, seed=5),
                                       nplstm.Linear(H, 2, seed=6))
    sd = a.state_dict()
    assert list(sd)[:2] == ["0.weight_ih_l0", "0.weight_hh_l0"] and "1.weight" in sd
    assert b.load_state_dict(sd) == ([], [])
    x = _x().astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    with pytest.raises(ValueError, match="unexpected keys: 2.weight"):
        b.load_state_dict({**sd, "2.weight": np.ones(1)})
    with pytest.raises(ValueError, match="missing keys: 1.bias"):
        b.load_state_dict({k: v for k, v in sd.items() if k != "1.bias"})
    before = b.state_dict()
    bad = {**sd, "0.weight_ih_l0": sd["0.weight_ih_l0"] + 1, "1.weight": np.ones((9, 9))}
    with pytest.raises(ValueError, match=r"1.weight: expected shape \(2, 5\)"):
        b.load_state_dict(bad)
    for key, value in before.items():  # all or nothing: layer 0 was put back
        np.testing.assert_array_equal(b.state_dict()[key], value)
    result = b.load_state_dict({k: v for k, v in sd.items() if k != "1.bias"}, strict=False)
    assert result.missing_keys == ["1.bias"]
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        b.load_state_dict([1, 2])


def test_sequential_errors():
    model = _model()
    with pytest.raises(TypeError, match="layer 1 must be callable, got int"):
        nplstm.Sequential(model[0], 3)
    with pytest.raises(IndexError, match="index 2 is out of range for a Sequential of 2"):
        model[2]
    with pytest.raises(TypeError, match="indices must be integers or slices, got str"):
        model["0"]


def test_sequential_trace_and_reset():
    model, x = _model(), _x().astype(np.float32)
    traces = model.trace(x)
    assert list(traces) == [0]
    np.testing.assert_array_equal(traces[0].output, model[0](x)[0])
    model.reset_states()  # nothing stateful: nothing to do


def test_sequential_train_eval_and_named_parameters():
    lstm = nplstm.LSTM(H_IN, H, num_layers=2, dropout=0.5, batch_first=True, seed=0)
    model = nplstm.Sequential(lstm, nplstm.Linear(H, 2, seed=1))
    assert model.train() is model and lstm.training
    assert model.eval() is model and not lstm.training
    with pytest.raises(TypeError, match="mode must be a bool, got int"):
        model.train(1)
    names = [name for name, _ in model.named_parameters()]
    assert names == list(model.state_dict())
